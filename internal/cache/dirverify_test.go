package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// verifyFixture is a cache directory holding real xorbs, with and without
// manifests, and the disk store of a "server" using it.
type verifyFixture struct {
	dir        string
	d          *cache.Disk
	a, b, c, e *realXorb // a, b, e have manifests; c has none
}

func newVerifyFixture(t *testing.T) *verifyFixture {
	f := &verifyFixture{dir: t.TempDir()}
	f.d = newDisk(t, f.dir, 1<<30)
	f.a, f.b, f.c, f.e = newRealXorb(t, 11), newRealXorb(t, 12), newRealXorb(t, 13), newRealXorb(t, 14)
	for _, e := range []*cache.Entry{
		f.a.entry(0, 2), f.a.entry(2, f.a.n()), f.b.entry(0, f.b.n()),
		f.c.entry(0, 2), f.c.entry(1, 3), f.e.entry(0, 3),
	} {
		put(t, f.d, e)
	}
	for _, x := range []*realXorb{f.a, f.b, f.e} {
		putManifest(t, f.d, x.m)
	}
	return f
}

func TestVerifyDirClean(t *testing.T) {
	f := newVerifyFixture(t)
	r, err := cache.VerifyDir(context.Background(), f.dir, cache.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var chunks int64
	for _, n := range []uint32{2, f.a.n() - 2, f.b.n(), 2, 2, 3} {
		chunks += int64(n)
	}
	if r.Failed() || r.Entries != 6 || r.Manifests != 3 || r.WithManifest != 4 || r.Chunks != chunks || r.Vanished != 0 {
		t.Errorf("report %+v; want 6 entries (4 with a manifest) of %d chunks, 3 manifests, no failure", r, chunks)
	}
}

// Real damage, each of a kind that one check alone catches, then
// VerifyOptions.Delete under a running store.
func TestVerifyDirDamage(t *testing.T) {
	ctx := context.Background()
	f := newVerifyFixture(t)

	// 1. A flipped data byte: the chunk's CRC-32C catches it.
	p := entryPath(f.dir, f.a.key(2, f.a.n()))
	b := readFile(t, p)
	b[len(b)-1] ^= 1
	writeFile(t, p, b)

	// 2. An entry rewritten consistently (data, chunk hash, CRCs): only
	// the manifest of its xorb catches it.
	forged := f.a.entry(0, 2)
	forged.Data[5] ^= 0xff
	forged.Hashes[0] = merklehash.ChunkHash(forged.Chunk(0))
	if err := forged.Verify(); err != nil {
		t.Fatalf("premise: the forged entry is not self-consistent: %v", err)
	}
	writeFile(t, entryPath(f.dir, forged.Key()), encodeEntry(t, forged))
	if got, err := f.d.Get(ctx, f.a.m.Xorb, 0, 2); err != nil || got.Data[5] != forged.Data[5] {
		t.Fatalf("premise: the store serves the forged entry (%v)", err)
	}

	// 3. The same rewrite of a xorb without a manifest: nothing can tell.
	undetectable := f.c.entry(0, 2)
	undetectable.Data[5] ^= 0xff
	undetectable.Hashes[0] = merklehash.ChunkHash(undetectable.Chunk(0))
	writeFile(t, entryPath(f.dir, undetectable.Key()), encodeEntry(t, undetectable))

	// 4. Data changed and CRCs recomputed, hash left: the re-hash catches it.
	stale := f.c.entry(1, 3)
	stale.Data[len(stale.Data)-1] ^= 1
	writeFile(t, entryPath(f.dir, stale.Key()), encodeEntry(t, stale))

	// 5. A forged manifest: well formed, one size changed; it no longer
	// proves its xorb, so b's entry is checked without it.
	fm := &cache.Manifest{Xorb: f.b.m.Xorb, Hashes: f.b.m.Hashes, Sizes: slices.Clone(f.b.m.Sizes)}
	fm.Sizes[0]++
	mb, err := fm.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, manifestPath(f.dir, f.b.m.Xorb), mb)

	want := map[string]string{
		f.a.key(2, f.a.n()).String():      cache.CheckStored,
		f.a.key(0, 2).String():            cache.CheckManifest,
		f.c.key(1, 3).String():            cache.CheckChunkHash,
		"manifest " + f.b.m.Xorb.String(): cache.CheckStored,
	}
	name := func(v cache.VerifyFailure) string {
		if v.File.Kind == cache.KindManifest {
			return "manifest " + v.File.Key.Xorb.String()
		}
		return v.File.Key.String()
	}
	check := func(r *cache.VerifyReport, deleted bool) {
		t.Helper()
		got := map[string]string{}
		for _, v := range r.Failures {
			got[name(v)] = v.Check
			if v.Err == nil || v.Deleted != deleted {
				t.Errorf("%s: err %v, deleted %v; want an error, deleted %v", name(v), v.Err, v.Deleted, deleted)
			}
		}
		if len(got) != len(want) || len(r.Failures) != len(want) {
			t.Errorf("failures %v, want %v", got, want)
		}
		for k, c := range want {
			if got[k] != c {
				t.Errorf("%s: check %q, want %q", k, got[k], c)
			}
		}
		// e alone passed against a manifest: a's entries failed and b's
		// manifest is forged.
		if r.Entries != 6 || r.Manifests != 3 || r.WithManifest != 1 {
			t.Errorf("counted %d entries (%d with a manifest), %d manifests; want 6 (1), 3", r.Entries, r.WithManifest, r.Manifests)
		}
	}

	var streamed int
	r, err := cache.VerifyDir(ctx, f.dir, cache.VerifyOptions{OnFailure: func(cache.VerifyFailure) { streamed++ }})
	if err != nil {
		t.Fatal(err)
	}
	check(r, false)
	if streamed != len(r.Failures) {
		t.Errorf("OnFailure called %d times for %d failures", streamed, len(r.Failures))
	}
	for _, v := range r.Failures {
		if _, err := os.Stat(v.File.Path); err != nil {
			t.Errorf("report only, yet %s is gone: %v", v.File.Path, err)
		}
	}

	r, err = cache.VerifyDir(ctx, f.dir, cache.VerifyOptions{Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	check(r, true)
	for _, v := range r.Failures {
		if _, err := os.Stat(v.File.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after --delete: %v", v.File.Path, err)
		}
	}
	// The running store: the deleted forgery is a miss, the rest is served.
	if _, err := f.d.Get(ctx, f.a.m.Xorb, 0, 2); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("deleted entry under a running store: %v, want a miss", err)
	}
	if _, err := f.d.GetManifest(ctx, f.b.m.Xorb); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("deleted manifest under a running store: %v, want a miss", err)
	}
	if got, err := f.d.Get(ctx, f.e.m.Xorb, 0, 3); err != nil || cachetest.Equal(got, f.e.entry(0, 3)) != "" {
		t.Errorf("a sound entry after the deletions: %v", err)
	}

	r, err = cache.VerifyDir(ctx, f.dir, cache.VerifyOptions{Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Failed() || r.Entries != 3 || r.Manifests != 2 || r.WithManifest != 1 {
		t.Errorf("after --delete: %+v; want 3 entries (c's forgery among them), 2 manifests, no failure", r)
	}
}

// A one-chunk xorb is named by its chunk's hash alone, so its manifest's
// one size is not proven and ParseManifest accepts a wrong one. The entry
// holding the chunk proves it wrong: the manifest fails, not the entry.
func TestVerifyDirOneChunkManifest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := newDisk(t, dir, 1<<30)
	m, data := cachetest.MakeManifest(7, 5000)
	if m.Len() != 1 || m.Xorb != m.Hashes[0] {
		t.Fatalf("premise: %d chunks", m.Len())
	}
	put(t, d, &cache.Entry{Xorb: m.Xorb, Start: 0, End: 1, Offsets: []uint32{0, uint32(len(data))},
		Hashes: []merklehash.Hash{m.Hashes[0]}, Data: data})
	lied := &cache.Manifest{Xorb: m.Xorb, Hashes: m.Hashes, Sizes: []uint32{m.Sizes[0] + 1}}
	b, err := lied.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.ParseManifest(m.Xorb, b); err != nil {
		t.Fatalf("premise: the wrong size parses (%v)", err)
	}
	if err := os.MkdirAll(filepath.Dir(manifestPath(dir, m.Xorb)), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, manifestPath(dir, m.Xorb), b)

	r, err := cache.VerifyDir(ctx, dir, cache.VerifyOptions{Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Failures) != 1 || r.Failures[0].File.Kind != cache.KindManifest || !r.Failures[0].Deleted || r.Entries != 1 || r.WithManifest != 0 {
		t.Fatalf("report %+v; want the manifest failed and deleted, the entry passed", r)
	}
	if _, err := os.Stat(entryPath(dir, cache.Key{Xorb: m.Xorb, Start: 0, End: 1})); err != nil {
		t.Errorf("the sound entry is gone: %v", err)
	}
	if _, err := os.Stat(manifestPath(dir, m.Xorb)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lying manifest is still there: %v", err)
	}
}
