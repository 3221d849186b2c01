package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// MakeManifest returns the manifest of a real xorb: size bytes of the
// SplitMix64 stream for seed, cut by the Xet chunker, each chunk hashed
// with merklehash.ChunkHash and the xorb named by merklehash.XorbHash. It
// also returns the xorb's decoded bytes.
func MakeManifest(seed uint64, size int) (*cache.Manifest, []byte) {
	data := xettest.SplitMix64(seed, size)
	m := &cache.Manifest{}
	var leaves []merklehash.Leaf
	start := 0
	for _, end := range chunking.Boundaries(data) {
		h := merklehash.ChunkHash(data[start:end])
		m.Hashes = append(m.Hashes, h)
		m.Sizes = append(m.Sizes, uint32(end-start))
		leaves = append(leaves, merklehash.Leaf{Hash: h, Size: uint64(end - start)})
		start = end
	}
	m.Xorb = merklehash.XorbHash(leaves)
	return m, data
}

// MakeLargeManifest returns a valid manifest of n chunks (at most
// cache.MaxEntryChunks) whose chunk hashes and sizes are derived from seed
// rather than from data: a manifest only needs them to agree with the xorb
// hash, and hashing n real chunks would make the suite slow.
func MakeLargeManifest(seed uint64, n int) *cache.Manifest {
	m := &cache.Manifest{Hashes: make([]merklehash.Hash, n), Sizes: make([]uint32, n)}
	leaves := make([]merklehash.Leaf, n)
	raw := xettest.SplitMix64(seed, 36*n)
	for i := range n {
		copy(m.Hashes[i][:], raw[36*i:])
		m.Sizes[i] = 1 + uint32(raw[36*i+32]) | uint32(raw[36*i+33])<<8 // 1..65536
		leaves[i] = merklehash.Leaf{Hash: m.Hashes[i], Size: uint64(m.Sizes[i])}
	}
	m.Xorb = merklehash.XorbHash(leaves)
	return m
}

// VectorManifests returns the manifests given by the known-answer vectors
// (testdata/xet-vectors.json): the xorbs of merkle_and_file_hash (from
// xet-core's tests) whose chunks all have sizes a manifest accepts, then
// the single-xorb data vectors. Nothing in them is computed by our code.
func VectorManifests() ([]*cache.Manifest, error) {
	v, err := xettest.Load()
	if err != nil {
		return nil, err
	}
	var out []*cache.Manifest
next:
	for _, e := range v.MerkleAndFileHash.Entries {
		if len(e.Chunks) == 0 {
			continue
		}
		x, err := merklehash.Parse(e.XorbHash)
		if err != nil {
			return nil, err
		}
		m := &cache.Manifest{Xorb: x}
		for _, c := range e.Chunks {
			hs, size := xettest.Leaf(c)
			if size == 0 || size > cache.MaxChunkSize {
				continue next
			}
			h, err := merklehash.Parse(hs)
			if err != nil {
				return nil, err
			}
			m.Hashes = append(m.Hashes, h)
			m.Sizes = append(m.Sizes, uint32(size))
		}
		out = append(out, m)
	}
	for _, d := range v.DataVectors {
		x, err := merklehash.Parse(d.MerkleRoot)
		if err != nil {
			return nil, err
		}
		m := &cache.Manifest{Xorb: x}
		for _, c := range d.Chunks {
			h, err := merklehash.Parse(c.Hash)
			if err != nil {
				return nil, err
			}
			m.Hashes = append(m.Hashes, h)
			m.Sizes = append(m.Sizes, uint32(c.Size))
		}
		out = append(out, m)
	}
	return out, nil
}

// SameManifest reports how got differs from want, or "" when it does not.
func SameManifest(got, want *cache.Manifest) string {
	switch {
	case got == nil:
		return "nil manifest"
	case got.Xorb != want.Xorb:
		return fmt.Sprintf("xorb %s, want %s", got.Xorb, want.Xorb)
	case !slices.Equal(got.Hashes, want.Hashes):
		return fmt.Sprintf("%d chunk hashes differ from the %d wanted", len(got.Hashes), len(want.Hashes))
	case !slices.Equal(got.Sizes, want.Sizes):
		return fmt.Sprintf("chunk sizes %v, want %v", got.Sizes, want.Sizes)
	}
	return ""
}

