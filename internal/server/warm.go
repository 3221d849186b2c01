package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/warm"
)

// Cache warming (package warm) over HTTP, for holders of a proxy API key:
//
//	POST /admin/warm   {"repo","repo_type","revision","include","exclude","detach"}
//	                   200 application/x-ndjson: the job's events until job_done
//	                   (attached to the running job with the same key, if any);
//	                   with "detach": 202 {"job": status, "attached": bool}
//	GET  /admin/warm   {"jobs": [status, ...]} newest first
//
// The upstream credential follows the rule of downloads (auth.go): the
// caller's own `Authorization: Bearer <hub token>` next to X-Proxy-Key, or
// else the server token when that is enabled, or else anonymous. The job
// holds it while it runs, and never shows or logs it.

// WarmJob is a snapshot of a cache-warming job.
type WarmJob = warm.Status

// WarmJobs returns the running and recently finished warm jobs, newest
// first.
func (s *Server) WarmJobs() []WarmJob { return s.warm.Jobs() }

// warmRequest is the body of POST /admin/warm.
type warmRequest struct {
	Repo     string   `json:"repo"`
	RepoType string   `json:"repo_type"`
	Revision string   `json:"revision"`
	Include  []string `json:"include"`
	Exclude  []string `json:"exclude"`
	Detach   bool     `json:"detach"`
}

// Bounds of warming on a server.
const (
	// warmFiles is the number of files all warm jobs read at once.
	warmFiles = 4
	// warmAdmitMax is the longest wait between two admission attempts.
	warmAdmitMax = time.Second
	// warmWait bounds the wait for cancelled jobs at shutdown.
	warmWait = 10 * time.Second
)

// errNoWarmEngine: the engine cannot list repos or has no cache.
var errNoWarmEngine = errors.New("engine without listing or cache")

func (s *Server) newWarmManager() *warm.Manager {
	cfg := warm.Config{
		Engine: s.engine,
		Admit:  s.admitBackground,
		Files:  warmFiles,
		Logger: s.log,
		Classify: func(err error) (int, string) {
			e := classify(context.Background(), err)
			return e.Status, e.Code
		},
	}
	if h, ok := s.base.(interface{ Hub() *hub.Client }); ok {
		hc := h.Hub()
		cfg.List = func(ctx context.Context, token string, repo hub.Repo, rev string, fn func([]hub.Entry) error) error {
			return hc.ListPages(ctx, token, repo, rev, "", true, fn)
		}
	} else {
		cfg.List = func(context.Context, string, hub.Repo, string, func([]hub.Entry) error) error {
			return errNoWarmEngine
		}
	}
	if f, ok := s.base.(interface{ Flush(context.Context) error }); ok {
		cfg.Flush = f.Flush
	}
	return warm.New(cfg)
}

// warmable reports whether the engine has a cache to fill.
func (s *Server) warmable() bool {
	c, ok := s.base.(interface{ Cache() cache.Store })
	_, lists := s.base.(interface{ Hub() *hub.Client })
	return ok && lists && c.Cache() != nil
}

