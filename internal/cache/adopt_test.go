package cache_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

func openStaging(t *testing.T, dir string) *cache.Staging {
	t.Helper()
	st, err := cache.OpenStaging(dir, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// stagedPath is where st keeps the entry k (a disk store of its own).
func stagedPath(st *cache.Staging, k cache.Key) string { return entryPath(st.Dir(), k) }

// A staged entry adopted by the cache is the very file that was staged,
// now under its entry name: the same bytes, gone from staging, served by
// the store and accepted by `cache verify`, with and without the xorb's
// manifest; the store's counters and size count it as a Put.
func TestAdoptMovesTheStagedFile(t *testing.T) {
	dir := t.TempDir()
	d := newDisk(t, dir, 1<<30)
	st := openStaging(t, dir)
	x := newRealXorb(t, 31)
	e := x.entry(0, x.n())
	k := e.Key()
	mustPut(t, st, e)
	staged, err := os.ReadFile(stagedPath(st, k))
	if err != nil {
		t.Fatal(err)
	}
	n, ok, err := d.Adopt(bg, st, k, slices.Clone(e.Hashes))
	if err != nil || !ok || n != len(e.Data) {
		t.Fatalf("Adopt = %d, %v, %v; want %d, true, nil", n, ok, err, len(e.Data))
	}
	got, err := os.ReadFile(entryPath(dir, k))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, staged) {
		t.Fatal("the adopted entry's file differs from the staged one")
	}
	if exists(stagedPath(st, k)) {
		t.Fatal("the staged file is still in staging")
	}
	mustMiss(t, st, k.Xorb, k.Start, k.End)
	ent, err := d.Get(bg, k.Xorb, k.Start, k.End)
	if err != nil || !bytes.Equal(ent.Data, e.Data) {
		t.Fatalf("Get after Adopt: %v", err)
	}
	ent.Release()
	if s := d.Stats(); s.Puts != 1 || s.PutBytes != uint64(len(e.Data)) || s.Entries != 1 || s.Size != int64(len(staged)) {
		t.Fatalf("stats %+v", s)
	}
	for _, withManifest := range []bool{false, true} {
		if withManifest {
			putManifest(t, d, x.m)
		}
		r, err := cache.VerifyDir(context.Background(), dir, cache.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Failed() || r.Entries != 1 || r.Chunks != int64(x.n()) || (withManifest && r.WithManifest != 1) {
			t.Fatalf("verify (manifest %v): %+v", withManifest, r)
		}
	}
	// After a restart the index finds it like any other entry.
	d2 := newDisk(t, dir, 1<<30)
	if s := d2.Stats(); s.Entries != 1 {
		t.Fatalf("after a restart: %d entries", s.Entries)
	}
}

// Adopt takes nothing it cannot vouch for: hashes other than the staged
// ones (a later fill staged other bytes), a staged header that fails its
// checks, a key that staging holds only inside a wider entry, and a key
// not staged at all leave the cache without the entry, and nothing is
// left behind in the cache directory but the entries.
func TestAdoptRefusesWhatItCannotVouchFor(t *testing.T) {
	x := newRealXorb(t, 32)
	e := x.entry(0, x.n())
	k := e.Key()
	other := slices.Clone(e.Hashes)
	other[len(other)-1][0] ^= 1
	for _, tc := range []struct {
		name   string
		stage  func(t *testing.T, st *cache.Staging)
		key    cache.Key
		hashes []merklehash.Hash
		kept   bool // the staged file stays in staging
	}{
		{"other hashes", func(t *testing.T, st *cache.Staging) { mustPut(t, st, e) }, k, other, true},
		{"damaged header", func(t *testing.T, st *cache.Staging) {
			mustPut(t, st, e)
			damage(t, stagedPath(st, k), func(b []byte) []byte { b[60] ^= 1; return b })
		}, k, e.Hashes, true},
		{"truncated", func(t *testing.T, st *cache.Staging) {
			mustPut(t, st, e)
			damage(t, stagedPath(st, k), func(b []byte) []byte { return b[:len(b)-1] })
		}, k, e.Hashes, true},
		{"inside a wider staged entry", func(t *testing.T, st *cache.Staging) { mustPut(t, st, e) },
			x.key(1, 3), e.Hashes[1:3], true},
		{"not staged", func(t *testing.T, st *cache.Staging) {}, k, e.Hashes, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d := newDisk(t, dir, 1<<30)
			st := openStaging(t, dir)
			tc.stage(t, st)
			n, ok, err := d.Adopt(bg, st, tc.key, tc.hashes)
			if ok || err != nil || n != 0 {
				t.Fatalf("Adopt = %d, %v, %v; want 0, false, nil", n, ok, err)
			}
			mustMiss(t, d, tc.key.Xorb, tc.key.Start, tc.key.End)
			if got := exists(stagedPath(st, k)); got != tc.kept {
				t.Fatalf("staged file kept: %v, want %v", got, tc.kept)
			}
			filepath.WalkDir(filepath.Join(dir, "chunks-v2"), func(p string, de os.DirEntry, err error) error {
				if err == nil && !de.IsDir() {
					t.Errorf("left in the cache: %s", p)
				}
				return nil
			})
			if s := d.Stats(); s.Puts != 0 || s.Entries != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// Over a disk tier that spools the shared writes, Tiered adopts on the
// disk and queues the shared write, which reads the adopted file back.
func TestTieredAdoptQueuesTheSharedWrite(t *testing.T) {
	dir := t.TempDir()
	d := newDisk(t, dir, 1<<30)
	shared := newMemory(t, 1<<30)
	tr, err := cache.NewTiered(d, shared, cache.TieredConfig{QueueBytes: 64 << 20, Spool: d})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	st := openStaging(t, dir)
	x := newRealXorb(t, 33)
	e := x.entry(0, x.n())
	mustPut(t, st, e)
	if _, ok, err := tr.Adopt(bg, st, e.Key(), e.Hashes); !ok || err != nil {
		t.Fatalf("Adopt: %v, %v", ok, err)
	}
	if err := tr.Flush(bg); err != nil {
		t.Fatal(err)
	}
	got, err := shared.Get(bg, e.Xorb, e.Start, e.End)
	if err != nil || !bytes.Equal(got.Data, e.Data) || !slices.Equal(got.Hashes, e.Hashes) {
		t.Fatalf("shared tier after Flush: %v", err)
	}
}
