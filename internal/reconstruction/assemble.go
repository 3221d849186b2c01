package reconstruction

import (
	"errors"
	"fmt"
	"slices"
)

// ErrLength is wrapped by the errors of a fetch whose decoded chunks do not
// add up to what the reconstruction promised: a term of the wrong length, or
// a fetch with too many or too few chunks.
var ErrLength = errors.New("decoded length mismatch")

// Tracker follows the decoded chunks of one fetch, in stored order, and says
// which pieces use each one. It checks every term of the fetch against its
// unpacked_length as soon as the term's last chunk is seen. A Tracker lets
// a downloader keep only the chunks some piece writes from, and free each
// as soon as the last piece using it has been written.
type Tracker struct {
	plan   *Plan
	fetch  *Fetch
	order  []int    // the fetch's pieces sorted by first chunk
	next   int      // order[next] is the next piece to become active
	active []int    // pieces whose chunk range holds the current chunk
	cum    []uint64 // cum[i] = decoded bytes of the fetch's chunks before i
}

// Track returns a Tracker for fetch f of the plan.
func (p *Plan) Track(f int) *Tracker {
	fe := &p.Fetches[f]
	order := slices.Clone(fe.Pieces)
	slices.SortStableFunc(order, func(a, b int) int {
		return int(p.Pieces[a].Chunks.Start) - int(p.Pieces[b].Chunks.Start)
	})
	cum := make([]uint64, 1, fe.Chunks.Len()+1)
	return &Tracker{plan: p, fetch: fe, order: order, cum: cum}
}

// Seen is the number of chunks added so far.
func (t *Tracker) Seen() uint32 { return uint32(len(t.cum) - 1) }

// Add records the decoded size of the fetch's next chunk and returns the
// highest index of a piece that writes any byte of it, or -1 when no piece
// does (the chunk is only skipped over). It fails when the fetch has no
// more chunks or a term ending at this chunk has the wrong length.
func (t *Tracker) Add(size uint32) (lastUse int, err error) {
	rel := t.Seen()
	if rel >= t.fetch.Chunks.Len() {
		return -1, fmt.Errorf("%w: more than the %d chunks of range [%d,%d) of xorb %s",
			ErrLength, t.fetch.Chunks.Len(), t.fetch.Chunks.Start, t.fetch.Chunks.End, t.fetch.Xorb)
	}
	c := t.fetch.Chunks.Start + rel
	for t.next < len(t.order) && t.plan.Pieces[t.order[t.next]].Chunks.Start <= c {
		t.active = append(t.active, t.order[t.next])
		t.next++
	}
	t.cum = append(t.cum, t.cum[rel]+uint64(size))
	lastUse = -1
	keep := t.active[:0]
	for _, pi := range t.active {
		p := &t.plan.Pieces[pi]
		start := p.Chunks.Start - t.fetch.Chunks.Start
		if lo, hi := p.Span(t.cum[rel]-t.cum[start], size); hi > lo {
			lastUse = max(lastUse, pi)
		}
		if p.Chunks.End == c+1 {
			got := t.cum[rel+1] - t.cum[start]
			if got != uint64(p.UnpackedLength) {
				return -1, fmt.Errorf("%w: term %d (chunks [%d,%d) of xorb %s) decodes to %d bytes, want %d",
					ErrLength, p.Term, p.Chunks.Start, p.Chunks.End, t.fetch.Xorb, got, p.UnpackedLength)
			}
			continue
		}
		keep = append(keep, pi)
	}
	t.active = keep
	return lastUse, nil
}

// Finish checks that the fetch delivered all its chunks.
func (t *Tracker) Finish() error {
	if t.Seen() != t.fetch.Chunks.Len() {
		return fmt.Errorf("%w: %d of the %d chunks of range [%d,%d) of xorb %s",
			ErrLength, t.Seen(), t.fetch.Chunks.Len(), t.fetch.Chunks.Start, t.fetch.Chunks.End, t.fetch.Xorb)
	}
	return nil
}

// Assemble appends the plan's output to dst, given the decoded chunks of
// every fetch (chunks(f)[i] is chunk Fetches[f].Chunks.Start+i). It is the
// whole algorithm in one place, for tests and small in-memory uses; a
// streaming downloader does the same with a Tracker per fetch and a Cutter
// per piece.
func (p *Plan) Assemble(dst []byte, chunks func(f int) [][]byte) ([]byte, error) {
	for f := range p.Fetches {
		t := p.Track(f)
		for _, c := range chunks(f) {
			if _, err := t.Add(uint32(len(c))); err != nil {
				return dst, err
			}
		}
		if err := t.Finish(); err != nil {
			return dst, err
		}
	}
	for _, pc := range p.Pieces {
		data := chunks(pc.Fetch)
		first := pc.Chunks.Start - p.Fetches[pc.Fetch].Chunks.Start
		cut := pc.Cutter()
		for i := range pc.Chunks.Len() {
			c := data[first+i]
			lo, hi, _ := cut.Next(uint32(len(c)))
			dst = append(dst, c[lo:hi]...)
		}
	}
	return dst, nil
}
