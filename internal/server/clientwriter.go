package server

import (
	"errors"
	"net/http"
	"time"
)

// errExcess: the engine produced more bytes than the response announced.
var errExcess = errors.New("engine returned more bytes than asked")

// clientWriter is where a download's body goes: the response, with a
// fresh write deadline for every write (a client that stops reading fails
// after the stall timeout instead of holding the stream), the bytes
// counted, and never more than left of them.
//
// The engine's streams write their chunk buffers into it directly
// (io.WriterTo), so a served byte is not copied on its way to the socket.
type clientWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	stall   time.Duration
	left    int64 // bytes the response may still carry
	written int64
	err     error // the first failed write to the client
}

func (c *clientWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	var excess error
	if int64(len(p)) > c.left {
		p, excess = p[:c.left], errExcess
	}
	if len(p) > 0 {
		_ = c.rc.SetWriteDeadline(time.Now().Add(c.stall))
		n, err := c.w.Write(p)
		c.written += int64(n)
		c.left -= int64(n)
		if err != nil {
			c.err = err
			return n, err
		}
	}
	return len(p), excess
}
