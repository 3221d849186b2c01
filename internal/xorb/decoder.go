package xorb

import "io"

// Decoder decodes a stream of stored chunks, such as a byte range fetched
// from a xorb: header and payload records, back to back. A range never holds
// the footer, so footer bytes are a format error like any other garbage.
//
// Every length is validated before anything is allocated or read, so a
// hostile stream costs at most one MaxChunkSize and one MaxCompressedSize
// buffer. The buffers come from a shared pool and go back to it when the
// Decoder reaches the end of the stream or an error.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	r       io.Reader
	off     int64 // bytes consumed
	hdr     [HeaderSize]byte
	last    Header
	out     *[MaxChunkSize]byte
	payload *[MaxCompressedSize]byte
	err     error // sticky
}

// NewDecoder returns a Decoder reading stored chunks from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: r}
}

// Reset makes d read a new stream from r, keeping its buffers.
func (d *Decoder) Reset(r io.Reader) {
	d.r, d.off, d.last, d.err = r, 0, Header{}, nil
}

// Next returns the next decoded chunk. The slice is valid until the next
// call of Next or Reset. At a clean end of the stream (between two chunks)
// Next returns io.EOF; if the stream ends inside a chunk, io.ErrUnexpectedEOF;
// for invalid bytes, a *FormatError with the offset in the stream. Errors
// of the underlying reader are returned as they are. Every error is final:
// later calls return it again.
func (d *Decoder) Next() ([]byte, error) {
	if d.err != nil {
		return nil, d.err
	}
	chunk, err := d.next()
	if err != nil {
		d.err = err
		d.release()
		return nil, err
	}
	return chunk, nil
}

// Header returns the header of the chunk last returned by Next.
func (d *Decoder) Header() Header { return d.last }

// Offset returns the number of stream bytes consumed: after a successful
// Next, the end of that chunk's record.
func (d *Decoder) Offset() int64 { return d.off }

func (d *Decoder) next() ([]byte, error) {
	if _, err := io.ReadFull(d.r, d.hdr[:]); err != nil {
		return nil, err // io.EOF before the first byte, io.ErrUnexpectedEOF after
	}
	h, err := ParseHeader(d.hdr[:])
	if err != nil {
		return nil, shift(err, d.off)
	}
	start := d.off + HeaderSize
	if d.out == nil {
		d.out = chunkBufs.Get().(*[MaxChunkSize]byte)
	}
	out := d.out[:h.UncompressedLen]
	if h.Scheme == SchemeNone {
		// The payload is the chunk: read it in place.
		if _, err := io.ReadFull(d.r, out); err != nil {
			return nil, unexpected(err)
		}
	} else {
		if d.payload == nil {
			d.payload = payloadBufs.Get().(*[MaxCompressedSize]byte)
		}
		payload := d.payload[:h.CompressedLen]
		if _, err := io.ReadFull(d.r, payload); err != nil {
			return nil, unexpected(err)
		}
		if out, err = DecodePayload(out[:0], h, payload); err != nil {
			return nil, shift(err, start)
		}
	}
	d.off = start + int64(h.CompressedLen)
	d.last = h
	return out, nil
}

// release returns the buffers to their pools; called once the stream is
// over, when no returned chunk may be used any more.
func (d *Decoder) release() {
	if d.out != nil {
		chunkBufs.Put(d.out)
		d.out = nil
	}
	if d.payload != nil {
		payloadBufs.Put(d.payload)
		d.payload = nil
	}
}

// unexpected maps the end of the stream inside a chunk to io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
