package xorb

import "github.com/xetproxy/xetproxy/internal/merklehash"

// Builder packs chunks into xorbs the way xet-core does: up to MaxChunks
// chunks and MaxBytes uncompressed bytes each, every chunk compressed
// according to the Builder's Policy.
type Builder struct {
	policy   Policy
	region   []byte
	chunks   []ChunkInfo
	unpacked int
}

// NewBuilder returns an empty Builder that compresses with p.
func NewBuilder(p Policy) *Builder {
	return &Builder{policy: p}
}

// Add appends chunk to the xorb being built and reports true, or adds
// nothing and reports false when the xorb has no room for it: MaxChunks
// chunks already, or MaxBytes uncompressed bytes would be exceeded. A chunk
// over MaxChunkSize fits no xorb and is always refused, even by an empty
// Builder. Empty chunks are allowed.
func (b *Builder) Add(chunk []byte) bool {
	if !b.Fits(len(chunk)) {
		return false
	}
	region, h, ok := appendChunk(b.region, chunk, b.policy)
	if !ok {
		return false
	}
	b.region = region
	b.unpacked += len(chunk)
	b.chunks = append(b.chunks, ChunkInfo{
		Hash:        merklehash.ChunkHash(chunk),
		Size:        h.UncompressedLen,
		End:         uint32(len(region)),
		UnpackedEnd: uint32(b.unpacked),
	})
	return true
}

// Fits reports whether a chunk of n bytes can be added.
func (b *Builder) Fits(n int) bool {
	return n >= 0 && n <= MaxChunkSize && len(b.chunks) < MaxChunks && b.unpacked+n <= MaxBytes
}

// Len returns the number of chunks added since the last Finish.
func (b *Builder) Len() int { return len(b.chunks) }

// UnpackedLen returns the uncompressed bytes added since the last Finish.
func (b *Builder) UnpackedLen() int { return b.unpacked }

// Finish returns the built xorb, or nil if no chunk was added, and empties
// the Builder for the next xorb. The xorb owns its memory.
func (b *Builder) Finish() *Xorb {
	if len(b.chunks) == 0 {
		return nil
	}
	x := &Xorb{Chunks: b.chunks, Region: b.region}
	x.Hash = merklehash.XorbHash(x.Leaves())
	b.region, b.chunks, b.unpacked = nil, nil, 0
	return x
}
