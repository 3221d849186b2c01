package proxy

import (
	"fmt"
	"io"
	"sync"

	"github.com/xetproxy/xetproxy/internal/xorb"
)

// chunkStream reads the stored chunks of a xorb range one by one. It does
// what xorb.Decoder does with the same validating primitives (ParseHeader,
// DecodePayload), but decodes each chunk straight into a buffer the caller
// picks once it has seen the header: the stream holds no decoded copy of
// its own, which saves a copy of every byte.
//
// With ahead set, it reads r in large pieces into a buffer of its own and
// decodes compressed payloads where they lie in it: one read system call
// for several chunks, and no copy of the compressed bytes (an HTTP body
// read in chunk-sized pieces would go through the transport's buffer, one
// more copy of every byte). Without it (a reader that must not consume
// past the current chunk), it reads exactly each chunk's bytes.
type chunkStream struct {
	r       io.Reader
	ahead   bool
	off     int64 // bytes consumed
	hdr     [xorb.HeaderSize]byte
	payload *[]byte // ahead: the read buffer, holding buf[lo:hi]
	lo, hi  int
	rerr    error // ahead: the error r returned, after the bytes before it
}

var payloadPool = sync.Pool{New: func() any { b := make([]byte, xorb.MaxCompressedSize); return &b }}

// minRead is the least room the read-ahead buffer offers r: smaller reads
// would waste system calls, and reads of at least the HTTP transport's
// buffer size (casclient.NewTransport) bypass that buffer.
const minRead = 64 << 10

// fill makes n (<= xorb.MaxCompressedSize) unread bytes available in
// buf[lo:hi]. Fewer are there only with an error: io.EOF when r ended
// cleanly, whatever r returned otherwise.
func (c *chunkStream) fill(n int) error {
	if c.payload == nil {
		c.payload = payloadPool.Get().(*[]byte)
	}
	buf := *c.payload
	for empty := 0; c.hi-c.lo < n; {
		if c.rerr != nil {
			return c.rerr
		}
		if c.lo > 0 && len(buf)-c.hi < max(n-(c.hi-c.lo), minRead) {
			// Move the unread bytes (less than one payload) to the front.
			c.hi = copy(buf, buf[c.lo:c.hi])
			c.lo = 0
		}
		m, err := c.r.Read(buf[c.hi:])
		c.hi += m
		if err != nil {
			c.rerr = err
		} else if m == 0 {
			if empty++; empty == 100 {
				c.rerr = io.ErrNoProgress
			}
		}
	}
	return nil
}

// header reads the next chunk header: io.EOF at a clean end between
// chunks, io.ErrUnexpectedEOF inside one, a *xorb.FormatError (wrapped,
// with the offset in the range) for invalid bytes, or the reader's error.
func (c *chunkStream) header() (xorb.Header, error) {
	hdr := c.hdr[:]
	if c.ahead {
		if err := c.fill(xorb.HeaderSize); err != nil {
			if err == io.EOF && c.hi > c.lo {
				err = io.ErrUnexpectedEOF
			}
			return xorb.Header{}, err
		}
		hdr = (*c.payload)[c.lo : c.lo+xorb.HeaderSize]
		c.lo += xorb.HeaderSize
	} else if _, err := io.ReadFull(c.r, hdr); err != nil {
		return xorb.Header{}, err
	}
	h, err := xorb.ParseHeader(hdr)
	if err != nil {
		return h, fmt.Errorf("chunk at byte %d of the range: %w", c.off, err)
	}
	c.off += xorb.HeaderSize
	return h, nil
}

// body decodes the payload of the chunk whose header was just read into
// dst, which must be exactly h.UncompressedLen bytes long.
func (c *chunkStream) body(h xorb.Header, dst []byte) error {
	if h.Scheme == xorb.SchemeNone { // the payload is the chunk
		if err := c.read(dst); err != nil {
			return eofInside(err)
		}
		c.off += int64(h.CompressedLen)
		return nil
	}
	var payload []byte
	if c.ahead {
		if err := c.fill(int(h.CompressedLen)); err != nil {
			return eofInside(err)
		}
		payload = (*c.payload)[c.lo : c.lo+int(h.CompressedLen)]
		c.lo += len(payload)
	} else {
		if c.payload == nil {
			c.payload = payloadPool.Get().(*[]byte)
		}
		payload = (*c.payload)[:h.CompressedLen]
		if _, err := io.ReadFull(c.r, payload); err != nil {
			return eofInside(err)
		}
	}
	out, err := xorb.DecodePayload(dst[:0], h, payload)
	if err != nil {
		return fmt.Errorf("chunk at byte %d of the range: %w", c.off-xorb.HeaderSize, err)
	}
	if len(out) != len(dst) || &out[0] != &dst[0] {
		return fmt.Errorf("chunk at byte %d of the range: decoded outside its buffer", c.off-xorb.HeaderSize)
	}
	c.off += int64(h.CompressedLen)
	return nil
}

// read fills p with the next bytes of the range: first the buffered
// ones, the rest straight from r.
func (c *chunkStream) read(p []byte) error {
	n := 0
	if c.ahead {
		n = copy(p, (*c.payload)[c.lo:c.hi])
		c.lo += n
		if n < len(p) && c.rerr != nil {
			return c.rerr
		}
	}
	_, err := io.ReadFull(c.r, p[n:])
	if err == io.EOF && n > 0 {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (c *chunkStream) release() {
	if c.payload != nil {
		payloadPool.Put(c.payload)
		c.payload = nil
	}
	c.lo, c.hi = 0, 0
}

// eofInside maps the end of the stream inside a chunk to io.ErrUnexpectedEOF.
func eofInside(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// skip moves past the payload of the chunk whose header was just read,
// without decoding it.
func (c *chunkStream) skip(h xorb.Header) error {
	want := int64(h.CompressedLen)
	if c.ahead {
		b := min(int64(c.hi-c.lo), want)
		c.lo += int(b)
		c.off += b
		if want -= b; want > 0 && c.rerr != nil {
			return eofInside(c.rerr)
		}
	}
	n, err := io.CopyN(io.Discard, c.r, want)
	c.off += n
	if err != nil {
		return eofInside(err)
	}
	return nil
}
