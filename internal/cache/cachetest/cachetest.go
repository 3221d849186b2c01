// Package cachetest is the conformance suite for cache.Store
// implementations and the deterministic test entries it is built on.
//
// Every chunk of a fake xorb has fixed content (derived from the xorb hash
// and the chunk index), so entries made for overlapping ranges of one xorb
// agree with each other exactly as real content-addressed entries do.
package cachetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// DefaultMaxChunk is the chunk size bound MakeEntry uses when given 0; small
// so that the suite runs fast against network stores.
const DefaultMaxChunk = 4096

// Xorb returns a fake xorb hash numbered n.
func Xorb(n uint64) merklehash.Hash {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	return merklehash.ChunkHash(b[:])
}

// Chunk returns the content of chunk i of the fake xorb x: between 1 and
// maxChunk bytes (DefaultMaxChunk when 0), always the same for (x, i,
// maxChunk).
func Chunk(x merklehash.Hash, i uint32, maxChunk int) []byte {
	if maxChunk <= 0 {
		maxChunk = DefaultMaxChunk
	}
	seed := x.Word(0) ^ x.Word(3) ^ (uint64(i)+1)*0x9E3779B97F4A7C15
	size := 1 + int(binary.LittleEndian.Uint64(xettest.SplitMix64(seed, 8))%uint64(maxChunk))
	return xettest.SplitMix64(seed^0xA5A5A5A5, size)
}

// MakeEntry builds the valid entry for chunks [start, end) of the fake xorb
// x, with correct chunk hashes.
func MakeEntry(x merklehash.Hash, start, end uint32, maxChunk int) *cache.Entry {
	e := &cache.Entry{Xorb: x, Start: start, End: end, Offsets: []uint32{0}}
	for i := start; i < end; i++ {
		c := Chunk(x, i, maxChunk)
		e.Data = append(e.Data, c...)
		e.Offsets = append(e.Offsets, uint32(len(e.Data)))
		e.Hashes = append(e.Hashes, merklehash.ChunkHash(c))
	}
	return e
}

// Equal reports how got differs from want, or "" when it does not.
func Equal(got, want *cache.Entry) string {
	switch {
	case got == nil:
		return "nil entry"
	case got.Key() != want.Key():
		return fmt.Sprintf("key %s, want %s", got.Key(), want.Key())
	case fmt.Sprint(got.Offsets) != fmt.Sprint(want.Offsets):
		return fmt.Sprintf("offsets %v, want %v", got.Offsets, want.Offsets)
	case len(got.Hashes) != len(want.Hashes):
		return fmt.Sprintf("%d hashes, want %d", len(got.Hashes), len(want.Hashes))
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Sprintf("data differs (%d bytes, want %d)", len(got.Data), len(want.Data))
	}
	for i := range got.Hashes {
		if got.Hashes[i] != want.Hashes[i] {
			return fmt.Sprintf("hash %d is %s, want %s", i, got.Hashes[i], want.Hashes[i])
		}
	}
	if err := got.Validate(); err != nil {
		return err.Error()
	}
	return ""
}

// Run runs the conformance suite. newStore must return an empty store,
// independent of every other store it returned, and arrange its cleanup with
// t.Cleanup. When the store is also a cache.ManifestStore the manifest cases
// run too (they are skipped otherwise), and when it is a ManifestBackdoor
// so does the case that rewrites stored manifests.
func Run(t *testing.T, newStore func(t *testing.T) cache.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s cache.Store)
	}{
		{"MissOnEmpty", testMissOnEmpty},
		{"RoundTrip", testRoundTrip},
		{"CoveringRange", testCoveringRange},
		{"NotCovering", testNotCovering},
		{"AdjacentNotCombined", testAdjacent},
		{"Overlapping", testOverlapping},
		{"PutIdempotent", testPutIdempotent},
		{"WiderAfterNarrower", testWiderAfterNarrower},
		{"InvalidEntry", testInvalidEntry},
		{"InvalidRange", testInvalidRange},
		{"ChunkSizeLimit", testChunkSizeLimit},
		{"ManyChunks", testManyChunks},
		{"CanceledContext", testCanceled},
		{"KnownAnswerVector", testVector},
		{"Delete", testDelete},
		{"Concurrent", testConcurrent},
		{"Stats", testStats},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
	for _, tc := range manifestCases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			ms, ok := s.(cache.ManifestStore)
			if !ok {
				t.Skip("not a ManifestStore")
			}
			tc.fn(t, s, ms)
		})
	}
}

func put(t *testing.T, s cache.Store, e *cache.Entry) {
	t.Helper()
	if err := s.Put(context.Background(), e); err != nil {
		t.Fatalf("Put %s: %v", e.Key(), err)
	}
}

