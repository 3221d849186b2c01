package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// The cache path of a fetch (see the package doc, "Cache"):
//
//	cacheSource.fetch(fetch [a, b) of xorb X):
//	    at its turn to fill: if the cache lacks [a, segment end) (Has, no
//	        read): join the fill covering [a, b), or start one
//	    for each segment [lo, hi) of [a, b)       // absolute 64-chunk grid
//	        if a fill we joined still holds it: take its chunks as they decode
//	        else charge the budgets for the entry (waiting for room), then
//	        if cache.Get(X, lo, hi) hits: take the entry's chunks
//	        else if no fill joined yet: join the fill covering [a, b), or start one; retry
//	        else: fetch the rest ourselves (the fill already let go of it and
//	              the cache lost it: evicted, or the Put failed)
//	fill(X, [a, b)):                              // one per range per Engine
//	    detached context with a timeout; fetch the whole range; decode and
//	    hash every chunk into the segment under construction, publishing
//	    each chunk to the streams reading the fill; a complete segment goes
//	    to the putter, which Puts it and then lets go of it.

// errRecheck: a cached copy failed its proof and was purged; the caller
// fetches the rest of its range from upstream (once).
var errRecheck = errors.New("proxy: cached chunks failed their proof")

// cacheSource is the chunk source of an engine with a cache: it wraps the
// upstream source (next) with lookups, single-flighted fills, segments
// and proofs, and falls back on next for what it cannot serve.
type cacheSource struct{ next chunkSource }

