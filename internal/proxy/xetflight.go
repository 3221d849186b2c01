package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Single flight on the xorb ranges served to Xet clients (xetcas.go).
//
// A xorbReader that fetches chunks of a xorb from upstream while the
// xorb's manifest is known fills the cache with them as they pass, one
// segment at a time: while it does, it is a flight, registered here by
// xorb and chunk range. Another reader that misses the cache on chunks a
// flight is about to store (a range served as records: it reads the
// cache) waits for the flight to store their segment, then reads them
// from the cache, each chunk checked against the manifest as any cached
// chunk is. Nothing but the cache passes between them: a follower never
// sees its leader's upstream URL or token, and reads only the chunks of
// the xorb range its own ticket names, so sharing by xorb hash is safe
// (chunks are content-addressed and checked).
//
// The flight runs inside its leader's request, at the pace of the
// leader's client. A flight ends when its reader fails, is closed (its
// client went away) or has produced its window. A follower whose flight
// ended before storing the chunks it waits for looks them up again, and
// the first of those that miss leads a new flight that the others join
// (at most joinRetries times in a row, then each fetches on its own). A
// follower fetches on its own when the cache lacks the chunks once its
// flight has stored them (the fill budget was spent, the store dropped
// them), or when the flight moves no chunk for xorbStall (the leader's
// client stopped reading). A follower waits holding no memory (no cache
// entry, no decoder; xetmem.go), and its own cancellation only stops its
// wait.

// defaultXorbStall is how long a follower waits for a flight that decodes
// nothing before it fetches on its own.
const defaultXorbStall = 5 * time.Second

// joinRetries bounds the cache lookups a reader repeats because flights
// stored or ended while it looked (xorbFlights.seq moved).
const joinRetries = 3

// xorbFlights is an engine's set of xorb flights, by xorb.
type xorbFlights struct {
	mu     sync.Mutex
	byXorb map[merklehash.Hash][]*xorbFlight
	// seq moves each time a flight has stored a segment or ended: a
	// reader whose cache lookup missed, and that then finds no flight to
	// join, looks again when seq moved since before its lookup (the
	// chunks may have landed in between) instead of fetching them.
	seq atomic.Uint64
}

func newXorbFlights() *xorbFlights {
	return &xorbFlights{byXorb: make(map[merklehash.Hash][]*xorbFlight)}
}

// xorbFlight is one reader's upstream fetch of chunks [lo, hi) of a xorb
// into the cache.
type xorbFlight struct {
	xorb   merklehash.Hash
	lo, hi uint32
	// moves counts the chunks the leader decoded or skipped, so that
	// followers see whether it moves.
	moves atomic.Uint64

	mu     sync.Mutex
	stored uint32        // the leader's fill is done with chunks [lo, stored): stored, or not kept
	ended  bool          // the leader stopped
	moved  chan struct{} // closed (and replaced) when stored or ended changes
}

// mark returns the table's sequence, to pass to joinOrLead after a cache
// lookup.
func (t *xorbFlights) mark() uint64 { return t.seq.Load() }

// joinOrLead returns the flight that will store chunks [c, need) of x
// (need: the end of the lookup that missed), or, when none will and no
// flight stored or ended since mark, registers xr's own flight of chunks
// [c, hi) and returns nil. retry says to look the cache up again.
func (t *xorbFlights) joinOrLead(xr *xorbReader, x merklehash.Hash, c, need, hi uint32, since uint64) (fl *xorbFlight, retry bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.byXorb[x] {
		if f.lo <= c && need <= f.hi && f.waitable(c) {
			return f, false
		}
	}
	if t.seq.Load() != since {
		return nil, true
	}
	xr.flight = t.addLocked(x, c, hi)
	return nil, false
}

// lead registers xr's flight of chunks [c, hi) of x.
func (t *xorbFlights) lead(xr *xorbReader, x merklehash.Hash, c, hi uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	xr.flight = t.addLocked(x, c, hi)
}

