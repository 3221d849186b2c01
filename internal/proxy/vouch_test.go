package proxy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// vouchEnv is cacheEnv with read-ahead room for whole entries: the disk
// store vouches for a file only once an entry covering all of it was
// proven, and a stream short of room reads an entry a few chunks at a time.
func vouchEnv(t *testing.T, d *cache.Disk) *testEnv {
	t.Helper()
	return cacheEnv(t, d, func(c *Config) { c.StreamBuffer = DefaultStreamBuffer })
}

// A disk entry this process proved against its manifest is served on later
// reads without hashing it again. A writer who then rewrites that file in
// place, consistently (data, hashes and checksums), and puts its
// modification time back is still caught against the manifest before a
// byte is served: the file's status-change time moved.
func TestCacheProvenDiskEntryRewrittenInPlaceIsCaught(t *testing.T) {
	dir := t.TempDir()
	d := diskCache(t, dir, 1<<30)
	e := vouchEnv(t, d)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(31, 6<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	readAll(t, e.eng, "", m, 0, -1)
	flush(t, e.eng)

	r, err := e.eng.cas.Reconstruct(context.Background(), e.eng.auth("", m), *m.XetHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	x, seg := r.Terms[0].Hash, r.Terms[0].Range
	seg.End = min(seg.End, segmentChunks)
	// A file is remembered as proven once it is a little older than the
	// file system's timestamp granularity (cache/vouch.go); read until it
	// is.
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := readAll(t, e.eng, "", m, 0, -1)
		if !bytes.Equal(got, data) {
			t.Fatal("bytes differ")
		}
		ent, err := d.Get(context.Background(), x, seg.Start, seg.End)
		if err != nil {
			t.Fatalf("segment not cached: %v", err)
		}
		if ent.Proven() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the disk store never vouched for a proven entry")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := e.eng.CacheStats(); st.ProofFailures != 0 {
		t.Fatalf("premise: stats %+v", st)
	}

	// Forge the entry in a second store, then copy its file over the
	// original in place (same inode) and restore the modification time.
	ent, err := d.Get(context.Background(), x, seg.Start, seg.End)
	if err != nil {
		t.Fatal(err)
	}
	forged := &cache.Entry{Xorb: x, Start: ent.Start, End: ent.End, Offsets: ent.Offsets, Data: bytes.Clone(ent.Data)}
	forged.Data[len(forged.Data)/2] ^= 1
	for i := forged.Start; i < forged.End; i++ {
		forged.Hashes = append(forged.Hashes, merklehash.ChunkHash(forged.Chunk(i)))
	}
	dir2 := t.TempDir()
	if err := diskCache(t, dir2, 1<<30).Put(context.Background(), forged); err != nil {
		t.Fatal(err)
	}
	var rel string
	err = filepath.WalkDir(filepath.Join(dir2, "chunks-v2"), func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() && !strings.HasPrefix(de.Name(), ".") {
			rel, _ = filepath.Rel(dir2, p)
		}
		return err
	})
	if err != nil || rel == "" {
		t.Fatalf("forged file not found: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir2, rel))
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, rel)
	info, err := os.Stat(victim)
	if err != nil {
		t.Fatalf("the forged file has no original: %v", err)
	}
	f, err := os.OpenFile(victim, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(victim, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(victim); err != nil || !os.SameFile(info, after) || !after.ModTime().Equal(info.ModTime()) {
		t.Fatalf("premise: the rewrite changed the file's identity or time: %v", err)
	}

	got, _ := readAll(t, e.eng, "", m, 0, -1)
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ after the rewrite")
	}
	if st := e.eng.CacheStats(); st.ProofFailures != 1 || st.Fallbacks == 0 {
		t.Fatalf("stats %+v, want one proof failure and a fetch from upstream", st)
	}
}

// Warm reads of different files at once, some of them ranged, each come
// out exact: a disk entry's buffer goes back to the store only once no
// chunk of it is waiting to be sent, never while a reader still needs it.
func TestCacheWarmConcurrentReadsShareNoBuffers(t *testing.T) {
	dir := t.TempDir()
	d := diskCache(t, dir, 1<<30)
	e := cacheEnv(t, d, func(c *Config) { c.StreamBuffer = 1 << 20 })
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	files := [][]byte{mixed(41, 9<<20), mixed(42, 7<<20), randomData(43, 5<<20)}
	var metas []*hub.FileMeta
	for i, data := range files {
		name := "f" + string(rune('a'+i)) + ".bin"
		e.add(t, "org/m", name, data)
		m := e.stat(t, "", repoM, name)
		readAll(t, e.eng, "", m, 0, -1)
		metas = append(metas, m)
	}
	flush(t, e.eng)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 3 {
				i := (g + round) % len(files)
				off, n := int64(0), int64(-1)
				if g%2 == 1 {
					off, n = int64(1<<20+g*4099), int64(3<<20)
				}
				got, err := e.read(context.Background(), "", metas[i], off, n)
				want := files[i][off:]
				if n >= 0 {
					want = want[:n]
				}
				if err != nil || !bytes.Equal(got, want) {
					errs <- fmt.Sprintf("reader %d round %d file %d: %d bytes, %v; differ at %d", g, round, i, len(got), err, firstDiff(got, want))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if st := d.Stats(); st.Hits == 0 {
		t.Fatalf("premise: no disk hits: %+v", st)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
