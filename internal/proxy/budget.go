package proxy

import (
	"context"
	"sync"
)

// budget is a semaphore of bytes: decoded chunks waiting to be written
// hold a share of it. A fetch that would overdraw it waits, which pauses
// its body read (TCP back-pressure does the rest), unless the stream's
// reader is waiting for that very fetch: then it goes ahead, because the
// reader is the only one that frees memory and must never wait for it.
// Read-ahead goes to the fetches nearest the reader first (see
// stream.prefetchTurn), so the budget is never held by far fetches while
// the next one starves.
type budget struct {
	mu      sync.Mutex
	used    int64
	peak    int64 // highest used, for tests and metrics
	limit   int64
	waiters int
	wake    chan struct{} // closed and replaced to wake every waiter
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, wake: make(chan struct{})}
}

// acquire takes n bytes. It grants at once when urgent reports true;
// otherwise it waits until the bytes fit in the part of the budget room
// allows the caller (room gets the limit and returns at most it; 0 means
// wait). An empty budget grants any caller with room, so a chunk larger
// than the whole budget cannot wait forever. Callers poke the budget when
// what urgent or room depend on changes.
func (b *budget) acquire(ctx context.Context, n int64, urgent func() bool, room func(limit int64) int64) error {
	_, err := b.take(ctx, func(used, limit int64) (int64, bool) {
		r := room(limit)
		return n, urgent() || (r > 0 && (used+n <= r || used == 0))
	}, nil)
	return err
}

// acquireUpTo is acquire for a read that can be cut short: it takes n
// bytes when they fit in room, and when urgent and they do not fit even
// in the whole limit, only small of them (what the reader needs next),
// so that a reader's urgent reads overdraw the budget by little. It
// returns what it took.
func (b *budget) acquireUpTo(ctx context.Context, n, small int64, urgent func() bool, room func(limit int64) int64) (int64, error) {
	return b.take(ctx, func(used, limit int64) (int64, bool) {
		r := room(limit)
		switch {
		case r > 0 && (used+n <= r || used == 0):
			return n, true
		case urgent():
			if used+n > limit {
				return min(n, small), true
			}
			return n, true
		}
		return 0, false
	}, nil)
}

// take waits until decide, called under the lock with the bytes in use
// and the limit, grants some bytes (ok), adds them to the budget and
// returns them; or until ctx ends. Each time decide refuses, before
// waiting, take calls before when it is not nil, outside the lock: a
// caller that can make room itself (a fill letting go of the segments it
// kept) does it there and reports true, and decide is asked again rather
// than waited on. take counts as a waiter while before runs, so that room
// freed meanwhile by anyone wakes it.
func (b *budget) take(ctx context.Context, decide func(used, limit int64) (n int64, ok bool), before func() bool) (int64, error) {
	b.mu.Lock()
	for {
		if n, ok := decide(b.used, b.limit); ok {
			b.used += n
			b.peak = max(b.peak, b.used)
			b.mu.Unlock()
			return n, nil
		}
		ch := b.wake
		b.waiters++
		b.mu.Unlock()
		if before != nil && before() {
			b.mu.Lock()
			b.waiters--
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			b.mu.Lock()
			b.waiters--
			b.mu.Unlock()
			return 0, ctx.Err()
		}
		b.mu.Lock()
		b.waiters--
	}
}

// release gives n bytes back.
func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.broadcast()
	b.mu.Unlock()
}

// poke wakes the waiters so they look at their urgent flag again.
func (b *budget) poke() {
	b.mu.Lock()
	b.broadcast()
	b.mu.Unlock()
}

func (b *budget) broadcast() {
	if b.waiters > 0 {
		close(b.wake)
		b.wake = make(chan struct{})
	}
}

// stats reports the bytes taken now and at most so far.
func (b *budget) stats() (used, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak
}

// Chunk buffers come from size-classed pools: 16 KiB steps up to the
// largest chunk, so a buffer wastes under 16 KiB whatever the chunk size.
const (
	classStep  = 16 << 10
	maxChunk   = 128 << 10
	classCount = maxChunk / classStep
)

var chunkPools [classCount]sync.Pool

// getBuf returns a buffer of length n (1 <= n <= maxChunk).
func getBuf(n int) *[]byte {
	c := (n - 1) / classStep
	if p, ok := chunkPools[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, (c+1)*classStep)
	return &b
}

// bufCost is what a buffer of length n holds from the budget.
func bufCost(n int) int64 { return int64((n-1)/classStep+1) * classStep }

func putBuf(p *[]byte) {
	c := cap(*p)/classStep - 1
	if c >= 0 && c < classCount && cap(*p)%classStep == 0 {
		chunkPools[c].Put(p)
	}
}

// tryAcquire takes n bytes if they fit now, without waiting.
func (b *budget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit && b.used != 0 {
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	return true
}
