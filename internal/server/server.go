package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/metacache"
	"github.com/xetproxy/xetproxy/internal/policy"
	"github.com/xetproxy/xetproxy/internal/warm"
)

// Options wire a Server. Config must have passed Validate.
type Options struct {
	Config  Config
	Engine  Engine       // the download engine
	Logger  *slog.Logger // nil = discard
	Metrics *Metrics     // nil = a fresh set
	Version string
	// Transport carries /api passthrough requests; nil = a metered
	// http.DefaultTransport clone. Give the download engine
	// Metrics.Transport(...) too so upstream metrics cover both.
	Transport http.RoundTripper
}

// Server is the xetproxy HTTP server.
type Server struct {
	cfg     Config
	engine  Engine
	log     *slog.Logger
	metrics *Metrics
	version string
	hub     *url.URL
	auth    *authPolicy
	adm     *admission
	api     *apiProxy
	policy  *policy.Policy // repo policy (repopolicy.go); nil allows all
	audit   *auditor       // download log fields, metrics and top repos (audit.go)
	xet     *xetCAS        // nil: Xet mode off
	active  activeRequests
	warm    *warm.Manager
	handler http.Handler
	started time.Time
	status  statusSources // inputs of the status page (status.go)
	// listenAddr is the address Serve listens on, for the status page.
	listenAddr atomic.Pointer[string]
	upstream   *metacache.Health // upstream state, offline mode (offline.go)
	base       Engine            // the engine under the metadata cache: its cache counters
	meta       *metacache.Cache  // metadata answers of the Hub
}

// New builds a Server from opts.
func New(opts Options) (*Server, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("server config: %w", err)
	}
	if opts.Engine == nil {
		return nil, errors.New("server: no download engine")
	}
	hub, err := url.Parse(opts.Config.HubURL)
	if err != nil {
		return nil, fmt.Errorf("hub url: %w", err)
	}
	s := &Server{
		cfg:     opts.Config,
		engine:  opts.Engine,
		log:     opts.Logger,
		metrics: opts.Metrics,
		version: opts.Version,
		hub:     hub,
		started: time.Now(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// The first lookup reads the system's MIME tables, milliseconds of
	// parsing: done here, before the server listens, not in the first
	// download (once per process).
	contentType(".bin")
	if s.metrics == nil {
		s.metrics = NewMetrics(s.version)
	}
	tr := opts.Transport
	if tr == nil {
		tr = s.metrics.Transport(http.DefaultTransport.(*http.Transport).Clone(), s.cfg.HubURL)
	}
	s.base = s.engine
	if s.engine, err = s.withMetaCache(s.engine); err != nil {
		return nil, err
	}
	s.auth = newAuthPolicy(&s.cfg)
	s.adm = newAdmission(&s.cfg, s.metrics)
	s.api = newAPIProxy(hub, s.meta.Transport(s.upstream.Transport(tr)), s.auth, s.log)
	if s.policy, err = policy.New(s.cfg.Allow, s.cfg.Deny); err != nil {
		return nil, err
	}
	s.api.policy = s.policy
	s.audit = newAuditor(s.cfg.AuditKey, s.metrics)
	// The status page's sources owned by other components; a nil one
	// shows as unknown.
	s.status = statusSources{
		topRepos: func(n int, includePrivate bool) []statusRepo {
			top := s.TopRepos(n, includePrivate)
			out := make([]statusRepo, len(top))
			for i, r := range top {
				out[i] = statusRepo(r)
			}
			return out
		},
		warmJobs: func() []statusJob {
			jobs := s.WarmJobs()
			out := make([]statusJob, len(jobs))
			for i, j := range jobs {
				out[i] = statusJob{ID: j.ID, Type: j.RepoType, Repo: j.Repo, Revision: j.Revision, State: j.State,
					FilesDone: j.FilesDone, FilesTotal: j.FilesTotal, Bytes: j.BytesDone}
			}
			return out
		},
		upstream: func() statusUpstream {
			u := s.UpstreamState()
			return statusUpstream{Known: true, Offline: u.Offline, Since: u.Since, LastOK: u.LastOK, LastError: u.LastError}
		},
	}
	s.warm = s.newWarmManager()
	if s.xet, err = newXetCAS(&s.cfg, opts, s.log); err != nil {
		return nil, err
	}
	s.api.keepXet = s.xet != nil
	s.handler = instrument(http.HandlerFunc(s.route), s.log, s.metrics, &s.active)
	return s, nil
}

// Handler is the main handler: every route, and /metrics unless a separate
// metrics listener is configured.
func (s *Server) Handler() http.Handler { return s.handler }

// MetricsHandler serves /metrics alone, for --metrics-listen.
func (s *Server) MetricsHandler() http.Handler { return s.metrics.Handler() }

// Metrics returns the server's metrics (for wiring the engine's hooks).
func (s *Server) Metrics() *Metrics { return s.metrics }

// maxRequestBody bounds a request body: the largest paths-info query we
// forward (thousands of paths), far below anything that could hurt.
const maxRequestBody = 4 << 20

// guardBody bounds a request body in time and size. http.Server's
// ReadTimeout cannot do it: it would also cut multi-hour downloads. So a
// request that has a body gets a read deadline of Config.BodyTimeout on
// its connection and a size cap; a handler that reads the body (paths-info)
// lifts the deadline when done, any other answer closes the connection, so
// that the server's discard of an unread body ends at the deadline too.
func (s *Server) guardBody(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	d := s.cfg.BodyTimeout
	if d <= 0 {
		d = DefaultBodyTimeout
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	w.Header().Set("Connection", "close")
}

// readBody reads a body guarded by guardBody and lifts its deadline. The
// errors are answers: 413 past maxRequestBody, 408 past the deadline.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return nil, newAPIError(http.StatusRequestEntityTooLarge, "RequestTooLarge", "request body too large")
		case isTimeout(err):
			e := newAPIError(http.StatusRequestTimeout, "RequestTimeout", "the request body did not arrive in time")
			e.cause = err
			return nil, e
		}
		e := badRequest("InvalidBody", "could not read the request body")
		e.cause = err
		return nil, e
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	w.Header().Del("Connection")
	return b, nil
}

