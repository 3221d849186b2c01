package casclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/upstream"
)

// RefreshFunc returns a new presigned URL for the same bytes after the old
// one was refused with 403, typically by asking the reconstruction again.
type RefreshFunc func(ctx context.Context) (string, error)

// FetchRange downloads the stored bytes r of the object at the presigned
// url. The request carries no Authorization header. The returned body
// yields exactly r.Len() bytes or an error: a body that ends early, resets
// or stalls is requested again (within the retry budget) and the bytes
// already delivered are skipped, so readers see one seamless stream; a 403
// calls refresh (if not nil) for a new URL. The caller must Close the body.
func (c *Client) FetchRange(ctx context.Context, url string, r reconstruction.ByteRange, refresh RefreshFunc) (io.ReadCloser, error) {
	if r.End < r.Start {
		return nil, fmt.Errorf("%s: empty range %d-%d", opFetch, r.Start, r.End)
	}
	b := &rangeBody{c: c, ctx: ctx, r: r, st: sendState{url: url, refresh: refresh}}
	if err := b.open(); err != nil {
		return nil, err
	}
	return b, nil
}

// rangeBody is the resumable body of FetchRange.
type rangeBody struct {
	c   *Client
	ctx context.Context
	st  sendState
	r   reconstruction.ByteRange

	body      *watched // current response body, positioned at r.Start+done
	done      uint64   // bytes delivered to the reader
	err       error    // sticky
	closeOnce sync.Once
}

// sendState is what the attempts of one transfer share: the current URL,
// how to refresh it, and the retry budget used so far.
type sendState struct {
	url       string
	refresh   RefreshFunc
	refreshes int
	attempts  int
}

// send issues GET url with the Range header until the server answers 200
// or 206: it retries with backoff and, on 403, asks for a fresh URL.
func (c *Client) send(ctx context.Context, st *sendState, rangeHeader string) (*http.Response, *watched, error) {
	for {
		st.attempts++
		resp, w, err := c.get(ctx, st.url, rangeHeader)
		if err == nil {
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent {
				return resp, w, nil
			}
			err = statusError(opFetch, st.url, resp)
			upstream.Drain(w)
		}
		if err := c.backoffAfter(ctx, st, err); err != nil {
			return nil, nil, err
		}
	}
}

// backoffAfter decides what follows the failed attempt err: nil to try
// again (after refreshing the URL or sleeping), or the error to give up with.
func (c *Client) backoffAfter(ctx context.Context, st *sendState, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, ErrURLRejected) && st.refresh != nil && st.refreshes < c.refreshes {
		st.refreshes++
		u, rerr := st.refresh(ctx)
		if rerr != nil {
			return fmt.Errorf("refreshing the url after %w: %w", err, rerr)
		}
		st.url = u
		return nil
	}
	if !Retryable(err) || st.attempts >= c.backoff.Attempts {
		return err
	}
	d, ok := c.backoff.delay(st.attempts-1, RetryAfter(err))
	if !ok {
		return err
	}
	return sleep(ctx, d)
}

// open (re)issues the request and positions the new body at the first
// byte not yet delivered.
func (b *rangeBody) open() error {
	for {
		resp, w, err := b.c.send(b.ctx, &b.st, fmt.Sprintf("bytes=%d-%d", b.r.Start, b.r.End))
		if err != nil {
			return err // send has retried already
		}
		err = b.position(resp, w)
		if err == nil {
			return nil
		}
		if err := b.c.backoffAfter(b.ctx, &b.st, err); err != nil {
			return err
		}
	}
}

