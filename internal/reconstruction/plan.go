package reconstruction

import (
	"errors"
	"fmt"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Format limits the planner checks a reconstruction answer against before
// trusting any of its numbers (they size buffers further down).
const (
	maxChunksPerXorb = 8192      // chunk indices are below this
	maxChunkSize     = 128 << 10 // decoded bytes per chunk
	chunkHeaderSize  = 8
	maxStoredChunk   = chunkHeaderSize + 2*maxChunkSize // header + largest payload
)

// ErrInvalid is wrapped by every error about a malformed reconstruction
// answer: one the planner cannot turn into fetches.
var ErrInvalid = errors.New("invalid reconstruction")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Fetch is one download: the stored bytes Bytes of xorb Xorb at URL, which
// hold chunks Chunks. A Fetch is downloaded once and serves every piece
// listed in Pieces.
type Fetch struct {
	Xorb   merklehash.Hash
	URL    string
	Chunks ChunkRange
	Bytes  ByteRange
	Pieces []int // indices into Plan.Pieces, ascending
}

// Piece is the part of one term that reaches the output: the term's decoded
// bytes [Skip, Skip+Len), written at output offset Offset.
type Piece struct {
	Term           int        // index into the answer's Terms
	Fetch          int        // index into Plan.Fetches
	Chunks         ChunkRange // the term's chunks, absolute indices in the xorb
	UnpackedLength uint32     // decoded length of all of Chunks
	Skip           uint64
	Len            uint64
	Offset         uint64
}

// Plan says what to download for one reconstruction answer and how to cut
// the decoded chunks back into output bytes.
type Plan struct {
	Fetches []Fetch // in order of first use
	Pieces  []Piece // in output order
	Size    uint64  // output bytes: the sum of the pieces' Len
}

// NewPlan plans the first want bytes of the answer r: the bytes from the
// start of the queried range. Terms are located in r.Xorbs by containment
// and each distinct fetch range appears once in Fetches, however many terms
// (even overlapping ones) it serves. Terms past want are ignored; a Size
// below want means the answer ran short (the file ended, or the server
// answered less than asked).
func NewPlan(r *ResponseV2, want uint64) (*Plan, error) {
	type fetchKey struct {
		xorb       merklehash.Hash
		entry, rng int
	}
	p := &Plan{}
	index := make(map[fetchKey]int)
	skip := r.OffsetIntoFirstRange
	for i, t := range r.Terms {
		if p.Size == want {
			break
		}
		if err := checkTerm(t); err != nil {
			return nil, fmt.Errorf("term %d: %w", i, err)
		}
		if i == 0 && skip >= uint64(t.UnpackedLength) {
			return nil, invalid("offset_into_first_range %d not inside the first term (%d bytes)", skip, t.UnpackedLength)
		}
		entry, rng, err := locate(r.Xorbs[t.Hash], t.Range)
		if err != nil {
			return nil, fmt.Errorf("term %d (xorb %s): %w", i, t.Hash, err)
		}
		key := fetchKey{t.Hash, entry, rng}
		fi, ok := index[key]
		if !ok {
			x := r.Xorbs[t.Hash][entry]
			fi = len(p.Fetches)
			index[key] = fi
			p.Fetches = append(p.Fetches, Fetch{
				Xorb:   t.Hash,
				URL:    x.URL,
				Chunks: x.Ranges[rng].Chunks,
				Bytes:  x.Ranges[rng].Bytes,
			})
		}
		n := min(uint64(t.UnpackedLength)-skip, want-p.Size)
		p.Fetches[fi].Pieces = append(p.Fetches[fi].Pieces, len(p.Pieces))
		p.Pieces = append(p.Pieces, Piece{
			Term:           i,
			Fetch:          fi,
			Chunks:         t.Range,
			UnpackedLength: t.UnpackedLength,
			Skip:           skip,
			Len:            n,
			Offset:         p.Size,
		})
		p.Size += n
		skip = 0
	}
	return p, nil
}

func checkTerm(t Term) error {
	if t.Range.Start >= t.Range.End || t.Range.End > maxChunksPerXorb {
		return invalid("chunk range [%d,%d)", t.Range.Start, t.Range.End)
	}
	if t.UnpackedLength == 0 || uint64(t.UnpackedLength) > uint64(t.Range.Len())*maxChunkSize {
		return invalid("unpacked_length %d for %d chunks", t.UnpackedLength, t.Range.Len())
	}
	return nil
}

// locate finds the fetch range of a xorb's entries that contains the chunk
// range want.
func locate(entries []XorbFetch, want ChunkRange) (entry, rng int, err error) {
	for i, e := range entries {
		for j, r := range e.Ranges {
			if !r.Chunks.Contains(want) {
				continue
			}
			if err := checkFetchRange(r); err != nil {
				return 0, 0, err
			}
			if e.URL == "" {
				return 0, 0, invalid("fetch entry without url")
			}
			return i, j, nil
		}
	}
	return 0, 0, invalid("no fetch range holds chunks [%d,%d)", want.Start, want.End)
}

func checkFetchRange(r RangeV2) error {
	if r.Chunks.Start >= r.Chunks.End || r.Chunks.End > maxChunksPerXorb {
		return invalid("fetch chunk range [%d,%d)", r.Chunks.Start, r.Chunks.End)
	}
	if r.Bytes.End < r.Bytes.Start {
		return invalid("fetch byte range %d-%d", r.Bytes.Start, r.Bytes.End)
	}
	n := uint64(r.Chunks.Len())
	if l := r.Bytes.Len(); l < n*chunkHeaderSize || l > n*maxStoredChunk {
		return invalid("fetch byte range of %d bytes for %d chunks", l, n)
	}
	return nil
}

// Span returns the part [lo, hi) of a decoded chunk that the piece writes,
// given the chunk's offset inside the term's decoded bytes and its size.
// lo == hi when none of it is written.
func (p Piece) Span(off uint64, size uint32) (lo, hi uint32) {
	start, end := p.Skip, p.Skip+p.Len
	cs, ce := off, off+uint64(size)
	if ce <= start || cs >= end {
		return 0, 0
	}
	return uint32(max(cs, start) - cs), uint32(min(ce, end) - cs)
}

// Cutter walks the decoded chunks of one piece in order and says which bytes
// of each go to the output. It is the single place where the head skip and
// the tail trim are applied.
type Cutter struct {
	p   Piece
	off uint64 // offset of the next chunk inside the term
	n   uint32 // chunks seen
}

// Cutter returns a Cutter positioned before the piece's first chunk.
func (p Piece) Cutter() Cutter { return Cutter{p: p} }

// Next takes the size of the term's next decoded chunk and returns the part
// [lo, hi) of it to write. whole reports that the chunk's last byte is
// written, which is when a whole-file check counts the chunk: a chunk cut
// by a range or block edge is counted by the block that writes its end.
func (c *Cutter) Next(size uint32) (lo, hi uint32, whole bool) {
	lo, hi = c.p.Span(c.off, size)
	c.off += uint64(size)
	c.n++
	return lo, hi, hi > lo && hi == size
}

// Chunk is the absolute index of the next chunk Next expects.
func (c *Cutter) Chunk() uint32 { return c.p.Chunks.Start + c.n }

// Written reports whether every output byte of the piece has been passed.
func (c *Cutter) Written() bool { return c.off >= c.p.Skip+c.p.Len }

// Exhausted reports whether all the term's chunks have been seen.
func (c *Cutter) Exhausted() bool { return c.n == c.p.Chunks.Len() }

// Offset is the term offset of the next chunk: the decoded bytes seen so far.
func (c *Cutter) Offset() uint64 { return c.off }
