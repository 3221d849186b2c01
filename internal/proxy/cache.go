package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// The cache path of a fetch (see the package doc, "Cache"):
//
//	downloadCached(fetch [a, b) of xorb X):
//	    for each segment [lo, hi) of [a, b)       // absolute 64-chunk grid
//	        if a fill we joined still holds it: take its chunks as they decode
//	        else if cache.Get(X, lo, hi) hits: take the entry's chunks
//	        else if no fill joined yet: join the fill covering [a, b), or start one; retry
//	        else: fetch the rest ourselves (the fill already let go of it and
//	              the cache lost it: evicted, or the Put failed)
//	fill(X, [a, b)):                              // one per range per Engine
//	    detached context with a timeout; fetch the whole range; decode and
//	    hash every chunk into the segment under construction, publishing
//	    each chunk to the streams reading the fill; a complete segment goes
//	    to the putter, which Puts it and then lets go of it.

// segmentChunks is the size of the cache entries the engine writes and
// looks up, in chunks. Segments are aligned on multiples of it (chunk
// indices of the xorb), so that fetch ranges of different files, which
// start and end anywhere, still meet the same entries: a lookup of
// [lo, hi) inside segment [64k, 64k+64) is answered by the stored entry of
// that segment (or of the part of it a fill covered). 64 chunks is about
// 4 MiB of decoded bytes: one Get is a bounded read, and an entry fits the
// read-ahead budget.
const segmentChunks = 64

// fillPutQueue is the number of complete segments a fill may decode ahead
// of its Puts; beyond it the fill waits for the cache, not for readers.
const fillPutQueue = 2

// purgeTimeout bounds the Deletes after a failed verification.
const purgeTimeout = 30 * time.Second

// warnEvery rate-limits cache warnings; the rest go to debug.
const warnEvery = time.Minute

func segmentEnd(c uint32) uint32 { return c - c%segmentChunks + segmentChunks }

// source tells where a chunk given to a reader came from.
type source uint8

const (
	srcUpstream source = iota // fetched from upstream for this stream
	srcShared                 // fetched by a fill another stream started
	srcCache                  // read from the cache
	numSources
)

// Sources counts the bytes a stream has returned so far by where their
// chunks came from.
type Sources struct {
	Cache    int64 // read from the cache
	Shared   int64 // fetched from upstream by another request's fill, at the same time
	Upstream int64 // fetched from upstream for this request
}

// SourceReporter is implemented by the readers Open returns for Xet files.
type SourceReporter interface {
	Sources() Sources
}

var _ SourceReporter = (*stream)(nil)

// Sources implements SourceReporter.
func (s *stream) Sources() Sources {
	return Sources{
		Cache:    s.sources[srcCache].Load(),
		Shared:   s.sources[srcShared].Load(),
		Upstream: s.sources[srcUpstream].Load(),
	}
}

// CacheStats is a snapshot of the engine's cache counters. Served* count
// the bytes given to readers (every stream, cache or not); the rest count
// the engine's own use of the cache (the store's counters are in its
// Stats).
type CacheStats struct {
	ServedCache, ServedShared, ServedUpstream int64

	Hits, Misses, GetErrors uint64 // segment lookups
	HitBytes                uint64 // decoded bytes of hits
	Fills                   uint64 // fills started
	FillErrors              uint64 // fills that failed
	FillJoins               uint64 // streams that joined a fill another one started
	FillBytes               uint64 // decoded bytes fills fetched from upstream
	Puts, PutErrors         uint64 // segment writes
	PutBytes                uint64
	Fallbacks               uint64 // fetches that had to be fetched again for one stream
	Purges                  uint64 // ranges deleted after a failed check
	// Proofs (proof.go).
	XorbProofs     uint64 // manifests learnt: fetches of whole xorbs that hashed to their name
	FileProofs     uint64 // whole-file reads whose file hash checked
	FileMismatches uint64 // whole-file reads whose file hash did not check
	ProofFailures  uint64 // chunks (cached or fetched) that did not match their xorb's manifest
	StagedBytes    uint64 // decoded bytes written to the staging store to await a proof
	PromotedBytes  uint64 // staged bytes promoted to the cache after a proof
	// ServedUnverified counts the bytes given to ranged reads whose chunk
	// no proof covered (no manifest of its xorb): term lengths were
	// checked, content could not be.
	ServedUnverified int64
	FillsInFlight    int64
	FillBufferUsed   int64 // bytes of FillBuffer held now
}

