package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sync/errgroup"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// stream reads one byte range of one Xet file. Three kinds of goroutine
// work on it:
//
//   - the scheduler queries the reconstruction block by block, hands each
//     planned block to the reader, and starts the block's fetches in
//     order, at most Parallel running ahead of the reader;
//   - one goroutine per fetch downloads a xorb range, decodes and checks
//     each chunk, keeps (under the byte budget) the chunks some piece
//     writes from, hashes them for a whole-file check, and publishes them
//     one by one;
//   - the reader (the caller of Read or WriteTo) walks the pieces in
//     order, waits for each chunk, writes its bytes and frees it after its
//     last use.
//
// The reader never waits for memory: a fetch it is waiting for is started
// whatever the parallelism limit and takes budget whatever the budget
// (see budget), so the read-ahead can fill up but never deadlock.
type stream struct {
	e      *Engine
	id     uint64 // unique in the engine
	ctx    context.Context
	mctx   context.Context // ctx, for cache look-ups that may lend files (cache.WithLentFiles)
	cancel context.CancelFunc
	g      *errgroup.Group
	auth   casclient.Auth
	file   merklehash.Hash
	start  uint64 // first file byte
	end    uint64 // file byte after the last
	verify bool
	budget *budget // this stream's share

	blocks chan *block // scheduler -> reader, in order

	errMu sync.Mutex
	err   error // first failure

	allMu   sync.Mutex
	ahead   []*fetch     // the planned fetches from seq aheadAt on (the reader's and later)
	aheadAt int64        // seq of ahead[0]
	head    atomic.Int64 // seq of the fetch the reader is on

	admitMu   sync.Mutex
	running   int           // fetches started and not finished
	needed    int64         // highest fetch sequence number the reader has waited for
	firstOut  atomic.Bool   // a chunk was delivered (admitLimit)
	admitWake chan struct{} // closed and replaced on changes

	// Reader state.
	cur      *block
	pi       int // current piece of cur
	cut      reconstruction.Cutter
	pending  []byte // bytes handed out but not consumed yet
	pendSlot *slot  // slot to free once pending is consumed
	pendF    *fetch
	pendSrc  source   // where pending came from
	pendOK   bool     // pending is proven (a manifest, or the whole-file check)
	pendFile *os.File // the cache file pending was read from, at pendFoff, if it may be sent from there
	pendFoff int64
	unsent   *[]*slot // consumed slots of a run not sent yet (sendRun), freed after
	sentFile *os.File // the file sendRun last sent from, whose read position is sentPos
	sentPos  int64
	written  uint64
	builder  merklehash.Builder
	verified bool  // the file hash checked (verifyTail)
	rerr     error // sticky reader error (io.EOF at the end)
	closed   sync.Once

	// Cache bookkeeping.
	memoKey  string                                                             // prefix of this stream's reconstruction memo keys
	src      chunkSource                                                        // where fetches come from: the engine's source, or cachedOnly
	plans    func(reconstruction.ByteRange) (*reconstruction.ResponseV2, error) // nil: the CAS (offline: stored terms)
	answers  []*reconstruction.ResponseV2                                       // a whole-file stream's answers, in block order, for the term store
	sources  [numSources]atomic.Int64                                           // output bytes by where their chunk came from
	usedMu   sync.Mutex
	used     []cache.Key // fetch ranges read through the cache, for a purge
	unproven []unproven  // chunks used before any proof (proof.go)
	fills    []*fill     // fills without a proof read from (whole-file streams)
}

// block is one reconstruction query and its plan.
type block struct {
	rng     reconstruction.ByteRange // file bytes asked
	plan    *reconstruction.Plan
	fetches []*fetch

	// meta is what the block's own bookkeeping (its fetches and their
	// slots, one per chunk) holds of the engine's budget until the block
	// is freed (releaseBlock).
	meta atomic.Int64

	mu   sync.Mutex        // guards urls (403 refreshes of this block)
	urls map[string]string // fetch key -> newest URL
}