// wantHit checks that [start, end) of x is served with the fake content.
func wantHit(t *testing.T, s cache.Store, x merklehash.Hash, start, end uint32, maxChunk int) {
	t.Helper()
	// Has never denies what Get finds (a reader would fetch it again).
	if !cache.MayHave(context.Background(), s, x, start, end) {
		t.Fatalf("Has [%d, %d) = false for a stored range", start, end)
	}
	got, err := s.Get(context.Background(), x, start, end)
	if err != nil {
		t.Fatalf("Get [%d, %d): %v", start, end, err)
	}
	if d := Equal(got, MakeEntry(x, start, end, maxChunk)); d != "" {
		t.Fatalf("Get [%d, %d): %s", start, end, d)
	}
}

func wantMiss(t *testing.T, s cache.Store, x merklehash.Hash, start, end uint32) {
	t.Helper()
	got, err := s.Get(context.Background(), x, start, end)
	if !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get [%d, %d) = %v, %v; want ErrNotFound", start, end, got != nil, err)
	}
	if got != nil {
		t.Fatalf("Get [%d, %d) returned an entry with ErrNotFound", start, end)
	}
}

// wantMissOrExact accepts a miss, or a hit with exactly the right content.
func wantMissOrExact(t *testing.T, s cache.Store, x merklehash.Hash, start, end uint32) {
	t.Helper()
	got, err := s.Get(context.Background(), x, start, end)
	if errors.Is(err, cache.ErrNotFound) {
		return
	}
	if err != nil {
		t.Fatalf("Get [%d, %d): %v", start, end, err)
	}
	if d := Equal(got, MakeEntry(x, start, end, 0)); d != "" {
		t.Fatalf("Get [%d, %d): %s", start, end, d)
	}
}

func testMissOnEmpty(t *testing.T, s cache.Store) {
	wantMiss(t, s, Xorb(1), 0, 1)
	wantMiss(t, s, merklehash.Zero, 0, cache.MaxEntryChunks)
}

func testRoundTrip(t *testing.T, s cache.Store) {
	x := Xorb(2)
	put(t, s, MakeEntry(x, 0, 7, 0))
	wantHit(t, s, x, 0, 7, 0)
	put(t, s, MakeEntry(x, 100, 101, 0))
	wantHit(t, s, x, 100, 101, 0)
	wantHit(t, s, x, 0, 7, 0)
}

func testCoveringRange(t *testing.T, s cache.Store) {
	x := Xorb(3)
	put(t, s, MakeEntry(x, 0, 10, 0))
	for _, r := range [][2]uint32{{3, 7}, {0, 10}, {0, 1}, {9, 10}, {0, 9}, {1, 10}, {4, 5}} {
		wantHit(t, s, x, r[0], r[1], 0)
	}
}

func testNotCovering(t *testing.T, s cache.Store) {
	x := Xorb(4)
	put(t, s, MakeEntry(x, 2, 10, 0))
	for _, r := range [][2]uint32{{0, 3}, {1, 2}, {9, 11}, {10, 12}, {0, 12}} {
		wantMiss(t, s, x, r[0], r[1])
	}
	wantMiss(t, s, Xorb(5), 2, 10)
	wantMiss(t, s, Xorb(5), 3, 4)
}

func testAdjacent(t *testing.T, s cache.Store) {
	x := Xorb(6)
	put(t, s, MakeEntry(x, 0, 5, 0))
	put(t, s, MakeEntry(x, 5, 10, 0))
	for _, r := range [][2]uint32{{0, 5}, {5, 10}, {1, 4}, {6, 9}} {
		wantHit(t, s, x, r[0], r[1], 0)
	}
	// No single entry covers [3, 7): stores are not required to combine.
	wantMissOrExact(t, s, x, 3, 7)
	wantMissOrExact(t, s, x, 0, 10)
}

func testOverlapping(t *testing.T, s cache.Store) {
	x := Xorb(7)
	put(t, s, MakeEntry(x, 0, 6, 0))
	put(t, s, MakeEntry(x, 4, 10, 0))
	for _, r := range [][2]uint32{{4, 6}, {0, 6}, {4, 10}, {5, 6}, {0, 4}, {6, 10}} {
		wantHit(t, s, x, r[0], r[1], 0)
	}
	wantMissOrExact(t, s, x, 3, 8)
}

func testPutIdempotent(t *testing.T, s cache.Store) {
	x := Xorb(8)
	for range 3 {
		put(t, s, MakeEntry(x, 0, 10, 0))
	}
	put(t, s, MakeEntry(x, 2, 4, 0)) // already covered
	wantHit(t, s, x, 0, 10, 0)
	wantHit(t, s, x, 2, 4, 0)
}

func testWiderAfterNarrower(t *testing.T, s cache.Store) {
	x := Xorb(9)
	put(t, s, MakeEntry(x, 3, 7, 0))
	put(t, s, MakeEntry(x, 0, 10, 0))
	wantHit(t, s, x, 0, 10, 0)
	wantHit(t, s, x, 3, 7, 0)
	wantHit(t, s, x, 1, 2, 0)
}