type counters struct {
	served                            [numSources]atomic.Int64
	hits, misses, getErrors, hitBytes atomic.Uint64
	fills, fillErrors, fillJoins      atomic.Uint64
	fillBytes                         atomic.Uint64
	puts, putErrors, putBytes         atomic.Uint64
	fallbacks, purges                 atomic.Uint64
	xorbProofs, fileProofs            atomic.Uint64
	fileMismatches, proofFailures     atomic.Uint64
	staged, promoted                  atomic.Uint64
	unverified                        atomic.Int64
	fillsInFlight                     atomic.Int64
	lastWarn                          atomic.Int64
}

// CacheStats returns the engine's cache counters.
func (e *Engine) CacheStats() CacheStats {
	c := &e.stats
	st := CacheStats{
		ServedCache: c.served[srcCache].Load(), ServedShared: c.served[srcShared].Load(),
		ServedUpstream: c.served[srcUpstream].Load(),
		Hits:           c.hits.Load(), Misses: c.misses.Load(), GetErrors: c.getErrors.Load(), HitBytes: c.hitBytes.Load(),
		Fills: c.fills.Load(), FillErrors: c.fillErrors.Load(), FillJoins: c.fillJoins.Load(), FillBytes: c.fillBytes.Load(),
		Puts: c.puts.Load(), PutErrors: c.putErrors.Load(), PutBytes: c.putBytes.Load(),
		Fallbacks: c.fallbacks.Load(), Purges: c.purges.Load(), FillsInFlight: c.fillsInFlight.Load(),
		XorbProofs: c.xorbProofs.Load(), FileProofs: c.fileProofs.Load(), FileMismatches: c.fileMismatches.Load(),
		ProofFailures: c.proofFailures.Load(), StagedBytes: c.staged.Load(), PromotedBytes: c.promoted.Load(),
		ServedUnverified: c.unverified.Load(),
	}
	if e.fillBudget != nil {
		st.FillBufferUsed, _ = e.fillBudget.stats()
	}
	return st
}

// Cache returns the engine's cache, nil when it has none.
func (e *Engine) Cache() cache.Store { return e.cache }

// warn logs a cache problem at warn level at most once a minute, and at
// debug level otherwise: a broken bucket must not flood the log.
func (e *Engine) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := e.stats.lastWarn.Load()
	if now-last >= int64(warnEvery) && e.stats.lastWarn.CompareAndSwap(last, now) {
		e.log.Warn(msg, args...)
		return
	}
	e.log.Debug(msg, args...)
}

// cacheGet looks up chunks [lo, hi) of x. Any failure of the store is a
// miss (counted and logged): the cache is a soft dependency.
func (e *Engine) cacheGet(ctx context.Context, x merklehash.Hash, lo, hi uint32) *cache.Entry {
	ent, err := e.cache.Get(ctx, x, lo, hi)
	switch {
	case err == nil:
		if ent.Xorb != x || ent.Start != lo || ent.End != hi {
			err = fmt.Errorf("asked %s/%d-%d, got %s", x, lo, hi, ent.Key())
		} else {
			err = ent.Validate()
		}
		if err == nil {
			e.stats.hits.Add(1)
			e.stats.hitBytes.Add(uint64(len(ent.Data)))
			return ent
		}
		e.stats.getErrors.Add(1)
		e.warn("cache: store answered a lookup wrongly", "err", err)
	case errors.Is(err, cache.ErrNotFound):
		e.stats.misses.Add(1)
	case ctx.Err() != nil:
	default:
		e.stats.getErrors.Add(1)
		e.warn("cache: lookup failed; fetching upstream", "err", err)
	}
	return nil
}

// cachePut stores ent; a failure is counted and logged, nothing more.
func (e *Engine) cachePut(ctx context.Context, ent *cache.Entry) {
	if err := e.cache.Put(ctx, ent); err != nil {
		if ctx.Err() != nil {
			return
		}
		e.stats.putErrors.Add(1)
		e.warn("cache: write failed", "key", ent.Key().String(), "err", err)
		return
	}
	e.stats.puts.Add(1)
	e.stats.putBytes.Add(uint64(len(ent.Data)))
}

