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
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/xetproxy/xetproxy/internal/upstream"
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
	if token != "" && !c.onHub(rawURL) {
		return nil, fmt.Errorf("hub %s %s: %w", op, upstream.Redact(rawURL), ErrForeignLink)
	}
	for attempt := 1; ; attempt++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
		if err != nil {
			return nil, fmt.Errorf("hub %s: bad url %s", op, upstream.Redact(rawURL))
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
			upstream.Drain(resp.Body)
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

// ErrForeignLink is returned when the Hub points a request that would carry
// the caller's token (a pagination link) at another origin than its own.
var ErrForeignLink = errors.New("refusing to send credentials to a link outside the hub's origin")

// onHub reports whether rawURL has the scheme, host and port of BaseURL:
// the only origin a caller's token is ever sent to (redirects elsewhere
// lose it in dropAuthOffHost, links elsewhere are refused).
func (c *Client) onHub(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	base, err := url.Parse(c.BaseURL)
	if err != nil {
		return false
	}
	return origin(u) == origin(base)
}

// origin is scheme://host:port in lower case, with the scheme's default
// port made explicit so that https://h and https://h:443 compare equal.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
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