func testInvalidEntry(t *testing.T, s cache.Store) {
	x := Xorb(10)
	for _, tc := range []struct {
		name   string
		mutate func(e *cache.Entry)
	}{
		{"empty range", func(e *cache.Entry) { e.End = e.Start }},
		{"inverted range", func(e *cache.Entry) { e.Start, e.End = e.End, e.Start }},
		{"too many chunks", func(e *cache.Entry) { e.End = e.Start + cache.MaxEntryChunks + 1 }},
		{"missing offset", func(e *cache.Entry) { e.Offsets = e.Offsets[:len(e.Offsets)-1] }},
		{"missing hash", func(e *cache.Entry) { e.Hashes = e.Hashes[:len(e.Hashes)-1] }},
		{"first offset not 0", func(e *cache.Entry) { e.Offsets[0] = 1 }},
		{"last offset short", func(e *cache.Entry) { e.Data = append(e.Data, 0) }},
		{"last offset long", func(e *cache.Entry) { e.Data = e.Data[:len(e.Data)-1] }},
		{"offsets not increasing", func(e *cache.Entry) { e.Offsets[2] = e.Offsets[1] }},
		{"offsets decreasing", func(e *cache.Entry) { e.Offsets[2] = e.Offsets[1] - 1 }},
		{"nil offsets", func(e *cache.Entry) { e.Offsets = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := MakeEntry(x, 20, 25, 0)
			tc.mutate(e)
			if err := s.Put(context.Background(), e); !errors.Is(err, cache.ErrInvalidEntry) {
				t.Fatalf("Put = %v, want ErrInvalidEntry", err)
			}
			if e.Start < e.End && e.End-e.Start <= cache.MaxEntryChunks {
				wantMiss(t, s, x, e.Start, e.End)
			}
		})
	}
}

func testInvalidRange(t *testing.T, s cache.Store) {
	x := Xorb(11)
	put(t, s, MakeEntry(x, 0, 3, 0))
	for _, r := range [][2]uint32{{1, 1}, {2, 1}, {0, cache.MaxEntryChunks + 1}} {
		got, err := s.Get(context.Background(), x, r[0], r[1])
		if !errors.Is(err, cache.ErrInvalidRange) || got != nil {
			t.Errorf("Get [%d, %d) = %v, %v; want ErrInvalidRange", r[0], r[1], got != nil, err)
		}
	}
}

func testChunkSizeLimit(t *testing.T, s cache.Store) {
	x := Xorb(12)
	big := MakeEntry(x, 0, 2, 0)
	big.Data = bytes.Repeat([]byte{0xab}, 2*cache.MaxChunkSize)
	big.Offsets = []uint32{0, cache.MaxChunkSize, 2 * cache.MaxChunkSize}
	h := merklehash.ChunkHash(big.Data[:cache.MaxChunkSize])
	big.Hashes = []merklehash.Hash{h, h}
	put(t, s, big)
	got, err := s.Get(context.Background(), x, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Data) != cache.MaxChunkSize || got.Hashes[0] != h || got.Verify() != nil {
		t.Fatalf("max-size chunk came back as %d bytes", len(got.Data))
	}

	over := MakeEntry(x, 5, 6, 0)
	over.Data = make([]byte, cache.MaxChunkSize+1)
	over.Offsets = []uint32{0, cache.MaxChunkSize + 1}
	if err := s.Put(context.Background(), over); !errors.Is(err, cache.ErrInvalidEntry) {
		t.Fatalf("Put of a %d-byte chunk = %v, want ErrInvalidEntry", cache.MaxChunkSize+1, err)
	}
}

func testManyChunks(t *testing.T, s cache.Store) {
	x := Xorb(13)
	put(t, s, MakeEntry(x, 0, cache.MaxEntryChunks, 16))
	wantHit(t, s, x, cache.MaxEntryChunks-3, cache.MaxEntryChunks, 16)
	wantHit(t, s, x, 0, cache.MaxEntryChunks, 16)
}

func testCanceled(t *testing.T, s cache.Store) {
	x := Xorb(14)
	put(t, s, MakeEntry(x, 0, 3, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, x, 0, 3); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context = %v", err)
	}
	if err := s.Put(ctx, MakeEntry(x, 5, 6, 0)); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context = %v", err)
	}
	wantMiss(t, s, x, 5, 6)
}

