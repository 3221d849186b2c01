package casclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/upstream"
)

// Parts is the answer to a multi-range request. Next returns the requested
// ranges in ascending order, each exactly once, however the server grouped
// them: one multipart/byteranges part per range, parts that cover several
// ranges (servers may coalesce), a single 206 covering them all, or a 200
// with the whole object.
type Parts struct {
	url    string
	ranges []reconstruction.ByteRange
	next   int // index of the range Next returns next

	body  *watched
	mr    *multipart.Reader // nil: the whole body is one part
	part  io.Reader         // current part's bytes
	cover reconstruction.ByteRange
	pos   uint64   // stored offset of the next byte of part
	sec   *exactly // section handed out by the last Next
	err   error    // sticky
}

// FetchRanges downloads several byte ranges of one presigned URL in one
// request (Range: bytes=a-b,c-d,...). The ranges must be ascending and
// disjoint, as in a v2 reconstruction entry. The request is retried and
// the URL refreshed like FetchRange's, but a body that fails half-way is
// not resumed: the caller retries the whole call. Close the Parts when done.
func (c *Client) FetchRanges(ctx context.Context, url string, ranges []reconstruction.ByteRange, refresh RefreshFunc) (*Parts, error) {
	if len(ranges) == 0 {
		return nil, fmt.Errorf("%s: no ranges", opFetch)
	}
	specs := make([]string, len(ranges))
	for i, r := range ranges {
		if r.End < r.Start || (i > 0 && r.Start <= ranges[i-1].End) {
			return nil, fmt.Errorf("%s: ranges not ascending and disjoint at %d-%d", opFetch, r.Start, r.End)
		}
		specs[i] = fmt.Sprintf("%d-%d", r.Start, r.End)
	}
	st := sendState{url: url, refresh: refresh}
	resp, w, err := c.send(ctx, &st, "bytes="+strings.Join(specs, ","))
	if err != nil {
		return nil, err
	}
	p := &Parts{url: st.url, ranges: ranges, body: w}
	bad := func(format string, args ...any) (*Parts, error) {
		w.Close()
		return nil, fmt.Errorf("%s: %s: %w: %s", opFetch, upstream.Redact(st.url), ErrBadResponse, fmt.Sprintf(format, args...))
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		p.part, p.cover = w, reconstruction.ByteRange{Start: 0, End: math.MaxUint64}
	case isMultipart(resp.Header.Get("Content-Type")):
		_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if params["boundary"] == "" {
			return bad("multipart answer without boundary")
		}
		p.mr = multipart.NewReader(w, params["boundary"])
	default:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return bad("Content-Range %q", resp.Header.Get("Content-Range"))
		}
		p.part, p.cover, p.pos = w, cr, cr.Start
	}
	return p, nil
}

func isMultipart(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "multipart/byteranges"
}

// Next returns the next requested range and a reader of exactly its bytes,
// valid until the following call. After the last range it returns io.EOF.
func (p *Parts) Next() (reconstruction.ByteRange, io.Reader, error) {
	if p.err != nil {
		return reconstruction.ByteRange{}, nil, p.err
	}
	r, sec, err := p.advance()
	if err != nil {
		p.err = err
		if err != io.EOF {
			err = p.wrap(err)
			p.err = err
		}
		return reconstruction.ByteRange{}, nil, err
	}
	return r, sec, nil
}

func (p *Parts) wrap(err error) error {
	if errors.Is(err, ErrBadResponse) || errors.Is(err, ErrStalled) {
		return fmt.Errorf("%s: %s: %w", opFetch, upstream.Redact(p.url), err)
	}
	return transportErr(opFetch, p.url, err)
}

func (p *Parts) advance() (reconstruction.ByteRange, io.Reader, error) {
	if p.sec != nil { // finish the previous section
		if err := p.sec.skipRest(); err != nil {
			return reconstruction.ByteRange{}, nil, err
		}
		p.pos += p.sec.n
		p.sec = nil
	}
	if p.next == len(p.ranges) {
		return reconstruction.ByteRange{}, nil, io.EOF
	}
	want := p.ranges[p.next]
	for p.part == nil || p.cover.End < want.Start {
		if p.mr == nil {
			return want, nil, fmt.Errorf("%w: range %d-%d not in the answer", ErrBadResponse, want.Start, want.End)
		}
		part, err := p.mr.NextRawPart()
		if err == io.EOF {
			return want, nil, fmt.Errorf("%w: range %d-%d missing from the multipart answer", ErrBadResponse, want.Start, want.End)
		}
		if err != nil {
			return want, nil, err
		}
		cr, err := parseContentRange(part.Header.Get("Content-Range"))
		if err != nil {
			return want, nil, fmt.Errorf("%w: part Content-Range %q", ErrBadResponse, part.Header.Get("Content-Range"))
		}
		p.part, p.cover, p.pos = part, cr, cr.Start
	}
	if want.Start < p.pos || want.End > p.cover.End {
		return want, nil, fmt.Errorf("%w: part %d-%d does not hold range %d-%d",
			ErrBadResponse, p.cover.Start, p.cover.End, want.Start, want.End)
	}
	if n, err := io.CopyN(io.Discard, p.part, int64(want.Start-p.pos)); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return want, nil, fmt.Errorf("skipping to %d (got %d): %w", want.Start, n, err)
	}
	p.pos = want.Start
	p.sec = &exactly{r: p.part, left: want.Len(), n: want.Len()}
	p.next++
	return want, p.sec, nil
}

// Close releases the connection.
func (p *Parts) Close() error {
	if p.err == nil {
		p.err = errors.New("parts closed")
	}
	return p.body.Close()
}

// exactly reads exactly n bytes of r: an early end is io.ErrUnexpectedEOF.
type exactly struct {
	r    io.Reader
	left uint64
	n    uint64
}

func (e *exactly) Read(b []byte) (int, error) {
	if e.left == 0 {
		return 0, io.EOF
	}
	if uint64(len(b)) > e.left {
		b = b[:e.left]
	}
	n, err := e.r.Read(b)
	e.left -= uint64(n)
	if err == io.EOF {
		if e.left > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	return n, err
}

func (e *exactly) skipRest() error {
	if e.left == 0 {
		return nil
	}
	_, err := io.CopyN(io.Discard, e, int64(e.left))
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