// fetch is the download of one plan fetch.
type fetch struct {
	blk   *block
	i     int   // index in blk.plan.Fetches
	seq   int64 // start order within the stream
	url   string
	slots []slot // one per chunk of the fetch range

	delivered atomic.Uint32 // slots [0, delivered) are filled
	ready     chan struct{} // signalled when the chunk the reader waits for (want) arrives
	done      chan struct{} // closed when the goroutine ends
	err       error         // set before done is closed
	want      atomic.Int64  // chunks [0, want] are urgent: the reader waits for them (-1: none)
	started   atomic.Bool
	finished  atomic.Bool // the download goroutine has ended
}

// slot is one decoded chunk of a fetch.
type slot struct {
	data    []byte    // the chunk; nil when no piece writes from it, or freed
	pooled  *[]byte   // the pool buffer data lives in (nil: data is a cache entry's or a fill's)
	ent     *entryRef // the cache entry data lives in, if it lends its memory
	file    *os.File  // the cache file data was read from, at foff, if its entry lends it
	foff    int64
	cost    int64 // budget bytes held for data
	size    uint32
	lastUse int // last piece writing from it, -1 for none
	hash    merklehash.Hash
	src     source
	proven  bool // checked against its xorb's manifest
}

func (e *Engine) openXet(ctx context.Context, token string, meta *hub.FileMeta, offset, length uint64, whole bool) (io.ReadCloser, error) {
	sctx, cancel := context.WithCancel(ctx)
	s := e.newStream(sctx, cancel, e.auth(token, meta),
		e.memo.key(token, meta.Repo, meta.TokenRevision(), "reconstruction", meta.XetHash.String()),
		*meta.XetHash, offset, length, whole)
	// The first block is planned here, so that the errors a client should
	// get as a status (not found, refused, unreachable) come from Open.
	first, err := s.planBlock(s.ctx, s.start, 0)
	if err != nil {
		cancel()
		return nil, err
	}
	s.g.Go(func() error { return s.schedule(first) })
	return s, nil
}

// newStream sets up a stream of bytes [offset, offset+length) of file on
// sctx (cancel ends it); the caller plans its first block and starts the
// scheduler.
func (e *Engine) newStream(sctx context.Context, cancel context.CancelFunc, auth casclient.Auth, memoKey string, file merklehash.Hash, offset, length uint64, whole bool) *stream {
	g, gctx := errgroup.WithContext(sctx)
	mctx := gctx
	if e.sendfile {
		mctx = cache.WithLentFiles(gctx)
	}
	return &stream{
		e: e, id: e.streams.Add(1), ctx: gctx, mctx: mctx, cancel: cancel, g: g,
		auth:    auth,
		memoKey: memoKey,
		file:    file,
		start:   offset,
		end:     offset + length,
		verify:  whole,
		budget:  newBudget(e.streamBuf),
		blocks:  make(chan *block, 1),
		needed:  -1, admitWake: make(chan struct{}),
		src: e.source,
	}
}

// fail records the first error and stops everything.
func (s *stream) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.cancel()
}

// failure is the error that ended the stream: the first recorded one, or
// the cancellation of the caller's context.
func (s *stream) failure() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err != nil {
		return s.err
	}
	if err := context.Cause(s.ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return context.Canceled
		}
		return err
	}
	return errors.New("stream stopped")
}

func (s *stream) fileName() string { return s.file.String() }

// ---- scheduler ----

