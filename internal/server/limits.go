package server

import (
	"context"
	"sync"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// admission bounds the work the server takes on: a number of concurrent
// downloads and a total of read-ahead bytes. A download reserves
// min(readAhead, its length) bytes for its lifetime; when either bound
// would be exceeded the download is refused (503 + Retry-After) before any
// upstream work starts.
type admission struct {
	m *Metrics

	mu        sync.Mutex
	maxSlots  int
	slots     int
	maxBytes  int64
	reserved  int64
	readAhead int64
	draining  bool
}

func newAdmission(c *Config, m *Metrics) *admission {
	return &admission{m: m, maxSlots: c.MaxDownloads, maxBytes: c.MaxBuffer, readAhead: c.ReadAhead}
}

// acquire reserves a slot and the read-ahead of a download of length
// bytes. release must be called exactly once when ok.
func (a *admission) acquire(length int64) (release func(), ok bool) {
	need := min(a.readAhead, max(length, 0))
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.slots >= a.maxSlots:
		a.m.rejected.WithLabelValues("slots").Inc()
		return nil, false
	case a.reserved+need > a.maxBytes:
		a.m.rejected.WithLabelValues("buffer").Inc()
		return nil, false
	}
	a.slots++
	a.reserved += need
	a.m.inFlight.Inc()
	a.m.reserved.Add(float64(need))
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			a.slots--
			a.reserved -= need
			a.mu.Unlock()
			a.m.inFlight.Dec()
			a.m.reserved.Sub(float64(need))
		})
	}, true
}

// ready reports whether a new download would be admitted now.
func (a *admission) ready() (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.draining:
		return false, "draining"
	case a.slots >= a.maxSlots:
		return false, "download slots full"
	case a.reserved+min(a.readAhead, 64<<10) > a.maxBytes:
		return false, "read-ahead budget full"
	}
	return true, ""
}

func (a *admission) setDraining() {
	a.mu.Lock()
	a.draining = true
	a.mu.Unlock()
}

func (a *admission) inFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.slots
}

// statHash looks a Xet hash up (Engine.StatHash) under the admission
// limits. A lookup lists the repo upstream, work that costs like a download
// starting, so it takes a download slot (without read-ahead bytes: the
// engine bounds the listing itself) and is refused with 503 when none is
// free. The slot is given back before the download asks for its own.
func (s *Server) statHash(ctx context.Context, token string, repo hub.Repo, revision string, h merklehash.Hash) (*hub.FileMeta, error) {
	release, ok := s.adm.acquire(0)
	if !ok {
		return nil, errOverloaded
	}
	defer release()
	return s.engine.StatHash(ctx, token, repo, revision, h)
}