// purge deletes every cached chunk of the given ranges, on a context of
// its own: it runs when a check failed, and must happen even if the
// client is gone.
func (e *Engine) purge(ctx context.Context, keys []cache.Key) {
	if e.cache == nil || len(keys) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), purgeTimeout)
	defer cancel()
	seen := make(map[cache.Key]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		e.stats.purges.Add(1)
		if err := e.cache.Delete(pctx, k.Xorb, k.Start, k.End); err != nil {
			e.warn("cache: purge failed", "key", k.String(), "err", err)
		}
		if e.staging != nil {
			if err := e.staging.Delete(pctx, k.Xorb, k.Start, k.End); err != nil {
				e.warn("cache: purge of staging failed", "key", k.String(), "err", err)
			}
		}
	}
	e.log.Warn("cache: purged ranges after a failed check", "ranges", len(seen))
}

// Flush waits until no cache fill is in flight and, when the cache has a
// Flush method (cache.Tiered: queued shared writes), until it is flushed.
func (e *Engine) Flush(ctx context.Context) error {
	if e.cache == nil {
		return nil
	}
	if err := e.fills.wait(ctx); err != nil {
		return err
	}
	if err := e.bg.wait(ctx); err != nil {
		return err
	}
	if f, ok := e.cache.(interface{ Flush(context.Context) error }); ok {
		return f.Flush(ctx)
	}
	return nil
}

// Close stops starting cache fills (streams opened later fetch for
// themselves), waits until ctx is done for the fills in flight and for the
// cache's queued writes (Flush), and then closes the cache if it has a
// Close method. If ctx ends first, the cache is left open and what was
// still queued is lost. The engine keeps serving reads.
func (e *Engine) Close(ctx context.Context) error {
	var err error
	e.closeOnce.Do(func() {
		if e.cache == nil {
			return
		}
		e.fills.close()
		e.bg.close()
		if err = e.Flush(ctx); err != nil {
			return
		}
		if c, ok := e.staging.(io.Closer); ok {
			_ = c.Close()
		}
		if c, ok := e.cache.(io.Closer); ok {
			err = c.Close()
		}
	})
	return err
}

// ---- the stream side ----

// errRecheck: a cached copy failed its proof and was purged; the caller
// fetches the rest of its range from upstream (once).
var errRecheck = errors.New("proxy: cached chunks failed their proof")

