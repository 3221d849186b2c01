package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/singleflight"
)

// DefaultEndpoint is the public Hub.
const DefaultEndpoint = "https://huggingface.co"

// RepoType is the kind of a repository.
type RepoType string

// The repository kinds.
const (
	Model   RepoType = "model"
	Dataset RepoType = "dataset"
	Space   RepoType = "space"
)

// ParseRepoType accepts model, dataset or space, singular or plural; ""
// means model.
func ParseRepoType(s string) (RepoType, error) {
	switch strings.TrimSuffix(strings.ToLower(s), "s") {
	case "", "model":
		return Model, nil
	case "dataset":
		return Dataset, nil
	case "space":
		return Space, nil
	}
	return "", fmt.Errorf("unknown repo type %q (want model, dataset or space)", s)
}

// Repo names a repository.
type Repo struct {
	Type RepoType
	ID   string // "name" or "namespace/name"
}

func (r Repo) String() string { return r.prefix() + r.ID }

// prefix is the URL prefix of resolve URLs: "", "datasets/" or "spaces/".
func (r Repo) prefix() string {
	switch r.Type {
	case Dataset:
		return "datasets/"
	case Space:
		return "spaces/"
	}
	return ""
}

// api is the path of the repo under /api: "models/ns/name".
func (r Repo) api() string {
	t := r.Type
	if t == "" {
		t = Model
	}
	return string(t) + "s/" + escapePath(r.ID)
}

// Validate rejects ids that would escape their place in a URL.
func (r Repo) Validate() error {
	if _, err := ParseRepoType(string(r.Type)); err != nil {
		return err
	}
	parts := strings.Split(r.ID, "/")
	if r.ID == "" || len(parts) > 2 {
		return fmt.Errorf("bad repo id %q (want name or namespace/name)", r.ID)
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "?#%\\") {
			return fmt.Errorf("bad repo id %q", r.ID)
		}
	}
	return nil
}

// Client talks to the Hub. The zero value uses DefaultEndpoint and a
// default HTTP client; set the fields before first use. Safe for
// concurrent use.
type Client struct {
	// BaseURL is the Hub endpoint (HF_ENDPOINT), without trailing slash.
	BaseURL string
	// HTTP sends the requests. Redirects are followed only where the
	// protocol wants it (never on resolve, which reads the redirect).
	HTTP *http.Client
	// UserAgent is sent on every request.
	UserAgent string
	// RefreshMargin: a cached read token is replaced when it expires
	// within this margin (default 60 s).
	RefreshMargin time.Duration
	// Attempts, RetryBase and RetryMax are the retry policy for 408, 429,
	// 5xx and network errors (default 4 attempts, 250 ms doubling, 10 s cap).
	Attempts  int
	RetryBase time.Duration
	RetryMax  time.Duration

	once   sync.Once
	mu     sync.Mutex
	tokens map[string]*CASToken
	flight singleflight.Group
}

// MaxCachedTokens bounds the read-token cache.
const MaxCachedTokens = 10000

// NewClient returns a Client for the Hub at baseURL ("" for the default).
func NewClient(baseURL string) *Client { return &Client{BaseURL: baseURL} }

func (c *Client) init() {
	c.once.Do(func() {
		if c.BaseURL == "" {
			c.BaseURL = DefaultEndpoint
		}
		c.BaseURL = strings.TrimRight(c.BaseURL, "/")
		if c.HTTP == nil {
			c.HTTP = &http.Client{Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				ForceAttemptHTTP2:     true,
				MaxIdleConns:          256,
				MaxIdleConnsPerHost:   64,
				IdleConnTimeout:       90 * time.Second,
				TLSHandshakeTimeout:   15 * time.Second,
				ResponseHeaderTimeout: 60 * time.Second,
			}}
		}
		if c.UserAgent == "" {
			c.UserAgent = "xetproxy"
		}
		if c.RefreshMargin == 0 {
			c.RefreshMargin = 60 * time.Second
		}
		if c.Attempts == 0 {
			c.Attempts = 4
		}
		if c.RetryBase == 0 {
			c.RetryBase = 250 * time.Millisecond
		}
		if c.RetryMax == 0 {
			c.RetryMax = 10 * time.Second
		}
		c.tokens = map[string]*CASToken{}
	})
}

// Conditions callers branch on; *Error matches them by status.
var (
	ErrNotFound     = errors.New("not found")               // 404
	ErrUnauthorized = errors.New("authentication required") // 401: no token, or a bad one
	ErrForbidden    = errors.New("access denied")           // 403: gated, disabled, no permission
)