// route dispatches on the escaped path; see the package doc for the table.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	s.guardBody(w, r)
	p := r.URL.EscapedPath()
	switch {
	case p == "/health":
		s.health(w, r)
	case p == "/readyz":
		s.readyz(w, r)
	case p == "/metrics" && s.cfg.MetricsListen == "":
		setRoute(r, "metrics")
		infoFrom(r.Context()).quiet = true
		s.metrics.Handler().ServeHTTP(w, r)
	case p == "/" || p == "/index.html":
		s.serveStatus(w, r)
	case p == "/admin/warm":
		s.adminWarm(w, r)
	case s.xet != nil && strings.HasPrefix(p, "/api/") && s.xetTokenRoute(w, r, strings.TrimPrefix(p, "/api/")):
	case strings.HasPrefix(p, "/api/"):
		s.api.ServeHTTP(w, r)
	case s.xet != nil && strings.HasPrefix(p, "/cas/"):
		s.serveCAS(w, r, strings.TrimPrefix(p, "/cas/"))
	case strings.HasPrefix(p, "/download/"):
		setRoute(r, "download")
		if !s.getOrHead(w, r) {
			return
		}
		q, err := parseQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, r, err)
			return
		}
		ref, err := parseDownload(strings.TrimPrefix(p, "/download/"), q)
		if err != nil {
			writeError(w, r, err)
			return
		}
		s.serveFile(w, r, ref, "attachment")
	case strings.HasPrefix(p, "/download-hash/"):
		setRoute(r, "download_hash")
		if !s.getOrHead(w, r) {
			return
		}
		q, err := parseQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, r, err)
			return
		}
		ref, err := parseDownloadHash(strings.TrimPrefix(p, "/download-hash/"), q)
		if err != nil {
			writeError(w, r, err)
			return
		}
		s.serveHash(w, r, ref)
	default:
		ref, ok, err := parseResolve(strings.TrimPrefix(p, "/"))
		if !ok {
			setRoute(r, "other")
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				// git and LFS uploads ({repo}.git/info/lfs/...) and any
				// other write land here: say why they fail
				writeError(w, r, errReadOnly())
				return
			}
			writeError(w, r, newAPIError(http.StatusNotFound, "NotFound", "no such route; see / for usage"))
			return
		}
		setRoute(r, "resolve")
		if !s.getOrHead(w, r) {
			return
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		s.serveFile(w, r, ref, "inline")
	}
}

