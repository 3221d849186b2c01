package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

const (
	defaultQueueBytes   = 256 << 20
	defaultQueueWorkers = 2
	defaultWriteTimeout = 2 * time.Minute
	defaultQueueWait    = 30 * time.Second
	maxTombstones       = 4096
	// maxQueueEntries bounds the writes waiting, whatever their size, so
	// that the queue's own memory (a key each when spooled) stays small.
	maxQueueEntries = 4096
	// queuedEntryMem is what a spooled write holds in memory (its record
	// in the queue), for QueueStats.MemBytes.
	queuedEntryMem = int64(unsafe.Sizeof(queuedEntry{}))
)

// TieredConfig configures a Tiered store.
type TieredConfig struct {
	// SyncShared makes Put write the shared tier before returning instead
	// of queueing the write.
	SyncShared bool
	// QueueBytes bounds the writes waiting for the shared tier: decoded
	// bytes of entries, stored size of manifests. 0 means 256 MiB. Without
	// Spool they are held in memory; with it they are on disk. A Put that
	// finds the queue full waits for room (at most QueueWait); an empty
	// queue takes any write. With a Spool it is at most half the spool's
	// capacity.
	QueueBytes int64
	// QueueWait bounds how long a Put waits for room in a full queue
	// before the shared write is dropped (counted in Stats.Dropped, logged
	// at Warn at most once a minute). 0 means 30 seconds. Once a wait has
	// run out the queue is congested: until it has drained to half of
	// QueueBytes, writes that do not fit are dropped without waiting, so
	// that a bucket that stopped answering costs each fill one wait, not
	// one per entry.
	QueueWait time.Duration
	// Spool, when set, is a disk store that every successful local Put
	// writes to (the local tier itself, or the disk under a memory tier
	// written through). A queued entry then holds only its key and the
	// digest of its chunk hashes, and is read back from Spool when it is
	// written to the shared tier, so the queue's memory stays at a few
	// hundred bytes an entry whatever QueueBytes is. A read-back entry
	// whose hashes differ, or that is no longer there (evicted, deleted by
	// another process), is dropped and counted.
	Spool *Disk
	// Workers is the number of concurrent shared writes; 0 means 2.
	Workers int
	// WriteTimeout bounds one queued shared write; 0 means 2 minutes.
	WriteTimeout time.Duration
	// Logger receives tier failures (at most one Warn a minute, the rest at
	// Debug); nil discards them.
	Logger *slog.Logger
}

// QueueStats is the state of a Tiered store's shared-write queue.
type QueueStats struct {
	Entries  int   // writes waiting or under way
	Bytes    int64 // their size against QueueBytes
	MemBytes int64 // the memory they hold (decoded bytes and manifests held, a record each when spooled)
	// PeakBytes and PeakMemBytes are the highest Bytes and MemBytes so far.
	PeakBytes, PeakMemBytes int64
	Spooled                 uint64 // writes queued as a key, read back from the spool
	Waits                   uint64 // Puts that waited for room
	Dropped                 uint64 // writes given up (the same as Stats.Dropped)
	Limit                   int64  // QueueBytes
}