// planBlock queries the reconstruction of the block starting at file byte
// off and plans it. seq is the sequence number of its first fetch.
func (s *stream) planBlock(ctx context.Context, off uint64, seq int64) (*block, error) {
	n := min(s.e.blockSize, s.end-off)
	b := &block{rng: reconstruction.ByteRange{Start: off, End: off + n - 1}}
	plan, err := s.query(ctx, b.rng, false)
	if err != nil {
		return nil, err
	}
	b.plan = plan
	for i, fe := range plan.Fetches {
		b.fetches = append(b.fetches, &fetch{
			blk: b, i: i, seq: seq + int64(i), url: fe.URL,
			slots: make([]slot, fe.Chunks.Len()),
			ready: make(chan struct{}, 1),
			done:  make(chan struct{}),
		})
		b.fetches[i].want.Store(-1)
	}
	// A stream's plan is memory in flight too: a block of the default
	// size has a few thousand chunks, a slot each, and every stream holds
	// one or two blocks. Charged to the engine's budget without waiting
	// (planning must go on for the reader to progress), it leaves that
	// much less room for read-ahead.
	var chunks int64
	for _, f := range b.fetches {
		chunks += int64(len(f.slots))
	}
	meta := chunks*int64(unsafe.Sizeof(slot{})) + int64(len(b.fetches))*int64(unsafe.Sizeof(fetch{}))
	s.e.budget.acquire(s.ctx, meta, func() bool { return true }, whole)
	b.meta.Store(meta)
	s.allMu.Lock()
	s.ahead = append(s.ahead, b.fetches...)
	s.allMu.Unlock()
	return b, nil
}

// releaseBlock gives back what b's bookkeeping holds of the engine's
// budget; later calls do nothing.
func (s *stream) releaseBlock(b *block) {
	if n := b.meta.Swap(0); n > 0 {
		s.e.budget.release(n)
	}
}

// query asks the reconstruction of rng and plans all of it. A positive
// answer the same user got for the same range within AuthTTL is reused
// unless fresh is set (a refused URL asks again).
func (s *stream) query(ctx context.Context, rng reconstruction.ByteRange, fresh bool) (*reconstruction.Plan, error) {
	key := s.memoKey + fmt.Sprintf("\x00%d-%d", rng.Start, rng.End)
	var r *reconstruction.ResponseV2
	var err error
	if s.plans != nil {
		if r, err = s.plans(rng); err != nil {
			return nil, err
		}
	} else if v, ok := s.e.memo.get(key); ok && !fresh {
		r = v.(*reconstruction.ResponseV2)
	} else {
		r, err = s.e.cas.Reconstruct(ctx, s.auth, s.file, &rng)
		if err == nil {
			s.e.memo.put(key, r)
		}
	}
	if errors.Is(err, casclient.ErrNotFound) {
		return nil, &UpstreamError{Op: "reconstruction", Err: fmt.Errorf("xet file %s: %w", s.file, err)}
	}
	if err != nil {
		return nil, upstream("reconstruction", s.fileName(), err)
	}
	plan, err := reconstruction.NewPlan(r, rng.Len())
	if err != nil {
		return nil, &UpstreamError{Op: "reconstruction", Err: err}
	}
	if s.verify && s.plans == nil && s.e.terms != nil && !fresh {
		s.answers = append(s.answers, r)
	}
	if plan.Size != rng.Len() {
		return nil, &UpstreamError{Op: "reconstruction", Err: fmt.Errorf(
			"bytes %d-%d of %s: the answer covers only %d bytes", rng.Start, rng.End, s.file, plan.Size)}
	}
	return plan, nil
}

func (s *stream) schedule(first *block) error {
	defer close(s.blocks)
	b := first
	for {
		select {
		case s.blocks <- b:
		case <-s.ctx.Done():
			s.releaseBlock(b) // never handed to the reader
			return s.ctx.Err()
		}
		for _, f := range b.fetches {
			if err := s.admit(f); err != nil {
				return err
			}
			s.g.Go(func() error { return s.run(f) })
		}
		next := b.rng.End + 1
		if next >= s.end {
			return nil
		}
		seq := b.fetches[len(b.fetches)-1].seq + 1
		var err error
		if b, err = s.planBlock(s.ctx, next, seq); err != nil {
			s.fail(err)
			return err
		}
	}
}

