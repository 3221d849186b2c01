package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

const (
	defaultQueueBytes   = 256 << 20
	defaultQueueWorkers = 2
	defaultWriteTimeout = 2 * time.Minute
	maxTombstones       = 4096
)

// TieredConfig configures a Tiered store.
type TieredConfig struct {
	// SyncShared makes Put write the shared tier before returning instead
	// of queueing the write.
	SyncShared bool
	// QueueBytes bounds the decoded bytes waiting for the shared tier;
	// a Put that would exceed it skips the shared write (counted in
	// Stats.Dropped). 0 means 256 MiB.
	QueueBytes int64
	// Workers is the number of concurrent shared writes; 0 means 2.
	Workers int
	// WriteTimeout bounds one queued shared write; 0 means 2 minutes.
	WriteTimeout time.Duration
	// Logger receives tier failures (at most one Warn a minute, the rest at
	// Debug); nil discards them.
	Logger *slog.Logger
}

// Tiered is a Store made of a fast local tier (memory or disk) and a shared
// tier (an object store used by every instance).
//
// Get tries the local tier, then the shared tier; a shared hit is written to
// the local tier before it is returned. A failing tier is logged and passed
// over. Put writes the local tier, then the shared tier: by default through a
// bounded queue drained by background workers on their own contexts, so a
// slow object store never holds up a download, at the price that a write may
// be dropped (queue full) or lost (process exit before Close). Close drains
// the queue. Delete deletes from both tiers synchronously and cancels (or
// undoes) the queued shared writes it overlaps.
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

	queue chan queuedEntry
	wg    sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	queued  int64 // decoded bytes waiting or being written
	pending int   // entries waiting or being written
	idle    []chan struct{}
	seq     uint64      // orders enqueues and deletes
	deleted []tombstone // deletes issued while writes were pending
	writing []inflight  // shared writes under way

	lastWarn atomic.Int64 // unix nanoseconds of the last Warn-level log

	c counters
}

// warnEvery rate-limits tier-failure warnings: an unreachable bucket would
// otherwise log once per lookup. The rest go to Debug; Stats counts all.
const warnEvery = time.Minute

func (t *Tiered) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := t.lastWarn.Load()
	if now-last >= int64(warnEvery) && t.lastWarn.CompareAndSwap(last, now) {
		t.log.Warn(msg, args...)
		return
	}
	t.log.Debug(msg, args...)
}

// queuedEntry is a queued shared write: of an entry or of a manifest.
type queuedEntry struct {
	e   *Entry
	m   *Manifest
	seq uint64
}

// size is what q counts against QueueBytes: an entry's decoded bytes, a
// manifest's stored size.
func (q queuedEntry) size() int64 {
	if q.m != nil {
		return storedManifestSize(len(q.m.Hashes))
	}
	return int64(len(q.e.Data))
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
	if cfg.QueueBytes < 0 || cfg.Workers < 0 || cfg.WriteTimeout < 0 {
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
	t := &Tiered{local: local, shared: shared, cfg: cfg, log: cfg.Logger}
	t.mlocal, _ = local.(ManifestStore)
	t.mshared, _ = shared.(ManifestStore)
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if !cfg.SyncShared {
		// The byte budget is the real bound; the channel only needs room
		// for as many entries as the budget can hold of small ones.
		t.queue = make(chan queuedEntry, 4096)
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
// it returns both tiers' errors joined.
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
	t.enqueue(queuedEntry{e: e})
	if lerr == nil {
		t.c.put(len(e.Data))
	}
	return lerr
}

// enqueue hands q (without its sequence number) to the shared-write
// workers unless the byte budget is spent or the store is closed.
func (t *Tiered) enqueue(q queuedEntry) {
	n := q.size()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.queued+n > t.cfg.QueueBytes {
		t.c.dropped.Add(1)
		return
	}
	t.seq++
	q.seq = t.seq
	select {
	case t.queue <- q:
		t.queued += n
		t.pending++
	default:
		t.c.dropped.Add(1)
	}
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
	for q := range t.queue {
		if q.m != nil {
			t.writeManifest(q.m)
		} else {
			t.write(q)
		}
		t.mu.Lock()
		t.queued -= q.size()
		t.pending--
		if t.pending == 0 {
			t.deleted = nil
			for _, ch := range t.idle {
				close(ch)
			}
			t.idle = nil
		}
		t.mu.Unlock()
	}
}

// write performs one queued shared write, unless a later Delete covers it;
// a Delete that lands while the write is in flight is repeated after it.
func (t *Tiered) write(q queuedEntry) {
	k := q.e.Key()
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
	if err := t.shared.Put(ctx, q.e); err != nil {
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
func (t *Tiered) writeManifest(m *Manifest) {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.WriteTimeout)
	defer cancel()
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
	// The queue holds m until a worker writes it: keep a copy that the
	// caller cannot change meanwhile.
	t.enqueue(queuedEntry{m: cloneManifest(m)})
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

// Flush waits until every queued shared write has finished, or ctx is done.
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
		return ctx.Err()
	}
}

// Close stops accepting writes, finishes the queued shared writes (each
// bounded by WriteTimeout) and stops the workers. Later Puts fail with
// ErrClosed; Gets keep working. It does not close the tiers.
func (t *Tiered) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	if t.queue != nil {
		close(t.queue)
	}
	t.mu.Unlock()
	t.wg.Wait()
	return nil
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