// ManifestBackdoor is implemented by a store under test (in practice a
// test wrapper embedding it) that can read and rewrite the stored form of
// a manifest behind the store's back, as a damaged disk or another writer
// to a shared bucket could. Run uses it to check that a store verifies the
// manifests it reads; stores without one skip that case.
type ManifestBackdoor interface {
	// StoredManifest returns the stored bytes of xorb's manifest, or nil
	// when the store holds none (in any of its places).
	StoredManifest(t *testing.T, xorb merklehash.Hash) []byte
	// SetStoredManifest replaces the stored manifest of xorb with b (in
	// every place the store keeps one).
	SetStoredManifest(t *testing.T, xorb merklehash.Hash, b []byte)
}

// manifestCases are the ManifestStore cases of Run.
var manifestCases = []struct {
	name string
	fn   func(t *testing.T, s cache.Store, ms cache.ManifestStore)
}{
	{"ManifestRoundTrip", testManifestRoundTrip},
	{"ManifestMiss", testManifestMiss},
	{"ManifestForgedRefused", testManifestForged},
	{"ManifestTampered", testManifestTampered},
	{"ManifestConcurrent", testManifestConcurrent},
}

func putManifest(t *testing.T, ms cache.ManifestStore, m *cache.Manifest) {
	t.Helper()
	if err := ms.PutManifest(context.Background(), m); err != nil {
		t.Fatalf("PutManifest %s: %v", m.Xorb, err)
	}
}

func wantManifest(t *testing.T, ms cache.ManifestStore, want *cache.Manifest) {
	t.Helper()
	got, err := ms.GetManifest(context.Background(), want.Xorb)
	if err != nil {
		t.Fatalf("GetManifest %s: %v", want.Xorb, err)
	}
	if d := SameManifest(got, want); d != "" {
		t.Fatalf("GetManifest %s: %s", want.Xorb, d)
	}
	if err := got.Verify(); err != nil {
		t.Fatalf("GetManifest %s returned a manifest that fails Verify: %v", want.Xorb, err)
	}
}

func wantNoManifest(t *testing.T, ms cache.ManifestStore, xorb merklehash.Hash) {
	t.Helper()
	got, err := ms.GetManifest(context.Background(), xorb)
	if !errors.Is(err, cache.ErrNotFound) || got != nil {
		t.Fatalf("GetManifest %s = %v, %v; want ErrNotFound", xorb, got != nil, err)
	}
}

func testManifestRoundTrip(t *testing.T, _ cache.Store, ms cache.ManifestStore) {
	a, _ := MakeManifest(1, 300<<10)
	b, _ := MakeManifest(2, 20<<10)
	if a.Len() < 3 || a.Verify() != nil {
		t.Fatalf("premise: test manifest of %d chunks, Verify %v", a.Len(), a.Verify())
	}
	putManifest(t, ms, a)
	putManifest(t, ms, b)
	wantManifest(t, ms, a)
	wantManifest(t, ms, b)
	putManifest(t, ms, a) // storing again succeeds
	wantManifest(t, ms, a)

	// The known answers: manifests built from the vector file alone.
	vs, err := VectorManifests()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range vs {
		putManifest(t, ms, m)
	}
	for _, m := range vs {
		wantManifest(t, ms, m)
	}

	// The largest manifest a xorb can have.
	big := MakeLargeManifest(3, cache.MaxEntryChunks)
	putManifest(t, ms, big)
	wantManifest(t, ms, big)
}

