package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

const (
	helloFileHash = "a9dae0ad88b060bdd7e7c87abdcf95b132c95a0414b06d4f6beb68d287b87165"
	seed0FileHash = "3d17b2d7d64a0e011b6717a52d9a16bd2c3f05b743fa8adf52a7d75dafab6d89"
	seed0SHA256   = "b3d0a1f7938cd4d8413a4dcffd4313e2e8ac0cb61cb1090eb140ea8e9154befb"
	emptyFileHash = "0000000000000000000000000000000000000000000000000000000000000000"
	emptySHA256   = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// runHashCmd runs "xetproxy hash args..." and returns its exit code, stdout
// and stderr.
func runHashCmd(t *testing.T, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errOut bytes.Buffer
	code := run(append([]string{"hash"}, args...), stdin, &out, &errOut)
	return code, out.String(), errOut.String()
}

// writeVectorFiles writes every data vector input into dir and returns the
// paths in vector order.
func writeVectorFiles(t *testing.T, dir string) []string {
	t.Helper()
	v := xettest.MustLoad()
	var paths []string
	for i := range v.DataVectors {
		p := filepath.Join(dir, fmt.Sprintf("vector-%d.bin", i))
		if err := os.WriteFile(p, xettest.DataVectorInput(i), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func TestHashVectors(t *testing.T) {
	v := xettest.MustLoad()
	dir := t.TempDir()
	paths := writeVectorFiles(t, dir)
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runHashCmd(t, nil, append(paths, empty)...)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var want strings.Builder
	for i, dv := range v.DataVectors {
		fmt.Fprintf(&want, "%s  %s\n", dv.FileHash, paths[i])
	}
	fmt.Fprintf(&want, "%s  %s\n", emptyFileHash, empty)
	if out != want.String() {
		t.Fatalf("output:\n%s\nwant:\n%s", out, want.String())
	}
	// The vector file and the spelled-out constants must agree, or this
	// test would only compare the JSON with itself.
	if v.DataVectors[0].FileHash != seed0FileHash || v.DataVectors[4].FileHash != helloFileHash ||
		v.DataVectors[0].SHA256 != seed0SHA256 {
		t.Fatal("vector file disagrees with PROTOCOL.md §9.4")
	}
}

func TestHashStdin(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{{"dash", []string{"-"}}, {"no-args", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			in := iotest.HalfReader(bytes.NewReader(xettest.SplitMix64(0, 1_000_000)))
			code, out, errOut := runHashCmd(t, in, tc.args...)
			if code != exitOK || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if want := seed0FileHash + "  -\n"; out != want {
				t.Fatalf("output %q, want %q", out, want)
			}
		})
	}
	code, out, _ := runHashCmd(t, strings.NewReader("Hello World!"), "-")
	if code != exitOK || out != helloFileHash+"  -\n" {
		t.Fatalf("Hello World on stdin: exit %d, %q", code, out)
	}
}

func TestHashMissingFile(t *testing.T) {
	dir := t.TempDir()
	hello := filepath.Join(dir, "hello")
	if err := os.WriteFile(hello, []byte("Hello World!"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	code, out, errOut := runHashCmd(t, nil, missing, hello, dir, hello)
	if code != exitError {
		t.Fatalf("exit %d, want %d", code, exitError)
	}
	// Both good files are hashed, in order, despite the two bad ones.
	if want := fmt.Sprintf("%s  %s\n%[1]s  %[2]s\n", helloFileHash, hello); out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	if len(lines) != 2 ||
		lines[0] != "xetproxy hash: "+missing+": no such file or directory" ||
		!strings.HasPrefix(lines[1], "xetproxy hash: "+dir+": ") {
		t.Fatalf("stderr %q", errOut)
	}
}

func TestHashBadFlags(t *testing.T) {
	code, out, errOut := runHashCmd(t, nil, "--bogus", "x")
	if code != exitUsage || out != "" || !strings.Contains(errOut, "Usage: xetproxy hash") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runHashCmd(t, nil, "-h")
	if code != exitOK || !strings.Contains(errOut, "<offset> <length> <chunk hash>") {
		t.Fatalf("-h: exit %d, stderr %q", code, errOut)
	}
}

// parseChunkLines reads the indented chunk lines of --chunks output.
func parseChunkLines(t *testing.T, lines []string) (offsets, lengths []int, hashes []string) {
	t.Helper()
	for _, l := range lines {
		f := strings.Fields(l)
		if !strings.HasPrefix(l, "  ") || len(f) != 3 {
			t.Fatalf("bad chunk line %q", l)
		}
		off, err1 := strconv.Atoi(f[0])
		n, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad chunk line %q", l)
		}
		offsets, lengths, hashes = append(offsets, off), append(lengths, n), append(hashes, f[2])
	}
	return offsets, lengths, hashes
}

func TestHashChunks(t *testing.T) {
	v := xettest.MustLoad()
	paths := writeVectorFiles(t, t.TempDir())
	for _, limit := range []int{defaultSpoolLimit, 3, 1} {
		t.Run(fmt.Sprint("spool-", limit), func(t *testing.T) {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			for _, p := range paths {
				cfg := hashConfig{chunks: true, spoolLimit: limit}
				if err := hashOne(context.Background(), nil, w, p, cfg); err != nil {
					t.Fatal(err)
				}
			}
			w.Flush()
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			for i, dv := range v.DataVectors {
				if want := dv.FileHash + "  " + paths[i]; lines[0] != want {
					t.Fatalf("file line %q, want %q", lines[0], want)
				}
				n := len(dv.Chunks)
				if len(lines) < 1+n {
					t.Fatalf("vector %d: %d lines left, want %d chunk lines", i, len(lines)-1, n)
				}
				offsets, lengths, hashes := parseChunkLines(t, lines[1:1+n])
				prev := 0
				for j, c := range dv.Chunks {
					if offsets[j] != prev || lengths[j] != c.Size || hashes[j] != c.Hash {
						t.Fatalf("vector %d chunk %d: %d %d %s, want %d %d %s",
							i, j, offsets[j], lengths[j], hashes[j], prev, c.Size, c.Hash)
					}
					prev = c.EndOffset
				}
				lines = lines[1+n:]
			}
			if len(lines) != 0 {
				t.Fatalf("%d extra lines: %q", len(lines), lines)
			}
		})
	}
	// Through the command line as well.
	code, out, _ := runHashCmd(t, nil, "--chunks", paths[4])
	if want := helloFileHash + "  " + paths[4] + "\n  0 12 d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb\n"; code != 0 || out != want {
		t.Fatalf("exit %d, output %q, want %q", code, out, want)
	}
}

type jsonChunk struct {
	Offset uint64 `json:"offset"`
	Length int    `json:"length"`
	Hash   string `json:"hash"`
}

type jsonResult struct {
	Path     string      `json:"path"`
	Size     uint64      `json:"size"`
	FileHash string      `json:"file_hash"`
	SHA256   string      `json:"sha256"`
	Chunks   []jsonChunk `json:"chunks"`
}

// wantJSON is the --json result a data vector calls for.
func wantJSON(dv xettest.DataVector, path string, withChunks bool) jsonResult {
	r := jsonResult{Path: path, Size: uint64(dv.Length), FileHash: dv.FileHash, SHA256: dv.SHA256}
	if withChunks {
		for _, c := range dv.Chunks {
			r.Chunks = append(r.Chunks, jsonChunk{uint64(c.EndOffset - c.Size), c.Size, c.Hash})
		}
	}
	return r
}

func TestHashJSON(t *testing.T) {
	v := xettest.MustLoad()
	dir := t.TempDir()
	paths := writeVectorFiles(t, dir)
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, withChunks := range []bool{false, true} {
		args := []string{"--json"}
		if withChunks {
			args = append(args, "--chunks")
		}
		args = append(append(args, paths...), empty, "-")
		code, out, errOut := runHashCmd(t, strings.NewReader("Hello World!"), args...)
		if code != exitOK || errOut != "" {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		var want []jsonResult
		for i, dv := range v.DataVectors {
			want = append(want, wantJSON(dv, paths[i], withChunks))
		}
		want = append(want,
			jsonResult{Path: empty, FileHash: emptyFileHash, SHA256: emptySHA256},
			wantJSON(v.DataVectors[4], "-", withChunks))
		if withChunks {
			want[len(paths)].Chunks = []jsonChunk{} // printed as "chunks":[]
		}

		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("%d lines, want %d", len(lines), len(want))
		}
		for i, line := range lines {
			var got jsonResult
			dec := json.NewDecoder(strings.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("line %d %q: %v", i, line, err)
			}
			if strings.Contains(line, `"chunks"`) != withChunks {
				t.Fatalf("line %d: chunks present = %v, want %v", i, !withChunks, withChunks)
			}
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want[i]) {
				t.Fatalf("line %d:\n got %+v\nwant %+v", i, got, want[i])
			}
		}
	}
	if v.DataVectors[0].SHA256 != seed0SHA256 {
		t.Fatal("vector file disagrees with PROTOCOL.md §9.4")
	}
}

func TestHashNameEscaping(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "a\\b\nc&d")
	if err := os.WriteFile(name, []byte("Hello World!"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runHashCmd(t, nil, name)
	want := `\` + helloFileHash + "  " + filepath.Join(dir, `a\\b\nc&d`) + "\n"
	if code != exitOK || out != want {
		t.Fatalf("exit %d, output %q, want %q", code, out, want)
	}
	code, out, _ = runHashCmd(t, nil, "--json", name)
	var got jsonResult
	if err := json.Unmarshal([]byte(out), &got); code != exitOK || err != nil || got.Path != name {
		t.Fatalf("exit %d, %v, path %q", code, err, got.Path)
	}
	if !strings.Contains(out, `c&d"`) {
		t.Fatalf("JSON path escapes more than it must: %s", out)
	}
}

func TestHashOutputError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hello")
	if err := os.WriteFile(p, []byte("Hello World!"), 0o644); err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	code := run([]string{"hash", p, p}, strings.NewReader(""), failWriter{}, &errOut)
	if code != exitError || strings.Count(errOut.String(), "write output") != 1 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestChunkSpool(t *testing.T) {
	for _, limit := range []int{1, 2, 5, 100} {
		s := chunkSpool{limit: limit}
		var want []chunkRecord
		for i := range 23 {
			r := chunkRecord{length: uint32(1000 + i), hash: merklehash.ChunkHash([]byte{byte(i)})}
			want = append(want, r)
			if err := s.add(int(r.length), r.hash); err != nil {
				t.Fatal(err)
			}
		}
		if spilt := s.file != nil; spilt != (limit <= 23) {
			t.Fatalf("limit %d: spilt = %v", limit, spilt)
		}
		var got []chunkRecord
		var wantOff uint64
		err := s.each(func(o uint64, r chunkRecord) error {
			if o != wantOff {
				return fmt.Errorf("offset %d, want %d", o, wantOff)
			}
			wantOff += uint64(r.length)
			got = append(got, r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("limit %d: records differ", limit)
		}
		name := ""
		if s.file != nil {
			name = s.file.Name()
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
		if name != "" {
			if _, err := os.Stat(name); !os.IsNotExist(err) {
				t.Fatalf("spool file %s left behind: %v", name, err)
			}
		}
	}
}