func (s *Server) getOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, r, newAPIError(http.StatusMethodNotAllowed, "MethodNotAllowed", "only GET and HEAD are allowed here"))
	return false
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	setRoute(r, "health")
	infoFrom(r.Context()).quiet = true
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok", "version": s.version})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	setRoute(r, "readyz")
	infoFrom(r.Context()).quiet = true
	if ok, why := s.adm.ready(); !ok {
		w.Header().Set("Retry-After", retryAfterSeconds)
		writeJSON(w, r, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": why})
		return
	}
	status, reason := s.readyState()
	body := map[string]string{"status": status}
	if reason != "" {
		body["reason"] = reason
	}
	writeJSON(w, r, http.StatusOK, body)
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, _ := json.Marshal(v)
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", itoa(int64(len(b))))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

// cutLogWait bounds the wait, after the drain deadline, for the requests
// that were cut to end and log.
const cutLogWait = 5 * time.Second

// errDrainDeadline is the cause of the context of requests cut at the
// drain deadline.
var errDrainDeadline = errors.New("cut at the drain deadline")

// ErrDrainTimeout is returned by Serve when in-flight requests were still
// running at the drain deadline and had to be cut.
var ErrDrainTimeout = errors.New("drain deadline passed with requests in flight")

// Serve answers on ln (and metrics on metricsLn, if not nil) until ctx is
// done, then drains: listeners close at once, /readyz answers 503 on the
// connections still open, and in-flight requests may finish within
// Config.DrainTimeout. It returns nil after a clean drain, ErrDrainTimeout
// if requests had to be cut, or the error that stopped a listener.
func (s *Server) Serve(ctx context.Context, ln, metricsLn net.Listener) error {
	hs := s.httpServer(s.handler)
	// Requests run under base so that the drain deadline can end them all
	// with errDrainDeadline as the cause (their log lines say so).
	base, cut := context.WithCancelCause(context.Background())
	defer cut(nil)
	hs.BaseContext = func(net.Listener) context.Context { return base }
	var ms *http.Server
	if metricsLn != nil {
		ms = s.httpServer(s.metrics.Handler())
	}
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	start := func(srv *http.Server, l net.Listener) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	start(hs, ln)
	if ms != nil {
		start(ms, metricsLn)
	}
	addr := ln.Addr().String()
	s.listenAddr.Store(&addr)
	s.log.Info("serving", "addr", addr, "version", s.version)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.adm.setDraining()
	s.stopWarm()
	s.log.Info("draining", "in_flight", s.adm.inFlight(), "deadline", s.cfg.DrainTimeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	err := hs.Shutdown(dctx)
	if err != nil {
		s.log.Warn("drain deadline passed; closing connections", "in_flight", s.adm.inFlight())
		cut(errDrainDeadline)
		hs.Close()
		// Close does not wait for handlers: give the cut ones a moment
		// to write their request log lines before the process exits.
		wctx, wcancel := context.WithTimeout(context.Background(), cutLogWait)
		if !s.active.wait(wctx) {
			s.log.Warn("requests still running after the drain deadline", "in_flight", s.adm.inFlight())
		}
		wcancel()
		err = ErrDrainTimeout
	}
	if ms != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		ms.Shutdown(sctx)
		scancel()
	}
	wg.Wait()
	s.waitWarm()
	if serveErr != nil {
		return serveErr
	}
	if err == nil {
		s.log.Info("drained")
	}
	return err
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}
