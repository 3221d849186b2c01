package proxy

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// fillTable is an engine's set of fills in flight, by xorb. It is the
// single-flight: a stream needing a range that a fill in flight covers
// joins it instead of fetching the range again.
type fillTable struct {
	mu     sync.Mutex
	byXorb map[merklehash.Hash][]*fill
	// running counts the fills whose goroutines run (never closed: the
	// table's own closed flag stops new fills).
	running bgTracker
	closed  bool
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
	t.running.start()
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
func (t *fillTable) ended() { t.running.end() }

func (t *fillTable) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}

// wait returns when no fill runs, or with ctx's error.
func (t *fillTable) wait(ctx context.Context) error { return t.running.wait(ctx) }

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
	// condemned: a reader found what the fill brought wrong (its file
	// hash or a manifest failed); the putter stages nothing more. putMu
	// makes condemning wait for a staging write under way, so that the
	// reader's purge that follows also removes that one.
	putMu     sync.Mutex
	condemned bool

	doneSeq uint64 // set by fillTable.remove when it completed

	mu   sync.Mutex
	wake chan struct{} // closed and replaced when a chunk is published or the fill ends
	segs []*fillSeg    // an element is nil once the fill let go of it
	put  int           // segments [0, put) were handed to the store
	err  error         // why the fill stopped early
	// readers are the streams that joined the fill and will still read
	// some of its segments: the fill keeps a stored segment in memory for
	// them (retain.go).
	readers []*fillReader
	done    bool
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
	// refs counts the holders of data's memory: the fill until it lets go
	// of the segment, each reader from segment to its last chunk's
	// release (entryRef). pooled is data's buffer when it came from
	// segPool: it goes back when refs falls to 0.
	refs   atomic.Int32
	pooled *[]byte
	// kept: the putter stored the segment and the fill keeps it in memory
	// for its readers (guarded by fill.mu); elem is its place in the
	// engine's list of kept segments (guarded by that list's lock).
	kept bool
	elem *list.Element
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
		sg := &fillSeg{start: lo, end: hi}
		sg.refs.Store(1) // the fill's
		fl.segs = append(fl.segs, sg)
		lo = hi
	}
	return fl
}

// segment returns the segment holding chunk c while the fill still holds
// it in memory, nil once it has let go of it; kept reports a segment
// already stored, complete, that the fill keeps for its readers
// (retain.go). The caller holds a reference to the segment's memory and
// gives it back with unref.
func (fl *fill) segment(c uint32) (sg *fillSeg, kept bool) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	i := int(c/segmentChunks - fl.base)
	if i < 0 || i >= len(fl.segs) || fl.segs[i] == nil {
		return nil, false
	}
	sg = fl.segs[i]
	sg.refs.Add(1)
	return sg, sg.kept
}

// Segment buffers. When nothing the fill hands a segment to keeps its
// bytes (the disk stores write them out; a memory store would keep them),
// the buffer comes from segPool and goes back to it once the fill and
// every reader are done with it: a fresh buffer for each 4 MiB segment
// costs the runtime's clearing of it and the decoder's first touch of new
// memory, more than its write to the staging store. A pooled buffer holds
// the largest a segment can decode to, so it never grows.
const segBufCap = segmentChunks * maxChunk

var segPool sync.Pool // of *[]byte, cap segBufCap

// pooledSegments reports whether segments of a fill with manifest m may
// use pooled buffers: the store their Put goes to keeps no reference to
// them.
func (e *Engine) pooledSegments(m *cache.Manifest) bool {
	if m == nil {
		_, ok := e.staging.(*cache.Staging)
		return ok
	}
	_, ok := e.cache.(*cache.Disk)
	return ok
}

// unref gives back a reference to sg's memory (the fill's own, or a
// reader's from segment); the last one returns a pooled buffer to the
// pool.
func (sg *fillSeg) unref() {
	if sg.refs.Add(-1) == 0 && sg.pooled != nil {
		p := sg.pooled
		sg.pooled = nil
		*p = (*p)[:0]
		segPool.Put(p)
	}
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
		// did not check out: take them back, and the ones kept in memory.
		fl.letGoAll()
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
				fl.stage(ctx, ent)
			}
		}
		fl.settle(sg)
	}
}

// stage writes ent to the staging store unless the fill was condemned.
func (fl *fill) stage(ctx context.Context, ent *cache.Entry) {
	e := fl.e
	fl.putMu.Lock()
	defer fl.putMu.Unlock()
	if fl.condemned {
		return
	}
	if err := e.staging.Put(ctx, ent); err != nil {
		if ctx.Err() == nil {
			e.warn("cache: staging write failed", "key", ent.Key().String(), "err", err)
		}
		return
	}
	e.stats.staged.Add(uint64(len(ent.Data)))
	fl.staged = append(fl.staged, unproven{key: ent.Key(), hashes: ent.Hashes})
}

// condemn stops the fill from staging anything more; it returns once a
// staging write under way has finished, so a purge after it is complete.
func (fl *fill) condemn() {
	fl.putMu.Lock()
	fl.condemned = true
	fl.putMu.Unlock()
	fl.letGoAll()
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
	sink := &fillSink{fl: fl, ctx: ctx, puts: puts, si: -1, pool: fl.e.pooledSegments(fl.m)}
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
	// perChunk is the mean chunk size of the last complete segment, 0
	// before the first.
	perChunk int
	pool     bool // segments use pooled buffers (pooledSegments)
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
		if k.pool {
			held = segBufCap
		}
		if err := e.fillBudget.acquireEvicting(k.ctx, held, e.kept.evict); err != nil {
			return nil, false, err
		}
		k.held = held
		// The chunks of a xorb tend to be alike in size: start from what
		// the previous segment needed, with a margin, so that a segment
		// seldom grows (a copy of all it holds, and a larger buffer to
		// clear).
		per := xorbTargetChunk
		if k.perChunk > 0 {
			per = min(k.perChunk+k.perChunk/8, maxChunk)
		}
		if k.pool {
			p, _ := segPool.Get().(*[]byte)
			if p == nil {
				b := make([]byte, 0, segBufCap)
				p = &b
			}
			k.sg.pooled, k.buf = p, (*p)[:0]
		} else {
			k.buf = make([]byte, 0, cnt*per)
		}
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
	k.perChunk = len(k.buf)/len(k.hashes) + 1
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
