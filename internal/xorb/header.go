package xorb

import (
	"fmt"
	"strconv"
)

// Limits of the format. Every length read from the input is checked against
// them before it is used.
const (
	// HeaderSize is the length of a chunk header.
	HeaderSize = 8
	// MaxChunkSize is the largest uncompressed chunk.
	MaxChunkSize = 128 << 10
	// MaxCompressedSize is the largest payload a reader accepts (xet-core's
	// bound; writers never store a payload longer than its chunk).
	MaxCompressedSize = 2 * MaxChunkSize
	// MaxChunks is the largest number of chunks in one xorb.
	MaxChunks = 8192
	// MaxBytes bounds the uncompressed bytes a Builder packs into one xorb.
	// Readers do not enforce it: encoders that cut on serialized size
	// produce xorbs with more uncompressed bytes.
	MaxBytes = 64 << 20
)

// Scheme is the compression scheme of one stored chunk.
type Scheme uint8

// The compression schemes of the format.
const (
	SchemeNone   Scheme = 0 // payload is the chunk
	SchemeLZ4    Scheme = 1 // payload is one LZ4 frame of the chunk
	SchemeBG4LZ4 Scheme = 2 // payload is one LZ4 frame of the BG4-grouped chunk
)

func (s Scheme) String() string {
	switch s {
	case SchemeNone:
		return "none"
	case SchemeLZ4:
		return "lz4"
	case SchemeBG4LZ4:
		return "bg4-lz4"
	}
	return "scheme(" + strconv.Itoa(int(s)) + ")"
}

// Header is a decoded chunk header.
type Header struct {
	Scheme          Scheme
	CompressedLen   uint32 // payload bytes after the header
	UncompressedLen uint32 // bytes of the decoded chunk
}

// FormatError reports bytes that are not a valid xorb or chunk. Offset is
// where the problem was found, counted from the start of the input of the
// function that returned the error (the header, the payload, the stream or
// the object).
type FormatError struct {
	Offset int64
	Reason string
}

func (e *FormatError) Error() string {
	return "xorb: invalid data at offset " + strconv.FormatInt(e.Offset, 10) + ": " + e.Reason
}

func formatErr(off int64, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// shift moves a FormatError found inside a sub-slice to the offsets of the
// enclosing input. Other errors are returned unchanged.
func shift(err error, by int64) error {
	if fe, ok := err.(*FormatError); ok {
		return &FormatError{Offset: fe.Offset + by, Reason: fe.Reason}
	}
	return err
}

const maxU24 = 1<<24 - 1

// ParseHeader decodes and validates the chunk header at the start of b:
// version 0, a known scheme, lengths within MaxChunkSize and
// MaxCompressedSize, and equal lengths for SchemeNone. Errors are
// *FormatError with offsets relative to b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, formatErr(int64(len(b)), "chunk header truncated: %d of %d bytes", len(b), HeaderSize)
	}
	if b[0] != 0 {
		if string(b[:len(footerIdent)]) == footerIdent {
			return Header{}, formatErr(0, "xorb footer where a chunk header was expected")
		}
		return Header{}, formatErr(0, "chunk header version %d, want 0", b[0])
	}
	h := Header{
		CompressedLen:   uint32(b[1]) | uint32(b[2])<<8 | uint32(b[3])<<16,
		Scheme:          Scheme(b[4]),
		UncompressedLen: uint32(b[5]) | uint32(b[6])<<8 | uint32(b[7])<<16,
	}
	if err := h.Validate(); err != nil {
		return Header{}, err
	}
	return h, nil
}

// Validate checks h against the limits of the format. Errors are
// *FormatError with the offset of the offending header field.
func (h Header) Validate() error {
	switch {
	case h.Scheme > SchemeBG4LZ4:
		return formatErr(4, "unknown compression scheme %d", uint8(h.Scheme))
	case h.UncompressedLen > MaxChunkSize:
		return formatErr(5, "uncompressed length %d exceeds %d", h.UncompressedLen, MaxChunkSize)
	case h.CompressedLen > MaxCompressedSize:
		return formatErr(1, "compressed length %d exceeds %d", h.CompressedLen, MaxCompressedSize)
	case h.Scheme == SchemeNone && h.CompressedLen != h.UncompressedLen:
		return formatErr(1, "uncompressed chunk with compressed length %d and uncompressed length %d",
			h.CompressedLen, h.UncompressedLen)
	}
	return nil
}

// Put writes h into the first HeaderSize bytes of b. It panics if b is too
// short or a length does not fit the 24-bit fields (a programming error:
// valid headers always fit); it does not otherwise validate h.
func (h Header) Put(b []byte) {
	if h.CompressedLen > maxU24 || h.UncompressedLen > maxU24 {
		panic("xorb: chunk header length exceeds 24 bits")
	}
	_ = b[HeaderSize-1]
	b[0] = 0
	b[1], b[2], b[3] = byte(h.CompressedLen), byte(h.CompressedLen>>8), byte(h.CompressedLen>>16)
	b[4] = byte(h.Scheme)
	b[5], b[6], b[7] = byte(h.UncompressedLen), byte(h.UncompressedLen>>8), byte(h.UncompressedLen>>16)
}
