package metacache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/upstream"
)

// The /api reads the Transport keeps: repo info (default branch, or at a
// revision), tree pages and paths-info, by method, path, query and body.
//
//	stored, may serve the caller, fresh (commit id, or checked within
//	    Revalidate)                        -> the stored answer, nothing sent
//	offline                                -> the stored answer (marked), or
//	                                          an *OfflineError (503)
//	otherwise                              -> upstream, with If-None-Match of
//	                                          the stored answer: 304 refreshes it,
//	                                          200 replaces it; unreachable or 5xx
//	                                          past the grace -> the stored answer
//
// Repo info answers also teach whether a repo is public: neither private
// nor gated. (A tree or paths-info answer to an anonymous caller does not:
// gated repos show their metadata to anyone.)
type transport struct {
	*Cache
	next http.RoundTripper
}

// Transport wraps next, the RoundTripper of the /api reverse proxy.
func (c *Cache) Transport(next http.RoundTripper) http.RoundTripper {
	return &transport{Cache: c, next: next}
}

// apiRecord is a stored /api answer.
type apiRecord struct {
	Header  http.Header `json:"header"`
	Body    []byte      `json:"body"`
	Checked time.Time   `json:"checked"`
}

// keptHeaders are the headers of an answer that are stored with it.
var keptHeaders = []string{"Content-Type", "ETag", "X-Repo-Commit", "Link", "Last-Modified"}

// apiRead is what a request names, when it is a read the cache keeps.
type apiRead struct {
	repo     hub.Repo
	revision string
	info     bool // repo info (teaches publicity)
}

// parseAPIRead reads the repo and revision of a cacheable /api read.
func parseAPIRead(method string, u *url.URL) (apiRead, bool) {
	p := u.EscapedPath()
	i := strings.Index(p, "/api/")
	if i < 0 {
		return apiRead{}, false
	}
	segs := strings.Split(p[i+len("/api/"):], "/")
	if len(segs) < 2 {
		return apiRead{}, false
	}
	var typ hub.RepoType
	switch segs[0] {
	case "models":
		typ = hub.Model
	case "datasets":
		typ = hub.Dataset
	case "spaces":
		typ = hub.Space
	default:
		return apiRead{}, false
	}
	unesc := func(ss []string) (string, bool) {
		out := make([]string, len(ss))
		for i, s := range ss {
			u, err := url.PathUnescape(s)
			if err != nil {
				return "", false
			}
			out[i] = u
		}
		return strings.Join(out, "/"), true
	}
	for _, idx := range []int{2, 3} {
		if len(segs) < idx+2 {
			break
		}
		want := http.MethodGet
		switch segs[idx] {
		case "revision", "tree":
		case "paths-info":
			want = http.MethodPost
		default:
			continue
		}
		if method != want {
			return apiRead{}, false
		}
		id, ok1 := unesc(segs[1:idx])
		rev, ok2 := unesc(segs[idx+1 : idx+2])
		if !ok1 || !ok2 {
			return apiRead{}, false
		}
		return apiRead{repo: hub.Repo{Type: typ, ID: id}, revision: rev, info: segs[idx] == "revision"}, true
	}
	if method != http.MethodGet || len(segs) > 3 {
		return apiRead{}, false
	}
	id, ok := unesc(segs[1:])
	if !ok {
		return apiRead{}, false
	}
	return apiRead{repo: hub.Repo{Type: typ, ID: id}, revision: "main", info: true}, true
}

func bearerToken(h http.Header) string {
	a := h.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	rd, ok := parseAPIRead(req.Method, req.URL)
	if ok {
		// A client's own conditional or partial request is its business.
		for _, h := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "Range"} {
			if req.Header.Get(h) != "" {
				ok = false
			}
		}
	}
	if !ok {
		if !t.health.TryUpstream() {
			return nil, &OfflineError{Code: CodeNotCachedOffline, Message: "the Hub is unreachable; this request cannot be answered offline"}
		}
		return t.next.RoundTrip(req)
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(req.Body, maxValue+1))
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	sum := sha256.Sum256(body)
	i := strings.Index(req.URL.EscapedPath(), "/api/")
	key := "api " + req.Method + " " + req.URL.EscapedPath()[i:] + "?" + req.URL.RawQuery + " " + hex.EncodeToString(sum[:16])
	token := bearerToken(req.Header)
	rec, have := t.load(key)
	may := have && t.access.mayServe(token, rd.repo)

	if !t.health.TryUpstream() {
		if may {
			return rec.response(req, true), nil
		}
		return nil, notCached("this answer")
	}
	if may && (IsCommit(rd.revision) || time.Since(rec.Checked) < t.reval) {
		return rec.response(req, false), nil
	}
	if have && rec.Header.Get("ETag") != "" {
		// The Hub checks access before it compares: a 304 is an answer
		// to this caller's credentials too.
		req = req.Clone(req.Context())
		req.Header.Set("If-None-Match", rec.Header.Get("ETag"))
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode >= 500 {
		if Unreachable(orStatus(resp, err)) && t.health.Offline() {
			if resp != nil {
				upstream.Drain(resp.Body)
			}
			if may {
				return rec.response(req, true), nil
			}
			return nil, notCached("this answer")
		}
		return resp, err
	}
	switch {
	case resp.StatusCode == http.StatusNotModified && have:
		upstream.Drain(resp.Body)
		t.access.grant(token, rd.repo)
		rec.Checked = time.Now()
		t.save(key, rec)
		return rec.response(req, false), nil
	case resp.StatusCode == http.StatusOK:
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxValue+1))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		if len(b) > maxValue {
			resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), resp.Body))
			return resp, nil
		}
		t.access.grant(token, rd.repo)
		if rd.info {
			t.learnPublicity(rd.repo, b)
		}
		nr := &apiRecord{Header: http.Header{}, Body: b, Checked: time.Now()}
		for _, k := range keptHeaders {
			if v := resp.Header.Values(k); len(v) > 0 {
				nr.Header[http.CanonicalHeaderKey(k)] = v
			}
		}
		t.save(key, nr)
	}
	return resp, nil
}

// orStatus is err, or a 5xx answer as an error.
func orStatus(resp *http.Response, err error) error {
	if err != nil || resp == nil {
		return err
	}
	if resp.StatusCode >= 500 {
		return &hub.Error{Op: "api", Status: resp.StatusCode}
	}
	return nil
}

// learnPublicity reads "private" and "gated" of a repo info answer.
func (t *transport) learnPublicity(r hub.Repo, body []byte) {
	var info struct {
		Private *bool `json:"private"`
		Gated   any   `json:"gated"`
	}
	if json.Unmarshal(body, &info) != nil || info.Private == nil {
		return
	}
	gated := info.Gated != nil && info.Gated != false
	t.access.setPublic(r, !*info.Private && !gated)
}

func (t *transport) load(key string) (*apiRecord, bool) {
	b, ok := t.store.Get(key)
	if !ok {
		return nil, false
	}
	var r apiRecord
	if json.Unmarshal(b, &r) != nil {
		return nil, false
	}
	return &r, true
}

func (t *transport) save(key string, r *apiRecord) {
	if b, err := json.Marshal(r); err == nil {
		t.store.Put(key, b)
	}
}

// response is the stored answer as a fresh 200 response to req.
func (r *apiRecord) response(req *http.Request, offline bool) *http.Response {
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Length", strconv.Itoa(len(r.Body)))
	if offline {
		h.Set("X-Xetproxy-Offline", "1")
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(r.Body)), ContentLength: int64(len(r.Body)), Request: req,
	}
}