// position checks the answer and skips to the first byte not delivered yet.
func (b *rangeBody) position(resp *http.Response, w *watched) error {
	skip := b.done
	if resp.StatusCode == http.StatusPartialContent {
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || cr.Start != b.r.Start || cr.End != b.r.End {
			w.Close()
			return fmt.Errorf("%s: %s: %w: Content-Range %q for bytes %d-%d",
				opFetch, upstream.Redact(b.st.url), ErrBadResponse, resp.Header.Get("Content-Range"), b.r.Start, b.r.End)
		}
	} else {
		skip += b.r.Start // 200: the server ignored Range and sends the whole object
	}
	if n, err := io.CopyN(io.Discard, w, int64(skip)); err != nil {
		w.Close()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return transportErr(opFetch, b.st.url, fmt.Errorf("skipping %d bytes (got %d): %w", skip, n, err))
	}
	b.body = w
	return nil
}

func (b *rangeBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	left := b.r.Len() - b.done
	if left == 0 {
		return 0, io.EOF
	}
	if uint64(len(p)) > left {
		p = p[:left]
	}
	for {
		if b.body == nil {
			if err := b.open(); err != nil {
				b.err = err
				return 0, err
			}
		}
		n, err := b.body.Read(p)
		b.done += uint64(n)
		if n > 0 {
			return n, nil
		}
		if err == nil {
			continue
		}
		// The body failed or ended before the range did: reopen.
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.body.Close()
		b.body = nil
		if err := b.c.backoffAfter(b.ctx, &b.st, transportErr(opFetch, b.st.url, err)); err != nil {
			b.err = err
			return 0, err
		}
	}
}

func (b *rangeBody) Close() error {
	b.closeOnce.Do(func() {
		if b.body != nil {
			b.body.Close()
		}
		if b.err == nil {
			b.err = errors.New("read after close")
		}
	})
	return nil
}

// get sends an unauthenticated GET with a Range header on the fetch client
// and returns the body under a stall watchdog, which also guards the wait
// for the response headers.
func (c *Client) get(ctx context.Context, u, rangeHeader string) (*http.Response, *watched, error) {
	rctx, cancel := context.WithCancel(ctx)
	req, err := c.newRequest(rctx, http.MethodGet, u)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("Range", rangeHeader)
	req.Header.Set("Accept-Encoding", "identity")
	w := &watched{cancel: cancel, stall: c.stall}
	w.timer = time.AfterFunc(c.stall, func() {
		w.stalled.Store(true)
		cancel()
	})
	resp, err := c.fetch.Do(req)
	w.timer.Stop()
	if err != nil {
		cancel()
		if w.stalled.Load() && ctx.Err() == nil {
			err = ErrStalled
		}
		return nil, nil, transportErr(opFetch, u, err)
	}
	w.body = resp.Body
	return resp, w, nil
}

// watched is a response body guarded by a stall watchdog: a Read that
// returns nothing for the stall timeout cancels the request. Time spent
// outside Read (the consumer applying back-pressure) never counts.
type watched struct {
	body    io.ReadCloser
	stall   time.Duration
	timer   *time.Timer
	stalled atomic.Bool
	cancel  context.CancelFunc
}

func (w *watched) Read(p []byte) (int, error) {
	w.timer.Reset(w.stall)
	n, err := w.body.Read(p)
	w.timer.Stop()
	if err != nil && w.stalled.Load() {
		err = ErrStalled
	}
	return n, err
}

func (w *watched) Close() error {
	w.timer.Stop()
	err := w.body.Close()
	w.cancel()
	return err
}

// parseContentRange parses "bytes a-b/total" (total may be "*").
func parseContentRange(v string) (reconstruction.ByteRange, error) {
	var r reconstruction.ByteRange
	rest, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !ok {
		return r, errors.New("not a bytes range")
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return r, errors.New("no total")
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return r, errors.New("no dash")
	}
	var err error
	if r.Start, err = strconv.ParseUint(a, 10, 64); err != nil {
		return r, err
	}
	if r.End, err = strconv.ParseUint(b, 10, 64); err != nil {
		return r, err
	}
	if r.End < r.Start {
		return r, errors.New("reversed")
	}
	if total != "*" {
		t, err := strconv.ParseUint(total, 10, 64)
		if err != nil || r.End >= t {
			return r, errors.New("bad total")
		}
	}
	return r, nil
}
