package cache

import (
	"context"
	"errors"
	"fmt"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Limits on one entry. They follow the Xet format: a chunk decodes to at most
// 128 KiB and a xorb holds at most 8192 chunks. A xorb written by xet-core
// holds at most 64 MiB of decoded bytes, but other writers bound the encoded
// size instead, so an entry may hold up to twice that.
const (
	MaxChunkSize    = 128 << 10
	MaxEntryChunks  = 8192
	MaxEntryBytes   = 128 << 20
	maxEncodedBytes = headerFixed + MaxEntryChunks*perChunkHeader + MaxEntryBytes
)

var (
	// ErrNotFound is returned by Get when no stored entry covers the
	// requested range.
	ErrNotFound = errors.New("cache: not found")
	// ErrInvalidEntry is returned by Put (and Entry.Validate) for an entry
	// whose fields are inconsistent or over the limits.
	ErrInvalidEntry = errors.New("cache: invalid entry")
	// ErrInvalidRange is returned by Get for an empty, inverted or oversized
	// chunk range.
	ErrInvalidRange = errors.New("cache: invalid chunk range")
	// ErrTooLarge is returned by Put when an entry cannot fit in the store at
	// all (it is larger than the store's whole capacity).
	ErrTooLarge = errors.New("cache: entry larger than the cache")
	// ErrClosed is returned by a store that has been closed.
	ErrClosed = errors.New("cache: closed")
)

// Store is a content-addressed cache of decoded xorb chunks.
//
// Entries are named by what they hold (a xorb hash and a chunk range), so an
// entry never goes stale and is never invalidated; a store may still forget
// any entry at any time. Implementations are safe for concurrent use.
type Store interface {
	// Get returns decoded chunks [start, end) of xorb, taken from any single
	// stored entry of that xorb whose range covers [start, end). The returned
	// entry covers exactly [start, end), passes Validate, and may share
	// memory with the store: the caller must not modify it.
	//
	// Get returns an error wrapping ErrNotFound on a miss (including when
	// [start, end) could only be assembled from several entries, which no
	// store does), ErrInvalidRange when start >= end or the range is longer
	// than MaxEntryChunks, and ctx.Err() when ctx is done before the lookup.
	// A stored entry that fails its checksum is deleted and reported as a
	// miss, never returned. Any other error is a failure of the store itself;
	// callers should treat it as a miss.
	Get(ctx context.Context, xorb merklehash.Hash, start, end uint32) (*Entry, error)

	// Put stores e. The caller promises that e holds the verified decoded
	// chunks its key names (Hashes[i] is the chunk hash of chunk i): the
	// store checks the structure (Validate) but not the content. The store
	// may keep references to e's slices, so the caller must not modify them
	// afterwards. Putting a key that is already stored, or that a stored
	// entry covers, succeeds without writing. A successful Put does not
	// promise a later hit: any entry may be evicted.
	//
	// Put returns an error wrapping ErrInvalidEntry for a malformed entry,
	// ErrTooLarge when e can never fit, and ctx.Err() when ctx is done before
	// the write starts.
	Put(ctx context.Context, e *Entry) error

	// Delete removes every stored entry of xorb whose range overlaps
	// [start, end), so that none of those chunks is served again. It is for
	// purging content that a later check (a file hash mismatch) showed to
	// be wrong; eviction needs no call. Deleting nothing is not an error.
	//
	// Delete returns an error wrapping ErrInvalidRange for a bad range and
	// ctx.Err() when ctx is done before it starts. Another process sharing
	// the store may write an overlapping entry again at any time.
	Delete(ctx context.Context, xorb merklehash.Hash, start, end uint32) error
}

// StatsReporter is implemented by stores that count their activity.
type StatsReporter interface {
	// Stats returns a snapshot of the counters; it is cheap and safe to call
	// concurrently with any other method.
	Stats() Stats
}

// Stats is a snapshot of a store's counters. Counters only grow; Entries,
// Manifests, Size and Capacity are levels. Hits, Misses and Puts count
// entries only; the other counters include manifests (ManifestStore).
type Stats struct {
	Hits      uint64 // Get calls answered from the store
	Misses    uint64 // Get calls answered with ErrNotFound
	HitBytes  uint64 // decoded bytes returned by hits
	Puts      uint64 // entries written
	PutBytes  uint64 // decoded bytes written
	Evictions uint64 // entries and manifests dropped to stay within capacity
	Corrupt   uint64 // stored entries and manifests found damaged and deleted
	Errors    uint64 // failures other than misses and invalid input
	Dropped   uint64 // shared writes given up: queue full after waiting, or the spooled entry gone (Tiered)
	Entries   int64  // entries currently known to the store
	Manifests int64  // manifests currently known to the store
	Size      int64  // bytes currently held (stored form, headers included), manifests included
	Capacity  int64  // configured bound on Size; 0 when the store has none
}

// Key names an entry: chunks [Start, End) of the xorb whose hash is Xorb.
type Key struct {
	Xorb       merklehash.Hash
	Start, End uint32
}

// String renders k as "<xorb hash>/<start>-<end>", the object-store key form.
func (k Key) String() string { return fmt.Sprintf("%s/%d-%d", k.Xorb, k.Start, k.End) }

// Len is the number of chunks k names.
func (k Key) Len() uint32 { return k.End - k.Start }

// Overlaps reports whether k and o name the same xorb and share a chunk.
func (k Key) Overlaps(o Key) bool {
	return k.Xorb == o.Xorb && k.Start < o.End && o.Start < k.End
}

// Covers reports whether k names the same xorb as o and a range containing
// o's range.
func (k Key) Covers(o Key) bool {
	return k.Xorb == o.Xorb && k.Start <= o.Start && o.End <= k.End
}

// checkRange validates a requested chunk range.
func checkRange(start, end uint32) error {
	if start >= end || end-start > MaxEntryChunks {
		return fmt.Errorf("%w: [%d, %d)", ErrInvalidRange, start, end)
	}
	return nil
}

// Entry holds decoded chunks [Start, End) of one xorb.
type Entry struct {
	Xorb       merklehash.Hash
	Start, End uint32
	// Offsets holds End-Start+1 offsets into Data: chunk Start+i is
	// Data[Offsets[i]:Offsets[i+1]]. The first is 0 and the last len(Data).
	Offsets []uint32
	// Hashes holds the chunk hash of each chunk, in order.
	Hashes []merklehash.Hash
	// Data is the decoded bytes of the chunks, concatenated.
	Data []byte
	// from is the disk file the entry was read from, if any (vouch.go).
	from *origin
	// pooled is the read buffer Data lives in, if the store lent one
	// (readbuf.go).
	pooled *[]byte
	// lent is the open file the entry was read from, if the store lent
	// it (lent.go).
	lent *lent
}

// Key returns the key naming e.
func (e *Entry) Key() Key { return Key{Xorb: e.Xorb, Start: e.Start, End: e.End} }

// Validate checks that e's fields agree with each other and with the limits:
// a non-empty range of at most MaxEntryChunks chunks, one offset more than
// chunks starting at 0 and ending at len(Data), strictly increasing by at
// most MaxChunkSize per chunk, one hash per chunk, at most MaxEntryBytes of
// data. It does not hash the data (see Verify).
func (e *Entry) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidEntry, e.Key(), fmt.Sprintf(format, args...))
	}
	if e.Start >= e.End {
		return bad("empty chunk range")
	}
	n := e.End - e.Start
	if n > MaxEntryChunks {
		return bad("%d chunks, limit %d", n, MaxEntryChunks)
	}
	if len(e.Offsets) != int(n)+1 {
		return bad("%d offsets for %d chunks", len(e.Offsets), n)
	}
	if len(e.Hashes) != int(n) {
		return bad("%d hashes for %d chunks", len(e.Hashes), n)
	}
	if len(e.Data) > MaxEntryBytes {
		return bad("%d bytes, limit %d", len(e.Data), MaxEntryBytes)
	}
	if e.Offsets[0] != 0 {
		return bad("first offset %d, want 0", e.Offsets[0])
	}
	if last := e.Offsets[n]; uint64(last) != uint64(len(e.Data)) {
		return bad("last offset %d, data length %d", last, len(e.Data))
	}
	for i := uint32(0); i < n; i++ {
		lo, hi := e.Offsets[i], e.Offsets[i+1]
		if hi <= lo || hi-lo > MaxChunkSize {
			return bad("chunk %d spans [%d, %d)", e.Start+i, lo, hi)
		}
	}
	return nil
}