// downloadCached delivers the chunks of f from the cache and from fills.
// What it may use depends on the proof it can apply (proof.go): with the
// xorb's manifest every chunk is checked, whatever its source; a
// whole-file stream checks everything against its file hash, so it may
// also use chunks that await a proof (fills without one, the staging
// store); a ranged stream with neither reads only proven cache entries and
// fetches the rest for itself.
func (s *stream) downloadCached(f *fetch, tr *reconstruction.Tracker) error {
	fe := &f.blk.plan.Fetches[f.i]
	m := s.e.manifest(s.ctx, fe.Xorb)
	if !s.verify && m == nil {
		return s.downloadProvenOnly(f, tr)
	}
	if s.verify {
		s.usedMu.Lock()
		s.used = append(s.used, cache.Key{Xorb: fe.Xorb, Start: fe.Chunks.Start, End: fe.Chunks.End})
		s.usedMu.Unlock()
	}
	// Look the range up (its first segment) as soon as it is this fetch's
	// turn to fill, and start or join the fill on a miss: fills then run
	// ahead of the reader as downloads do, and not only once the fetch
	// before has been delivered (see fillTurn).
	if err := s.waitFillTurn(f); err != nil {
		return err
	}
	var fl *fill
	since := s.e.fills.mark()
	first := s.e.cacheGet(s.ctx, fe.Xorb, fe.Chunks.Start, min(segmentEnd(fe.Chunks.Start), fe.Chunks.End))
	if first == nil {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		fl = s.e.fills.join(s, f, since, m)
	}
	for lo := fe.Chunks.Start; lo < fe.Chunks.End; {
		hi := min(segmentEnd(lo), fe.Chunks.End)
		k := lo - fe.Chunks.Start
		var err error
	lookup:
		for {
			if first != nil {
				err, first = s.fromEntry(f, tr, first, srcCache, m, false), nil
				break lookup
			}
			// Chunks a fill brought count as that fill's (fetched for this
			// stream, or shared), even when read back from the cache after
			// the fill let go of them.
			src := srcCache
			if fl != nil {
				src = srcShared
				if fl.ownerID == s.id {
					src = srcUpstream
				}
				if sg := fl.segment(lo); sg != nil {
					err = s.fromFill(f, tr, fl, sg, lo, hi, src, m)
					break lookup
				}
			}
			// Wait for this fetch's turn at the budget before reading the
			// entry into memory, as a download waits before decoding.
			if err = s.acquire(f, int(k), 0); err != nil {
				return err
			}
			if ent := s.e.cacheGet(s.ctx, fe.Xorb, lo, hi); ent != nil {
				err = s.fromEntry(f, tr, ent, src, m, false)
				break lookup
			}
			if ent := s.e.stagingGet(s.ctx, fe.Xorb, lo, hi); ent != nil {
				err = s.fromEntry(f, tr, ent, src, m, true)
				break lookup
			}
			if err = s.ctx.Err(); err != nil {
				return err
			}
			if fl == nil {
				if fl = s.e.fills.join(s, f, since, m); fl != nil {
					continue
				}
			}
			s.e.stats.fallbacks.Add(1)
			return s.downloadUpstream(f, tr, k)
		}
		if errors.Is(err, errRecheck) {
			s.e.stats.fallbacks.Add(1)
			return s.downloadUpstream(f, tr, k)
		}
		if err != nil {
			var ie *IntegrityError
			if errors.As(err, &ie) {
				s.e.purge(s.ctx, []cache.Key{{Xorb: fe.Xorb, Start: fe.Chunks.Start, End: fe.Chunks.End}})
			}
			return err
		}
		lo = hi
	}
	if err := tr.Finish(); err != nil {
		return &IntegrityError{File: s.fileName(), Err: err}
	}
	return nil
}

// downloadProvenOnly serves a ranged stream that has no proof for f's
// xorb: it reads proven cache entries (checked for length, not content:
// nothing could check it) and fetches what they lack for itself, without
// filling the cache, since nothing would ever prove those chunks.
func (s *stream) downloadProvenOnly(f *fetch, tr *reconstruction.Tracker) error {
	fe := &f.blk.plan.Fetches[f.i]
	for lo := fe.Chunks.Start; lo < fe.Chunks.End; {
		hi := min(segmentEnd(lo), fe.Chunks.End)
		k := lo - fe.Chunks.Start
		if err := s.acquire(f, int(k), 0); err != nil {
			return err
		}
		ent := s.e.cacheGet(s.ctx, fe.Xorb, lo, hi)
		if ent == nil {
			if err := s.ctx.Err(); err != nil {
				return err
			}
			return s.downloadUpstream(f, tr, k)
		}
		if err := s.fromEntry(f, tr, ent, srcCache, nil, false); err != nil {
			return err
		}
		lo = hi
	}
	if err := tr.Finish(); err != nil {
		return &IntegrityError{File: s.fileName(), Err: err}
	}
	return nil
}

