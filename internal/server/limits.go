package server

import (
	"context"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// admissionCharge is the most a download reserves of the byte bound. The
// memory of read-ahead is bounded where it is spent, by the engine's
// budget (fetches wait for room there, and the chunk a reader waits for
// always goes ahead), so admission only needs to keep a floor per stream:
// a reader of cached or shared data costs little, and the 17th reader of
// a file 16 others stream must not be refused for read-ahead it will not
// use.
const admissionCharge = 1 << 20

// admission bounds the work the server takes on: a number of concurrent
// downloads and a total of reserved bytes (min(admissionCharge, read-ahead,
// length) each). A download that does not fit waits in a FIFO queue of at
// most queueMax entries for at most queueTimeout; it is refused (503 +
// Retry-After) only when the queue is full, the wait times out, or the
// server drains.
type admission struct {
	m *Metrics

	mu           sync.Mutex
	maxSlots     int
	slots        int
	maxBytes     int64
	reserved     int64
	charge       int64
	draining     bool
	queueMax     int
	queueTimeout time.Duration
	queue        []*admitWaiter
}

// admitWaiter is a queued download. state is guarded by admission.mu;
// done is closed when it leaves waitingState.
type admitWaiter struct {
	need  int64
	state int
	done  chan struct{}
}

const (
	waitingState = iota
	grantedState
	refusedState
)

func newAdmission(c *Config, m *Metrics) *admission {
	a := &admission{m: m, maxSlots: c.MaxDownloads, maxBytes: c.MaxBuffer,
		charge: min(c.ReadAhead, admissionCharge), queueMax: c.queueMax(), queueTimeout: c.QueueTimeout}
	if a.queueTimeout <= 0 {
		a.queueMax = 0
	}
	return a
}

// fits reports whether need more bytes and one more slot fit now.
func (a *admission) fits(need int64) bool {
	return a.slots < a.maxSlots && a.reserved+need <= a.maxBytes
}

// fullReason names the bound that keeps a download of need bytes out.
func (a *admission) fullReason(need int64) string {
	if a.slots >= a.maxSlots {
		return "slots"
	}
	return "buffer"
}

// take books a download of need bytes; a.mu is held.
func (a *admission) take(need int64) {
	a.slots++
	a.reserved += need
	a.m.inFlight.Inc()
	a.m.reserved.Add(float64(need))
}

// releaser gives back what take booked, once.
func (a *admission) releaser(need int64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			a.slots--
			a.reserved -= need
			a.dispatch()
			a.mu.Unlock()
			a.m.inFlight.Dec()
			a.m.reserved.Sub(float64(need))
		})
	}
}

// dispatch admits the queued downloads that fit, in order; a.mu is held.
// The head blocks those behind it so that a large download is not
// starved by small ones.
func (a *admission) dispatch() {
	for len(a.queue) > 0 && a.fits(a.queue[0].need) {
		w := a.queue[0]
		a.queue[0] = nil
		a.queue = a.queue[1:]
		a.take(w.need)
		w.state = grantedState
		close(w.done)
	}
	a.m.queued.Set(float64(len(a.queue)))
}

// acquire reserves a slot and the charge of a download of length bytes,
// waiting in the queue when they are not free. It returns errOverloaded
// when refused, or ctx's error when ctx ends first. release must be
// called exactly once when err is nil.
func (a *admission) acquire(ctx context.Context, length int64) (release func(), err error) {
	need := min(a.charge, max(length, 0))
	a.mu.Lock()
	if a.draining {
		a.mu.Unlock()
		a.m.rejected.WithLabelValues("draining").Inc()
		return nil, errOverloaded
	}
	if len(a.queue) == 0 && a.fits(need) {
		a.take(need)
		a.mu.Unlock()
		return a.releaser(need), nil
	}
	if len(a.queue) >= a.queueMax {
		reason := a.fullReason(need)
		if a.queueMax > 0 {
			reason = "queue_full"
		}
		a.mu.Unlock()
		a.m.rejected.WithLabelValues(reason).Inc()
		return nil, errOverloaded
	}
	w := &admitWaiter{need: need, done: make(chan struct{})}
	a.queue = append(a.queue, w)
	a.m.queued.Set(float64(len(a.queue)))
	a.mu.Unlock()

	start := time.Now()
	t := time.NewTimer(a.queueTimeout)
	defer t.Stop()
	var cause error
	select {
	case <-w.done:
	case <-t.C:
		cause = errOverloaded
	case <-ctx.Done():
		cause = ctx.Err()
	}
	a.mu.Lock()
	state := w.state
	if state == waitingState {
		a.unqueue(w)
		a.dispatch() // the head may have blocked smaller ones behind it
	}
	a.mu.Unlock()
	a.m.queueWait.Observe(time.Since(start).Seconds())
	switch state {
	case grantedState:
		return a.releaser(need), nil
	case refusedState:
		a.m.rejected.WithLabelValues("draining").Inc()
		return nil, errOverloaded
	}
	if cause == errOverloaded {
		a.m.rejected.WithLabelValues("queue_timeout").Inc()
	}
	return nil, cause
}

// unqueue removes w from the queue; a.mu is held.
func (a *admission) unqueue(w *admitWaiter) {
	for i, q := range a.queue {
		if q == w {
			copy(a.queue[i:], a.queue[i+1:])
			a.queue[len(a.queue)-1] = nil
			a.queue = a.queue[:len(a.queue)-1]
			return
		}
	}
}

// ready reports whether a new download would be admitted now or could
// wait in the queue.
func (a *admission) ready() (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	need := min(a.charge, 64<<10)
	switch {
	case a.draining:
		return false, "draining"
	case len(a.queue) == 0 && a.fits(need), len(a.queue) < a.queueMax:
		return true, ""
	case a.queueMax > 0:
		return false, "download queue full"
	case a.slots >= a.maxSlots:
		return false, "download slots full"
	}
	return false, "read-ahead budget full"
}

// setDraining refuses new downloads and those waiting in the queue.
func (a *admission) setDraining() {
	a.mu.Lock()
	a.draining = true
	for _, w := range a.queue {
		w.state = refusedState
		close(w.done)
	}
	clear(a.queue)
	a.queue = a.queue[:0]
	a.m.queued.Set(0)
	a.mu.Unlock()
}

func (a *admission) inFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.slots
}

// queued is the number of downloads waiting for admission.
func (a *admission) queued() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.queue)
}

// admit is acquire for a download d: the wait in the queue does not count
// against the upstream timeout, whose clock stops while d waits.
func (s *Server) admit(d *download, length int64) (func(), error) {
	// Stop is false when the timer fired (d.ctx is being cancelled with
	// its cause, which ends the wait) or was stopped before.
	spent := time.Since(d.start)
	stopped := d.timer.Stop()
	if d.ctx.Err() != nil {
		return nil, context.Cause(d.ctx)
	}
	release, err := s.adm.acquire(d.ctx, length)
	if stopped { // the clock goes on where it stopped
		d.timer.Reset(max(s.cfg.UpstreamTimeout-spent, time.Millisecond))
	}
	return release, err
}

// statHash looks a Xet hash up (Engine.StatHash) under the admission
// limits. A lookup lists the repo upstream, work that costs like a download
// starting, so it takes a download slot (without read-ahead bytes: the
// engine bounds the listing itself), waiting in the queue like a download.
// The slot is given back before the download asks for its own.
func (s *Server) statHash(ctx context.Context, token string, repo hub.Repo, revision string, h merklehash.Hash) (*hub.FileMeta, error) {
	release, err := s.adm.acquire(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer release()
	return s.engine.StatHash(ctx, token, repo, revision, h)
}