func testManifestMiss(t *testing.T, s cache.Store, ms cache.ManifestStore) {
	m, _ := MakeManifest(4, 100<<10)
	wantNoManifest(t, ms, m.Xorb)
	wantNoManifest(t, ms, merklehash.Zero)
	// Entries of a xorb do not make a manifest.
	put(t, s, MakeEntry(m.Xorb, 0, 2, 0))
	wantNoManifest(t, ms, m.Xorb)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ms.PutManifest(ctx, m); !errors.Is(err, context.Canceled) {
		t.Errorf("PutManifest with a canceled context = %v", err)
	}
	if _, err := ms.GetManifest(ctx, m.Xorb); !errors.Is(err, context.Canceled) {
		t.Errorf("GetManifest with a canceled context = %v", err)
	}
	wantNoManifest(t, ms, m.Xorb)

	// Delete purges entries, not manifests: a verified manifest cannot be
	// wrong.
	putManifest(t, ms, m)
	if err := s.Delete(context.Background(), m.Xorb, 0, cache.MaxEntryChunks); err != nil {
		t.Fatal(err)
	}
	wantManifest(t, ms, m)
}

// forgeries returns manifests that claim the xorb of m (or of other) but
// do not prove it, each named.
func forgeries(m, other *cache.Manifest) map[string]*cache.Manifest {
	edit := func(f func(c *cache.Manifest)) *cache.Manifest {
		c := &cache.Manifest{Xorb: m.Xorb, Hashes: slices.Clone(m.Hashes), Sizes: slices.Clone(m.Sizes)}
		f(c)
		return c
	}
	return map[string]*cache.Manifest{
		"other xorb's chunks": edit(func(c *cache.Manifest) { c.Hashes, c.Sizes = other.Hashes, other.Sizes }),
		"chunk hash changed":  edit(func(c *cache.Manifest) { c.Hashes[1][5] ^= 1 }),
		"chunk size changed":  edit(func(c *cache.Manifest) { c.Sizes[0]++ }),
		"chunks swapped": edit(func(c *cache.Manifest) {
			c.Hashes[0], c.Hashes[1] = c.Hashes[1], c.Hashes[0]
			c.Sizes[0], c.Sizes[1] = c.Sizes[1], c.Sizes[0]
		}),
		"chunk dropped": edit(func(c *cache.Manifest) { c.Hashes, c.Sizes = c.Hashes[:len(c.Hashes)-1], c.Sizes[:len(c.Sizes)-1] }),
		"chunk added": edit(func(c *cache.Manifest) {
			c.Hashes, c.Sizes = append(c.Hashes, c.Hashes[0]), append(c.Sizes, c.Sizes[0])
		}),
		"size missing":         edit(func(c *cache.Manifest) { c.Sizes = c.Sizes[1:] }),
		"no chunks":            edit(func(c *cache.Manifest) { c.Hashes, c.Sizes = nil, nil }),
		"empty chunk":          edit(func(c *cache.Manifest) { c.Sizes[0] = 0 }),
		"chunk over the limit": edit(func(c *cache.Manifest) { c.Sizes[0] = cache.MaxChunkSize + 1 }),
		"too many chunks": edit(func(c *cache.Manifest) {
			c.Hashes = make([]merklehash.Hash, cache.MaxEntryChunks+1)
			c.Sizes = slices.Repeat([]uint32{1}, cache.MaxEntryChunks+1)
		}),
		"xorb renamed": edit(func(c *cache.Manifest) {
			c.Xorb = other.Xorb // m's chunks under other's name
		}),
	}
}

func testManifestForged(t *testing.T, _ cache.Store, ms cache.ManifestStore) {
	m, _ := MakeManifest(6, 300<<10)
	other, _ := MakeManifest(7, 200<<10)
	for name, f := range forgeries(m, other) {
		t.Run(name, func(t *testing.T) {
			if f.Verify() == nil {
				t.Fatal("premise: the forgery verifies")
			}
			if err := ms.PutManifest(context.Background(), f); !errors.Is(err, cache.ErrInvalidManifest) {
				t.Fatalf("PutManifest of a forgery = %v, want ErrInvalidManifest", err)
			}
			wantNoManifest(t, ms, f.Xorb)
		})
	}
	// With the real manifests stored, forgeries are still refused and the
	// real ones served.
	putManifest(t, ms, m)
	putManifest(t, ms, other)
	for name, f := range forgeries(m, other) {
		if err := ms.PutManifest(context.Background(), f); !errors.Is(err, cache.ErrInvalidManifest) {
			t.Errorf("%s: PutManifest over a stored manifest = %v, want ErrInvalidManifest", name, err)
		}
	}
	wantManifest(t, ms, m)
	wantManifest(t, ms, other)
}

