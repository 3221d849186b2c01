package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// stagedEnv is an engine with a disk cache and, as the server has, a disk
// staging store in the same directory.
func stagedEnv(t *testing.T, fcfg fakehub.Config) (*testEnv, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := cache.OpenStaging(dir, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, fcfg, func(c *Config) {
		c.Cache = diskCache(t, dir, 1<<30)
		c.Staging = st
		c.BlockSize = 64 << 20
	})
	return e, dir
}

// entryFiles lists the entry files of the cache directory dir (not the
// staging folders), by name.
func entryFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, "chunks-v2"), func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !de.IsDir() {
			out = append(out, de.Name())
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// stagedFiles counts the entry files in the staging folders of dir.
func stagedFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(dir, cache.StagingDirName), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() && strings.Contains(p, string(filepath.Separator)+"chunks-v2"+string(filepath.Separator)) {
			n++
		}
		return nil
	})
	return n
}

func verifyDir(t *testing.T, dir string) *cache.VerifyReport {
	t.Helper()
	r, err := cache.VerifyDir(context.Background(), dir, cache.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Failures {
		t.Errorf("cache verify: %s: %s: %v", f.File.Path, f.Check, f.Err)
	}
	return r
}

// A cold whole-file read stages its segments and, once each xorb is
// proven, the cache adopts the staged files as they are (no copy): staging
// is left empty, the directory passes `cache verify` (entries checked
// against their manifests), and a second read is served from the cache
// alone, exact.
func TestCachePromotionAdoptsStagedFiles(t *testing.T) {
	e, dir := stagedEnv(t, fakehub.Config{MaxXorbBytes: 4 << 20})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(41, 10<<20+777)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	if got, _ := readAll(t, e.eng, "", m, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("first read differs")
	}
	flush(t, e.eng)
	st := e.eng.CacheStats()
	if st.StagedBytes == 0 || st.AdoptedBytes == 0 || st.PromotedBytes < st.StagedBytes {
		t.Fatalf("stats %+v: want every staged byte promoted, by adoption", st)
	}
	// Whole segments and the last segment of each xorb are adopted; only
	// parts of segments (cut by a fill's range) are copied.
	if st.AdoptedBytes*10 < st.PromotedBytes*9 {
		t.Fatalf("adopted %d of %d promoted bytes", st.AdoptedBytes, st.PromotedBytes)
	}
	if n := stagedFiles(t, dir); n != 0 {
		t.Fatalf("%d files left in staging", n)
	}
	r := verifyDir(t, dir)
	if r.Entries == 0 || r.WithManifest != r.Entries || r.Bytes != int64(st.PromotedBytes) {
		t.Fatalf("verify %+v; want every entry checked against a manifest, %d bytes", r, st.PromotedBytes)
	}
	e.fh.ResetStats()
	got, src := readAll(t, e.eng, "", m, 0, -1)
	if !bytes.Equal(got, data) {
		t.Fatal("second read differs")
	}
	if n := xorbBytes(e.fh); n != 0 || src.Cache != int64(len(data)) {
		t.Fatalf("second read: %d xorb bytes upstream, sources %+v", n, src)
	}
}

// A fill cut off midway (the xorb's body ends early and every later
// request fails) has staged what it decoded, and nothing of it reaches the
// cache: no entry file, not after the engine closes, not for a new store
// opening the directory (a restart, or a crash's leftovers).
func TestCacheInterruptedFillLeavesNothingProven(t *testing.T) {
	e, dir := stagedEnv(t, fakehub.Config{MaxXorbBytes: 64 << 20})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(42, 12<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	e.fh.TruncateBodies(fakehub.ClassXorb, 8<<20, 1)
	e.fh.InjectFault(fakehub.Fault{Class: fakehub.ClassXorb, Nth: 2, Times: 1 << 20, Status: 404})
	if got, err := e.read(context.Background(), "", m, 0, -1); err == nil {
		t.Fatalf("read of %d bytes succeeded, want an error", len(got))
	}
	flush(t, e.eng)
	if st := e.eng.CacheStats(); st.StagedBytes == 0 || st.PromotedBytes != 0 || st.FillErrors == 0 {
		t.Fatalf("stats %+v: want a failed fill that staged chunks, none promoted", st)
	}
	if n := stagedFiles(t, dir); n == 0 {
		t.Fatal("premise: nothing staged")
	}
	// What a crash now would leave, opened by a new store.
	if f := entryFiles(t, dir); len(f) != 0 {
		t.Fatalf("entries after an interrupted fill: %v", f)
	}
	d2 := diskCache(t, dir, 1<<30)
	if s := d2.Stats(); s.Entries != 0 {
		t.Fatalf("a new store finds %d entries", s.Entries)
	}
	if err := e.eng.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f := entryFiles(t, dir); len(f) != 0 || stagedFiles(t, dir) != 0 {
		t.Fatalf("after close: entries %v, %d staged files", f, stagedFiles(t, dir))
	}
}

// The hardest damage (a flipped byte in the file's last chunk, stored
// uncompressed: it decodes) with a disk cache and disk staging: the read
// fails, nothing of the damaged xorb is promoted or left staged, the
// directory passes `cache verify`, and once upstream is healthy the file
// reads exact.
func TestCacheCorruptLastChunkIsNeverPromoted(t *testing.T) {
	e, dir := stagedEnv(t, fakehub.Config{MaxXorbBytes: 2 << 20, Compression: "none"})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(43, 6<<20+999)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	last, end := lastFetch(t, e, m)
	e.fh.CorruptXorb(last, end-3, 1)
	got, err := e.read(context.Background(), "", m, 0, -1)
	var ie *IntegrityError
	if !errors.As(err, &ie) || len(got) >= len(data) {
		t.Fatalf("whole read with a damaged last chunk: %d bytes, err %v", len(got), err)
	}
	flush(t, e.eng)
	if st := e.eng.CacheStats(); st.StagedBytes == 0 || st.FileMismatches == 0 {
		t.Fatalf("stats %+v: premise: staged chunks, a file hash that failed", st)
	}
	for _, name := range entryFiles(t, dir) {
		if strings.HasPrefix(name, last.String()) {
			t.Errorf("entry of the damaged xorb in the cache: %s", name)
		}
	}
	var left []string
	filepath.WalkDir(filepath.Join(dir, cache.StagingDirName), func(p string, de fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(de.Name(), last.String()) {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("staged chunks of the damaged xorb left after the failure: %v", left)
	}
	verifyDir(t, dir)
	e.fh.ClearFaults()
	if got, _ := readAll(t, e.eng, "", m, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("healthy read differs")
	}
	flush(t, e.eng)
	verifyDir(t, dir)
}

// lastFetch returns the xorb of the file's last term and the end of the
// fetch range that ends with it, in bytes of the stored xorb.
func lastFetch(t *testing.T, e *testEnv, m *hub.FileMeta) (merklehash.Hash, int64) {
	t.Helper()
	r, err := e.eng.cas.Reconstruct(context.Background(), e.eng.auth("", m), *m.XetHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := r.Terms[len(r.Terms)-1]
	for _, xf := range r.Xorbs[last.Hash] {
		for _, rg := range xf.Ranges {
			if rg.Chunks.End == last.Range.End {
				return last.Hash, int64(rg.Bytes.End)
			}
		}
	}
	t.Fatal("no fetch range ends with the last term")
	return merklehash.Hash{}, 0
}

// A fill's segment buffers go back to the pool only when the fill and
// every reader are done with them: a reader that stops after its first
// byte keeps the chunks its read-ahead took, while the fill runs on,
// hands every segment to staging and ends, and another file's fills take
// pooled buffers; the paused reader's bytes are still exact when it goes
// on.
func TestCacheSegmentBuffersOutliveTheirReaders(t *testing.T) {
	e, _ := stagedEnv(t, fakehub.Config{MaxXorbBytes: 8 << 20})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	a, b := mixed(44, 16<<20), mixed(45, 16<<20)
	e.add(t, "org/m", "a.bin", a)
	e.add(t, "org/m", "b.bin", b)
	ma, mb := e.stat(t, "", repoM, "a.bin"), e.stat(t, "", repoM, "b.bin")
	// The paused reader's fills run to their end.
	rc, first := openPaused(t, e, ma, true)
	for range 3 {
		if got, _ := readAll(t, e.eng, "", mb, 0, -1); !bytes.Equal(got, b) {
			t.Fatal("the other file's bytes differ")
		}
	}
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("the paused reader: %v", err)
	}
	if !bytes.Equal(append(first, rest...), a) {
		t.Fatal("the paused reader's bytes differ")
	}
}