// fetch delivers the chunks of f from the cache and from fills.
// What it may use depends on the proof it can apply (proof.go): with the
// xorb's manifest every chunk is checked, whatever its source; a
// whole-file stream checks everything against its file hash, so it may
// also use chunks that await a proof (fills without one, the staging
// store); a ranged stream with neither reads only proven cache entries and
// fetches the rest for itself.
func (c cacheSource) fetch(s *stream, f *fetch, tr *reconstruction.Tracker, from uint32) error {
	if from != 0 {
		return c.next.fetch(s, f, tr, from)
	}
	fe := &f.blk.plan.Fetches[f.i]
	m := s.e.manifest(s.ctx, fe.Xorb)
	if !s.verify && m == nil {
		return c.provenOnly(s, f, tr)
	}
	if s.verify {
		s.usedMu.Lock()
		s.used = append(s.used, cache.Key{Xorb: fe.Xorb, Start: fe.Chunks.Start, End: fe.Chunks.End})
		s.usedMu.Unlock()
	}
	// Ask for the range (its first segment) as soon as it is this fetch's
	// turn to fill, and start or join the fill on a miss: fills then run
	// ahead of the reader as downloads do, and not only once the fetch
	// before has been delivered (see fillTurn).
	if err := s.waitFillTurn(f); err != nil {
		return err
	}
	var fl *fill
	// rd marks the segments of fl this fetch will read, so that the fill
	// keeps them in memory for it (retain.go).
	var rd *fillReader
	defer func() {
		if rd != nil {
			fl.dropReader(rd)
		}
	}()
	// held is what the entry being read holds of the budgets (entryHold).
	var held int64
	defer func() { s.releaseBytes(held) }()
	// Whether the first segment is stored is asked without reading it: an
	// entry is read only once its bytes are charged (below), and a
	// stream's turn to fill comes before its turn at the budget. On a
	// miss the fill starts now; on a hit the loop waits for room, reads,
	// and joins a fill only if the entry went meanwhile.
	since := s.e.fills.mark()
	firstEnd := min(segmentEnd(fe.Chunks.Start), fe.Chunks.End)
	if !s.e.mayHave(s.ctx, fe.Xorb, fe.Chunks.Start, firstEnd) {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		if fl = s.e.fills.join(s, f, since, m); fl != nil {
			rd = fl.addReader(fe.Chunks.Start, fe.Chunks.End)
		}
	}
	for lo := fe.Chunks.Start; lo < fe.Chunks.End; {
		hi := min(segmentEnd(lo), fe.Chunks.End)
		k := lo - fe.Chunks.Start
		var err error
	lookup:
		for {
			// Chunks a fill brought count as that fill's (fetched for this
			// stream, or shared), even when read back from the cache after
			// the fill let go of them.
			src := srcCache
			if fl != nil {
				src = srcShared
				if fl.ownerID == s.id {
					src = srcUpstream
				}
				if sg, kept := fl.segment(lo); sg != nil && !kept {
					err = s.fromFill(f, tr, fl, sg, lo, hi, src, m, nil)
					break lookup
				} else if sg != nil {
					// A segment the fill stored and kept for this reader
					// is charged as the entry read back would be (waiting
					// for room first): its buffer lives while any of its
					// chunks does. When the budgets are too full for the
					// whole of it, the reader reads a few chunks from the
					// store instead, below.
					if held == 0 {
						est := int64(hi-lo) * xorbTargetChunk
						small := int64(min(hi-lo, urgentPiece)) * xorbTargetChunk
						if held, err = s.acquireUpTo(f, int(k), est, small); err != nil {
							sg.unref()
							return err
						}
						if held < est {
							sg.unref()
							hi = lo + uint32(held/xorbTargetChunk)
							goto store
						}
					}
					held = s.chargeHeld(held, int64(sg.offsets[sg.n]))
					err = s.fromFill(f, tr, fl, sg, lo, hi, src, m, &held)
					break lookup
				}
			}
			// Wait for this fetch's turn at the budget, and for room for
			// the entry, before reading it into memory, as a download
			// waits before decoding. A reader waiting for it while the
			// budgets are full reads a few chunks at a time instead (the
			// stores serve any part of an entry), so that it overdraws
			// them by little.
			if held == 0 {
				est := int64(hi-lo) * xorbTargetChunk
				small := int64(min(hi-lo, urgentPiece)) * xorbTargetChunk
				if held, err = s.acquireUpTo(f, int(k), est, small); err != nil {
					return err
				}
				hi = lo + uint32(held/xorbTargetChunk)
			}
		store:
			if ent := s.cacheGet(fe.Xorb, lo, hi, held); ent != nil {
				held = s.entryHold(held, ent)
				err = s.fromEntry(f, tr, ent, src, m, false, &held)
				break lookup
			}
			if ent := s.e.stagingGet(s.ctx, fe.Xorb, lo, hi, held); ent != nil {
				held = s.entryHold(held, ent)
				err = s.fromEntry(f, tr, ent, src, m, true, &held)
				break lookup
			}
			if s.e.staging != nil {
				// A promotion Puts before it drops the staged copy: one
				// that ran between the two lookups left it in the cache.
				if ent := s.cacheGet(fe.Xorb, lo, hi, held); ent != nil {
					held = s.entryHold(held, ent)
					err = s.fromEntry(f, tr, ent, src, m, false, &held)
					break lookup
				}
			}
			if err = s.ctx.Err(); err != nil {
				return err
			}
			if fl == nil {
				if fl = s.e.fills.join(s, f, since, m); fl != nil {
					rd = fl.addReader(lo, fe.Chunks.End)
					// The fill's chunks are charged as they are delivered.
					s.releaseBytes(held)
					held = 0
					continue
				}
			}
			s.releaseBytes(held)
			held = 0
			s.e.stats.fallbacks.Add(1)
			return c.next.fetch(s, f, tr, k)
		}
		s.releaseBytes(held)
		held = 0
		if errors.Is(err, errRecheck) {
			s.e.stats.fallbacks.Add(1)
			return c.next.fetch(s, f, tr, k)
		}
		if err != nil {
			var ie *IntegrityError
			if errors.As(err, &ie) {
				s.e.purge(s.ctx, []cache.Key{{Xorb: fe.Xorb, Start: fe.Chunks.Start, End: fe.Chunks.End}})
			}
			return err
		}
		if rd != nil {
			fl.advance(rd, hi)
		}
		lo = hi
	}
	if err := tr.Finish(); err != nil {
		return &IntegrityError{File: s.fileName(), Err: err}
	}
	return nil
}

