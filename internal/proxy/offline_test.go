package proxy

import (
	"errors"
	"testing"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

func TestMergeAndCutAnswers(t *testing.T) {
	x := merklehash.Hash{1}
	term := func(start, end uint32, n uint32) reconstruction.Term {
		return reconstruction.Term{Hash: x, UnpackedLength: n, Range: reconstruction.ChunkRange{Start: start, End: end}}
	}
	xorbs := map[merklehash.Hash][]reconstruction.XorbFetch{x: {{URL: "https://cas/x", Ranges: []reconstruction.RangeV2{
		{Chunks: reconstruction.ChunkRange{Start: 0, End: 10}, Bytes: reconstruction.ByteRange{Start: 0, End: 9999}},
	}}}}
	// File of 300 bytes in three terms of 100; blocks of 150 bytes: the
	// second block starts inside the second term.
	t0, t1, t2 := term(0, 2, 100), term(2, 5, 100), term(5, 10, 100)
	blocks := []*reconstruction.ResponseV2{
		{Terms: []reconstruction.Term{t0, t1}, Xorbs: xorbs},
		{OffsetIntoFirstRange: 50, Terms: []reconstruction.Term{t1, t2}, Xorbs: xorbs},
	}
	all, err := mergeAnswers(blocks, 300)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Terms) != 3 || all.Terms[1] != t1 || all.OffsetIntoFirstRange != 0 {
		t.Fatalf("merged: %+v", all.Terms)
	}
	for _, f := range all.Xorbs[x] {
		if f.URL != storedURL {
			t.Fatalf("a presigned URL was kept: %q", f.URL)
		}
	}
	for _, tc := range []struct {
		rng    reconstruction.ByteRange
		offset uint64
		terms  int
	}{
		{reconstruction.ByteRange{Start: 0, End: 299}, 0, 3},
		{reconstruction.ByteRange{Start: 150, End: 299}, 50, 2},
		{reconstruction.ByteRange{Start: 199, End: 200}, 99, 2},
		{reconstruction.ByteRange{Start: 250, End: 260}, 50, 1},
	} {
		r, err := cutAnswer(all, tc.rng)
		if err != nil || r.OffsetIntoFirstRange != tc.offset || len(r.Terms) != tc.terms {
			t.Errorf("cut %v: %v, offset %d, %d terms", tc.rng, err, r.OffsetIntoFirstRange, len(r.Terms))
			continue
		}
		plan, err := reconstruction.NewPlan(r, tc.rng.Len())
		if err != nil || plan.Size != tc.rng.Len() {
			t.Errorf("cut %v does not plan: %v", tc.rng, err)
		}
	}
	if _, err := cutAnswer(all, reconstruction.ByteRange{Start: 300, End: 310}); !errors.Is(err, ErrNotCached) {
		t.Errorf("a range past the terms: %v", err)
	}
	// Blocks that do not join on a shared term, or terms short of the file.
	bad := []*reconstruction.ResponseV2{blocks[0], {OffsetIntoFirstRange: 50, Terms: []reconstruction.Term{t2}, Xorbs: xorbs}}
	if _, err := mergeAnswers(bad, 300); err == nil {
		t.Error("blocks without a shared term merged")
	}
	if _, err := mergeAnswers(blocks, 301); err == nil {
		t.Error("terms short of the file merged")
	}
}