// stagingGet looks up chunks awaiting a proof; like cacheGet, a failure is
// a miss.
func (e *Engine) stagingGet(ctx context.Context, x merklehash.Hash, lo, hi uint32) *cache.Entry {
	if e.staging == nil {
		return nil
	}
	ent, err := e.staging.Get(ctx, x, lo, hi)
	if err != nil || ent.Xorb != x || ent.Start != lo || ent.End != hi || ent.Validate() != nil {
		return nil
	}
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

// fromEntry delivers a cached entry. Its stored hashes are not trusted:
// a stream that can check (a manifest, or its own file hash) hashes the
// bytes it got, and with a manifest checks every chunk before delivering
// any, so that a bad copy is purged and fetched again (errRecheck) before
// a byte of it is out. staged marks an entry that awaits a proof.
func (s *stream) fromEntry(f *fetch, tr *reconstruction.Tracker, ent *cache.Entry, src source, m *cache.Manifest, staged bool) error {
	base := f.blk.plan.Fetches[f.i].Chunks.Start
	hashes := ent.Hashes
	if s.verify || m != nil {
		hashes = make([]merklehash.Hash, ent.End-ent.Start)
		for c := ent.Start; c < ent.End; c++ {
			data := ent.Chunk(c)
			h := merklehash.ChunkHash(data)
			if m != nil && !m.Check(c, h, uint32(len(data))) {
				s.e.stats.proofFailures.Add(1)
				s.e.log.Warn("cache: a cached chunk does not match its xorb's manifest; purged, fetching again",
					"xorb", ent.Xorb.String(), "chunk", c, "staged", staged)
				s.e.purge(s.ctx, []cache.Key{ent.Key()})
				return errRecheck
			}
			hashes[c-ent.Start] = h
		}
	}
	for c := ent.Start; c < ent.End; c++ {
		if err := s.deliver(f, tr, c-base, ent.Chunk(c), hashes[c-ent.Start], src, m != nil); err != nil {
			return err
		}
	}
	if staged && m == nil {
		s.noteUnproven(ent.Xorb, ent.Start, hashes)
	}
	return nil
}

// fromFill delivers chunks [lo, hi) of a fill, checking them against m
// when the fill did not (it started before the manifest was known).
func (s *stream) fromFill(f *fetch, tr *reconstruction.Tracker, fl *fill, sg *fillSeg, lo, hi uint32, src source, m *cache.Manifest) error {
	fe := &f.blk.plan.Fetches[f.i]
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
			s.e.stats.proofFailures.Add(1)
			return &IntegrityError{File: s.fileName(), Err: fmt.Errorf("chunk %d of xorb %s does not match the xorb's manifest", c, fe.Xorb)}
		}
		if err := s.deliver(f, tr, c-base, data, h, src, proven); err != nil {
			return err
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

// deliver hands chunk k of f (data, whose hash is h) to the reader. data
// belongs to a cache entry or a fill and is never written again, so the
// slot uses it in place; the stream's budget is charged for it as for a
// chunk it decoded itself. proven: a manifest checked it.
func (s *stream) deliver(f *fetch, tr *reconstruction.Tracker, k uint32, data []byte, h merklehash.Hash, src source, proven bool) error {
	last, err := tr.Add(uint32(len(data)))
	if err != nil {
		return &IntegrityError{File: s.fileName(), Err: err}
	}
	sl := &f.slots[k]
	sl.size, sl.lastUse, sl.hash, sl.src, sl.proven = uint32(len(data)), last, h, src, proven
	if last >= 0 {
		cost := int64(len(data))
		if err := s.acquire(f, int(k), cost); err != nil {
			return err
		}
		sl.data, sl.cost = data, cost
	}
	f.publish(int(k))
	return nil
}

// ---- fills ----

// fillTable is an engine's set of fills in flight, by xorb. It is the
// single-flight: a stream needing a range that a fill in flight covers
// joins it instead of fetching the range again.
type fillTable struct {
	mu     sync.Mutex
	byXorb map[merklehash.Hash][]*fill
	n      int             // fills running
	idle   []chan struct{} // closed when n drops to 0
	closed bool
	// done counts the fills that completed; recent holds the latest of
	// them (each with its number in doneSeq), so that a stream whose
	// lookup missed just before a fill's last Put, and that finds the fill
	// gone from the table, sees it completed instead of fetching again.
	done   uint64
	recent []*fill
}

// recentFills bounds fillTable.recent.
const recentFills = 256

// mark returns the number of completed fills, to pass to join after a
// cache lookup.
func (t *fillTable) mark() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done
}

func newFillTable() *fillTable {
	return &fillTable{byXorb: make(map[merklehash.Hash][]*fill)}
}

// join returns the fill in flight that covers f's range, or one that
// completed after mark returned since (its bytes are in the cache now), or
// starts one; nil once the table is closed.
func (t *fillTable) join(s *stream, f *fetch, since uint64, m *cache.Manifest) *fill {
	fe := &f.blk.plan.Fetches[f.i]
	want := cache.Key{Xorb: fe.Xorb, Start: fe.Chunks.Start, End: fe.Chunks.End}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	for _, fl := range t.byXorb[fe.Xorb] {
		if fl.key.Covers(want) {
			s.e.stats.fillJoins.Add(1)
			return fl
		}
	}
	for _, fl := range t.recent {
		if fl.doneSeq > since && fl.key.Covers(want) {
			return fl
		}
	}
	fl := newFill(s, f, m)
	t.byXorb[fe.Xorb] = append(t.byXorb[fe.Xorb], fl)
	t.n++
	go fl.run()
	return fl
}

// remove takes fl out of the table: later streams go to the cache, or
// start a fill of their own. A fill that completed is remembered among the
// recent ones.
func (t *fillTable) remove(fl *fill, completed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if completed {
		t.done++
		fl.doneSeq = t.done
		if len(t.recent) == recentFills {
			t.recent = append(t.recent[:0], t.recent[recentFills/2:]...)
		}
		t.recent = append(t.recent, fl)
	}
	list := t.byXorb[fl.key.Xorb]
	for i, x := range list {
		if x == fl {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.byXorb, fl.key.Xorb)
	} else {
		t.byXorb[fl.key.Xorb] = list
	}
}

// ended records that a fill's goroutines are gone.
func (t *fillTable) ended() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		for _, ch := range t.idle {
			close(ch)
		}
		t.idle = nil
	}
}