// provenOnly serves a ranged stream that has no proof for f's
// xorb: it reads proven cache entries (checked for length, not content:
// nothing could check it) and fetches what they lack for itself, without
// filling the cache, since nothing would ever prove those chunks.
func (c cacheSource) provenOnly(s *stream, f *fetch, tr *reconstruction.Tracker) error {
	fe := &f.blk.plan.Fetches[f.i]
	for lo := fe.Chunks.Start; lo < fe.Chunks.End; {
		hi := min(segmentEnd(lo), fe.Chunks.End)
		k := lo - fe.Chunks.Start
		// Charged before it is read, as in fetch.
		held := int64(hi-lo) * xorbTargetChunk
		if err := s.acquire(f, int(k), held); err != nil {
			return err
		}
		ent := s.cacheGet(fe.Xorb, lo, hi, held)
		if ent == nil {
			s.releaseBytes(held)
			if err := s.ctx.Err(); err != nil {
				return err
			}
			return c.next.fetch(s, f, tr, k)
		}
		held = s.entryHold(held, ent)
		err := s.fromEntry(f, tr, ent, srcCache, nil, false, &held)
		s.releaseBytes(held)
		if err != nil {
			return err
		}
		lo = hi
	}
	if err := tr.Finish(); err != nil {
		return &IntegrityError{File: s.fileName(), Err: err}
	}
	return nil
}

// urgentPiece is the most chunks a reader reads from the cache at a time
// when it waits for them and the budgets are full.
const urgentPiece = 2 * (waitBatch + 1)

// mayHave reports whether chunks [lo, hi) of x may be in the cache or in
// staging, without reading them (cache.MayHave).
func (e *Engine) mayHave(ctx context.Context, x merklehash.Hash, lo, hi uint32) bool {
	return cache.MayHave(ctx, e.cache, x, lo, hi) ||
		(e.staging != nil && cache.MayHave(ctx, e.staging, x, lo, hi))
}

// cacheGet is Engine.cacheGet for the stream's fetches, which give every
// entry back (entryRef) and so may borrow their files (cache.WithLentFiles).
func (s *stream) cacheGet(x merklehash.Hash, lo, hi uint32, held int64) *cache.Entry {
	return s.e.cacheGet(s.mctx, x, lo, hi, held)
}

// stagingGet looks up chunks awaiting a proof; like cacheGet, a failure is
// a miss.
func (e *Engine) stagingGet(ctx context.Context, x merklehash.Hash, lo, hi uint32, held int64) *cache.Entry {
	if e.staging == nil {
		return nil
	}
	e.noteCharge(held)
	ent, err := e.staging.Get(ctx, x, lo, hi)
	if err != nil || ent.Xorb != x || ent.Start != lo || ent.End != hi || ent.Validate() != nil {
		return nil
	}
	e.stats.stagingReads.Add(1)
	return ent
}

// waitFillTurn waits until f may start filling: it is the reader's fetch
// or the next, or the stored bytes of the fetches between the reader's and
// f are under the stream's read-ahead budget (the same bound a download
// reads ahead by, counted in fetched bytes). A fill, once started, runs to
// its end whatever the reader does; this decides only when it starts.
func (s *stream) waitFillTurn(f *fetch) error {
	urgent := func() bool { return f.want.Load() >= 0 }
	room := func(limit int64) int64 {
		if s.fillTurn(f, limit) {
			return limit
		}
		return 0
	}
	return s.budget.acquire(s.ctx, 0, urgent, room)
}

func (s *stream) fillTurn(f *fetch, limit int64) bool {
	h := s.head.Load()
	if f.seq <= h+1 {
		return true
	}
	s.allMu.Lock()
	defer s.allMu.Unlock()
	var n uint64
	for seq := max(h+1, s.aheadAt); seq < f.seq; seq++ {
		g := s.ahead[seq-s.aheadAt]
		n += g.blk.plan.Fetches[g.i].Bytes.Len()
	}
	return n < uint64(limit)
}

// entryHold charges the budgets for a cache entry read into memory, up
// from held (an estimate taken before the read), and returns the new
// charge. The entry's chunks are charged again as they are delivered
// (deliver), and the whole buffer lives while any of them does, so the
// entry is charged while it is being delivered: without it every stream
// could hold entries far past the budget. The top-up never waits (the
// bytes are in memory already), which is why the entry must have been
// charged an estimate before it was read (cacheGet's held).
func (s *stream) entryHold(held int64, ent *cache.Entry) int64 {
	return s.chargeHeld(held, int64(len(ent.Data)))
}