// admitBackground waits for the admission of a warm read: it takes a
// download slot and read-ahead like a download, but only while that leaves
// a quarter of each free for clients (acquireBackground), and waits
// instead of being refused.
func (s *Server) admitBackground(ctx context.Context, size int64) (func(), error) {
	wait := 20 * time.Millisecond
	for {
		release, ok, draining := s.adm.acquireBackground(size)
		if ok {
			return release, nil
		}
		if draining {
			return nil, errors.New("the server is shutting down")
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		wait = min(2*wait, warmAdmitMax)
	}
}

// acquireBackground is acquire for background work, which must leave a
// quarter of the slots and of the byte bound to clients and never goes
// before a queued client. It does not wait; refusals are not counted as
// rejected downloads.
func (a *admission) acquireBackground(length int64) (release func(), ok, draining bool) {
	need := min(a.charge, max(length, 0))
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.draining || len(a.queue) > 0 || a.slots+1 > a.maxSlots-a.maxSlots/4 || a.reserved+need > a.maxBytes-a.maxBytes/4 {
		return nil, false, a.draining
	}
	a.take(need)
	return a.releaser(need), true, false
}

// adminWarm serves /admin/warm.
func (s *Server) adminWarm(w http.ResponseWriter, r *http.Request) {
	setRoute(r, "admin_warm")
	if len(s.auth.keys) == 0 {
		writeError(w, r, newAPIError(http.StatusForbidden, "AdminDisabled", "the admin routes need proxy API keys to be configured (XETPROXY_API_KEYS or --api-keys-file)"))
		return
	}
	token, keyed, aerr := s.auth.upstreamToken(r)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	if !keyed {
		w.Header().Set("WWW-Authenticate", `Bearer realm="xetproxy admin"`)
		writeError(w, r, newAPIError(http.StatusUnauthorized, "ProxyKeyRequired", "a proxy API key is required (X-Proxy-Key)"))
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeJSON(w, r, http.StatusOK, map[string]any{"jobs": s.warm.Jobs()})
	case http.MethodPost:
		s.startWarm(w, r, token)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeError(w, r, newAPIError(http.StatusMethodNotAllowed, "MethodNotAllowed", "only GET, HEAD and POST are allowed here"))
	}
}

func (s *Server) startWarm(w http.ResponseWriter, r *http.Request, token string) {
	body, aerr := readBody(w, r)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	var wr warmRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wr); err != nil {
		writeError(w, r, badRequest("InvalidBody", "want a JSON object with repo, repo_type, revision, include, exclude: "+err.Error()))
		return
	}
	typ, aerr := parseRepoType(wr.RepoType)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	if wr.Repo == "" {
		writeError(w, r, badRequest("MissingRepo", "repo is required"))
		return
	}
	parts := strings.Split(wr.Repo, "/")
	if len(parts) > 2 {
		writeError(w, r, badRequest("InvalidRepo", "invalid repo id"))
		return
	}
	for _, p := range parts {
		if aerr := checkRepoName(p); aerr != nil {
			writeError(w, r, aerr)
			return
		}
	}
	if wr.Revision == "" {
		wr.Revision = "main"
	}
	if aerr := checkRevision(wr.Revision); aerr != nil {
		writeError(w, r, aerr)
		return
	}
	if aerr := s.repoAllowed(typ, wr.Repo); aerr != nil {
		writeError(w, r, aerr)
		return
	}
	if !s.warmable() {
		writeError(w, r, newAPIError(http.StatusConflict, "NoCache", "this server has no chunk cache to warm (set --cache-dir, --cache-memory or --s3-bucket)"))
		return
	}
	job, attached, err := s.warm.Start(warm.Request{
		Repo: hubRepo(typ, wr.Repo), Revision: wr.Revision,
		Include: wr.Include, Exclude: wr.Exclude, Token: token,
	})
	switch {
	case errors.Is(err, warm.ErrInvalid):
		writeError(w, r, badRequest("InvalidWarmRequest", err.Error()))
		return
	case errors.Is(err, warm.ErrBusy), errors.Is(err, warm.ErrClosed):
		e := newAPIError(http.StatusServiceUnavailable, "Overloaded", err.Error())
		e.RetryAfter = retryAfterSeconds
		writeError(w, r, e)
		return
	case err != nil:
		writeError(w, r, classify(r.Context(), err))
		return
	}
	if wr.Detach {
		writeJSON(w, r, http.StatusAccepted, map[string]any{"job": job.Status(), "attached": attached})
		return
	}
	s.followWarm(w, r, job, attached)
}

// followWarm streams the job's events as NDJSON until job_done or the
// client leaves (the job goes on).
func (s *Server) followWarm(w http.ResponseWriter, r *http.Request, job *warm.Job, attached bool) {
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Warm-Job", job.ID())
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	err := job.Follow(r.Context(), attached, func(ev warm.Event) error {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.StallTimeout))
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
		return rc.Flush()
	})
	_ = rc.SetWriteDeadline(time.Time{})
	if err != nil {
		info := infoFrom(r.Context())
		if r.Context().Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			info.status = StatusClientClosedRequest
		}
		info.err = err
	}
}

// stopWarm cancels the warm jobs (at the start of the drain): their
// followers get job_done "cancelled" and their requests end.
func (s *Server) stopWarm() { s.warm.Close() }

// waitWarm waits a little for the cancelled jobs to end.
func (s *Server) waitWarm() {
	ctx, cancel := context.WithTimeout(context.Background(), warmWait)
	defer cancel()
	if err := s.warm.Wait(ctx); err != nil {
		s.log.Warn("warm jobs still running after shutdown")
	}
}