func (t *fillTable) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}

// wait returns when no fill runs, or with ctx's error.
func (t *fillTable) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	t.idle = append(t.idle, ch)
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fill fetches one xorb range from upstream into the cache, for every
// stream that needs it. It runs on a context detached from the request
// that started it (bounded by FillTimeout): the client going away does
// not stop it, and it never waits for a reader, only for the fill budget
// and for the cache's writes. Streams read its chunks as they are decoded
// while a segment is in memory, and from the cache after.
type fill struct {
	e   *Engine
	key cache.Key
	// owner started the fill: its plan checks the terms, its auth
	// refreshes the URL. owner, fetch and tr are used by the fill's
	// goroutines only, and dropped when they end (a completed fill stays
	// in the table's recent list for a while).
	owner   *stream
	ownerID uint64
	fetch   *fetch
	tr      *reconstruction.Tracker
	base    uint32 // segment number of segs[0]
	// m, when the xorb's manifest was known at the start, checks every
	// chunk as it decodes: the segments are proven and go to the cache.
	// Without it they go to the staging store; a fill of chunks [0, n)
	// then proves them itself if they hash to the xorb, else whole-file
	// streams that used them do (proof.go).
	m      *cache.Manifest
	staged []unproven // segments written to the staging store (putter)

	doneSeq uint64 // set by fillTable.remove when it completed

	mu       sync.Mutex
	wake     chan struct{} // closed and replaced when a chunk is published or the fill ends
	segs     []*fillSeg    // nil once released
	released int           // segments [0, released) were handed to the cache and let go
	err      error         // why the fill stopped early
	done     bool
}

// fillSeg is one segment of a fill. Its fields are guarded by fill.mu;
// the bytes of the first n chunks never change once published.
type fillSeg struct {
	start, end uint32
	data       []byte
	offsets    []uint32 // n+1
	hashes     []merklehash.Hash
	n          uint32
	held       int64 // fill budget held, once complete
}

func newFill(s *stream, f *fetch, m *cache.Manifest) *fill {
	fe := &f.blk.plan.Fetches[f.i]
	fl := &fill{
		e:       s.e,
		m:       m,
		key:     cache.Key{Xorb: fe.Xorb, Start: fe.Chunks.Start, End: fe.Chunks.End},
		owner:   s,
		ownerID: s.id,
		fetch:   f,
		tr:      f.blk.plan.Track(f.i),
		base:    fe.Chunks.Start / segmentChunks,
		wake:    make(chan struct{}),
	}
	for lo := fe.Chunks.Start; lo < fe.Chunks.End; {
		hi := min(segmentEnd(lo), fe.Chunks.End)
		fl.segs = append(fl.segs, &fillSeg{start: lo, end: hi})
		lo = hi
	}
	return fl
}

// segment returns the segment holding chunk c while the fill still holds
// it in memory, nil once it has been handed to the cache.
func (fl *fill) segment(c uint32) *fillSeg {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	i := int(c/segmentChunks - fl.base)
	if i < fl.released || i >= len(fl.segs) {
		return nil
	}
	return fl.segs[i]
}