// testVector stores the chunks of a known-answer vector (the chunk hashes
// come from the vector file, not from our hashing) and checks that what
// comes back verifies against them.
func testVector(t *testing.T, s cache.Store) {
	v := xettest.MustLoad().DataVectors[0]
	input := xettest.DataVectorInput(0)
	x, err := merklehash.Parse(v.MerkleRoot)
	if err != nil {
		t.Fatal(err)
	}
	e := &cache.Entry{Xorb: x, Start: 0, End: uint32(len(v.Chunks)), Offsets: []uint32{0}, Data: input}
	for _, c := range v.Chunks {
		h, err := merklehash.Parse(c.Hash)
		if err != nil {
			t.Fatal(err)
		}
		e.Offsets = append(e.Offsets, uint32(c.EndOffset))
		e.Hashes = append(e.Hashes, h)
	}
	put(t, s, e)
	n := e.End
	for _, r := range [][2]uint32{{0, n}, {1, n - 1}, {n - 1, n}} {
		got, err := s.Get(context.Background(), x, r[0], r[1])
		if err != nil {
			t.Fatalf("Get [%d, %d): %v", r[0], r[1], err)
		}
		if err := got.Verify(); err != nil {
			t.Fatalf("Get [%d, %d): %v", r[0], r[1], err)
		}
		lo, hi := e.Offsets[r[0]], e.Offsets[r[1]]
		if !bytes.Equal(got.Data, input[lo:hi]) {
			t.Fatalf("Get [%d, %d): data differs from the vector input", r[0], r[1])
		}
	}
}

func testDelete(t *testing.T, s cache.Store) {
	x, y := Xorb(16), Xorb(17)
	put(t, s, MakeEntry(x, 0, 10, 0))
	put(t, s, MakeEntry(x, 20, 30, 0))
	put(t, s, MakeEntry(y, 0, 10, 0))
	del := func(x merklehash.Hash, start, end uint32) {
		t.Helper()
		if err := s.Delete(context.Background(), x, start, end); err != nil {
			t.Fatalf("Delete [%d, %d): %v", start, end, err)
		}
	}
	del(x, 10, 20) // touches neither: ranges are end-exclusive
	wantHit(t, s, x, 0, 10, 0)
	wantHit(t, s, x, 20, 30, 0)
	del(x, 5, 6)
	wantMiss(t, s, x, 0, 1)
	wantMiss(t, s, x, 5, 6)
	wantHit(t, s, x, 20, 30, 0)
	wantHit(t, s, y, 0, 10, 0)
	del(x, 5, 6) // deleting nothing is fine
	del(Xorb(18), 0, 1)
	put(t, s, MakeEntry(x, 0, 10, 0)) // and the key can be stored again
	wantHit(t, s, x, 3, 4, 0)
	del(x, 0, cache.MaxEntryChunks)
	wantMiss(t, s, x, 0, 10)
	wantMiss(t, s, x, 20, 30)

	if err := s.Delete(context.Background(), x, 3, 3); !errors.Is(err, cache.ErrInvalidRange) {
		t.Errorf("Delete of an empty range = %v, want ErrInvalidRange", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Delete(ctx, y, 0, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a canceled context = %v", err)
	}
	wantHit(t, s, y, 0, 10, 0)
}

func testConcurrent(t *testing.T, s cache.Store) {
	const workers, ops = 8, 24
	var wg sync.WaitGroup
	errs := make(chan error, workers*ops)
	for w := range workers {
		wg.Go(func() {
			for i := range ops {
				x := Xorb(uint64(100 + (w+i)%4))
				start := uint32((w * i) % 7)
				end := start + 1 + uint32((w+i)%5)
				if i%2 == 0 {
					if err := s.Put(context.Background(), MakeEntry(x, start, end, 512)); err != nil {
						errs <- err
					}
					continue
				}
				got, err := s.Get(context.Background(), x, start, end)
				if errors.Is(err, cache.ErrNotFound) {
					continue
				}
				if err != nil {
					errs <- err
					continue
				}
				if d := Equal(got, MakeEntry(x, start, end, 512)); d != "" {
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
}

func testStats(t *testing.T, s cache.Store) {
	r, ok := s.(cache.StatsReporter)
	if !ok {
		t.Skip("store does not report stats")
	}
	x := Xorb(15)
	before := r.Stats()
	wantMiss(t, s, x, 0, 2)
	put(t, s, MakeEntry(x, 0, 4, 0))
	wantHit(t, s, x, 1, 3, 0)
	after := r.Stats()
	if after.Misses != before.Misses+1 || after.Hits != before.Hits+1 {
		t.Errorf("misses %d→%d, hits %d→%d; want one more of each",
			before.Misses, after.Misses, before.Hits, after.Hits)
	}
	if want := uint64(len(MakeEntry(x, 1, 3, 0).Data)); after.HitBytes != before.HitBytes+want {
		t.Errorf("hit bytes %d→%d, want +%d", before.HitBytes, after.HitBytes, want)
	}
	if after.Puts != before.Puts+1 {
		t.Errorf("puts %d→%d, want one more", before.Puts, after.Puts)
	}
}
