package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// fillPutQueue is the number of complete segments a fill may decode ahead
// of its Puts; beyond it the fill waits for the cache, not for readers.
const fillPutQueue = 2

// purgeTimeout bounds the Deletes after a failed verification.
const purgeTimeout = 30 * time.Second

// warnEvery rate-limits cache warnings; the rest go to debug.
const warnEvery = time.Minute

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
	AdoptedBytes   uint64 // of PromotedBytes, moved as they were staged (cache.Adopter), not copied
	// StagingReads counts the staged entries streams read back (a fill
	// had let go of the segment before they got to it); KeptEvicted the
	// segments a fill kept in memory for its readers and let go of to
	// make room (retain.go).
	StagingReads, KeptEvicted uint64
	// ServedUnverified counts the bytes given to ranged reads whose chunk
	// no proof covered (no manifest of its xorb): term lengths were
	// checked, content could not be.
	ServedUnverified int64
	FillsInFlight    int64
	FillBufferUsed   int64 // bytes of FillBuffer held now
	// Xorb ranges served to Xet clients: the bytes handed out, and the
	// decoded chunk bytes behind them read from the cache or fetched
	// from upstream.
	XorbServed, XorbFromCache, XorbFromUpstream int64
	// XorbJoins counts the waits of xorb ranges for another one's
	// upstream fetch to store chunks they missed in the cache (one per
	// segment waited for), and XorbJoinStalls those that ended because
	// the fetch had stopped moving (xetflight.go).
	XorbJoins, XorbJoinStalls uint64
	// SentFromFile counts the bytes given to readers straight from cache
	// files (sendfile.go), a part of ServedCache and ServedShared.
	SentFromFile int64
}

type counters struct {
	served                            [numSources]atomic.Int64
	hits, misses, getErrors, hitBytes atomic.Uint64
	fills, fillErrors, fillJoins      atomic.Uint64
	fillBytes                         atomic.Uint64
	puts, putErrors, putBytes         atomic.Uint64
	fallbacks, purges                 atomic.Uint64
	unchargedReads                    atomic.Uint64 // entries read with no budget charge: stays 0 (noteCharge)
	xorbProofs, fileProofs            atomic.Uint64
	fileMismatches, proofFailures     atomic.Uint64
	staged, promoted, adopted         atomic.Uint64
	stagingReads, keptEvicted         atomic.Uint64
	unverified                        atomic.Int64
	fillsInFlight                     atomic.Int64
	lastWarn                          atomic.Int64
	// xorb ranges served to Xet clients (xetcas.go): bytes handed out,
	// and decoded chunk bytes taken from the cache or from upstream
	casServed, casFromCache, casFromUpstream atomic.Int64
	casJoins, casJoinStalls                  atomic.Uint64
	sentFromFile                             atomic.Int64
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
		ProofFailures: c.proofFailures.Load(), StagedBytes: c.staged.Load(), PromotedBytes: c.promoted.Load(), AdoptedBytes: c.adopted.Load(),
		StagingReads: c.stagingReads.Load(), KeptEvicted: c.keptEvicted.Load(),
		ServedUnverified: c.unverified.Load(),
		XorbServed:       c.casServed.Load(), XorbFromCache: c.casFromCache.Load(), XorbFromUpstream: c.casFromUpstream.Load(),
		XorbJoins: c.casJoins.Load(), XorbJoinStalls: c.casJoinStalls.Load(),
		SentFromFile: c.sentFromFile.Load(),
	}
	if e.fillBudget != nil {
		st.FillBufferUsed, _ = e.fillBudget.stats()
	}
	return st
}

// noteCharge counts a cache read whose entry was not charged to a budget
// first (held <= 0): every reader charges an entry before it reads it,
// since reading first would let many readers hold entries past the
// budget, so the count stays 0 and tests watch it.
func (e *Engine) noteCharge(held int64) {
	if held <= 0 {
		e.stats.unchargedReads.Add(1)
	}
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
// miss (counted and logged): the cache is a soft dependency. held is what
// the caller charged a budget for the entry before reading it (noteCharge).
func (e *Engine) cacheGet(ctx context.Context, x merklehash.Hash, lo, hi uint32, held int64) *cache.Entry {
	e.noteCharge(held)
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
		ent.Release()
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