// Chunk returns the decoded bytes of chunk i of the xorb; Start <= i < End.
func (e *Entry) Chunk(i uint32) []byte {
	lo, hi := e.Offsets[i-e.Start], e.Offsets[i-e.Start+1]
	return e.Data[lo:hi:hi]
}

// Slice returns the entry for chunks [start, end) of e, which must lie inside
// e's range. Data and Hashes share e's memory; Offsets is new.
func (e *Entry) Slice(start, end uint32) (*Entry, error) {
	if start >= end || start < e.Start || end > e.End {
		return nil, fmt.Errorf("%w: [%d, %d) outside %s", ErrInvalidRange, start, end, e.Key())
	}
	i, j := start-e.Start, end-e.Start
	base := e.Offsets[i]
	offs := make([]uint32, j-i+1)
	for k := range offs {
		offs[k] = e.Offsets[i+uint32(k)] - base
	}
	lo, hi := base, e.Offsets[j]
	return &Entry{
		Xorb:    e.Xorb,
		Start:   start,
		End:     end,
		Offsets: offs,
		Hashes:  e.Hashes[i:j:j],
		Data:    e.Data[lo:hi:hi],
	}, nil
}

// MismatchError reports a chunk whose data does not hash to its stored hash.
type MismatchError struct {
	Xorb      merklehash.Hash
	Chunk     uint32
	Want, Got merklehash.Hash
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("cache: chunk %d of xorb %s: hash %s, want %s", e.Chunk, e.Xorb, e.Got, e.Want)
}

// Verify recomputes the chunk hash of every chunk and compares it with
// Hashes, returning a *MismatchError for the first that differs. e must be
// valid. It costs one BLAKE3 pass over Data.
func (e *Entry) Verify() error {
	for i := e.Start; i < e.End; i++ {
		if got := merklehash.ChunkHash(e.Chunk(i)); got != e.Hashes[i-e.Start] {
			return &MismatchError{Xorb: e.Xorb, Chunk: i, Want: e.Hashes[i-e.Start], Got: got}
		}
	}
	return nil
}
