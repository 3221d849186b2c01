package metacache

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/upstream"
)

// Defaults of HealthConfig.
const (
	DefaultGrace      = 30 * time.Second
	DefaultRetryEvery = 5 * time.Second
)

// HealthConfig configures a Health.
type HealthConfig struct {
	// Offline forces offline mode: nothing is sent upstream.
	Offline bool
	// Grace is how long upstream must have been unreachable, without an
	// answer in between, before the server goes offline (0 = at the first
	// failure).
	Grace time.Duration
	// RetryEvery: while offline (not forced), one request may try
	// upstream this often, to notice the Hub coming back (default
	// DefaultRetryEvery).
	RetryEvery time.Duration
}

// State is a summary of the upstream's health.
type State struct {
	// Offline: requests are answered from the caches only.
	Offline bool
	// Forced: offline by configuration (--offline).
	Forced bool
	// Since is when upstream started failing (or the server started, when
	// forced); zero while online.
	Since time.Time
	// LastError describes the last failure to reach upstream, without
	// credentials or query strings; "" if none yet.
	LastError string
	// LastOK is when upstream last answered; zero if never.
	LastOK time.Time
}

// Health tracks whether upstream answers. Safe for concurrent use.
type Health struct {
	cfg     HealthConfig
	started time.Time

	mu        sync.Mutex
	firstFail time.Time // zero: the last request reached upstream
	lastErr   string
	lastOK    time.Time
	lastTry   time.Time
}

// NewHealth returns a Health that starts online (unless forced offline).
func NewHealth(cfg HealthConfig) *Health {
	if cfg.RetryEvery <= 0 {
		cfg.RetryEvery = DefaultRetryEvery
	}
	return &Health{cfg: cfg, started: time.Now()}
}

// Offline reports whether requests are answered from the caches only.
func (h *Health) Offline() bool {
	if h == nil {
		return false
	}
	if h.cfg.Offline {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.offlineLocked(time.Now())
}

func (h *Health) offlineLocked(now time.Time) bool {
	return !h.firstFail.IsZero() && now.Sub(h.firstFail) >= h.cfg.Grace
}

// TryUpstream reports whether a request should ask upstream: always while
// online, never when forced offline, and for one request every
// RetryEvery while upstream is unreachable.
func (h *Health) TryUpstream() bool {
	if h == nil {
		return true
	}
	if h.cfg.Offline {
		return false
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.offlineLocked(now) {
		return true
	}
	if now.Sub(h.lastTry) >= h.cfg.RetryEvery {
		h.lastTry = now
		return true
	}
	return false
}

// Observe records the outcome of an upstream request: nil or an answer of
// the Hub (even 404) means upstream is there; Unreachable errors count
// towards going offline; anything else is ignored. Transport calls it for
// every request it carries.
func (h *Health) Observe(err error) {
	if h == nil {
		return
	}
	now := time.Now()
	switch {
	case Unreachable(err):
		h.mu.Lock()
		if h.firstFail.IsZero() {
			h.firstFail = now
		}
		h.lastErr = describe(err)
		h.mu.Unlock()
	case err == nil || answered(err):
		h.mu.Lock()
		h.firstFail, h.lastOK = time.Time{}, now
		h.mu.Unlock()
	}
}

// Transport wraps next so that every request it carries upstream feeds
// h: an answer (below 500) means upstream is there; a failure to connect,
// a timeout or a 5xx counts towards going offline. Health learns only
// from real traffic this way, never from answers a cache gave.
func (h *Health) Transport(next http.RoundTripper) http.RoundTripper {
	return observer{h: h, next: next}
}

type observer struct {
	h    *Health
	next http.RoundTripper
}

func (o observer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(req)
	switch {
	case err != nil:
		if req.Context().Err() == nil { // not the caller going away
			o.h.Observe(err)
		}
	case resp.StatusCode >= 500:
		o.h.Observe(&hub.Error{Op: "request", URL: upstream.Redact(req.URL.String()), Status: resp.StatusCode})
	default:
		o.h.Observe(nil)
	}
	return resp, err
}

// State returns the current summary.
func (h *Health) State() State {
	if h == nil {
		return State{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st := State{LastError: h.lastErr, LastOK: h.lastOK}
	switch {
	case h.cfg.Offline:
		st.Offline, st.Forced, st.Since = true, true, h.started
	case h.offlineLocked(time.Now()):
		st.Offline, st.Since = true, h.firstFail
	}
	return st
}

// Unreachable reports errors that mean upstream could not be reached or
// did not work: connection refused, DNS failure, timeouts, 5xx answers.
func Unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var he *hub.Error
	if errors.As(err, &he) {
		return he.Status >= 500
	}
	var ne *hub.NetError
	var ue *proxy.UpstreamError
	var nerr net.Error
	var uerr *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) || errors.As(err, &nerr) || errors.As(err, &uerr) ||
		errors.Is(err, context.DeadlineExceeded)
}

// answered reports an error that is an answer of the Hub.
func answered(err error) bool {
	var he *hub.Error
	return errors.As(err, &he) && he.Status < 500
}

// describe is a short description of err without URLs' queries (the
// errors of our clients are redacted already; a *url.Error is not).
func describe(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Op + " " + upstream.Redact(uerr.URL) + ": " + upstream.Clip(upstream.Cause(uerr.Err).Error(), 200)
	}
	return upstream.Clip(err.Error(), 300)
}
