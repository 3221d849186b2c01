package proxy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// A disk entry this process proved against its manifest is served on later
// reads without hashing it again. A writer who then rewrites that file in
// place, consistently (data, hashes and checksums), and puts its
// modification time back is still caught against the manifest before a
// byte is served: the file's status-change time moved.
func TestCacheProvenDiskEntryRewrittenInPlaceIsCaught(t *testing.T) {
	dir := t.TempDir()
	d := diskCache(t, dir, 1<<30)
	e := cacheEnv(t, d)
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