// chunk waits for chunk i of sg and returns its bytes and hash.
func (fl *fill) chunk(ctx context.Context, sg *fillSeg, i uint32) ([]byte, merklehash.Hash, error) {
	for {
		fl.mu.Lock()
		if i < sg.n {
			lo, hi := sg.offsets[i], sg.offsets[i+1]
			data, h := sg.data[lo:hi:hi], sg.hashes[i]
			fl.mu.Unlock()
			return data, h, nil
		}
		err, done := fl.err, fl.done
		ch := fl.wake
		fl.mu.Unlock()
		switch {
		case err != nil:
			return nil, merklehash.Hash{}, err
		case done:
			return nil, merklehash.Hash{}, fmt.Errorf("proxy: fill of %s ended before chunk %d", fl.key, sg.start+i)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, merklehash.Hash{}, ctx.Err()
		}
	}
}

// broadcast wakes the readers of the fill; fl.mu is held.
func (fl *fill) broadcast() {
	close(fl.wake)
	fl.wake = make(chan struct{})
}

func (fl *fill) publish(sg *fillSeg, data []byte, offsets []uint32, hashes []merklehash.Hash) {
	fl.mu.Lock()
	sg.data, sg.offsets, sg.hashes, sg.n = data, offsets, hashes, uint32(len(hashes))
	fl.broadcast()
	fl.mu.Unlock()
}

func (fl *fill) stop(err error) {
	fl.mu.Lock()
	fl.err, fl.done = err, true
	fl.broadcast()
	fl.mu.Unlock()
}

func (fl *fill) run() {
	e := fl.e
	defer e.fills.ended()
	defer func() { fl.owner, fl.fetch, fl.tr = nil, nil, nil }()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(fl.owner.ctx), e.fillTimeout)
	defer cancel()
	e.stats.fills.Add(1)
	e.stats.fillsInFlight.Add(1)
	defer e.stats.fillsInFlight.Add(-1)

	puts := make(chan *fillSeg, fillPutQueue)
	putDone := make(chan struct{})
	go fl.putter(ctx, puts, putDone)
	learnt, err := fl.download(ctx, puts)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			err = &UpstreamError{Op: "cache fill", Timeout: true, Err: err}
		} else {
			err = upstream("xorb range", fl.owner.fileName(), err)
		}
		e.fills.remove(fl, false) // later streams start afresh
		fl.stop(err)
	}
	close(puts)
	<-putDone
	if err == nil {
		if learnt != nil {
			// Chunks [0, n) that hash to the xorb: all of it, proven.
			e.promoteAll(ctx, fl.staged)
		}
		fl.staged = nil
		fl.stop(nil)
		e.fills.remove(fl, true)
		return
	}
	e.stats.fillErrors.Add(1)
	e.log.Debug("cache fill failed", "range", fl.key.String(), "err", err)
	var ie *IntegrityError
	if errors.As(err, &ie) {
		// The segments already stored decoded, but the range as a whole
		// did not check out: take them back.
		e.purge(ctx, []cache.Key{fl.key})
	}
}

