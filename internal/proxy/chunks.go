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
type chunkStream struct {
	r       io.Reader
	off     int64 // bytes consumed
	hdr     [xorb.HeaderSize]byte
	payload *[]byte
}

var payloadPool = sync.Pool{New: func() any { b := make([]byte, xorb.MaxCompressedSize); return &b }}

// header reads the next chunk header: io.EOF at a clean end between
// chunks, io.ErrUnexpectedEOF inside one, a *xorb.FormatError (wrapped,
// with the offset in the range) for invalid bytes, or the reader's error.
func (c *chunkStream) header() (xorb.Header, error) {
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return xorb.Header{}, err
	}
	h, err := xorb.ParseHeader(c.hdr[:])
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
		if _, err := io.ReadFull(c.r, dst); err != nil {
			return eofInside(err)
		}
		c.off += int64(h.CompressedLen)
		return nil
	}
	if c.payload == nil {
		c.payload = payloadPool.Get().(*[]byte)
	}
	payload := (*c.payload)[:h.CompressedLen]
	if _, err := io.ReadFull(c.r, payload); err != nil {
		return eofInside(err)
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

func (c *chunkStream) release() {
	if c.payload != nil {
		payloadPool.Put(c.payload)
		c.payload = nil
	}
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
	n, err := io.CopyN(io.Discard, c.r, int64(h.CompressedLen))
	c.off += n
	if err != nil {
		return eofInside(err)
	}
	return nil
}
