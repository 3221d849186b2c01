package shard

import "github.com/xetproxy/xetproxy/internal/merklehash"

// ChunkRef locates a chunk in a shard: Xorbs[Xorb].Chunks[Chunk].
type ChunkRef struct {
	Xorb  int
	Chunk int
}

// ChunkIndex finds the chunks of one shard by their plain chunk hash. It
// holds the hashes as the shard stores them (keyed when the footer carries
// an HMAC key) and keys each query the same way (§1.7).
type ChunkIndex struct {
	key  merklehash.Hash
	refs map[merklehash.Hash]ChunkRef
}

// NewChunkIndex indexes every chunk of s. When a hash occurs more than once
// the first occurrence (lowest xorb, then chunk index) wins.
func NewChunkIndex(s *Shard) *ChunkIndex {
	n := 0
	for i := range s.Xorbs {
		n += len(s.Xorbs[i].Chunks)
	}
	ix := &ChunkIndex{key: s.chunkKey(), refs: make(map[merklehash.Hash]ChunkRef, n)}
	for i := range s.Xorbs {
		for j, c := range s.Xorbs[i].Chunks {
			if _, dup := ix.refs[c.Hash]; !dup {
				ix.refs[c.Hash] = ChunkRef{Xorb: i, Chunk: j}
			}
		}
	}
	return ix
}

// Find returns where the chunk with the given plain hash is listed.
func (ix *ChunkIndex) Find(chunk merklehash.Hash) (ChunkRef, bool) {
	ref, ok := ix.refs[merklehash.KeyedChunkHash(ix.key, chunk)]
	return ref, ok
}

// Len is the number of distinct chunk hashes indexed.
func (ix *ChunkIndex) Len() int { return len(ix.refs) }

// FindChunk is Find without an index: one linear scan of the xorb section,
// for a single query.
func (s *Shard) FindChunk(chunk merklehash.Hash) (ChunkRef, bool) {
	want := merklehash.KeyedChunkHash(s.chunkKey(), chunk)
	for i := range s.Xorbs {
		for j := range s.Xorbs[i].Chunks {
			if s.Xorbs[i].Chunks[j].Hash == want {
				return ChunkRef{Xorb: i, Chunk: j}, true
			}
		}
	}
	return ChunkRef{}, false
}
