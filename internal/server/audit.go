package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/xetproxy/xetproxy/internal/proxy"
)

// Every request on a download route (/download, /download-hash, resolve)
// that names a repo logs one line with the message "download" instead of
// "request": the access-log fields plus what an audit needs (repo,
// revision, commit, file, bytes by source, the caller as a digest). The
// same end of request counts the download in the per-repo-type metrics and
// in the top repos. docs/operations.md lists the fields.

// callerDomain separates caller digests from any other use of the key or
// of SHA-256 over the same secret.
const callerDomain = "xetproxy caller v1\x00"

// auditor holds what the download lines need beyond one request.
type auditor struct {
	key []byte // XETPROXY_AUDIT_KEY; nil = a keyless domain-separated SHA-256
	m   *Metrics
	top topRepos
}

func newAuditor(key string, m *Metrics) *auditor {
	a := &auditor{m: m, top: topRepos{max: maxTopRepos}}
	if key != "" {
		a.key = []byte(key)
	}
	return a
}

// digest names a credential without revealing it: the first 16 hex digits
// of HMAC-SHA256(audit key, domain + secret), or of SHA-256(domain +
// secret) without a key. Every instance with the same key gives the same
// digest for the same credential, so lines of a fleet can be joined.
// Without a key a short proxy API key could be found by guessing; Hub
// tokens are long random strings.
func (a *auditor) digest(secret string) string {
	var sum []byte
	if a.key != nil {
		mac := hmac.New(sha256.New, a.key)
		mac.Write([]byte(callerDomain))
		mac.Write([]byte(secret))
		sum = mac.Sum(nil)
	} else {
		h := sha256.Sum256([]byte(callerDomain + secret))
		sum = h[:]
	}
	return hex.EncodeToString(sum[:8])
}

// caller tells how r authenticated (none, token = its own Hub token, key =
// a proxy API key) and the digest of that credential ("anonymous" for
// none). A request with both a key and its own token is its token's.
func (s *Server) caller(r *http.Request) (auth, digest string) {
	bearer, hasBearer := bearerToken(r.Header.Get("Authorization"))
	switch {
	case hasBearer && !(len(s.auth.keys) > 0 && s.auth.isKey(bearer)):
		return "token", s.audit.digest(bearer)
	case r.Header.Get("X-Proxy-Key") != "":
		return "key", s.audit.digest(r.Header.Get("X-Proxy-Key"))
	case hasBearer:
		return "key", s.audit.digest(bearer)
	}
	return "none", "anonymous"
}

// dlAudit is what one download tells its log line. The handler fills it;
// the middleware ends it (finish) once the status and the outcome are
// known.
type dlAudit struct {
	a                  *auditor
	typ, repo, rev     string
	file, hash         string // hash: the Xet hash of /download-hash
	commit             string // the resolved commit, when the Hub said
	auth, caller       string
	tokenUsed, refused bool
	written            int64 // file bytes sent
	src                proxy.SourceReporter
}

// beginDownload starts the audit record of a download and applies the
// repo policy: false means refused, and answered.
func (s *Server) beginDownload(w http.ResponseWriter, r *http.Request, typ, repo, rev, file, hash string) (*dlAudit, bool) {
	auth, caller := s.caller(r)
	d := &dlAudit{a: s.audit, typ: typ, repo: repo, rev: rev, file: file, hash: hash, auth: auth, caller: caller}
	if info := infoFrom(r.Context()); info != nil {
		info.dl = d
	}
	if aerr := s.repoAllowed(typ, repo); aerr != nil {
		d.refused = true
		writeError(w, r, aerr)
		return d, false
	}
	return d, true
}

func downloadAudit(r *http.Request) *dlAudit {
	if info := infoFrom(r.Context()); info != nil {
		return info.dl
	}
	return nil
}

// Outcomes of a download, the bounded label of xetproxy_downloads_total.
func outcome(status int, aborted, refused bool) string {
	switch {
	case refused:
		return "refused"
	case status == StatusClientClosedRequest:
		return "client_gone"
	case aborted:
		return "aborted"
	case status < 400:
		return "ok"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "unauthorized"
	case status == http.StatusNotFound:
		return "not_found"
	case status == http.StatusServiceUnavailable:
		return "overloaded"
	case status < 500:
		return "client_error"
	}
	return "upstream_error"
}

