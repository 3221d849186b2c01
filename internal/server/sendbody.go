package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// bodyWriter is what a download's body is written to: the response, with
// the stall deadline pushed back before every write, the bytes counted,
// and the first write error kept, so that the handler can tell a client
// that failed from a body that did. Its ReadFrom lets the engine hand over
// bytes stored in a cache file, which net/http sends with sendfile.
type bodyWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	left  int64 // bytes the answer still has room for
	n     int64 // bytes written
	err   error // the first write error (the client's, or a stall)
	over  bool  // the body had more bytes than the answer's length
}

// errTooLong: the engine returned more bytes than asked.
var errTooLong = errors.New("engine returned more bytes than asked")

func (b *bodyWriter) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p, b.over = p[:b.left], true
	}
	_ = b.rc.SetWriteDeadline(time.Now().Add(b.stall))
	n, err := b.w.Write(p)
	b.done(int64(n), err)
	if err == nil && b.over {
		return n, errTooLong
	}
	return n, b.err
}

func (b *bodyWriter) ReadFrom(r io.Reader) (int64, error) {
	if b.err != nil {
		return 0, b.err
	}
	_ = b.rc.SetWriteDeadline(time.Now().Add(b.stall))
	var n int64
	var err error
	if rf, ok := b.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{b.w}, r)
	}
	if n > b.left {
		b.over = true // sent already; the handler cuts the answer
	}
	b.done(n, err)
	if err == nil && b.over {
		return n, errTooLong
	}
	return n, b.err
}

func (b *bodyWriter) done(n int64, err error) {
	b.n += n
	b.left -= n
	if err != nil && b.err == nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w: %w", errStalled, err)
		}
		b.err = err
	}
}

// writerOnly hides a writer's ReadFrom, so that io.Copy does not call it
// back.
type writerOnly struct{ io.Writer }

// ReadFrom lets the response's own ReadFrom (net/http's: sendfile from a
// file) see r; without one the bytes are copied through a pooled buffer.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	w.prepare()
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		bp := copyBufs.Get().(*[]byte)
		n, err = io.CopyBuffer(writerOnly{w.ResponseWriter}, r, *bp)
		copyBufs.Put(bp)
	}
	w.bytes += n
	return n, err
}

// sendsFiles reports whether w, under the statusWriter, has a ReadFrom of
// its own (net/http's HTTP/1 response writer: sendfile on plain TCP);
// HTTP/2's has none, and would copy a file through a buffer.
func sendsFiles(w http.ResponseWriter) bool {
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		w = u.Unwrap()
	}
	_, ok := w.(io.ReaderFrom)
	return ok
}