// Error is an error answer of the Hub. URL is redacted (no query) and no
// error ever carries a token.
type Error struct {
	Op      string // "resolve", "list", "read token", "download"...
	URL     string
	Status  int
	Code    string // X-Error-Code: RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo...
	Message string // X-Error-Message, or the "error" of a JSON body
	// RetryAfter is the wait the Hub asked for (429/503), 0 if none.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := fmt.Sprintf("hub %s %s: http %d", e.Op, e.URL, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is maps the status to ErrNotFound, ErrUnauthorized and ErrForbidden.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	}
	return false
}

func (e *Error) temporary() bool {
	return e.Status == 408 || e.Status == 429 || (e.Status >= 500 && e.Status != 501)
}

// NetError is a failure to talk to the Hub at all (connection, TLS, a body
// cut short).
type NetError struct {
	Op  string
	URL string // redacted
	Err error
}

func (e *NetError) Error() string { return fmt.Sprintf("hub %s %s: %v", e.Op, e.URL, e.Err) }
func (e *NetError) Unwrap() error { return e.Err }

func netErr(op, rawURL string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &NetError{Op: op, URL: redact(rawURL), Err: err}
}

// redact drops query, fragment and user info from a URL.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		if i := strings.IndexAny(u, "?#"); i >= 0 {
			u = u[:i]
		}
		return u
	}
	p.User, p.RawQuery, p.Fragment, p.ForceQuery = nil, "", "", false
	return p.String()
}

// errorFrom builds an *Error from a non-success answer.
func errorFrom(op, rawURL string, resp *http.Response) *Error {
	e := &Error{
		Op: op, URL: redact(rawURL), Status: resp.StatusCode,
		Code:    resp.Header.Get("X-Error-Code"),
		Message: clip(resp.Header.Get("X-Error-Message")),
	}
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
		e.RetryAfter = time.Duration(min(s, 1<<20)) * time.Second
	}
	if e.Message == "" && resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		e.Message = clip(jsonError(b))
	}
	return e
}

// jsonError extracts {"error": "..."} or returns the text as is.
func jsonError(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.Index(s, `"error":`); strings.HasPrefix(s, "{") && i >= 0 {
		rest := strings.TrimSpace(s[i+len(`"error":`):])
		if v, err := strconv.QuotedPrefix(rest); err == nil {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
		}
	}
	if strings.HasPrefix(s, "<") { // an HTML error page says nothing useful
		return ""
	}
	return s
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}

// do sends method url with the user's token (if any), retrying temporary
// failures. The caller owns the returned response's body. A non-2xx,
// non-3xx answer comes back as *Error. noFollow returns 3xx answers as
// they are instead of following them.
func (c *Client) do(ctx context.Context, op, method, rawURL, token string, header http.Header, noFollow bool) (*http.Response, error) {
	return c.doBody(ctx, op, method, rawURL, token, header, nil, noFollow)
}

// doBody is do with a request body (only for read-only calls: it may be
// sent more than once).
func (c *Client) doBody(ctx context.Context, op, method, rawURL, token string, header http.Header, body []byte, noFollow bool) (*http.Response, error) {
	c.init()
	cp := *c.HTTP
	if noFollow {
		cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	} else {
		cp.CheckRedirect = dropAuthOffHost
	}
	hc := &cp
	for attempt := 1; ; attempt++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
		if err != nil {
			return nil, fmt.Errorf("hub %s: bad url %s", op, redact(rawURL))
		}
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", c.UserAgent)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		var wait time.Duration
		switch {
		case err != nil:
			err = netErr(op, rawURL, err)
		case resp.StatusCode >= 400:
			he := errorFrom(op, rawURL, resp)
			drain(resp.Body)
			if token != "" { // in case the answer echoes it
				he.Message = strings.ReplaceAll(he.Message, token, "[redacted]")
			}
			err, wait = he, he.RetryAfter
			if !he.temporary() {
				return nil, err
			}
		default:
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if attempt >= c.Attempts || wait > c.RetryMax {
			return nil, err
		}
		if wait == 0 {
			d := min(c.RetryBase<<min(attempt-1, 20), c.RetryMax)
			wait = rand.N(d) + 1
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// dropAuthOffHost follows up to 10 redirects and removes the Authorization
// header as soon as one leaves the original host and port (Go itself only
// compares host names, so another port of the same host would get it).
func dropAuthOffHost(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
		req.Header.Del("Authorization")
	}
	return nil
}

func drain(body io.ReadCloser) {
	io.CopyN(io.Discard, body, 64<<10)
	body.Close()
}

// escapePath percent-escapes each segment of a slash-separated path.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// revisionSegment escapes a revision as one path segment (refs/pr/1 ->
// refs%2Fpr%2F1); "" means main.
func revisionSegment(rev string) string {
	if rev == "" {
		rev = "main"
	}
	return url.PathEscape(rev)
}
