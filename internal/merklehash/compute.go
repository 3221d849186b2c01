package merklehash

import (
	"strconv"
	"sync"

	"lukechampine.com/blake3"
)

// BLAKE3 is lukechampine.com/blake3: every chunk served is hashed, and
// its AVX-512 path (16 BLAKE3 chunks of 1 KiB at once; AVX2 on CPUs
// without it) hashes 64 KiB chunks about 1.5 times as fast as an
// AVX2-only implementation (BenchmarkChunkHash; docs/performance-server.md).

// keyedPool keeps keyed hashers for the hot paths, allocation-free (a
// Hasher holds a 16 KiB buffer).
type keyedPool struct {
	pool sync.Pool
}

func newKeyedPool(key [32]byte) *keyedPool {
	p := &keyedPool{}
	p.pool.New = func() any { return blake3.New(Size, key[:]) }
	return p
}

func (p *keyedPool) sum(parts ...[]byte) Hash {
	h := p.pool.Get().(*blake3.Hasher)
	h.Reset()
	for _, b := range parts {
		_, _ = h.Write(b)
	}
	var out Hash
	h.Sum(out[:0])
	p.pool.Put(h)
	return out
}

var (
	dataHashers         = newKeyedPool(DataKey)
	nodeHashers         = newKeyedPool(InternalNodeKey)
	verificationHashers = newKeyedPool(VerificationKey)
	zeroKeyHashers      = newKeyedPool([32]byte{})
)

// ChunkHash is the hash of one chunk's uncompressed bytes.
func ChunkHash(data []byte) Hash { return dataHashers.sum(data) }

// ShardHash names a shard file: keyed with DataKey over the whole shard bytes.
func ShardHash(shard []byte) Hash { return dataHashers.sum(shard) }

// Leaf is one entry of a Merkle aggregation: a hash and the number of
// uncompressed bytes below it.
type Leaf struct {
	Hash Hash
	Size uint64
}

// NodeHash merges children into their parent node. The parent's size is the
// sum of the children's sizes.
func NodeHash(children []Leaf) Leaf {
	buf := make([]byte, 0, len(children)*(2*Size+24))
	var size uint64
	for _, c := range children {
		buf = c.Hash.appendText(buf)
		buf = append(buf, " : "...)
		buf = strconv.AppendUint(buf, c.Size, 10)
		buf = append(buf, '\n')
		size += c.Size
	}
	return Leaf{Hash: nodeHashers.sum(buf), Size: size}
}

const (
	meanBranching = 4
	maxGroup      = 2*meanBranching + 1
)

// cut returns how many leading entries of list form the next group.
func cut(list []Leaf) int {
	if len(list) <= 2 {
		return len(list)
	}
	end := min(maxGroup, len(list))
	for i := 2; i < end; i++ {
		if list[i].Hash.Word(3)%meanBranching == 0 {
			return i + 1
		}
	}
	return end
}

// Root aggregates leaves into the root of the variable fan-out Merkle tree.
// An empty list gives the zero hash; one leaf is its own root.
func Root(leaves []Leaf) Hash {
	if len(leaves) == 0 {
		return Zero
	}
	level := append([]Leaf(nil), leaves...)
	for len(level) > 1 {
		next := level[:0]
		for rest := level; len(rest) > 0; {
			n := cut(rest)
			parent := NodeHash(rest[:n])
			rest = rest[n:]
			// next never overtakes rest: it grows by one per group of >= 1.
			next = append(next, parent)
		}
		level = next
	}
	return level[0].Hash
}

// XorbHash is the Merkle root of a xorb's chunks in xorb order.
func XorbHash(chunks []Leaf) Hash { return Root(chunks) }

// FileHash is the hash of a file given its chunks in file order. An empty
// file hashes to all zero bytes, as xet-core and the Hub compute it.
func FileHash(chunks []Leaf) Hash {
	if len(chunks) == 0 {
		return Zero
	}
	return FileHashFromRoot(Root(chunks))
}

// FileHashFromRoot applies the final keyed step of the file hash to a
// Merkle root. Callers that built the root themselves must handle the empty
// file (zero hash) before calling it.
func FileHashFromRoot(root Hash) Hash { return zeroKeyHashers.sum(root[:]) }

// VerificationHash is the term verification hash over the raw chunk hashes
// of one term, in order.
func VerificationHash(chunkHashes []Hash) Hash {
	h := verificationHashers.pool.Get().(*blake3.Hasher)
	h.Reset()
	for i := range chunkHashes {
		_, _ = h.Write(chunkHashes[i][:])
	}
	var out Hash
	h.Sum(out[:0])
	verificationHashers.pool.Put(h)
	return out
}

// KeyedChunkHash is a chunk hash re-keyed with a shard's HMAC key, as used in
// global-dedup answers. A zero key leaves the hash unchanged.
func KeyedChunkHash(key, chunk Hash) Hash {
	if key.IsZero() {
		return chunk
	}
	h := blake3.New(Size, key[:])
	_, _ = h.Write(chunk[:])
	var out Hash
	h.Sum(out[:0])
	return out
}

// GlobalDedupEligible reports whether a chunk may be offered for global
// deduplication: the first chunk of a file, or one whose last word is a
// multiple of 1024.
func GlobalDedupEligible(h Hash, firstInFile bool) bool {
	return firstInFile || h.Word(3)%1024 == 0
}
