package xorb

import "sync"

// chunkBufs holds MaxChunkSize scratch buffers: BG4 groups on the way in and
// out, decoded chunks in Decoders and Parse.
var chunkBufs = sync.Pool{New: func() any { return new([MaxChunkSize]byte) }}

// payloadBufs holds MaxCompressedSize buffers for payloads read from a stream
// and for the BG4 candidate frame of PolicyAuto.
var payloadBufs = sync.Pool{New: func() any { return new([MaxCompressedSize]byte) }}

// AppendChunk appends the stored form of data (header and payload) to dst
// and returns the extended slice. p chooses the scheme; a chunk that
// compression does not shrink, or a Policy value not defined here, is
// stored raw.
//
// data must be at most MaxChunkSize bytes. A longer chunk cannot be stored
// in any xorb: AppendChunk then appends nothing and returns dst unchanged,
// which callers detect as no growth (every stored chunk has a header).
func AppendChunk(dst, data []byte, p Policy) []byte {
	dst, _, _ = appendChunk(dst, data, p)
	return dst
}

// appendChunk is AppendChunk that also returns the header it wrote; ok is
// false (and dst unchanged) for a chunk over MaxChunkSize.
func appendChunk(dst, data []byte, p Policy) (_ []byte, h Header, ok bool) {
	if len(data) > MaxChunkSize {
		return dst, Header{}, false
	}
	start := len(dst)
	// Room for the worst case (a raw chunk) up front, growing by doubling:
	// append's gentler growth of large slices would copy a Builder's region
	// over and over.
	dst = grow(dst, HeaderSize+len(data))
	dst = dst[:start+HeaderSize]
	h = Header{Scheme: SchemeNone, UncompressedLen: uint32(len(data))}
	raw := len(data) - 1 // a payload must be shorter than the chunk to be worth it

	switch p {
	case PolicyLZ4:
		if out, ok := appendLZ4Frame(dst, data, raw); ok {
			dst, h.Scheme = out, SchemeLZ4
		}
	case PolicyBG4:
		if out, ok := appendBG4Frame(dst, data, raw); ok {
			dst, h.Scheme = out, SchemeBG4LZ4
		}
	case PolicyAuto:
		limit := raw
		if out, ok := appendLZ4Frame(dst, data, raw); ok {
			dst, h.Scheme = out, SchemeLZ4
			limit = len(out) - start - HeaderSize - 1 // BG4 must be strictly smaller
		}
		if limit > 0 {
			buf := payloadBufs.Get().(*[MaxCompressedSize]byte)
			if frame, ok := appendBG4Frame(buf[:0], data, limit); ok {
				dst = append(dst[:start+HeaderSize], frame...)
				h.Scheme = SchemeBG4LZ4
			}
			payloadBufs.Put(buf)
		}
	}
	if h.Scheme == SchemeNone {
		dst = append(dst, data...)
	}
	h.CompressedLen = uint32(len(dst) - start - HeaderSize)
	h.Put(dst[start:])
	return dst, h, true
}

// appendBG4Frame is appendLZ4Frame of the BG4-grouped data.
func appendBG4Frame(dst, data []byte, limit int) ([]byte, bool) {
	if limit <= lz4FrameOverhead {
		return dst, false
	}
	buf := chunkBufs.Get().(*[MaxChunkSize]byte)
	grouped := buf[:len(data)]
	bg4Split(grouped, data)
	dst, ok := appendLZ4Frame(dst, grouped, limit)
	chunkBufs.Put(buf)
	return dst, ok
}

// DecodePayload decodes the payload of a chunk with header h and appends the
// chunk to dst. It checks h against the limits of the format, that payload
// is exactly h.CompressedLen bytes, and that decoding yields exactly
// h.UncompressedLen bytes; it never writes more. Errors are *FormatError
// with offsets into payload. With enough capacity in dst it does not
// allocate.
func DecodePayload(dst []byte, h Header, payload []byte) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return dst, &FormatError{Offset: 0, Reason: err.(*FormatError).Reason}
	}
	if uint64(len(payload)) != uint64(h.CompressedLen) {
		return dst, formatErr(0, "payload of %d bytes, chunk header says %d", len(payload), h.CompressedLen)
	}
	if h.Scheme == SchemeNone {
		return append(dst, payload...), nil
	}
	n := int(h.UncompressedLen)
	start := len(dst)
	dst = grow(dst, n)
	out := dst[start : start+n : start+n]
	switch h.Scheme {
	case SchemeLZ4:
		if err := decodeLZ4(out, payload); err != nil {
			return dst[:start], err
		}
	case SchemeBG4LZ4:
		buf := chunkBufs.Get().(*[MaxChunkSize]byte)
		grouped := buf[:n:n]
		err := decodeLZ4(grouped, payload)
		if err == nil {
			bg4Join(out, grouped)
		}
		chunkBufs.Put(buf)
		if err != nil {
			return dst[:start], err
		}
	}
	return dst[:start+n], nil
}