// Tiered is a Store made of a fast local tier (memory or disk) and a shared
// tier (an object store used by every instance).
//
// Get tries the local tier, then the shared tier; a shared hit is written to
// the local tier before it is returned. A failing tier is logged and passed
// over. Put writes the local tier, then the shared tier: by default through a
// bounded queue drained by background workers on their own contexts, so a
// bucket a little slower than the fill does not hold it up. When the queue is
// full Put waits for room (back-pressure on the fill) for at most QueueWait;
// only then is the shared write dropped, counted and logged. With a Spool
// the queue holds keys and reads the entries back from disk. Close drains
// the queue; writes still queued when the process exits are lost to the
// shared tier (Flush logs how many when its context ends first). Delete
// deletes from both tiers synchronously and cancels (or undoes) the queued
// shared writes it overlaps.
//
// Tiered is a ManifestStore when its tiers are (a tier that is not one is
// passed over). PutManifest stores in the local tier, then in the shared
// tier the way Put does (queued by default, counting against QueueBytes
// with its stored size, or directly with SyncShared); GetManifest tries the
// local tier, then the shared tier, copying a shared hit into the local
// tier. Delete does not touch manifests: a verified manifest cannot be
// wrong.
type Tiered struct {
	local, shared   Store
	mlocal, mshared ManifestStore // the tiers as manifest stores, or nil
	cfg             TieredConfig
	log             *slog.Logger

	wg sync.WaitGroup

	mu        sync.Mutex
	work      *sync.Cond    // signalled when items grows or the store closes
	room      chan struct{} // closed and replaced when a write finishes
	items     []queuedEntry // waiting, oldest first
	closed    bool
	congested bool  // a wait for room ran out; see QueueWait
	queued    int64 // size of the writes waiting or being written
	mem       int64 // memory they hold
	pending   int   // writes waiting or being written
	idle      []chan struct{}
	seq       uint64      // orders enqueues and deletes
	deleted   []tombstone // deletes issued while writes were pending
	writing   []inflight  // shared writes under way
	q         QueueStats  // peaks and counters

	lastWarn, lastDropWarn atomic.Int64 // unix nanoseconds of the last Warn-level logs

	c counters
}

// warnEvery rate-limits tier-failure warnings: an unreachable bucket would
// otherwise log once per lookup. The rest go to Debug; Stats counts all.
const warnEvery = time.Minute

func (t *Tiered) warn(msg string, args ...any) {
	t.warnOn(&t.lastWarn, msg, args...)
}

func (t *Tiered) warnOn(last *atomic.Int64, msg string, args ...any) {
	now := time.Now().UnixNano()
	l := last.Load()
	if now-l >= int64(warnEvery) && last.CompareAndSwap(l, now) {
		t.log.Warn(msg, args...)
		return
	}
	t.log.Debug(msg, args...)
}

// queuedEntry is a queued shared write: of an entry or of a manifest, held
// in memory or, spooled, named by its key to be read back from the spool.
type queuedEntry struct {
	e        *Entry    // the entry, when held
	m        *Manifest // the manifest, when held
	key      Key       // the entry's key; for a manifest its Xorb
	manifest bool
	hashes   [sha256.Size]byte // spooled entry: digest of its chunk hashes
	size     int64             // what it counts against QueueBytes
	seq      uint64
}

// memSize is the memory q holds while queued.
func (q *queuedEntry) memSize() int64 {
	switch {
	case q.e != nil:
		return int64(len(q.e.Data)) + queuedEntryMem
	case q.m != nil:
		return q.size + queuedEntryMem
	}
	return queuedEntryMem
}

