package shard

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Sizes and limits of the format.
const (
	RecordSize = 48  // every header, term, verification, metadata and chunk record
	HeaderSize = 48  // shard header
	FooterSize = 200 // shard footer

	HeaderVersion = 2
	FooterVersion = 1

	// MaxShardSize is the largest shard Parse reads and MarshalBinary
	// writes (the CAS rejects larger uploads; clients split).
	MaxShardSize = 64 << 20

	fileLookupEntrySize  = 12 // u64 truncated hash + u32 record index
	xorbLookupEntrySize  = 12
	chunkLookupEntrySize = 16 // u64 truncated hash + u32 xorb record + u32 chunk
)

// Flags.
const (
	// ChunkFlagGlobalDedup marks a chunk the server offers for global
	// deduplication. Servers set it; clients send 0.
	ChunkFlagGlobalDedup = 0x80000000
	// FileFlagVerification: the file block carries one verification record
	// per term.
	FileFlagVerification = 0x80000000
	// FileFlagMetadataExt: the file block ends with a metadata record holding
	// the SHA-256 of the file.
	FileFlagMetadataExt = 0x40000000

	knownFileFlags = FileFlagVerification | FileFlagMetadataExt
)

// NoExpiry is the shard_key_expiry xet-core writes for shards that never
// expire.
const NoExpiry = math.MaxUint64

// headerTag is the fixed 32-byte tag that opens every shard.
var headerTag = [32]byte{
	'H', 'F', 'R', 'e', 'p', 'o', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a', 0,
	85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169,
}

// bookendHash is the hash position of a bookend record: 32 × 0xff.
var bookendHash = merklehash.Hash{
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
}

// Term is one piece of a file: the chunks [ChunkStart, ChunkEnd) of a xorb.
type Term struct {
	XorbHash      merklehash.Hash
	Flags         uint32 // xorb flags, 0 in practice
	UnpackedBytes uint32 // uncompressed bytes of the term = sum of its chunk sizes
	ChunkStart    uint32
	ChunkEnd      uint32 // exclusive
}

// File is the reconstruction of one file.
type File struct {
	Hash  merklehash.Hash
	Terms []Term
	// Verification is nil when the file carries no verification records,
	// else it holds one range hash per term.
	Verification []merklehash.Hash
	// SHA256 is the conventional SHA-256 digest of the file contents (as
	// crypto/sha256 returns it), or nil when the file has no metadata
	// record. On the wire each 8-byte group is stored reversed.
	SHA256 *[32]byte
}

// XorbChunk is one chunk of a xorb listing.
type XorbChunk struct {
	Hash   merklehash.Hash // plain chunk hash, or keyed in a global-dedup answer
	Offset uint32          // uncompressed start of the chunk within the xorb
	Size   uint32          // uncompressed length
	Flags  uint32          // ChunkFlagGlobalDedup or 0
}

// Xorb is the chunk listing of one xorb.
type Xorb struct {
	Hash        merklehash.Hash
	Flags       uint32
	BytesInXorb uint32 // sum of the uncompressed chunk sizes
	BytesOnDisk uint32 // serialized xorb length; xet-core clients write 0
	Chunks      []XorbChunk
}

// Footer holds the footer fields a writer chooses. The other fields are
// filled in by Parse from the bytes read and ignored by MarshalBinary, which
// computes its own.
type Footer struct {
	HMACKey merklehash.Hash // chunk_hash_hmac_key; zero = chunk hashes are plain
	Created uint64          // unix seconds
	Expiry  uint64          // unix seconds; readers treat now > Expiry as expired

	// Set by Parse.
	FileInfoOffset     uint64
	XorbInfoOffset     uint64
	FileLookupOffset   uint64
	FileLookupEntries  uint64
	XorbLookupOffset   uint64
	XorbLookupEntries  uint64
	ChunkLookupOffset  uint64
	ChunkLookupEntries uint64
	StoredBytesOnDisk  uint64 // as written; huggingface.js and zig-xet leave some sums 0
	MaterializedBytes  uint64
	StoredBytes        uint64
	FooterOffset       uint64
}

// Shard is the decoded content of a shard.
type Shard struct {
	Files []File
	Xorbs []Xorb
	// Footer is nil for an upload body without footer. When set,
	// MarshalBinary writes lookup tables and the footer.
	Footer *Footer
}

// FormatError reports malformed shard bytes.
type FormatError struct {
	Offset int64 // byte offset of the offending field or record
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("shard: offset %d: %s", e.Offset, e.Reason)
}

func formatErr(off int, format string, args ...any) error {
	return &FormatError{Offset: int64(off), Reason: fmt.Sprintf(format, args...)}
}

var (
	// ErrTooLarge reports a shard above MaxShardSize.
	ErrTooLarge = errors.New("shard: larger than 64 MiB")
	// ErrInvalid reports content MarshalBinary refuses to write.
	ErrInvalid = errors.New("shard: invalid content")
)

// SortByHash orders files and xorbs by hash compared as four u64 words,
// the order xet-core writes them in. Equal hashes keep their order.
func (s *Shard) SortByHash() {
	slices.SortStableFunc(s.Files, func(a, b File) int { return a.Hash.Compare(b.Hash) })
	slices.SortStableFunc(s.Xorbs, func(a, b Xorb) int { return a.Hash.Compare(b.Hash) })
}

// NewXorb builds the listing of a xorb from its chunk hashes and sizes in
// xorb order, filling in offsets and BytesInXorb.
func NewXorb(hash merklehash.Hash, chunks []merklehash.Leaf, bytesOnDisk uint32) (Xorb, error) {
	x := Xorb{Hash: hash, BytesOnDisk: bytesOnDisk}
	if len(chunks) > 0 {
		x.Chunks = make([]XorbChunk, len(chunks))
	}
	var off uint64
	for i, c := range chunks {
		if c.Size > math.MaxUint32 || off+c.Size > math.MaxUint32 {
			return Xorb{}, fmt.Errorf("%w: xorb %s exceeds 4 GiB at chunk %d", ErrInvalid, hash, i)
		}
		x.Chunks[i] = XorbChunk{Hash: c.Hash, Offset: uint32(off), Size: uint32(c.Size)}
		off += c.Size
	}
	x.BytesInXorb = uint32(off)
	return x, nil
}

// Keyed returns a copy of x whose chunk hashes are keyed with key, as a
// global-dedup answer lists them (§1.7). A zero key leaves them plain.
func (x Xorb) Keyed(key merklehash.Hash) Xorb {
	out := x
	out.Chunks = slices.Clone(x.Chunks)
	for i := range out.Chunks {
		out.Chunks[i].Hash = merklehash.KeyedChunkHash(key, out.Chunks[i].Hash)
	}
	return out
}

// chunkKey returns the HMAC key of the shard (zero when none).
func (s *Shard) chunkKey() merklehash.Hash {
	if s.Footer == nil {
		return merklehash.Zero
	}
	return s.Footer.HMACKey
}

// reverseWords reverses the bytes inside each 8-byte group; it converts a
// conventional SHA-256 digest to its stored form and back.
func reverseWords(in [32]byte) [32]byte {
	var out [32]byte
	for w := 0; w < 4; w++ {
		for i := 0; i < 8; i++ {
			out[w*8+i] = in[w*8+7-i]
		}
	}
	return out
}