// finish counts the download and returns its log attributes.
func (d *dlAudit) finish(status int, aborted bool) []any {
	cache, shared := int64(0), int64(0)
	if d.src != nil {
		// the stream may have read ahead of what the client got
		from := d.src.Sources()
		cache = min(from.Cache, d.written)
		shared = min(from.Shared, d.written-cache)
	}
	upstream := d.written - cache - shared
	out := outcome(status, aborted, d.refused)
	m := d.a.m
	m.downloads.WithLabelValues(d.typ, out).Inc()
	for _, b := range []struct {
		src string
		n   int64
	}{{"cache", cache}, {"shared", shared}, {"upstream", upstream}} {
		if b.n > 0 {
			m.downloadBytes.WithLabelValues(d.typ, b.src).Add(float64(b.n))
		}
	}
	if d.written > 0 {
		d.a.top.add(d.typ, d.repo, d.written, !d.tokenUsed)
	}
	attrs := []any{"outcome", out, "repo_type", d.typ, "repo", d.repo, "revision", d.rev}
	if d.commit != "" {
		attrs = append(attrs, "commit", d.commit)
	}
	attrs = append(attrs, "file", d.file)
	if d.hash != "" {
		attrs = append(attrs, "xet_hash", d.hash)
	}
	return append(attrs, "file_bytes", d.written, "cache_bytes", cache, "shared_bytes", shared,
		"upstream_bytes", upstream, "auth", d.auth, "caller", d.caller)
}

// RepoBytes is one entry of Server.TopRepos.
type RepoBytes struct {
	Type  string // model, dataset or space
	Repo  string // as first requested
	Bytes int64  // file bytes sent since start (or since the entry came back after eviction)
	// Private is true unless a download of the repo made without any Hub
	// token upstream (anonymous, neither the caller's nor the server's)
	// has sent bytes: only such a download shows that the repo is public.
	Private bool
}

// maxTopRepos bounds the repos the top list remembers.
const maxTopRepos = 10000

// TopRepos returns the n repos that were sent the most file bytes since
// start, largest first, leaving out the private ones (see
// RepoBytes.Private) unless includePrivate. Memory is bounded: past
// maxTopRepos repos the smallest entry makes room for a new one, so the
// numbers of the large repos are exact and small ones may be forgotten.
func (s *Server) TopRepos(n int, includePrivate bool) []RepoBytes {
	return s.audit.top.list(n, includePrivate)
}

type topRepos struct {
	mu  sync.Mutex
	max int
	m   map[string]*RepoBytes
}

func (t *topRepos) add(typ, repo string, n int64, public bool) {
	key := typ + "/" + strings.ToLower(repo) // the Hub ignores case in repo ids
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*RepoBytes{}
	}
	e := t.m[key]
	if e == nil {
		if len(t.m) >= t.max {
			t.evictSmallest()
		}
		e = &RepoBytes{Type: typ, Repo: repo, Private: true}
		t.m[key] = e
	}
	e.Bytes += n
	if public {
		e.Private = false
	}
}

// evictSmallest drops the entry with the fewest bytes: a scan, paid only
// when a new repo arrives at a full map.
func (t *topRepos) evictSmallest() {
	var minKey string
	var minBytes int64 = -1
	for k, e := range t.m {
		if minBytes < 0 || e.Bytes < minBytes {
			minKey, minBytes = k, e.Bytes
		}
	}
	delete(t.m, minKey)
}

func (t *topRepos) list(n int, includePrivate bool) []RepoBytes {
	t.mu.Lock()
	out := make([]RepoBytes, 0, len(t.m))
	for _, e := range t.m {
		if includePrivate || !e.Private {
			out = append(out, *e)
		}
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Bytes != out[j].Bytes {
			return out[i].Bytes > out[j].Bytes
		}
		if out[i].Type != out[j].Type {
			return out[i].Type < out[j].Type
		}
		return out[i].Repo < out[j].Repo
	})
	if n >= 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