// hashesDigest is what a spooled entry remembers of its content: the entry
// read back must hold exactly the chunk hashes that were proven and Put.
func hashesDigest(hs []merklehash.Hash) [sha256.Size]byte {
	h := sha256.New()
	for _, x := range hs {
		h.Write(x[:])
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// inflight is a shared write under way; done closes once it finished,
// including the undo of a Delete that landed meanwhile.
type inflight struct {
	key  Key
	done chan struct{}
}

// tombstone records a Delete so that shared writes queued before it are not
// carried out (or are undone) afterwards.
type tombstone struct {
	key Key
	seq uint64
}

var (
	_ Store         = (*Tiered)(nil)
	_ ManifestStore = (*Tiered)(nil)
	_ StatsReporter = (*Tiered)(nil)
)

// NewTiered composes local and shared. Unless SyncShared is set it starts
// the shared-write workers; call Close to stop them.
func NewTiered(local, shared Store, cfg TieredConfig) (*Tiered, error) {
	if local == nil || shared == nil {
		return nil, errors.New("cache: tiered store needs both tiers")
	}
	if cfg.QueueBytes < 0 || cfg.Workers < 0 || cfg.WriteTimeout < 0 || cfg.QueueWait < 0 {
		return nil, errors.New("cache: negative tiered queue setting")
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = defaultQueueBytes
	}
	if cfg.Workers == 0 {
		cfg.Workers = defaultQueueWorkers
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = defaultWriteTimeout
	}
	if cfg.QueueWait == 0 {
		cfg.QueueWait = defaultQueueWait
	}
	if cfg.Spool != nil && cfg.Spool.cfg.MaxBytes > 0 {
		// The waiting entries are the disk's newest: keeping them under
		// half of it keeps them clear of its eviction.
		cfg.QueueBytes = min(cfg.QueueBytes, max(cfg.Spool.cfg.MaxBytes/2, 1))
	}
	t := &Tiered{local: local, shared: shared, cfg: cfg, log: cfg.Logger, room: make(chan struct{})}
	t.work = sync.NewCond(&t.mu)
	t.q.Limit = cfg.QueueBytes
	t.mlocal, _ = local.(ManifestStore)
	t.mshared, _ = shared.(ManifestStore)
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if !cfg.SyncShared {
		for range cfg.Workers {
			t.wg.Add(1)
			go t.worker()
		}
	}
	return t, nil
}

// Local returns the local tier (for its Stats).
func (t *Tiered) Local() Store { return t.local }

// Shared returns the shared tier (for its Stats).
func (t *Tiered) Shared() Store { return t.shared }

// Get implements Store. When both tiers miss the result is ErrNotFound,
// unless a tier failed, in which case that failure is returned.
func (t *Tiered) Get(ctx context.Context, xorb merklehash.Hash, start, end uint32) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkRange(start, end); err != nil {
		return nil, err
	}
	var failure error
	e, err := t.local.Get(ctx, xorb, start, end)
	switch {
	case err == nil:
		t.c.hit(len(e.Data))
		return e, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case !errors.Is(err, ErrNotFound):
		t.warn("cache: local tier get failed", "err", err)
		t.c.errors.Add(1)
		failure = err
	}
	e, err = t.shared.Get(ctx, xorb, start, end)
	switch {
	case err == nil:
		if perr := t.local.Put(ctx, e); perr != nil && ctx.Err() == nil {
			t.warn("cache: filling local tier failed", "key", e.Key().String(), "err", perr)
		}
		t.c.hit(len(e.Data))
		return e, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case !errors.Is(err, ErrNotFound):
		t.warn("cache: shared tier get failed", "err", err)
		t.c.errors.Add(1)
		failure = err
	}
	t.c.misses.Add(1)
	if failure != nil {
		return nil, failure
	}
	return nil, err
}

// Put implements Store. It returns the local tier's error; with SyncShared
// it returns both tiers' errors joined. When the queue is full it waits for
// room, at most QueueWait or until ctx is done.
func (t *Tiered) Put(ctx context.Context, e *Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.Validate(); err != nil {
		return err
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return ErrClosed
	}
	lerr := t.local.Put(ctx, e)
	if lerr != nil && ctx.Err() == nil && !errors.Is(lerr, ErrTooLarge) {
		t.warn("cache: local tier put failed", "key", e.Key().String(), "err", lerr)
		t.c.errors.Add(1)
	}
	if t.cfg.SyncShared {
		serr := t.shared.Put(ctx, e)
		if serr != nil && ctx.Err() == nil {
			t.warn("cache: shared tier put failed", "key", e.Key().String(), "err", serr)
			t.c.errors.Add(1)
		}
		if lerr == nil && serr == nil {
			t.c.put(len(e.Data))
		}
		return errors.Join(lerr, serr)
	}
	q := queuedEntry{key: e.Key(), size: int64(len(e.Data))}
	if t.cfg.Spool != nil && lerr == nil {
		// On disk now: remember what was proven, not the bytes.
		q.hashes = hashesDigest(e.Hashes)
	} else {
		q.e = e
	}
	t.enqueue(ctx, q)
	if lerr == nil {
		t.c.put(len(e.Data))
	}
	return lerr
}

// fits reports whether a write of size n may join the queue now. An empty
// queue takes any write, so that one larger than QueueBytes is not refused
// for ever. The caller holds t.mu.
func (t *Tiered) fits(n int64) bool {
	return t.pending == 0 || (t.queued+n <= t.cfg.QueueBytes && len(t.items) < maxQueueEntries)
}

// enqueue hands q (without its sequence number) to the shared-write
// workers. When the queue is full it waits for room, at most QueueWait or
// until ctx is done, and then drops q (counted and logged). A closed store
// drops it at once.
func (t *Tiered) enqueue(ctx context.Context, q queuedEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var timeout <-chan time.Time
	for !t.fits(q.size) {
		if t.closed {
			t.dropLocked(q, "store closed")
			return
		}
		if t.congested {
			t.dropLocked(q, "queue full (congested: a wait for room already ran out)")
			return
		}
		if timeout == nil {
			t.q.Waits++
			tm := time.NewTimer(t.cfg.QueueWait)
			defer tm.Stop()
			timeout = tm.C
		}
		room := t.room
		t.mu.Unlock()
		select {
		case <-room:
			t.mu.Lock()
		case <-timeout:
			t.mu.Lock()
			if t.fits(q.size) {
				continue
			}
			t.congested = true
			t.dropLocked(q, "queue full for "+t.cfg.QueueWait.String())
			return
		case <-ctx.Done():
			t.mu.Lock()
			t.dropLocked(q, "the writer's context ended while waiting for room")
			return
		}
	}
	if t.closed {
		t.dropLocked(q, "store closed")
		return
	}
	t.seq++
	q.seq = t.seq
	if q.e == nil && q.m == nil {
		t.q.Spooled++
	}
	t.items = append(t.items, q)
	t.queued += q.size
	t.mem += q.memSize()
	t.pending++
	t.q.PeakBytes = max(t.q.PeakBytes, t.queued)
	t.q.PeakMemBytes = max(t.q.PeakMemBytes, t.mem)
	t.work.Signal()
}

// dropLocked counts and logs a shared write given up. The caller holds
// t.mu.
func (t *Tiered) dropLocked(q queuedEntry, why string) {
	t.c.dropped.Add(1)
	t.q.Dropped++
	t.warnOn(&t.lastDropWarn, "cache: a write to the shared tier was dropped", "key", q.String(), "reason", why,
		"dropped_total", t.q.Dropped, "queue_bytes", t.queued, "queue_limit", t.cfg.QueueBytes)
}

// drop is dropLocked for a caller that does not hold t.mu.
func (t *Tiered) drop(q queuedEntry, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropLocked(q, why)
}

// String names q in logs.
func (q queuedEntry) String() string {
	if q.manifest {
		return "manifest " + q.key.Xorb.String()
	}
	return q.key.String()
}

// deletedSince reports whether a Delete issued after the enqueue numbered
// seq overlaps k. The caller holds t.mu.
func (t *Tiered) deletedSince(k Key, seq uint64) bool {
	for _, d := range t.deleted {
		if d.seq > seq && d.key.Overlaps(k) {
			return true
		}
	}
	return false
}

func (t *Tiered) worker() {
	defer t.wg.Done()
	for {
		t.mu.Lock()
		for len(t.items) == 0 && !t.closed {
			t.work.Wait()
		}
		if len(t.items) == 0 {
			t.mu.Unlock()
			return
		}
		q := t.items[0]
		t.items[0] = queuedEntry{}
		t.items = t.items[1:]
		t.mu.Unlock()
		if q.manifest {
			t.writeManifest(q)
		} else {
			t.write(q)
		}
		t.mu.Lock()
		t.queued -= q.size
		t.mem -= q.memSize()
		t.pending--
		if t.congested && t.queued <= t.cfg.QueueBytes/2 {
			t.congested = false
		}
		close(t.room)
		t.room = make(chan struct{})
		if t.pending == 0 {
			t.deleted = nil
			t.items = nil // let go of the drained backing array
			for _, ch := range t.idle {
				close(ch)
			}
			t.idle = nil
		}
		t.mu.Unlock()
	}
}

// load returns the entry q writes: held, or read back from the spool.
func (t *Tiered) load(ctx context.Context, q queuedEntry) (*Entry, error) {
	if q.e != nil {
		return q.e, nil
	}
	e, err := t.cfg.Spool.readBack(ctx, q.key)
	if err != nil {
		return nil, err
	}
	if hashesDigest(e.Hashes) != q.hashes {
		return nil, fmt.Errorf("%w: %s on disk holds other chunk hashes than were put", ErrInvalidEntry, q.key)
	}
	return e, nil
}

// write performs one queued shared write, unless a later Delete covers it;
// a Delete that lands while the write is in flight is repeated after it.
func (t *Tiered) write(q queuedEntry) {
	k := q.key
	t.mu.Lock()
	if t.deletedSince(k, q.seq) {
		t.mu.Unlock()
		return
	}
	done := make(chan struct{})
	t.writing = append(t.writing, inflight{key: k, done: done})
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		for i, w := range t.writing {
			if w.done == done {
				t.writing = append(t.writing[:i], t.writing[i+1:]...)
				break
			}
		}
		t.mu.Unlock()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.WriteTimeout)
	defer cancel()
	e, err := t.load(ctx, q)
	if err != nil {
		t.drop(q, "reading it back from the disk tier: "+err.Error())
		return
	}
	if err := t.shared.Put(ctx, e); err != nil {
		t.warn("cache: shared tier put failed", "key", k.String(), "err", err)
		t.c.errors.Add(1)
		return
	}
	t.mu.Lock()
	undo := t.deletedSince(k, q.seq)
	t.mu.Unlock()
	if undo {
		if err := t.shared.Delete(ctx, k.Xorb, k.Start, k.End); err != nil {
			t.warn("cache: shared tier delete failed", "key", k.String(), "err", err)
			t.c.errors.Add(1)
		}
	}
}