// chargeHeld is entryHold for n bytes in memory already (an entry, or a
// fill's kept segment).
func (s *stream) chargeHeld(held, n int64) int64 {
	if n <= held {
		return held
	}
	always := func() bool { return true }
	s.budget.acquire(s.ctx, n-held, always, whole)
	s.e.budget.acquire(s.ctx, n-held, always, whole)
	return n
}

// fromEntry delivers a cached entry. Its stored hashes are not trusted:
// a stream that can check (a manifest, or its own file hash) hashes the
// bytes it got, and with a manifest checks every chunk before delivering
// any, so that a bad copy is purged and fetched again (errRecheck) before
// a byte of it is out. staged marks an entry that awaits a proof. held,
// if not nil, is the budget charge of the whole entry (entryHold): the
// slot of its last chunk takes it over, since the entry's buffer lives
// until that chunk is consumed; *held is 0 then.
func (s *stream) fromEntry(f *fetch, tr *reconstruction.Tracker, ent *cache.Entry, src source, m *cache.Manifest, staged bool, held *int64) error {
	base := f.blk.plan.Fetches[f.i].Chunks.Start
	// ref holds the entry until its last delivered chunk is consumed; the
	// entry goes back to the store (its lent file closed) on every path,
	// refuted or not.
	ref := &entryRef{ent: ent}
	ref.n.Store(1)
	defer ref.drop()
	hashes := ent.Hashes
	switch {
	case m != nil && ent.Proven():
		// The store vouches that these are the bytes of a file this
		// process proved against m, unchanged since (cache/vouch.go):
		// the manifest's hashes are theirs, and only the sizes need
		// a look. A stream's file hash is computed from them as it
		// would be from hashes of the bytes.
		if ent.End > m.Len() {
			return s.refuteEntry(ent, ent.End-1, staged)
		}
		for c := ent.Start; c < ent.End; c++ {
			if m.Sizes[c] != uint32(len(ent.Chunk(c))) {
				return s.refuteEntry(ent, c, staged)
			}
		}
		hashes = m.Hashes[ent.Start:ent.End:ent.End]
	case s.verify || m != nil:
		hashes = make([]merklehash.Hash, ent.End-ent.Start)
		for c := ent.Start; c < ent.End; c++ {
			data := ent.Chunk(c)
			h := merklehash.ChunkHash(data)
			if m != nil && !m.Check(c, h, uint32(len(data))) {
				return s.refuteEntry(ent, c, staged)
			}
			hashes[c-ent.Start] = h
		}
		if m != nil && !staged {
			ent.MarkProven()
		}
	}
	for c := ent.Start; c < ent.End; c++ {
		var extra int64
		if c == ent.End-1 && held != nil {
			extra = *held
		}
		took, err := s.deliverWith(f, tr, c-base, ent.Chunk(c), hashes[c-ent.Start], src, m != nil, ref, extra)
		if err != nil {
			return err
		}
		if took && extra > 0 {
			*held = 0
		}
	}
	if staged && m == nil {
		s.noteUnproven(ent.Xorb, ent.Start, hashes)
	}
	return nil
}

// refuteEntry handles an entry whose chunk c fails its xorb's manifest:
// the entry is purged and the caller fetches the rest again.
func (s *stream) refuteEntry(ent *cache.Entry, c uint32, staged bool) error {
	s.e.stats.proofFailures.Add(1)
	s.e.log.Warn("cache: a cached chunk does not match its xorb's manifest; purged, fetching again",
		"xorb", ent.Xorb.String(), "chunk", c, "staged", staged)
	s.e.purge(s.ctx, []cache.Key{ent.Key()})
	return errRecheck
}

