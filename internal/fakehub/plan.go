package fakehub

import (
	"fmt"
	"slices"
	"sort"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// fetchRange is a merged chunk range of one xorb and its stored bytes.
type fetchRange struct {
	chunks reconstruction.ChunkRange
	bytes  reconstruction.ByteRange
}

// plan is a reconstruction answer before URLs are signed.
type plan struct {
	offset uint64
	terms  []reconstruction.Term
	xorbs  map[merklehash.Hash][]fetchRange // per xorb, sorted, merged
}

// plan computes the terms of bytes [a, b] (inclusive, b < f.size) of file f
// as xet-core's CAS does: start at the term holding a, drop whole leading
// chunks before a (offset_into_first_range is the rest), drop whole
// trailing chunks after b, and merge each xorb's chunk ranges that overlap
// or touch into fetch ranges. The result depends only on f, a and b.
func (s *store) plan(f *fileRec, a, b uint64) (*plan, error) {
	if a > b || b >= f.size {
		return nil, fmt.Errorf("fakehub: range %d-%d outside a file of %d bytes", a, b, f.size)
	}
	termEnd := func(i int) uint64 { return f.terms[i].offset + uint64(f.terms[i].unpacked) }
	first := sort.Search(len(f.terms), func(i int) bool { return termEnd(i) > a })
	last := sort.Search(len(f.terms), func(i int) bool { return termEnd(i) > b })
	p := &plan{xorbs: make(map[merklehash.Hash][]fetchRange)}
	ranges := make(map[merklehash.Hash][]reconstruction.ChunkRange)
	for i := first; i <= last; i++ {
		t := f.terms[i]
		x, ok := s.xorb(t.xorb)
		if !ok {
			return nil, fmt.Errorf("fakehub: xorb %s of file %s is missing", t.xorb, f.hash)
		}
		start, end := t.start, t.end
		base := x.unpackedStart(t.start)
		// chunkAt is the chunk of the term holding file offset off.
		chunkAt := func(off uint64) uint32 {
			target := base + (off - t.offset)
			n := int(t.end - t.start)
			k := sort.Search(n, func(k int) bool { return x.unpackedStart(t.start+uint32(k)+1) > target })
			return t.start + uint32(k)
		}
		if i == first {
			start = chunkAt(a)
			p.offset = a - t.offset - (x.unpackedStart(start) - base)
		}
		if i == last {
			end = chunkAt(b) + 1
		}
		p.terms = append(p.terms, reconstruction.Term{
			Hash:           t.xorb,
			UnpackedLength: uint32(x.unpackedStart(end) - x.unpackedStart(start)),
			Range:          reconstruction.ChunkRange{Start: start, End: end},
		})
		ranges[t.xorb] = append(ranges[t.xorb], reconstruction.ChunkRange{Start: start, End: end})
	}
	for h, rs := range ranges {
		x, _ := s.xorb(h)
		for _, r := range mergeChunkRanges(rs) {
			p.xorbs[h] = append(p.xorbs[h], fetchRange{chunks: r, bytes: x.byteRange(r.Start, r.End)})
		}
	}
	return p, nil
}

// mergeChunkRanges sorts ranges by start and merges those that overlap or
// touch.
func mergeChunkRanges(rs []reconstruction.ChunkRange) []reconstruction.ChunkRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b reconstruction.ChunkRange) int {
		if a.Start != b.Start {
			return int(a.Start) - int(b.Start)
		}
		return int(a.End) - int(b.End)
	})
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}
