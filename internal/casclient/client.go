package casclient

import (
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

	"github.com/xetproxy/xetproxy/internal/upstream"
)

// Operation names used in errors.
const (
	opReconstruct = "reconstruction"
	opFileSize    = "file size"
	opFetch       = "xorb range"
)

// Backoff is the retry policy: Attempts tries in all, the k-th retry after
// a uniformly random delay in [0, min(Max, Base·2^k)) ("full jitter"), or
// after the server's Retry-After when it sends one. A Retry-After longer
// than Max ends the retries: the error goes back to the caller, who may
// pass the wait on to its own client.
type Backoff struct {
	Attempts int
	Base     time.Duration
	Max      time.Duration
}

// DefaultBackoff: 6 attempts, 250 ms doubling, each wait under 30 s.
var DefaultBackoff = Backoff{Attempts: 6, Base: 250 * time.Millisecond, Max: 30 * time.Second}

// delay returns the wait before retry number k (0-based), or false when
// the server asks for more than the policy allows.
func (b Backoff) delay(k int, retryAfter time.Duration) (time.Duration, bool) {
	if retryAfter > 0 {
		return retryAfter, retryAfter <= b.Max
	}
	d := b.Base << min(k, 30)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	return rand.N(d) + 1, true
}

// Config configures a Client. The zero value works: tuned transports, the
// default backoff, a 60 s stall timeout.
type Config struct {
	// API carries the CAS API calls, which send the CAS access token.
	API *http.Client
	// Fetch carries the presigned transfer requests. It must never add an
	// Authorization header; keep it separate from any client that does.
	Fetch *http.Client
	// Backoff is the retry policy for both.
	Backoff Backoff
	// StallTimeout cancels a response body read that makes no progress for
	// this long. It bounds silence, not the length of a transfer.
	StallTimeout time.Duration
	// MaxURLRefreshes bounds how often one transfer asks for a new
	// presigned URL after a 403 (default 2).
	MaxURLRefreshes int
	// UserAgent is sent on every request.
	UserAgent string
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Backoff.Attempts < 0 || c.Backoff.Base < 0 || c.Backoff.Max < 0 {
		return errors.New("casclient: negative backoff")
	}
	if c.StallTimeout < 0 || c.MaxURLRefreshes < 0 {
		return errors.New("casclient: negative stall timeout or refresh count")
	}
	return nil
}

// Client talks to a CAS: reconstruction queries and presigned xorb ranges.
// It is safe for concurrent use.
type Client struct {
	api, fetch *http.Client
	backoff    Backoff
	stall      time.Duration
	refreshes  int
	userAgent  string
	maxAnswer  int64

	mu     sync.Mutex
	v1Only map[string]bool // CAS base URLs without the v2 endpoint
}

// New returns a Client.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{
		api: cfg.API, fetch: cfg.Fetch, backoff: cfg.Backoff, stall: cfg.StallTimeout,
		refreshes: cfg.MaxURLRefreshes, userAgent: cfg.UserAgent, v1Only: map[string]bool{},
		maxAnswer: MaxReconstructionBytes,
	}
	if c.api == nil {
		c.api = &http.Client{Transport: NewTransport()}
	}
	if c.fetch == nil {
		t := NewTransport()
		t.DisableCompression = true // xorb bytes are compressed already
		c.fetch = FetchClient(t)
	}
	if c.backoff == (Backoff{}) {
		c.backoff = DefaultBackoff
	}
	if c.backoff.Attempts == 0 {
		c.backoff.Attempts = 1
	}
	if c.stall == 0 {
		c.stall = 60 * time.Second
	}
	if c.refreshes == 0 {
		c.refreshes = 2
	}
	if c.userAgent == "" {
		c.userAgent = "xetproxy"
	}
	return c, nil
}

// NewTransport returns an http.Transport tuned for many parallel range
// requests to few hosts: large idle pools per host, generous buffers,
// timeouts on connecting and on waiting for headers (never on a body).
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Reads of at least this size skip the buffer: the chunk decoder
		// reads bodies in pieces of 64 KiB or more (proxy.minRead), so
		// a larger buffer would only add a copy of every byte.
		ReadBufferSize:  64 << 10,
		WriteBufferSize: 64 << 10,
	}
}

// FetchClient returns the client for presigned transfers (Config.Fetch)
// over rt: it follows at most 5 redirects and never carries an
// Authorization header across one (there should be none to start with).
// rt itself must add none.
func FetchClient(rt http.RoundTripper) *http.Client {
	return &http.Client{Transport: rt, CheckRedirect: noAuthRedirect}
}

// noAuthRedirect follows redirects of presigned URLs without ever carrying
// an Authorization header along.
func noAuthRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	req.Header.Del("Authorization")
	return nil
}

// retry runs attempt until it succeeds, fails for good, runs out of
// attempts or ctx ends. attempt receives the 0-based attempt number.
func (c *Client) retry(ctx context.Context, attempt func(k int) error) error {
	for k := 0; ; k++ {
		err := attempt(k)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !Retryable(err) || k+1 >= c.backoff.Attempts {
			return err
		}
		d, ok := c.backoff.delay(k, RetryAfter(err))
		if !ok {
			return err
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// statusError builds a *StatusError from an unexpected answer and drains a
// little of its body for the message.
func statusError(op, rawURL string, resp *http.Response) *StatusError {
	e := &StatusError{
		Op: op, Code: resp.StatusCode, URL: upstream.Redact(rawURL),
		RetryAfter: upstream.RetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
	if msg := resp.Header.Get("X-Error-Message"); msg != "" {
		e.Message = upstream.Clip(msg, 200)
	} else if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/") || strings.Contains(ct, "json") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		e.Message = upstream.Clip(string(b), 200)
	}
	return e
}

func (c *Client) newRequest(ctx context.Context, method, rawURL string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("bad url %s: %w", upstream.Redact(rawURL), errNoURL(err))
	}
	req.Header.Set("User-Agent", c.userAgent)
	return req, nil
}

// errNoURL strips the *url.Error layer of a parse failure, which would
// print the whole URL.
func errNoURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// CloseIdleConnections closes the idle connections of both transports.
func (c *Client) CloseIdleConnections() {
	c.api.CloseIdleConnections()
	c.fetch.CloseIdleConnections()
}