// writeManifest performs one queued shared manifest write.
func (t *Tiered) writeManifest(q queuedEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.WriteTimeout)
	defer cancel()
	m := q.m
	if m == nil {
		var err error
		// GetManifest verifies the manifest against the xorb hash.
		if m, err = t.cfg.Spool.GetManifest(ctx, q.key.Xorb); err != nil {
			t.drop(q, "reading it back from the disk tier: "+err.Error())
			return
		}
	}
	if err := t.mshared.PutManifest(ctx, m); err != nil {
		t.warn("cache: shared tier manifest put failed", "xorb", m.Xorb.String(), "err", err)
		t.c.errors.Add(1)
	}
}

// PutManifest implements ManifestStore. It verifies m, stores it in the
// local tier and then in the shared tier, queued unless SyncShared. It
// returns the local tier's error; with SyncShared both tiers' errors joined.
func (t *Tiered) PutManifest(ctx context.Context, m *Manifest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.Verify(); err != nil {
		return err
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return ErrClosed
	}
	var lerr error
	if t.mlocal != nil {
		lerr = t.mlocal.PutManifest(ctx, m)
		if lerr != nil && ctx.Err() == nil && !errors.Is(lerr, ErrTooLarge) {
			t.warn("cache: local tier manifest put failed", "xorb", m.Xorb.String(), "err", lerr)
			t.c.errors.Add(1)
		}
	}
	if t.mshared == nil {
		return lerr
	}
	if t.cfg.SyncShared {
		serr := t.mshared.PutManifest(ctx, m)
		if serr != nil && ctx.Err() == nil {
			t.warn("cache: shared tier manifest put failed", "xorb", m.Xorb.String(), "err", serr)
			t.c.errors.Add(1)
		}
		return errors.Join(lerr, serr)
	}
	q := queuedEntry{key: Key{Xorb: m.Xorb}, manifest: true, size: storedManifestSize(len(m.Hashes))}
	if t.cfg.Spool == nil || t.mlocal == nil || lerr != nil {
		// The queue holds m until a worker writes it: keep a copy that
		// the caller cannot change meanwhile.
		q.m = cloneManifest(m)
	}
	t.enqueue(ctx, q)
	return lerr
}

