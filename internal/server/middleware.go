package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// reqInfo travels in the request context so that handlers can tell the
// access log and the metrics what they did without knowing about either.
type reqInfo struct {
	id     string
	route  string // bounded set of route names, used as a metric label
	status int    // overrides the written status (499 when the client left)
	err    error  // why the request failed, for the log line
	quiet  bool   // log at debug (health checks, metrics scrapes)
	served atomic.Int64

	// dl is set by the download routes: the line is "download" (audit.go).
	dl *dlAudit
}

type ctxKey struct{}

func infoFrom(ctx context.Context) *reqInfo {
	i, _ := ctx.Value(ctxKey{}).(*reqInfo)
	return i
}

// setRoute names the route of the request for logs and metrics.
func setRoute(r *http.Request, route string) {
	if i := infoFrom(r.Context()); i != nil {
		i.route = route
	}
}

// RequestID returns the request ID the middleware assigned to ctx's request.
func RequestID(ctx context.Context) string {
	if i := infoFrom(ctx); i != nil {
		return i.id
	}
	return ""
}

// newRequestID returns 16 random hex digits.
func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validRequestID accepts a caller's X-Request-Id only if it is short and
// plain, so it is safe in logs and headers.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// statusWriter records the status and the body bytes of an answer, and
// completes its headers (finishHeaders) just before they are sent, whoever
// wrote them: our handlers, writeError or the /api reverse proxy. It
// unwraps for http.ResponseController (write deadlines, flushing).
type statusWriter struct {
	http.ResponseWriter
	status   int
	bytes    int64
	cred     credentials
	prepared bool
}

func (w *statusWriter) prepare() {
	if !w.prepared {
		w.prepared = true
		finishHeaders(w.Header(), w.cred)
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 200 {
		w.prepare()
	}
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.prepare()
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument wraps next with request IDs, the access log, metrics and
// panic recovery. It never sees or logs credentials: the log line holds the
// method, escaped path, route, status, sizes and timings only.
//
// active counts the requests in its hands until their log line is out, so
// that shutdown can wait for the lines of the requests it cut.
func instrument(next http.Handler, log *slog.Logger, m *Metrics, active *activeRequests) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.add()
		defer active.done()
		start := time.Now()
		info := &reqInfo{route: "other"}
		if id := r.Header.Get("X-Request-Id"); validRequestID(id) {
			info.id = id
		} else {
			info.id = newRequestID()
		}
		w.Header().Set("X-Request-Id", info.id)
		sw := &statusWriter{ResponseWriter: w, cred: requestCredentials(r)}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))

		defer func() {
			p := recover()
			if p != nil && p != http.ErrAbortHandler {
				log.Error("panic", "request_id", info.id, "panic", p, "stack", string(debug.Stack()))
				if sw.status == 0 {
					writeError(sw, r, newAPIError(http.StatusInternalServerError, "InternalError", "internal error"))
				}
				p = http.ErrAbortHandler
			}
			status := sw.status
			if info.status != 0 {
				status = info.status
			} else if p != nil {
				// aborted mid-answer: the client saw a broken transfer
				if r.Context().Err() != nil {
					status = StatusClientClosedRequest
				}
			}
			if status == 0 {
				status = http.StatusOK
			}
			cut := errors.Is(context.Cause(r.Context()), errDrainDeadline)
			if cut {
				// the server cut it, not the client: say so, at warn
				if status == StatusClientClosedRequest {
					status = sw.status
					if status == 0 {
						status = http.StatusServiceUnavailable
					}
				}
				if info.err == nil || errors.Is(info.err, context.Canceled) || info.status == StatusClientClosedRequest {
					info.err = errDrainDeadline
				}
			}
			elapsed := time.Since(start)
			m.observeRequest(info.route, r.Method, status, elapsed)
			attrs := []any{
				"request_id", info.id, "method", r.Method, "path", r.URL.EscapedPath(),
				"route", info.route, "status", status, "bytes", sw.bytes,
				"duration_ms", float64(elapsed.Microseconds()) / 1000, "remote", r.RemoteAddr,
			}
			if p != nil || cut {
				attrs = append(attrs, "aborted", true)
			}
			if info.err != nil {
				attrs = append(attrs, "error", info.err.Error())
			}
			msg := "request"
			if info.dl != nil {
				msg = "download"
				attrs = append(attrs, info.dl.finish(status, p != nil || cut)...)
			}
			level := slog.LevelInfo
			switch {
			case cut:
				level = slog.LevelWarn
			case status == StatusClientClosedRequest || info.quiet:
				level = slog.LevelDebug
			case status >= 500 || p != nil:
				level = slog.LevelWarn
			}
			log.Log(r.Context(), level, msg, attrs...)
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(sw, r)
		if !sw.prepared && info.status != StatusClientClosedRequest {
			// a handler that wrote nothing still answers through us
			sw.WriteHeader(http.StatusOK)
		}
	})
}

// credentials records which credentials a request carried, for the
// caching headers of its answer.
type credentials struct {
	any      bool // Authorization or X-Proxy-Key present
	proxyKey bool // X-Proxy-Key present
}

func requestCredentials(r *http.Request) credentials {
	key := r.Header.Get("X-Proxy-Key") != ""
	return credentials{any: key || r.Header.Get("Authorization") != "", proxyKey: key}
}

// finishHeaders adds what every answer must carry:
//   - X-Content-Type-Options: nosniff, so that no browser runs a repo file
//     or an error body as something else than its declared type on our
//     origin;
//   - for a request with credentials, Cache-Control private (public and
//     s-maxage removed) and Vary on the credential headers: the answer was
//     authorised for that caller, and a shared cache in front of the proxy
//     must neither keep it for others nor answer them from it.
func finishHeaders(h http.Header, c credentials) {
	h.Set("X-Content-Type-Options", "nosniff")
	if !c.any {
		return
	}
	directives := []string{"private"}
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			name, _, _ := strings.Cut(strings.ToLower(d), "=")
			switch strings.TrimSpace(name) {
			case "", "public", "private", "s-maxage":
				continue
			}
			directives = append(directives, d)
		}
	}
	h.Set("Cache-Control", strings.Join(directives, ", "))
	addVary(h, "Authorization")
	if c.proxyKey {
		addVary(h, "X-Proxy-Key")
	}
}

// addVary adds field to Vary unless it (or "*") is there already.
func addVary(h http.Header, field string) {
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if f == "*" || strings.EqualFold(f, field) {
				return
			}
		}
	}
	h.Add("Vary", field)
}

// activeRequests counts requests in progress; wait returns when none is
// left or ctx ends. Unlike a sync.WaitGroup it may be waited on while new
// requests still arrive.
type activeRequests struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil when nobody waits
}

func (a *activeRequests) add() {
	a.mu.Lock()
	a.n++
	a.mu.Unlock()
}

func (a *activeRequests) done() {
	a.mu.Lock()
	a.n--
	if a.n == 0 && a.idle != nil {
		close(a.idle)
		a.idle = nil
	}
	a.mu.Unlock()
}

// wait reports whether every request ended before ctx did.
func (a *activeRequests) wait(ctx context.Context) bool {
	a.mu.Lock()
	if a.n == 0 {
		a.mu.Unlock()
		return true
	}
	if a.idle == nil {
		a.idle = make(chan struct{})
	}
	idle := a.idle
	a.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		return false
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
