package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/upstream"
)

// ErrStalled is the error of a plain download that made no progress for
// PlainStallTimeout.
var ErrStalled = errors.New("download stalled")

// PlainStallTimeout cancels a plain download read that makes no progress
// for this long.
var PlainStallTimeout = 60 * time.Second

// OpenPlain streams bytes [offset, offset+length) of a file that is not
// Xet-backed from meta.PlainURL, with the user's token, following the
// Hub's redirects (Go drops the Authorization header when a redirect
// leaves the host). A body that fails half-way is requested again from
// where it stopped, within the retry budget; the reader sees exactly
// length bytes or an error.
func (c *Client) OpenPlain(ctx context.Context, token string, meta *FileMeta, offset, length int64) (io.ReadCloser, error) {
	c.init()
	if offset < 0 || length < 0 || offset+length > meta.Size {
		return nil, fmt.Errorf("hub download: range %d+%d outside a file of %d bytes", offset, length, meta.Size)
	}
	p := &plainBody{c: c, ctx: ctx, token: token, url: meta.PlainURL, off: offset, end: offset + length, whole: offset == 0 && length == meta.Size}
	if length == 0 {
		return p, nil
	}
	if err := p.open(); err != nil {
		return nil, err
	}
	return p, nil
}

type plainBody struct {
	c        *Client
	ctx      context.Context
	token    string
	url      string
	off, end int64 // next byte to deliver, end (exclusive)
	whole    bool
	attempts int

	body    io.ReadCloser
	cancel  context.CancelFunc
	timer   *time.Timer
	stalled atomic.Bool
	err     error
}

func (p *plainBody) open() error {
	for {
		p.attempts++
		err := p.openOnce()
		if err == nil {
			return nil
		}
		if p.ctx.Err() != nil {
			return p.ctx.Err()
		}
		var he *Error
		if errors.As(err, &he) || p.attempts >= p.c.Attempts {
			return err // do has retried the statuses worth retrying
		}
		if err := sleepCtx(p.ctx, p.c.RetryBase<<min(p.attempts, 10)); err != nil {
			return err
		}
	}
}

func (p *plainBody) openOnce() error {
	rctx, cancel := context.WithCancel(p.ctx)
	hdr := http.Header{"Accept-Encoding": {"identity"}}
	if !p.whole || p.off > 0 {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", p.off, p.end-1))
	}
	resp, err := p.c.do(rctx, "download", http.MethodGet, p.url, p.token, hdr, false)
	if err != nil {
		cancel()
		return err
	}
	skip := int64(0)
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		if !strings.HasPrefix(cr, fmt.Sprintf("bytes %d-%d/", p.off, p.end-1)) {
			upstream.Drain(resp.Body)
			cancel()
			return fmt.Errorf("hub download %s: Content-Range %q for bytes %d-%d", upstream.Redact(p.url), cr, p.off, p.end-1)
		}
	case http.StatusOK:
		skip = p.off
	default:
		upstream.Drain(resp.Body)
		cancel()
		return fmt.Errorf("hub download %s: unexpected http %d", upstream.Redact(p.url), resp.StatusCode)
	}
	p.body, p.cancel = resp.Body, cancel
	p.timer = time.AfterFunc(PlainStallTimeout, func() { p.stalled.Store(true); cancel() })
	p.timer.Stop()
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, watchedReader{p}, skip); err != nil {
			p.closeBody()
			return netErr("download", p.url, err)
		}
	}
	return nil
}

type watchedReader struct{ p *plainBody }

func (w watchedReader) Read(b []byte) (int, error) {
	w.p.timer.Reset(PlainStallTimeout)
	n, err := w.p.body.Read(b)
	w.p.timer.Stop()
	if err != nil && w.p.stalled.Load() {
		err = ErrStalled
	}
	return n, err
}

func (p *plainBody) closeBody() {
	if p.body != nil {
		p.timer.Stop()
		p.body.Close()
		p.cancel()
		p.body = nil
	}
}

func (p *plainBody) Read(b []byte) (int, error) {
	for {
		if p.err != nil {
			return 0, p.err
		}
		if p.off == p.end {
			return 0, io.EOF
		}
		if p.body == nil {
			if err := p.open(); err != nil {
				p.err = err
				return 0, err
			}
		}
		if int64(len(b)) > p.end-p.off {
			b = b[:p.end-p.off]
		}
		n, err := watchedReader{p}.Read(b)
		p.off += int64(n)
		if n > 0 {
			return n, nil
		}
		if err == nil {
			continue
		}
		p.closeBody()
		if p.ctx.Err() != nil {
			p.err = p.ctx.Err()
			continue
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if p.attempts >= p.c.Attempts {
			p.err = netErr("download", p.url, fmt.Errorf("at byte %d: %w", p.off, err))
			continue
		}
		if serr := sleepCtx(p.ctx, p.c.RetryBase<<min(p.attempts, 10)); serr != nil {
			p.err = serr
		}
	}
}

func (p *plainBody) Close() error {
	p.closeBody()
	if p.err == nil {
		p.err = errors.New("read after close")
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