func (t *xorbFlights) addLocked(x merklehash.Hash, c, hi uint32) *xorbFlight {
	f := &xorbFlight{xorb: x, lo: c, hi: hi, stored: c, moved: make(chan struct{})}
	t.byXorb[x] = append(t.byXorb[x], f)
	return f
}

// waitable reports whether the flight has yet to store chunk c.
func (f *xorbFlight) waitable(c uint32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.ended && f.stored <= c
}

// stored records that the leader's fill is done with the chunks before
// upto (they are in the cache if it kept them).
func (t *xorbFlights) storedUpTo(f *xorbFlight, upto uint32) {
	f.mu.Lock()
	f.stored = upto
	close(f.moved)
	f.moved = make(chan struct{})
	f.mu.Unlock()
	t.seq.Add(1)
}

// end takes f out of the table and wakes its followers. It may run more
// than once.
func (t *xorbFlights) end(f *xorbFlight) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f.mu.Lock()
	if f.ended {
		f.mu.Unlock()
		return
	}
	f.ended = true
	close(f.moved)
	f.mu.Unlock()
	list := t.byXorb[f.xorb]
	for i, x := range list {
		if x == f {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.byXorb, f.xorb)
	} else {
		t.byXorb[f.xorb] = list
	}
	t.seq.Add(1)
}

// inFlight returns the number of flights registered.
func (t *xorbFlights) inFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.byXorb {
		n += len(l)
	}
	return n
}

// await waits until f has stored chunk c (stored: look the cache up
// again) or ended (ended: the chunk may not be there), or until it moved
// no chunk for stall (both false), or ctx ends.
func (f *xorbFlight) await(ctx context.Context, c uint32, stall time.Duration) (stored, ended bool, err error) {
	timer := time.NewTimer(stall)
	defer timer.Stop()
	last := f.moves.Load()
	for {
		f.mu.Lock()
		stored, ended, moved := f.stored > c, f.ended, f.moved
		f.mu.Unlock()
		if stored || ended {
			return stored, ended, nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return false, false, ctx.Err()
		case <-timer.C:
			n := f.moves.Load()
			if n == last {
				return false, false, nil
			}
			last = n
			timer.Reset(stall)
		}
	}
}

// missed decides what a LayoutRecords reader does after its cache lookup
// for chunks [xr.c, need) missed, mark being the flights' sequence before
// the lookup: true to look the cache up again (a flight stored or ended
// meanwhile, or it waited for one), false to fetch the chunks from
// upstream (registered as a flight of its own when no other will store
// them, so that the others wait for it).
func (xr *xorbReader) missed(mark uint64, need uint32) (bool, error) {
	t := xr.e.xorbFlights
	if t == nil || xr.flight != nil || xr.solo {
		return false, nil
	}
	if xr.passed || xr.orphaned > joinRetries {
		// A flight stored these chunks and the cache does not have
		// them (not kept, or dropped since), or flight after flight
		// ended before storing them: no more waiting for this range.
		xr.solo = true
		return false, nil
	}
	fl, retry := t.joinOrLead(xr, xr.src.Xorb, xr.c, need, xr.src.Range.Chunks.End, mark)
	if retry {
		xr.retries++
		if xr.retries <= joinRetries {
			return true, nil
		}
		xr.solo = true
		return false, nil
	}
	if fl == nil {
		return false, nil // leads
	}
	xr.e.stats.casJoins.Add(1)
	stored, ended, err := fl.await(xr.ctx, xr.c, xr.e.xorbStall)
	switch {
	case err != nil:
		return false, err
	case stored:
		xr.passed = true
	case ended:
		// It failed or its client went away before the chunks: they
		// are looked up again, and then fetched by one of those who
		// waited, the others waiting for it.
		xr.orphaned++
	default:
		xr.e.stats.casJoinStalls.Add(1)
		xr.solo = true
		return false, nil
	}
	return true, nil
}

// endFlight ends xr's flight, if it leads one.
func (xr *xorbReader) endFlight() {
	if xr.flight != nil {
		xr.e.xorbFlights.end(xr.flight)
		xr.flight = nil
	}
}
