package xorb

import (
	"fmt"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// ChunkInfo describes one chunk of a xorb.
type ChunkInfo struct {
	Hash        merklehash.Hash // hash of the uncompressed chunk
	Size        uint32          // uncompressed bytes
	End         uint32          // end of the chunk's record (header+payload) in the chunk region
	UnpackedEnd uint32          // uncompressed bytes of this chunk and all before it
}

// Xorb is a parsed or built xorb.
type Xorb struct {
	Hash   merklehash.Hash // Merkle root of (chunk hash, uncompressed size)
	Chunks []ChunkInfo
	Region []byte // chunk headers and payloads; aliases the input of Parse
}

// Leaves returns the (hash, size) list the xorb hash is computed from.
func (x *Xorb) Leaves() []merklehash.Leaf {
	leaves := make([]merklehash.Leaf, len(x.Chunks))
	for i, c := range x.Chunks {
		leaves[i] = merklehash.Leaf{Hash: c.Hash, Size: uint64(c.Size)}
	}
	return leaves
}

// UnpackedLen returns the uncompressed bytes of all chunks.
func (x *Xorb) UnpackedLen() uint64 {
	if len(x.Chunks) == 0 {
		return 0
	}
	return uint64(x.Chunks[len(x.Chunks)-1].UnpackedEnd)
}

// Footer returns the V1 footer of x followed by its u32 length, as a stored
// object ends. The uniqueness nonce is zero.
func (x *Xorb) Footer() []byte {
	return appendFooter(make([]byte, 0, footerLenV1(len(x.Chunks))+4), x.Hash, x.Chunks)
}

// Bytes returns the stored object (chunk region, footer and footer length)
// if withFooter is set, else the upload body (the chunk region alone), in a
// new slice.
func (x *Xorb) Bytes(withFooter bool) []byte {
	if !withFooter {
		return append([]byte(nil), x.Region...)
	}
	out := make([]byte, 0, len(x.Region)+footerLenV1(len(x.Chunks))+4)
	out = append(out, x.Region...)
	return appendFooter(out, x.Hash, x.Chunks)
}

// ByteRange returns the stored byte range, end-inclusive as an HTTP Range,
// holding chunks [start, end). It panics unless start < end <= len(x.Chunks),
// like an out-of-range slice expression: check untrusted ranges first.
func (x *Xorb) ByteRange(start, end uint32) (first, lastInclusive uint64) {
	if start >= end || end > uint32(len(x.Chunks)) {
		panic(fmt.Sprintf("xorb: chunk range [%d, %d) out of [0, %d)", start, end, len(x.Chunks)))
	}
	if start > 0 {
		first = uint64(x.Chunks[start-1].End)
	}
	return first, uint64(x.Chunks[end-1].End) - 1
}

// Parse parses an upload body (chunk region only) or a stored object (chunk
// region, footer, footer length). Chunk records are read until the end of
// data or until a record position starts with "XETBLOB", where the footer
// must begin. Every chunk is decoded and hashed; a footer, V1 or legacy V0,
// must then agree with the chunks in every field (hashes, boundaries,
// unpacked offsets, counts, section offsets, length), except the buffer
// that holds the uniqueness nonce.
//
// A xorb holds between 1 and MaxChunks chunks. The uncompressed total is
// not limited to MaxBytes, since encoders that cut on the serialized size
// exceed it. Region aliases data. Errors are *FormatError with offsets into
// data.
func Parse(data []byte) (*Xorb, error) {
	var chunks []ChunkInfo
	var unpacked uint64
	buf := chunkBufs.Get().(*[MaxChunkSize]byte)
	defer chunkBufs.Put(buf)

	off := 0
	footer := -1
	for off < len(data) {
		rest := data[off:]
		if len(rest) >= len(footerIdent) && string(rest[:len(footerIdent)]) == footerIdent {
			footer = off
			break
		}
		if len(chunks) == MaxChunks {
			return nil, formatErr(int64(off), "more than %d chunks", MaxChunks)
		}
		h, err := ParseHeader(rest)
		if err != nil {
			return nil, shift(err, int64(off))
		}
		end := off + HeaderSize + int(h.CompressedLen)
		if end > len(data) {
			return nil, formatErr(int64(len(data)), "chunk %d at offset %d truncated: %d payload bytes, %d present",
				len(chunks), off, h.CompressedLen, len(data)-off-HeaderSize)
		}
		payload := data[off+HeaderSize : end]
		chunk := payload
		if h.Scheme != SchemeNone {
			if chunk, err = DecodePayload(buf[:0], h, payload); err != nil {
				return nil, shift(err, int64(off+HeaderSize))
			}
		}
		unpacked += uint64(h.UncompressedLen)
		if chunks == nil {
			// At most one chunk per header: bounded by the input.
			chunks = make([]ChunkInfo, 0, min(MaxChunks, len(data)/HeaderSize))
		}
		chunks = append(chunks, ChunkInfo{
			Hash:        merklehash.ChunkHash(chunk),
			Size:        h.UncompressedLen,
			End:         uint32(end),
			UnpackedEnd: uint32(unpacked),
		})
		off = end
	}
	if len(chunks) == 0 {
		return nil, formatErr(int64(off), "xorb holds no chunk")
	}
	x := &Xorb{Chunks: chunks, Region: data[:off:off]}
	x.Hash = merklehash.XorbHash(x.Leaves())
	if footer >= 0 {
		if err := checkFooter(data[footer:], x.Hash, chunks); err != nil {
			return nil, shift(err, int64(footer))
		}
	}
	return x, nil
}