// admit waits until f may start: fewer than Parallel fetches run, or the
// reader has reached f (then it starts regardless). Until the stream's
// first chunk is out, one fetch runs at a time: the fetches after it
// would take the CPU and the upstream's attention from the first chunk,
// which the client waits for (time to first byte), while they only gain
// the time of that one chunk.
func (s *stream) admit(f *fetch) error {
	s.admitMu.Lock()
	for s.running >= s.admitLimit() && f.seq > s.needed {
		ch := s.admitWake
		s.admitMu.Unlock()
		select {
		case <-ch:
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
		s.admitMu.Lock()
	}
	s.running++
	f.started.Store(true)
	s.admitMu.Unlock()
	return nil
}

// admitLimit is the number of fetches that may run ahead of the reader;
// admitMu held.
func (s *stream) admitLimit() int {
	if !s.firstOut.Load() {
		return 1
	}
	return s.e.parallel
}

// firstChunk lifts the one-fetch limit of admit once a chunk is out.
// admitChanged wakes the fetches that wait for it: an admit that read the
// old value still holds the wake channel that call closes.
func (s *stream) firstChunk() {
	if !s.firstOut.Load() {
		s.admitChanged(func() { s.firstOut.Store(true) })
	}
}

func (s *stream) admitChanged(update func()) {
	s.admitMu.Lock()
	update()
	close(s.admitWake)
	s.admitWake = make(chan struct{})
	s.admitMu.Unlock()
}

// ---- fetches ----

func (s *stream) run(f *fetch) error {
	err := s.download(f)
	if err != nil {
		if s.ctx.Err() == nil || !errors.Is(err, context.Canceled) {
			err = upstream("xorb range", s.fileName(), err)
		}
		f.err = err
		s.fail(err)
	}
	f.finished.Store(true)
	close(f.done)
	s.pokeBudgets()
	s.admitChanged(func() { s.running-- })
	return err
}

func (s *stream) download(f *fetch) error {
	return s.src.fetch(s, f, f.blk.plan.Track(f.i), 0)
}

// publish makes chunk k of f visible to the reader.
func (f *fetch) publish(k int) {
	f.delivered.Store(uint32(k + 1))
	if int64(k) >= f.want.Load() { // the reader waits for this chunk (or none)
		select {
		case f.ready <- struct{}{}:
		default:
		}
	}
}

// currentURL is f's newest presigned URL (refreshURL may replace it).
func (f *fetch) currentURL() string {
	f.blk.mu.Lock()
	defer f.blk.mu.Unlock()
	return f.url
}

// acquire takes n bytes for chunk k of f from the stream's and the
// engine's budgets. A chunk the reader is waiting for (or one before it
// in the stream) is urgent and never waits.
func (s *stream) acquire(f *fetch, k int, n int64) error {
	urgent, room := s.acquireRules(f, k)
	if err := s.budget.acquire(s.ctx, n, urgent, room); err != nil {
		return err
	}
	if err := s.e.budget.acquire(s.ctx, n, urgent, room); err != nil {
		s.budget.release(n)
		return err
	}
	return nil
}

// acquireRules are the urgent and room functions of budget.acquire for
// chunk k of f.
func (s *stream) acquireRules(f *fetch, k int) (urgent func() bool, room func(limit int64) int64) {
	urgent = func() bool { return int64(k) <= f.want.Load() }
	room = func(limit int64) int64 {
		switch {
		case f.seq <= s.head.Load():
			return limit // the reader is on it: all of the budget
		case s.prefetchTurn(f):
			return limit - limit/4 // read-ahead leaves the reader's fetch room to run
		}
		return 0
	}
	return urgent, room
}

// acquireUpTo is acquire for a read of n bytes that can be cut to small
// (budget.acquireUpTo) when the reader waits for it and the budgets are
// full; it returns what it took of both.
func (s *stream) acquireUpTo(f *fetch, k int, n, small int64) (int64, error) {
	urgent, room := s.acquireRules(f, k)
	got, err := s.budget.acquireUpTo(s.ctx, n, small, urgent, room)
	if err != nil {
		return 0, err
	}
	got2, err := s.e.budget.acquireUpTo(s.ctx, got, small, urgent, room)
	if err != nil {
		s.budget.release(got)
		return 0, err
	}
	if got2 < got {
		s.budget.release(got - got2)
	}
	return got2, nil
}

// prefetchTurn reports whether f may read ahead into the budget: every
// fetch between the reader's current one and f has finished. Read-ahead
// thus fills in output order: the fetch after the reader's gets the memory
// first, and a far fetch never holds memory the next one needs (which
// would leave only the reader's own fetch decoding).
func (s *stream) prefetchTurn(f *fetch) bool {
	h := s.head.Load()
	s.allMu.Lock()
	defer s.allMu.Unlock()
	for seq := max(h+1, s.aheadAt); seq < f.seq; seq++ {
		if !s.ahead[seq-s.aheadAt].finished.Load() {
			return false
		}
	}
	return true
}

// moveHead records that the reader is on the fetch with sequence number
// seq, forgets the fetches behind it (memory must not grow with the file)
// and lets the next fetch read ahead.
func (s *stream) moveHead(seq int64) {
	s.head.Store(seq)
	s.allMu.Lock()
	if n := min(seq-s.aheadAt, int64(len(s.ahead))); n > 0 {
		clear(s.ahead[:n])
		s.ahead = s.ahead[n:]
		s.aheadAt += n
	}
	s.allMu.Unlock()
	s.pokeBudgets()
}

// pokeBudgets wakes the fetches waiting for memory to look again.
func (s *stream) pokeBudgets() {
	s.budget.poke()
	s.e.budget.poke()
}

func (s *stream) releaseBytes(n int64) {
	s.budget.release(n)
	s.e.budget.release(n)
}

// refreshURL is called by the CAS client when f's presigned URL was
// refused: it asks the block's reconstruction again (once for all the
// fetches of the block that fail together) and returns f's new URL.
func (s *stream) refreshURL(ctx context.Context, f *fetch) (string, error) {
	b := f.blk
	fe := &b.plan.Fetches[f.i]
	key := fetchKey(fe)
	b.mu.Lock()
	defer b.mu.Unlock()
	if u := b.urls[key]; u != "" && u != f.url {
		f.url = u // another fetch refreshed the block meanwhile
		return u, nil
	}
	plan, err := s.query(ctx, b.rng, true)
	if err != nil {
		return "", err
	}
	b.urls = make(map[string]string, len(plan.Fetches))
	for i := range plan.Fetches {
		b.urls[fetchKey(&plan.Fetches[i])] = plan.Fetches[i].URL
	}
	u := b.urls[key]
	if u == "" {
		return "", &UpstreamError{Op: "reconstruction", Err: fmt.Errorf(
			"bytes %d-%d of %s: the new answer has no range %d-%d of xorb %s", b.rng.Start, b.rng.End, s.file, fe.Bytes.Start, fe.Bytes.End, fe.Xorb)}
	}
	f.url = u
	return u, nil
}

func fetchKey(fe *reconstruction.Fetch) string {
	return fmt.Sprintf("%s/%d-%d/%d-%d", fe.Xorb, fe.Chunks.Start, fe.Chunks.End, fe.Bytes.Start, fe.Bytes.End)
}

// ---- reader ----

// Read implements io.Reader.
func (s *stream) Read(p []byte) (int, error) {
	if len(s.pending) == 0 {
		if err := s.advance(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.pending)
	s.consume(n)
	return n, nil
}

// WriteTo implements io.WriterTo: the bytes go from the chunk buffers to w
// without another copy, and bytes of a cache file the entry lends go from
// the file (w's ReadFrom: net/http's response writer sends them with
// sendfile).
func (s *stream) WriteTo(w io.Writer) (int64, error) {
	rf, _ := w.(io.ReaderFrom)
	var total int64
	for {
		if len(s.pending) == 0 {
			if err := s.advance(); err != nil {
				if err == io.EOF {
					err = nil
				}
				return total, err
			}
		}
		if s.pendFile != nil && rf != nil {
			n, err := s.sendRun(rf) // consumes what it sends
			total += int64(n)
			if err != nil {
				return total, err
			}
			continue
		}
		n, err := w.Write(s.pending)
		total += int64(n)
		s.consume(n)
		if err != nil {
			return total, err
		}
	}
}

func (s *stream) consume(n int) {
	s.pending = s.pending[n:]
	s.pendFoff += int64(n)
	s.written += uint64(n)
	s.sources[s.pendSrc].Add(int64(n))
	s.e.stats.served[s.pendSrc].Add(int64(n))
	if !s.pendOK {
		s.e.stats.unverified.Add(int64(n))
	}
	if len(s.pending) == 0 && s.pendSlot != nil {
		if s.unsent != nil {
			*s.unsent = append(*s.unsent, s.pendSlot) // freed once sent (sendRun)
		} else {
			s.free(s.pendSlot)
		}
		s.pendSlot = nil
	}
}

// advance sets pending to the next bytes of output, or returns the
// stream's final error (io.EOF after a complete, verified stream).
func (s *stream) advance() error {
	if s.rerr != nil {
		return s.rerr
	}
	err := s.step()
	if err != nil {
		s.rerr = err
		if err == io.EOF {
			s.shutdown()
		} else {
			s.fail(err)
		}
	}
	return err
}

func (s *stream) step() error {
	for {
		if s.cur == nil {
			var b *block
			var ok bool
			select {
			case b, ok = <-s.blocks:
			case <-s.ctx.Done():
				return s.failure()
			}
			if !ok {
				return s.finish()
			}
			s.cur, s.pi = b, 0
			s.cut = b.plan.Pieces[0].Cutter()
		}
		if s.pi == len(s.cur.plan.Pieces) {
			if err := s.finishBlock(s.cur); err != nil {
				return err
			}
			s.cur = nil
			continue
		}
		pc := &s.cur.plan.Pieces[s.pi]
		if s.cut.Written() {
			s.pi++
			if s.pi < len(s.cur.plan.Pieces) {
				s.cut = s.cur.plan.Pieces[s.pi].Cutter()
			}
			continue
		}
		f := s.cur.fetches[pc.Fetch]
		if f.seq > s.head.Load() {
			s.moveHead(f.seq)
		}
		k := s.cut.Chunk() - s.cur.plan.Fetches[pc.Fetch].Chunks.Start
		if err := s.wait(f, k); err != nil {
			return err
		}
		sl := &f.slots[k]
		lo, hi, whole := s.cut.Next(sl.size)
		if whole && s.verify {
			s.builder.Add(sl.hash, uint64(sl.size))
		}
		last := sl.lastUse == s.pi
		if hi > lo {
			if sl.data == nil {
				return fmt.Errorf("proxy: chunk %d of fetch %d was not kept", k, f.i)
			}
			if s.verify && s.written+uint64(hi-lo) == s.end-s.start {
				// The last bytes of a whole file: held back until the file
				// hash checks, so that a wrong file never ends cleanly.
				if err := s.verifyTail(); err != nil {
					if last {
						s.free(sl)
					}
					return err
				}
			}
			s.pending = sl.data[lo:hi]
			s.pendFile, s.pendFoff = sl.file, sl.foff+int64(lo)
			s.pendSrc = sl.src
			s.pendOK = s.verify || sl.proven
			if last {
				s.pendSlot = sl
			}
			return nil
		}
		if last {
			s.free(sl)
		}
	}
}

// waitBatch: a reader that has to wait for chunk k asks to be woken when
// chunk k+waitBatch is there too (or the fetch ends), so that one wake-up
// covers several chunks instead of one each.
const waitBatch = 4

// wait blocks until chunk k of f is delivered.
func (s *stream) wait(f *fetch, k uint32) error {
	if f.delivered.Load() > k {
		return nil
	}
	if !f.started.Load() {
		s.admitChanged(func() { s.needed = max(s.needed, f.seq) })
	}
	target := min(int64(k)+waitBatch, int64(len(f.slots))-1)
	if target > f.want.Load() {
		f.want.Store(target) // only the reader writes want (and finishBlock, after)
	}
	s.pokeBudgets()
	for f.delivered.Load() <= k {
		select {
		case <-f.ready:
		case <-f.done:
			if f.delivered.Load() > k {
				return nil
			}
			if f.err != nil {
				return f.err
			}
			return fmt.Errorf("proxy: fetch %d ended before chunk %d", f.i, k)
		case <-s.ctx.Done():
			return s.failure()
		}
	}
	return nil
}

// finishBlock waits for the block's fetches to end, so every term of the
// block has been checked, and frees what is left of them.
func (s *stream) finishBlock(b *block) error {
	for _, f := range b.fetches {
		f.want.Store(math.MaxInt64) // nothing it still stores is waited for; never stall it
		s.pokeBudgets()
		select {
		case <-f.done:
		case <-s.ctx.Done():
			return s.failure()
		}
		if f.err != nil {
			return f.err
		}
		s.freeFetch(f)
	}
	s.releaseBlock(b)
	return nil
}

// verifyTail runs when the reader is about to hand out the last bytes of
// a whole file: every chunk hash is in the builder by then. It waits for
// the last block's fetches (so every term is checked) and checks the Xet
// file hash; only then may the tail go out.
func (s *stream) verifyTail() error {
	for _, f := range s.cur.fetches {
		f.want.Store(math.MaxInt64)
		s.pokeBudgets()
		select {
		case <-f.done:
		case <-s.ctx.Done():
			return s.failure()
		}
		if f.err != nil {
			return f.err
		}
	}
	if got := s.builder.FileHash(); got != s.file {
		// Whatever the cache gave this stream may be what is wrong:
		// purge it, so that the next attempt fetches from upstream.
		s.e.stats.fileMismatches.Add(1)
		s.condemnFills()
		s.e.purge(s.ctx, s.usedKeys())
		return &IntegrityError{File: s.fileName(), Err: &MismatchError{What: "xet file hash", Want: s.file.String(), Got: got.String()}}
	}
	s.verified = true
	s.e.proved(s)
	return nil
}

// finish runs after the last block: checks the length and that a whole
// file was verified (verifyTail) before its tail went out.
func (s *stream) finish() error {
	if s.ctx.Err() != nil {
		return s.failure()
	}
	if want := s.end - s.start; s.written != want {
		return fmt.Errorf("proxy: stream ended after %d of %d bytes", s.written, want)
	}
	if s.verify && !s.verified {
		return fmt.Errorf("proxy: whole-file stream of %s ended unverified", s.file)
	}
	return io.EOF
}

func (s *stream) free(sl *slot) {
	if sl.data != nil {
		s.releaseBytes(sl.cost)
		if sl.pooled != nil {
			putBuf(sl.pooled)
		}
		if sl.ent != nil {
			sl.ent.drop()
		}
		sl.data, sl.pooled, sl.ent, sl.file, sl.cost = nil, nil, nil, nil, 0
	}
}

// freeFetch frees every kept chunk of a fetch whose goroutine has ended.
func (s *stream) freeFetch(f *fetch) {
	n := f.delivered.Load()
	for i := range n {
		if sl := &f.slots[i]; sl != s.pendSlot && !s.isUnsent(sl) {
			s.free(sl)
		}
	}
}

// shutdown stops every goroutine and frees every buffer. Safe to call
// more than once.
func (s *stream) shutdown() {
	s.closed.Do(func() {
		s.cancel()
		s.g.Wait()
		if s.pendSlot != nil {
			s.free(s.pendSlot)
			s.pendSlot = nil
		}
		s.pending = nil
		if s.cur != nil {
			s.freeBlock(s.cur)
		}
		for b := range s.blocks { // closed by the scheduler on its way out
			s.freeBlock(b)
		}
	})
}

func (s *stream) freeBlock(b *block) {
	for _, f := range b.fetches {
		if f.started.Load() {
			<-f.done
		}
		s.freeFetch(f)
	}
	s.releaseBlock(b)
}

// Close stops the stream and releases everything. It returns once every
// goroutine of the stream has ended.
func (s *stream) Close() error {
	if s.rerr == nil {
		s.rerr = errors.New("read after close")
	}
	s.shutdown()
	return nil
}