// GetManifest implements ManifestStore: the local tier, else the shared
// tier, whose hit is stored in the local tier before it is returned. When
// both miss the result is ErrNotFound, unless a tier failed, in which case
// that failure is returned.
func (t *Tiered) GetManifest(ctx context.Context, xorb merklehash.Hash) (*Manifest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var failure error
	if t.mlocal != nil {
		m, err := t.mlocal.GetManifest(ctx, xorb)
		switch {
		case err == nil:
			return m, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case !errors.Is(err, ErrNotFound):
			t.warn("cache: local tier manifest get failed", "err", err)
			t.c.errors.Add(1)
			failure = err
		}
	}
	if t.mshared != nil {
		m, err := t.mshared.GetManifest(ctx, xorb)
		switch {
		case err == nil:
			if t.mlocal != nil {
				if perr := t.mlocal.PutManifest(ctx, m); perr != nil && ctx.Err() == nil {
					t.warn("cache: filling local tier with a manifest failed", "xorb", xorb.String(), "err", perr)
				}
			}
			return m, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case !errors.Is(err, ErrNotFound):
			t.warn("cache: shared tier manifest get failed", "err", err)
			t.c.errors.Add(1)
			failure = err
		}
	}
	if failure != nil {
		return nil, failure
	}
	return nil, fmt.Errorf("%w: manifest of %s", ErrNotFound, xorb)
}