// putter writes the complete segments to the cache in order, then lets go
// of them.
func (fl *fill) putter(ctx context.Context, puts <-chan *fillSeg, done chan<- struct{}) {
	defer close(done)
	e := fl.e
	for sg := range puts {
		fl.mu.Lock()
		ent := &cache.Entry{Xorb: fl.key.Xorb, Start: sg.start, End: sg.end,
			Offsets: sg.offsets, Hashes: sg.hashes, Data: sg.data}
		fl.mu.Unlock()
		if ctx.Err() == nil {
			switch {
			case fl.m != nil:
				e.putSegment(ctx, ent)
			case e.staging != nil:
				// Not proven yet: staged, out of reach of ranged readers,
				// the shared tier and the next process.
				if err := e.staging.Put(ctx, ent); err != nil {
					if ctx.Err() == nil {
						e.warn("cache: staging write failed", "key", ent.Key().String(), "err", err)
					}
				} else {
					e.stats.staged.Add(uint64(len(ent.Data)))
					fl.staged = append(fl.staged, unproven{key: ent.Key(), hashes: ent.Hashes})
				}
			}
		}
		fl.mu.Lock()
		fl.segs[fl.released] = nil
		fl.released++
		fl.mu.Unlock()
		e.fillBudget.release(sg.held)
	}
}

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
	if ent.Start%segmentChunks == 0 && ent.End == segmentEnd(ent.Start) {
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

var (
	never = func() bool { return false }
	whole = func(limit int64) int64 { return limit }
)

// download fetches the fill's range through decodeRange, decoding and
// hashing every chunk into its segment, checks the terms of the owner's
// plan, and hands each complete segment to the putter. It returns the
// manifest the range taught, if any.
func (fl *fill) download(ctx context.Context, puts chan<- *fillSeg) (*cache.Manifest, error) {
	fe := &fl.fetch.blk.plan.Fetches[fl.fetch.i]
	sink := &fillSink{fl: fl, ctx: ctx, puts: puts, si: -1}
	defer func() {
		if sink.held > 0 {
			fl.e.fillBudget.release(sink.held)
		}
	}()
	rr := rangeRead{
		fe: fe, url: fl.fetch.currentURL(), file: fl.owner.fileName(), m: fl.m,
		refresh: func(ctx context.Context) (string, error) { return fl.owner.refreshURL(ctx, fl.fetch) },
	}
	learnt, err := fl.e.decodeRange(ctx, rr, sink)
	if err != nil {
		return nil, err
	}
	if err := fl.tr.Finish(); err != nil {
		return nil, &IntegrityError{File: fl.owner.fileName(), Err: err}
	}
	return learnt, nil
}

// fillSink decodes a fill's chunks into its segments, one after the
// other: the fill budget is taken per segment (its largest possible size)
// before its first chunk decodes, and the complete segment goes to the
// putter, which gives it back.
type fillSink struct {
	fl   *fill
	ctx  context.Context
	puts chan<- *fillSeg

	si     int // index of sg in fl.segs
	sg     *fillSeg
	buf    []byte
	offs   []uint32
	hashes []merklehash.Hash
	held   int64 // fill budget held for sg while it is being decoded
	need   int   // end of the chunk being decoded in buf
}

func (k *fillSink) next(i uint32, size uint32) ([]byte, bool, error) {
	fl, e := k.fl, k.fl.e
	if _, err := fl.tr.Add(size); err != nil {
		return nil, false, &IntegrityError{File: fl.owner.fileName(), Err: err}
	}
	if k.sg == nil {
		k.si++
		k.sg = fl.segs[k.si]
		cnt := int(k.sg.end - k.sg.start)
		held := int64(cnt) * maxChunk // the most a segment can decode to
		if err := e.fillBudget.acquire(k.ctx, held, never, whole); err != nil {
			return nil, false, err
		}
		k.held = held
		k.buf = make([]byte, 0, cnt*xorbTargetChunk)
		k.offs = make([]uint32, 1, cnt+1)
		k.hashes = make([]merklehash.Hash, 0, cnt)
	}
	k.need = len(k.buf) + int(size)
	if k.need > cap(k.buf) {
		grown := make([]byte, len(k.buf), min(max(k.need, cap(k.buf)+cap(k.buf)/2), int(k.held)))
		copy(grown, k.buf)
		k.buf = grown
	}
	return k.buf[len(k.buf):k.need], true, nil
}

func (k *fillSink) done(i uint32, _ []byte, h merklehash.Hash) error {
	fl, e, sg := k.fl, k.fl.e, k.sg
	k.buf = k.buf[:k.need]
	k.offs = append(k.offs, uint32(k.need))
	k.hashes = append(k.hashes, h)
	fl.publish(sg, k.buf, k.offs, k.hashes)
	e.stats.fillBytes.Add(uint64(k.offs[len(k.offs)-1] - k.offs[len(k.offs)-2]))
	if fl.key.Start+i+1 < sg.end {
		return nil
	}
	if c := int64(cap(k.buf)); c < k.held {
		e.fillBudget.release(k.held - c)
		k.held = c
	}
	sg.held, k.held = k.held, 0
	k.sg = nil
	select {
	case k.puts <- sg:
		return nil
	case <-k.ctx.Done():
		e.fillBudget.release(sg.held)
		return k.ctx.Err()
	}
}

func (k *fillSink) abandon(uint32) {} // the chunk never joined the segment

// xorbTargetChunk is the average chunk size xet chunking aims at; a
// segment's buffer starts at that times its chunk count and grows when
// needed.
const xorbTargetChunk = 64 << 10