// testManifestTampered rewrites a stored manifest behind the store's back
// with bodies that look like manifests (or are damaged ones) but do not
// prove the xorb: each must be reported as a miss and deleted.
func testManifestTampered(t *testing.T, s cache.Store, ms cache.ManifestStore) {
	bd, ok := s.(ManifestBackdoor)
	if !ok {
		t.Skip("no backdoor to the stored manifests")
	}
	m, _ := MakeManifest(8, 300<<10)
	other, _ := MakeManifest(9, 200<<10)
	good, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	otherBody, err := other.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	putManifest(t, ms, m)
	if got := bd.StoredManifest(t, m.Xorb); !bytes.Equal(got, good) {
		t.Fatalf("stored manifest is %d bytes, want the %d of MarshalBinary", len(got), len(good))
	}
	// renamed is other's body with m's xorb in its header: right magic,
	// version, name and length, wrong chunks.
	renamed := bytes.Clone(otherBody)
	copy(renamed[8:40], m.Xorb[:])
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"other xorb's chunks", renamed},
		{"chunk hash byte", flip(good, 44+3)},
		{"chunk size byte", flip(good, 44+32)},
		{"last byte", flip(good, len(good)-1)},
		{"xorb hash byte", flip(good, 20)},
		{"version", flip(good, 7)},
		{"magic", flip(good, 0)},
		{"chunk count", flip(good, 40)},
		{"another xorb's manifest", otherBody},
		{"truncated", good[:len(good)-36]},
		{"trailing chunk", append(bytes.Clone(good), good[44:80]...)},
		{"empty", []byte{}},
		{"oversized", make([]byte, cache.MaxManifestBytes+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := cache.ParseManifest(m.Xorb, tc.body); err == nil {
				t.Fatal("premise: the rewritten body parses")
			}
			bd.SetStoredManifest(t, m.Xorb, tc.body)
			wantNoManifest(t, ms, m.Xorb)
			if b := bd.StoredManifest(t, m.Xorb); b != nil {
				t.Errorf("the bad manifest (%d bytes) was not deleted", len(b))
			}
			// The store recovers: the real manifest can be stored again.
			putManifest(t, ms, m)
			wantManifest(t, ms, m)
			if got := bd.StoredManifest(t, m.Xorb); !bytes.Equal(got, good) {
				t.Errorf("after a new PutManifest the stored manifest is %d bytes, want %d", len(got), len(good))
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x10
	return c
}

func testManifestConcurrent(t *testing.T, _ cache.Store, ms cache.ManifestStore) {
	a, _ := MakeManifest(10, 200<<10)
	b, _ := MakeManifest(11, 150<<10)
	both := []*cache.Manifest{a, b}
	const workers, ops = 8, 16
	var wg sync.WaitGroup
	errs := make(chan error, workers*ops)
	for w := range workers {
		wg.Go(func() {
			for i := range ops {
				m := both[(w+i)%2]
				if (w+i)%3 == 0 {
					if err := ms.PutManifest(context.Background(), m); err != nil {
						errs <- err
					}
					continue
				}
				got, err := ms.GetManifest(context.Background(), m.Xorb)
				if errors.Is(err, cache.ErrNotFound) {
					continue
				}
				if err != nil {
					errs <- err
					continue
				}
				if d := SameManifest(got, m); d != "" {
					errs <- errors.New(d)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantManifest(t, ms, a)
	wantManifest(t, ms, b)
}