// Delete implements Store: it deletes from both tiers and cancels the
// queued shared writes it overlaps. It returns both tiers' errors joined.
func (t *Tiered) Delete(ctx context.Context, xorb merklehash.Hash, start, end uint32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkRange(start, end); err != nil {
		return err
	}
	t.mu.Lock()
	if t.pending > 0 {
		t.seq++
		if len(t.deleted) >= maxTombstones {
			// Deletes are rare (failed verifications); forget the oldest.
			t.deleted = append(t.deleted[:0], t.deleted[maxTombstones/2:]...)
		}
		t.deleted = append(t.deleted, tombstone{key: Key{Xorb: xorb, Start: start, End: end}, seq: t.seq})
	}
	// A shared write already under way may land after the deletes below; it
	// undoes itself when it sees the tombstone. Wait for that, so that no Get
	// after Delete returns can find the entry.
	k := Key{Xorb: xorb, Start: start, End: end}
	var wait []chan struct{}
	for _, w := range t.writing {
		if w.key.Overlaps(k) {
			wait = append(wait, w.done)
		}
	}
	t.mu.Unlock()
	for _, ch := range wait {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(t.local.Delete(ctx, xorb, start, end), t.shared.Delete(ctx, xorb, start, end))
}

// Flush waits until every queued shared write has finished, or ctx is
// done; then it logs at Warn how many were still queued: at shutdown,
// those are lost to the shared tier (they stay in the local tier).
func (t *Tiered) Flush(ctx context.Context) error {
	t.mu.Lock()
	if t.pending == 0 {
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
		t.mu.Lock()
		n, b := t.pending, t.queued
		t.mu.Unlock()
		t.log.Warn("cache: writes to the shared tier still queued", "writes", n, "bytes", b, "err", ctx.Err())
		return ctx.Err()
	}
}

// Close stops accepting writes, finishes the queued shared writes (each
// bounded by WriteTimeout) and stops the workers. Puts waiting for room
// drop their shared write; later Puts fail with ErrClosed; Gets keep
// working. It does not close the tiers.
func (t *Tiered) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.work.Broadcast()
	close(t.room)
	t.room = make(chan struct{})
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}

// Queue returns the state of the shared-write queue.
func (t *Tiered) Queue() QueueStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.q
	q.Entries, q.Bytes, q.MemBytes = t.pending, t.queued, t.mem
	return q
}

// Stats implements StatsReporter: hits and misses of the two tiers taken
// together, Puts and Dropped of this store, and the local tier's levels.
// The tiers' own Stats are available through Local and Shared.
func (t *Tiered) Stats() Stats {
	s := t.c.snapshot()
	if r, ok := t.local.(StatsReporter); ok {
		l := r.Stats()
		s.Entries, s.Manifests, s.Size, s.Capacity = l.Entries, l.Manifests, l.Size, l.Capacity
	}
	return s
}
