package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// dlHub is an in-process fakehub that the commands reach through
// HF_ENDPOINT, with a clean token environment.
type dlHub struct {
	fh  *fakehub.Hub
	srv *httptest.Server
}

func newDLHub(t *testing.T) *dlHub {
	t.Helper()
	fh, err := fakehub.New(fakehub.Config{MaxXorbBytes: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fh)
	t.Cleanup(srv.Close)
	fh.SetPublicURL(srv.URL)
	t.Setenv("HF_ENDPOINT", srv.URL)
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", "")
	t.Setenv("HF_HOME", t.TempDir())
	return &dlHub{fh: fh, srv: srv}
}

func (h *dlHub) add(t *testing.T, repo, path string, data []byte, s ...fakehub.Storage) fakehub.File {
	t.Helper()
	f, err := h.fh.AddFile(context.Background(), repo, path, bytes.NewReader(data), s...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// runCmd runs one command line and returns its exit code and outputs.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func weightsData(seed uint64, n int) []byte {
	r := xettest.SplitMix64(seed, n)
	for i := 1; i < len(r); i += 2 {
		r[i] = 0x3c + r[i]&3
	}
	return r
}

func TestLs(t *testing.T) {
	h := newDLHub(t)
	if err := h.fh.CreateRepo(fakehub.RepoSpec{ID: "org/m"}); err != nil {
		t.Fatal(err)
	}
	big := h.add(t, "org/m", "sub/model.safetensors", weightsData(1, 300000))
	h.add(t, "org/m", "README.md", []byte("# hello\n"))
	code, out, errOut := runCmd(t, "ls", "org/m")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"300000  " + big.XetHash.String() + "  sub/model.safetensors",
		"8  -" + strings.Repeat(" ", 63) + "  README.md",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("ls output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCmd(t, "ls", "org/m", "sub")
	if code != exitOK || strings.Contains(out, "README") || !strings.Contains(out, "model.safetensors") {
		t.Fatalf("ls sub: exit %d\n%s", code, out)
	}
	code, out, _ = runCmd(t, "ls", "--revision", "main", "org/m", "sub/model.safetensors")
	if code != exitOK || !strings.Contains(out, "sub/model.safetensors") {
		t.Fatalf("ls of a file: exit %d\n%s", code, out)
	}
	if code, _, _ := runCmd(t, "ls", "org/m", "nothing/here"); code != exitNotFound {
		t.Fatalf("ls of a missing path: exit %d", code)
	}
	if code, _, _ := runCmd(t, "ls"); code != exitUsage {
		t.Fatalf("ls without repo: exit %d", code)
	}
}

func TestDownload(t *testing.T) {
	h := newDLHub(t)
	if err := h.fh.CreateRepo(fakehub.RepoSpec{ID: "datasets/org/d"}); err != nil {
		t.Fatal(err)
	}
	data := weightsData(2, 2<<20+333)
	f := h.add(t, "datasets/org/d", "data/train.bin", data)
	text := []byte(strings.Repeat("plain git file\n", 1000))
	h.add(t, "datasets/org/d", "data/notes.txt", text)
	dir := t.TempDir()

	// One file into a directory, the dataset named by its URL prefix.
	code, out, errOut := runCmd(t, "download", "-q", "--fsync", "datasets/org/d", "data/train.bin", "-o", dir)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	dest := filepath.Join(dir, "data", "train.bin")
	if strings.TrimSpace(out) != dest {
		t.Fatalf("stdout %q", out)
	}
	mustEqualFile(t, dest, data)
	if _, err := os.Stat(dest + partSuffix); !os.IsNotExist(err) {
		t.Fatal("partial file left behind")
	}

	// -o naming the file, --repo-type, a plain file; progress as lines.
	code, _, errOut = runCmd(t, "download", "--repo-type", "dataset", "-o", filepath.Join(dir, "n.txt"), "org/d", "data/notes.txt")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	mustEqualFile(t, filepath.Join(dir, "n.txt"), text)
	if !strings.Contains(errOut, "100.0%") {
		t.Fatalf("no progress line: %q", errOut)
	}

	// A folder downloads everything under it.
	dir2 := t.TempDir()
	if code, _, errOut := runCmd(t, "download", "-q", "-o", dir2, "datasets/org/d", "data"); code != exitOK {
		t.Fatalf("folder: exit %d: %s", code, errOut)
	}
	mustEqualFile(t, filepath.Join(dir2, "data", "train.bin"), data)
	mustEqualFile(t, filepath.Join(dir2, "data", "notes.txt"), text)

	// To standard output.
	code, out, errOut = runCmd(t, "download", "-q", "-o", "-", "datasets/org/d", "data/train.bin")
	if code != exitOK || out != string(data) {
		t.Fatalf("-o -: exit %d, %d bytes: %s", code, len(out), errOut)
	}
	if code, _, _ := runCmd(t, "download", "-o", "-", "datasets/org/d", "data"); code != exitUsage {
		t.Fatalf("-o - with a folder: exit %d", code)
	}

	// By hash.
	byHash := filepath.Join(dir, "by-hash.bin")
	code, _, errOut = runCmd(t, "download", "-q", "--hash", f.XetHash.String(), "--repo", "datasets/org/d", "-o", byHash)
	if code != exitOK {
		t.Fatalf("--hash: exit %d: %s", code, errOut)
	}
	mustEqualFile(t, byHash, data)
}

func mustEqualFile(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes that differ from the %d expected", p, len(got), len(want))
	}
}

func TestDownloadResume(t *testing.T) {
	h := newDLHub(t)
	if err := h.fh.CreateRepo(fakehub.RepoSpec{ID: "org/m"}); err != nil {
		t.Fatal(err)
	}
	data := weightsData(3, 3<<20)
	h.add(t, "org/m", "w.bin", data)
	text := []byte(strings.Repeat("0123456789", 5000))
	h.add(t, "org/m", "t.txt", text, fakehub.StoragePlain)
	dir := t.TempDir()
	dest := filepath.Join(dir, "w.bin")

	// A partial file: only the missing tail is fetched, and the result is
	// verified as a whole.
	if err := os.WriteFile(dest+partSuffix, data[:2<<20+12345], 0o644); err != nil {
		t.Fatal(err)
	}
	h.fh.ResetStats()
	code, _, errOut := runCmd(t, "download", "-q", "-c", "-o", dir, "org/m", "w.bin")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	mustEqualFile(t, dest, data)
	if got := h.fh.Stats()[fakehub.ClassXorb].BytesOut; got >= int64(len(data))/2 {
		t.Fatalf("resume fetched %d xorb bytes of a %d-byte file", got, len(data))
	}
	var ranged bool
	for _, r := range h.fh.Requests() {
		if r.Class == fakehub.ClassReconstruction && strings.HasPrefix(r.Header.Get("Range"), "bytes=2109497-") {
			ranged = true
		}
	}
	if !ranged {
		t.Fatal("no reconstruction asked from the resume offset")
	}

	// A truncated final file resumes too; so does a plain file.
	if err := os.WriteFile(dest, data[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	tdest := filepath.Join(dir, "t.txt")
	if err := os.WriteFile(tdest+partSuffix, text[:7777], 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, "download", "-q", "-c", "-o", dir, "org/m", "w.bin", "t.txt"); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	mustEqualFile(t, dest, data)
	mustEqualFile(t, tdest, text)

	// A partial file with wrong bytes fails verification: exit 6, nothing
	// under the final name, the bad partial removed.
	os.Remove(dest)
	bad := bytes.Clone(data[:1<<20])
	bad[1000] ^= 1
	if err := os.WriteFile(dest+partSuffix, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCmd(t, "download", "-q", "-c", "-o", dir, "org/m", "w.bin")
	if code != exitIntegrity || !strings.Contains(errOut, "sha256 mismatch") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("unverified file under the final name")
	}
	if _, err := os.Stat(dest + partSuffix); !os.IsNotExist(err) {
		t.Fatal("bad partial file kept")
	}
}

func TestDownloadExitCodes(t *testing.T) {
	h := newDLHub(t)
	for _, spec := range []fakehub.RepoSpec{
		{ID: "org/m"},
		{ID: "org/private", Private: true, Readers: []string{"hf_reader"}},
		{ID: "org/gated", Gated: true, Readers: []string{"hf_reader"}},
	} {
		if err := h.fh.CreateRepo(spec); err != nil {
			t.Fatal(err)
		}
	}
	data := weightsData(4, 500000)
	h.add(t, "org/m", "w.bin", data)
	h.add(t, "org/private", "w.bin", data)
	h.add(t, "org/gated", "w.bin", data)
	h.fh.AddToken("hf_other")
	dir := t.TempDir()
	dl := func(args ...string) (int, string) {
		code, _, errOut := runCmd(t, append([]string{"download", "-q", "-o", dir}, args...)...)
		return code, errOut
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{"missing file", []string{"org/m", "nope.bin"}, nil, exitNotFound},
		{"missing revision", []string{"--revision", "v9", "org/m", "w.bin"}, nil, exitNotFound},
		{"missing repo, authenticated", []string{"--token", "hf_other", "org/none", "w.bin"}, nil, exitNotFound},
		{"unknown hash", []string{"--hash", strings.Repeat("ab", 32), "--repo", "org/m"}, nil, exitNotFound},
		{"private, anonymous", []string{"org/private", "w.bin"}, nil, exitAuth},
		// The Hub hides private repos from other users: 404, as if missing.
		{"private, other user", []string{"org/private", "w.bin"}, map[string]string{"HF_TOKEN": "hf_other"}, exitNotFound},
		{"gated, not approved", []string{"org/gated", "w.bin"}, map[string]string{"HF_TOKEN": "hf_other"}, exitAuth},
		{"gated, anonymous", []string{"org/gated", "w.bin"}, nil, exitAuth},
		{"bad token", []string{"--token", "hf_bogus", "org/m", "w.bin"}, nil, exitAuth},
		{"hub unreachable", []string{"--endpoint", "http://127.0.0.1:1", "org/m", "w.bin"}, nil, exitUpstream},
		{"no path", []string{"org/m"}, nil, exitUsage},
		{"bad flag", []string{"--frobnicate", "org/m", "w.bin"}, nil, exitUsage},
		{"hash without -o", []string{"--hash", strings.Repeat("ab", 32)}, nil, exitUsage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if tc.name == "unknown hash" {
				args = append(args, "-o", filepath.Join(dir, "x"))
			}
			code, errOut := dl(args...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d: %s", code, tc.want, errOut)
			}
			if code != exitUsage && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Fatalf("error is not one line: %q", errOut)
			}
			for _, secret := range []string{"hf_other", "hf_bogus", "hf_reader"} {
				if strings.Contains(errOut, secret) {
					t.Fatalf("token %s printed: %s", secret, errOut)
				}
			}
		})
	}

	// The token file is read, and works.
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	if err := os.WriteFile(filepath.Join(home, "token"), []byte("hf_reader\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, errOut := dl("org/private", "w.bin"); code != exitOK {
		t.Fatalf("with the token file: exit %d: %s", code, errOut)
	}
	mustEqualFile(t, filepath.Join(dir, "w.bin"), data)

	// Corrupt xorbs: exit 6 and no file under the final name.
	os.Remove(filepath.Join(dir, "w.bin"))
	h.fh.CorruptXorb([32]byte{}, 50000, 1)
	code, errOut := dl("org/m", "w.bin")
	if code != exitIntegrity {
		t.Fatalf("corrupt: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "w.bin")); !os.IsNotExist(err) {
		t.Fatal("corrupt download under the final name")
	}
}

// TestVerifyFileXetHash checks the Xet file hash path of the verification
// of a resumed file, taken when the ETag names no sha256 or sha1: the
// known-answer vector passes, one flipped byte is an integrity failure.
func TestVerifyFileXetHash(t *testing.T) {
	v := xettest.MustLoad()
	data := xettest.DataVectorInput(0)
	want, err := merklehash.Parse(v.DataVectors[0].FileHash)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	meta := &hub.FileMeta{Path: "f", Size: int64(len(data)), ETag: "not-a-digest", XetHash: &want}
	if err := verifyFile(context.Background(), p, meta); err != nil {
		t.Fatalf("the vector does not verify: %v", err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	err = verifyFile(context.Background(), p, meta)
	var ie *proxy.IntegrityError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "xet file hash") {
		t.Fatalf("a flipped byte: %v", err)
	}
}
