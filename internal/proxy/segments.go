package proxy

import (
	"context"
	"sync"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// segmentChunks is the size of the cache entries the engine writes and
// looks up, in chunks. Segments are aligned on multiples of it (chunk
// indices of the xorb), so that fetch ranges of different files, which
// start and end anywhere, still meet the same entries: a lookup of
// [lo, hi) inside segment [64k, 64k+64) is answered by the stored entry of
// that segment (or of the part of it a fill covered). 64 chunks is about
// 4 MiB of decoded bytes: one Get is a bounded read, and an entry fits the
// read-ahead budget.
const segmentChunks = 64

func segmentEnd(c uint32) uint32 { return c - c%segmentChunks + segmentChunks }

// putSegment stores ent, one segment or a part of one. A part (the first
// or last segment of a range that starts or ends inside it) is joined with
// the other parts of that segment the cache holds: fetch ranges end
// wherever the terms of a reconstruction block end, so a file read in
// blocks leaves its segments in pieces, which no lookup of a whole
// segment (another file's range, another block size) could use, since
// stores do not stitch. The look-ups and the Put of one segment are
// serialised, so that of two fills ending and starting inside it the
// second always sees the first's part.
func (e *Engine) putSegment(ctx context.Context, ent *cache.Entry) {
	if e.wholeSegment(ent.Key()) {
		e.cachePut(ctx, ent)
		return
	}
	pk := pieceKey{xorb: ent.Xorb, seg: ent.Start / segmentChunks}
	mu := &e.segLocks[(uint64(pk.seg)+ent.Xorb.Word(0))%uint64(len(e.segLocks))]
	mu.Lock()
	defer mu.Unlock()
	ent = e.completeSegment(ctx, ent, e.pieces.get(pk))
	e.cachePut(ctx, ent)
	e.pieces.record(pk, ent.Key())
}

// completeSegment joins ent with the neighbouring parts of its segment:
// the rest of the segment as one entry (stored before a restart, or by
// another instance), or else the parts this engine stored (known).
func (e *Engine) completeSegment(ctx context.Context, ent *cache.Entry, known []cache.Key) *cache.Entry {
	start := ent.Start - ent.Start%segmentChunks
	end := segmentEnd(ent.Start)
	// Not e.cacheGet: these look-ups serve no reader, and their misses
	// (the usual case at the end of a xorb) are not cache misses.
	get := func(lo, hi uint32) *cache.Entry {
		x, err := e.cache.Get(ctx, ent.Xorb, lo, hi)
		if err != nil || x.Start != lo || x.End != hi || x.Validate() != nil {
			return nil
		}
		return x
	}
	if start < ent.Start {
		if prev := get(start, ent.Start); prev != nil {
			ent = joinEntries(prev, ent)
		}
	}
	for ent.Start > start {
		lo := ent.Start
		for _, k := range known {
			if k.Start < lo && k.End >= ent.Start {
				lo = k.Start
			}
		}
		var prev *cache.Entry
		if lo < ent.Start {
			prev = get(lo, ent.Start)
		}
		if prev == nil {
			break
		}
		ent = joinEntries(prev, ent)
	}
	if ent.End < end {
		if next := get(ent.End, end); next != nil {
			ent = joinEntries(ent, next)
		}
	}
	for ent.End < end {
		hi := ent.End
		for _, k := range known {
			if k.End > hi && k.Start <= ent.End {
				hi = k.End
			}
		}
		var next *cache.Entry
		if hi > ent.End {
			next = get(ent.End, hi)
		}
		if next == nil {
			break
		}
		ent = joinEntries(ent, next)
	}
	return ent
}

// pieceTable remembers the parts of segments an engine stored, so that
// putSegment can join them. It is bounded; forgetting only costs joins.
type pieceTable struct {
	mu sync.Mutex
	m  map[pieceKey][]cache.Key
}

type pieceKey struct {
	xorb merklehash.Hash
	seg  uint32 // segment number: first chunk / segmentChunks
}

const maxPieceSegments = 16384

func (t *pieceTable) get(k pieceKey) []cache.Key {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]cache.Key(nil), t.m[k]...)
}

// record notes that part p of segment k is stored, forgetting the parts
// it covers, and the segment once it is whole.
func (t *pieceTable) record(k pieceKey, p cache.Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Start%segmentChunks == 0 && p.End == segmentEnd(p.Start) {
		delete(t.m, k)
		return
	}
	if t.m == nil || len(t.m) >= maxPieceSegments {
		t.m = make(map[pieceKey][]cache.Key)
	}
	list := t.m[k][:0:0]
	for _, q := range t.m[k] {
		if !p.Covers(q) {
			list = append(list, q)
		}
	}
	t.m[k] = append(list, p)
}

// joinEntries returns a new entry of a's chunks followed by b's; b must
// start where a ends.
func joinEntries(a, b *cache.Entry) *cache.Entry {
	data := make([]byte, 0, len(a.Data)+len(b.Data))
	data = append(append(data, a.Data...), b.Data...)
	offsets := make([]uint32, 0, len(a.Offsets)+len(b.Offsets)-1)
	offsets = append(offsets, a.Offsets...)
	base := uint32(len(a.Data))
	for _, o := range b.Offsets[1:] {
		offsets = append(offsets, base+o)
	}
	hashes := make([]merklehash.Hash, 0, len(a.Hashes)+len(b.Hashes))
	hashes = append(append(hashes, a.Hashes...), b.Hashes...)
	return &cache.Entry{Xorb: a.Xorb, Start: a.Start, End: b.End, Offsets: offsets, Hashes: hashes, Data: data}
}