// fromFill delivers chunks [lo, hi) of a fill, checking them against m
// when the fill did not (it started before the manifest was known). It
// takes over the reference to sg's memory that fill.segment gave: each
// slot that keeps a chunk holds one more, the last gives it back. held,
// if not nil, is the budget charge of the segment's buffer (a kept
// segment, chargeHeld), which the slot of its last chunk takes over, as
// in fromEntry.
func (s *stream) fromFill(f *fetch, tr *reconstruction.Tracker, fl *fill, sg *fillSeg, lo, hi uint32, src source, m *cache.Manifest, held *int64) error {
	ref := &entryRef{seg: sg}
	ref.n.Store(1)
	defer ref.drop()
	fe := &f.blk.plan.Fetches[f.i]
	if s.verify && fl.m == nil {
		s.noteFill(fl)
	}
	base := fe.Chunks.Start
	proven := m != nil || fl.m != nil
	var hashes []merklehash.Hash
	if !proven {
		hashes = make([]merklehash.Hash, 0, hi-lo)
	}
	for c := lo; c < hi; c++ {
		data, h, err := fl.chunk(s.ctx, sg, c-sg.start)
		if err != nil {
			if s.ctx.Err() != nil {
				return s.ctx.Err()
			}
			return err
		}
		if m != nil && fl.m == nil && !m.Check(c, h, uint32(len(data))) {
			fl.condemn()
			s.e.stats.proofFailures.Add(1)
			return &IntegrityError{File: s.fileName(), Err: fmt.Errorf("chunk %d of xorb %s does not match the xorb's manifest", c, fe.Xorb)}
		}
		var extra int64
		if c == hi-1 && held != nil {
			extra = *held
		}
		took, err := s.deliverWith(f, tr, c-base, data, h, src, proven, ref, extra)
		if err != nil {
			return err
		}
		if took && extra > 0 {
			*held = 0
		}
		if !proven {
			hashes = append(hashes, h)
		}
	}
	if !proven {
		s.noteUnproven(fe.Xorb, lo, hashes)
	}
	return nil
}

// entryRef counts the references to a cache entry's memory, or a fill
// segment's: the delivering fetch's, and one per slot that keeps a chunk
// of it. The last to go gives the memory back to the store
// (cache.Entry.Release) or the segment (fillSeg.unref).
type entryRef struct {
	ent *cache.Entry
	seg *fillSeg
	n   atomic.Int32
}

func (r *entryRef) drop() {
	if r.n.Add(-1) == 0 {
		if r.ent != nil {
			r.ent.Release()
		}
		if r.seg != nil {
			r.seg.unref()
		}
	}
}

// deliver hands chunk k of f (data, whose hash is h) to the reader. data
// belongs to a cache entry (ref, nil for a fill's) or a fill and is never
// written again, so the slot uses it in place; the stream's budget is
// charged for it as for a chunk it decoded itself. proven: a manifest
// checked it.
func (s *stream) deliver(f *fetch, tr *reconstruction.Tracker, k uint32, data []byte, h merklehash.Hash, src source, proven bool, ref *entryRef) error {
	_, err := s.deliverWith(f, tr, k, data, h, src, proven, ref, 0)
	return err
}

// deliverWith is deliver whose slot also takes over extra bytes already
// charged (reporting whether it did: only a chunk the stream uses keeps
// a slot), to give them back when the chunk is consumed.
func (s *stream) deliverWith(f *fetch, tr *reconstruction.Tracker, k uint32, data []byte, h merklehash.Hash, src source, proven bool, ref *entryRef, extra int64) (bool, error) {
	last, err := tr.Add(uint32(len(data)))
	if err != nil {
		return false, &IntegrityError{File: s.fileName(), Err: err}
	}
	sl := &f.slots[k]
	sl.size, sl.lastUse, sl.hash, sl.src, sl.proven = uint32(len(data)), last, h, src, proven
	took := false
	if last >= 0 {
		cost := int64(len(data))
		if err := s.acquire(f, int(k), cost); err != nil {
			return false, err
		}
		sl.data, sl.cost = data, cost+extra
		took = true
		if ref != nil {
			ref.n.Add(1)
			sl.ent = ref
			// A chunk of an entry that lends its file can go to the
			// socket from the file (sendfile) rather than from memory
			// (WriteTo).
			if ref.ent != nil {
				sl.file, sl.foff = ref.ent.ChunkFile(f.blk.plan.Fetches[f.i].Chunks.Start + k)
			}
		}
	}
	f.publish(int(k))
	s.firstChunk()
	return took, nil
}
