package reconstruction

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// A small in-memory world: xorbs of decoded chunks, files as term lists, and
// a reconstruction server that answers a byte range the way the CAS does
// (first term from the chunk holding the start, whole trailing chunks past
// the end dropped, fetch ranges merged per xorb when they overlap or touch).

type world struct {
	xorbs map[merklehash.Hash][][]byte
}

type fileTerm struct {
	xorb       merklehash.Hash
	start, end uint32
}

func newWorld() *world { return &world{xorbs: map[merklehash.Hash][][]byte{}} }

// addXorb makes a xorb of chunks with the given sizes, filled with bytes
// derived from seed so every chunk differs.
func (w *world) addXorb(seed byte, sizes ...int) merklehash.Hash {
	var h merklehash.Hash
	h[0], h[31] = seed, 0xee
	var chunks [][]byte
	for i, n := range sizes {
		c := make([]byte, n)
		for j := range c {
			c[j] = seed*31 + byte(i)*7 + byte(j*13+j/251)
		}
		chunks = append(chunks, c)
	}
	w.xorbs[h] = chunks
	return h
}

func (w *world) content(terms []fileTerm) []byte {
	var out []byte
	for _, t := range terms {
		for _, c := range w.xorbs[t.xorb][t.start:t.end] {
			out = append(out, c...)
		}
	}
	return out
}

// storedOffset is the byte offset of chunk i in the stored xorb: every
// chunk is stored as an 8-byte header and its raw bytes.
func (w *world) storedOffset(h merklehash.Hash, i uint32) uint64 {
	var off uint64
	for _, c := range w.xorbs[h][:i] {
		off += chunkHeaderSize + uint64(len(c))
	}
	return off
}

// answer reconstructs bytes [a, b] (inclusive) of the file like the CAS.
func (w *world) answer(terms []fileTerm, a, b uint64) *ResponseV2 {
	r := &ResponseV2{Xorbs: map[merklehash.Hash][]XorbFetch{}}
	var pos uint64
	started := false
	for _, t := range terms {
		chunks := w.xorbs[t.xorb]
		s, e := t.start, t.end
		var first uint64 // file offset of chunk s
		termStart := pos
		for i := t.start; i < t.end; i++ {
			n := uint64(len(chunks[i]))
			if !started && pos+n <= a {
				s = i + 1
			}
			if pos > b && e == t.end {
				e = i
			}
			if i == s {
				first = pos
			}
			pos += n
		}
		_ = termStart
		if s >= e {
			continue
		}
		if !started {
			r.OffsetIntoFirstRange = a - first
			started = true
		}
		var n uint32
		for _, c := range chunks[s:e] {
			n += uint32(len(c))
		}
		r.Terms = append(r.Terms, Term{Hash: t.xorb, UnpackedLength: n, Range: ChunkRange{s, e}})
	}
	// Merge fetch ranges per xorb.
	byXorb := map[merklehash.Hash][]ChunkRange{}
	for _, t := range r.Terms {
		byXorb[t.Hash] = append(byXorb[t.Hash], t.Range)
	}
	for h, rs := range byXorb {
		sortRanges(rs)
		var merged []ChunkRange
		for _, cr := range rs {
			if k := len(merged) - 1; k >= 0 && cr.Start <= merged[k].End {
				merged[k].End = max(merged[k].End, cr.End)
				continue
			}
			merged = append(merged, cr)
		}
		xf := XorbFetch{URL: "https://cas.test/xorb/" + h.String()}
		for _, cr := range merged {
			xf.Ranges = append(xf.Ranges, RangeV2{Chunks: cr, Bytes: ByteRange{
				Start: w.storedOffset(h, cr.Start), End: w.storedOffset(h, cr.End) - 1}})
		}
		r.Xorbs[h] = []XorbFetch{xf}
	}
	return r
}

func sortRanges(rs []ChunkRange) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Start < rs[j-1].Start; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// decoded returns the chunks of each fetch of a plan, as a downloader would
// after decoding.
func (w *world) decoded(p *Plan) func(int) [][]byte {
	return func(f int) [][]byte {
		fe := p.Fetches[f]
		return w.xorbs[fe.Xorb][fe.Chunks.Start:fe.Chunks.End]
	}
}

func TestPlanTable(t *testing.T) {
	w := newWorld()
	x1 := w.addXorb(1, 100, 200, 300, 400, 500)
	x2 := w.addXorb(2, 1000, 10, 20)
	x3 := w.addXorb(3, 7)
	files := map[string][]fileTerm{
		"one term":        {{x1, 0, 5}},
		"spanning xorbs":  {{x1, 0, 2}, {x2, 0, 3}, {x1, 2, 5}},
		"dedup middle":    {{x2, 1, 2}, {x1, 1, 4}, {x3, 0, 1}, {x1, 3, 5}},
		"overlap":         {{x1, 1, 4}, {x1, 3, 5}},
		"same term twice": {{x1, 2, 3}, {x2, 0, 1}, {x1, 2, 3}},
		"single chunk":    {{x3, 0, 1}},
	}
	for name, terms := range files {
		content := w.content(terms)
		size := uint64(len(content))
		ranges := [][2]uint64{{0, size - 1}, {0, 0}, {size - 1, size - 1}, {0, size + 100}}
		// Every chunk boundary and a point inside every chunk.
		for off := uint64(0); off < size; off += 37 {
			ranges = append(ranges, [2]uint64{off, min(off+150, size-1)}, [2]uint64{off, off})
		}
		for _, rg := range ranges {
			t.Run(fmt.Sprintf("%s/%d-%d", name, rg[0], rg[1]), func(t *testing.T) {
				ans := w.answer(terms, rg[0], rg[1])
				want := content[rg[0]:min(rg[1]+1, size)]
				p, err := NewPlan(ans, rg[1]-rg[0]+1)
				if err != nil {
					t.Fatal(err)
				}
				if p.Size != uint64(len(want)) {
					t.Fatalf("plan size %d, want %d", p.Size, len(want))
				}
				got, err := p.Assemble(nil, w.decoded(p))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("assembled %d bytes, differ from the %d wanted", len(got), len(want))
				}
				checkFetchesOnce(t, p)
			})
		}
	}
}

// checkFetchesOnce asserts each (xorb, chunk range) is fetched once and
// every piece's fetch holds its chunks.
func checkFetchesOnce(t *testing.T, p *Plan) {
	t.Helper()
	seen := map[string]bool{}
	for fi, f := range p.Fetches {
		k := fmt.Sprintf("%s/%d/%d", f.Xorb, f.Chunks.Start, f.Chunks.End)
		if seen[k] {
			t.Fatalf("fetch %s planned twice", k)
		}
		seen[k] = true
		if len(f.Pieces) == 0 {
			t.Fatalf("fetch %d serves no piece", fi)
		}
		for _, pi := range f.Pieces {
			if p.Pieces[pi].Fetch != fi || !f.Chunks.Contains(p.Pieces[pi].Chunks) {
				t.Fatalf("piece %d not served by fetch %d", pi, fi)
			}
		}
	}
}

// The protocol docs' example: terms [1,4) and [3,43) of one xorb share the
// single fetch [1,43).
func TestPlanOverlappingTermsShareOneFetch(t *testing.T) {
	w := newWorld()
	sizes := make([]int, 43)
	for i := range sizes {
		sizes[i] = 50 + i
	}
	x := w.addXorb(9, sizes...)
	terms := []fileTerm{{x, 1, 4}, {x, 3, 43}}
	content := w.content(terms)
	ans := w.answer(terms, 0, uint64(len(content))-1)
	if got := ans.Xorbs[x][0].Ranges; len(got) != 1 || got[0].Chunks != (ChunkRange{1, 43}) {
		t.Fatalf("server merged to %+v", got)
	}
	p, err := NewPlan(ans, uint64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Fetches) != 1 || len(p.Pieces) != 2 || len(p.Fetches[0].Pieces) != 2 {
		t.Fatalf("plan %+v", p)
	}
	got, err := p.Assemble(nil, w.decoded(p))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("assemble: %v (equal %v)", err, bytes.Equal(got, content))
	}
	// Chunk 3 is written by both pieces: it must live until piece 1.
	tr := p.Track(0)
	for i, c := range w.decoded(p)(0) {
		last, err := tr.Add(uint32(len(c)))
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if i+1 < 3 {
			want = 0
		}
		if last != want {
			t.Fatalf("chunk %d: last use %d, want %d", i+1, last, want)
		}
	}
	if err := tr.Finish(); err != nil {
		t.Fatal(err)
	}
}

// offset_into_first_range may skip several chunks of the first term.
func TestPlanOffsetBeyondFirstChunk(t *testing.T) {
	w := newWorld()
	x := w.addXorb(4, 10, 10, 10, 10)
	r := &ResponseV2{
		OffsetIntoFirstRange: 25,
		Terms:                []Term{{Hash: x, UnpackedLength: 40, Range: ChunkRange{0, 4}}},
		Xorbs: map[merklehash.Hash][]XorbFetch{x: {{URL: "u", Ranges: []RangeV2{
			{Chunks: ChunkRange{0, 4}, Bytes: ByteRange{0, 4*18 - 1}}}}}},
	}
	p, err := NewPlan(r, 10)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Assemble(nil, w.decoded(p))
	if err != nil {
		t.Fatal(err)
	}
	if want := w.content([]fileTerm{{x, 0, 4}})[25:35]; !bytes.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	// Chunks 0 and 1 are only skipped, chunk 3 only trimmed.
	tr := p.Track(0)
	for i, want := range []int{-1, -1, 0, 0} {
		if last, _ := tr.Add(10); last != want {
			t.Fatalf("chunk %d: last use %d, want %d", i, last, want)
		}
	}
}

func TestPlanShortAndExtra(t *testing.T) {
	w := newWorld()
	x := w.addXorb(5, 10, 20)
	terms := []fileTerm{{x, 0, 1}, {x, 1, 2}}
	ans := w.answer(terms, 0, 29)
	p, err := NewPlan(ans, 100) // file ended early
	if err != nil || p.Size != 30 {
		t.Fatalf("short: size %d err %v", p.Size, err)
	}
	p, err = NewPlan(ans, 5) // extra terms ignored
	if err != nil || p.Size != 5 || len(p.Pieces) != 1 || len(p.Fetches) != 1 {
		t.Fatalf("extra: %+v err %v", p, err)
	}
	p, err = NewPlan(&ResponseV2{}, 10) // empty answer
	if err != nil || p.Size != 0 {
		t.Fatalf("empty: %+v %v", p, err)
	}
}

func TestPlanRejects(t *testing.T) {
	x := merklehash.Hash{1}
	good := func() *ResponseV2 {
		return &ResponseV2{
			Terms: []Term{{Hash: x, UnpackedLength: 100, Range: ChunkRange{0, 2}}},
			Xorbs: map[merklehash.Hash][]XorbFetch{x: {{URL: "u", Ranges: []RangeV2{
				{Chunks: ChunkRange{0, 2}, Bytes: ByteRange{0, 115}}}}}},
		}
	}
	if _, err := NewPlan(good(), 100); err != nil {
		t.Fatalf("good answer rejected: %v", err)
	}
	cases := map[string]func(r *ResponseV2){
		"empty chunk range":    func(r *ResponseV2) { r.Terms[0].Range = ChunkRange{1, 1} },
		"reversed chunk range": func(r *ResponseV2) { r.Terms[0].Range = ChunkRange{2, 1} },
		"huge chunk index":     func(r *ResponseV2) { r.Terms[0].Range = ChunkRange{0, 9000} },
		"zero length":          func(r *ResponseV2) { r.Terms[0].UnpackedLength = 0 },
		"length beyond chunks": func(r *ResponseV2) { r.Terms[0].UnpackedLength = 2*maxChunkSize + 1 },
		"offset past term":     func(r *ResponseV2) { r.OffsetIntoFirstRange = 100 },
		"no xorb entry":        func(r *ResponseV2) { delete(r.Xorbs, x) },
		"not contained":        func(r *ResponseV2) { r.Xorbs[x][0].Ranges[0].Chunks = ChunkRange{0, 1} },
		"no url":               func(r *ResponseV2) { r.Xorbs[x][0].URL = "" },
		"reversed bytes":       func(r *ResponseV2) { r.Xorbs[x][0].Ranges[0].Bytes = ByteRange{10, 9} },
		"too few bytes":        func(r *ResponseV2) { r.Xorbs[x][0].Ranges[0].Bytes = ByteRange{0, 14} },
		"too many bytes":       func(r *ResponseV2) { r.Xorbs[x][0].Ranges[0].Bytes = ByteRange{0, 1 << 30} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			r := good()
			mutate(r)
			_, err := NewPlan(r, 100)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestTrackerLengthChecks(t *testing.T) {
	w := newWorld()
	x := w.addXorb(6, 10, 20, 30)
	terms := []fileTerm{{x, 0, 3}}
	p, err := NewPlan(w.answer(terms, 0, 59), 60)
	if err != nil {
		t.Fatal(err)
	}
	tr := p.Track(0)
	tr.Add(10)
	tr.Add(20)
	if _, err := tr.Add(31); !errors.Is(err, ErrLength) {
		t.Fatalf("wrong term length: %v", err)
	}
	tr = p.Track(0)
	tr.Add(10)
	if err := tr.Finish(); !errors.Is(err, ErrLength) || !strings.Contains(err.Error(), "1 of the 3") {
		t.Fatalf("missing chunks: %v", err)
	}
	tr = p.Track(0)
	for _, n := range []uint32{10, 20, 30} {
		tr.Add(n)
	}
	if _, err := tr.Add(1); !errors.Is(err, ErrLength) {
		t.Fatalf("extra chunk: %v", err)
	}
	if _, err := p.Assemble(nil, func(int) [][]byte { return [][]byte{make([]byte, 10), make([]byte, 20)} }); !errors.Is(err, ErrLength) {
		t.Fatalf("assemble with a missing chunk: %v", err)
	}
}

// Reading a file in successive blocks, the Cutter's whole flag must count
// every chunk of the file exactly once, in order: that is what a streaming
// whole-file hash relies on when blocks cut chunks in two.
func TestCutterCountsEachChunkOnceAcrossBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	w := newWorld()
	var xs []merklehash.Hash
	for i := range 4 {
		sizes := make([]int, 30)
		for j := range sizes {
			sizes[j] = 1 + rng.IntN(300)
		}
		xs = append(xs, w.addXorb(byte(10+i), sizes...))
	}
	for trial := range 50 {
		var terms []fileTerm
		for range 1 + rng.IntN(8) {
			x := xs[rng.IntN(len(xs))]
			s := uint32(rng.IntN(29))
			terms = append(terms, fileTerm{x, s, s + 1 + uint32(rng.IntN(int(30-s)))})
		}
		var wantSizes []int
		for _, tm := range terms {
			for _, c := range w.xorbs[tm.xorb][tm.start:tm.end] {
				wantSizes = append(wantSizes, len(c))
			}
		}
		content := w.content(terms)
		size := uint64(len(content))
		block := uint64(1 + rng.IntN(700))
		var gotSizes []int
		var out []byte
		for start := uint64(0); start < size; start += block {
			end := min(start+block, size) - 1
			p, err := NewPlan(w.answer(terms, start, end), end-start+1)
			if err != nil {
				t.Fatal(err)
			}
			if p.Size != end-start+1 {
				t.Fatalf("trial %d: block %d-%d planned %d bytes", trial, start, end, p.Size)
			}
			for _, pc := range p.Pieces {
				fe := p.Fetches[pc.Fetch]
				cut := pc.Cutter()
				for i := pc.Chunks.Start; i < pc.Chunks.End; i++ {
					c := w.xorbs[fe.Xorb][i]
					lo, hi, whole := cut.Next(uint32(len(c)))
					out = append(out, c[lo:hi]...)
					if whole {
						gotSizes = append(gotSizes, len(c))
					}
				}
				if !cut.Written() || !cut.Exhausted() {
					t.Fatal("cutter not done at the end of the term")
				}
			}
		}
		if !bytes.Equal(out, content) {
			t.Fatalf("trial %d (block %d): content differs", trial, block)
		}
		if fmt.Sprint(gotSizes) != fmt.Sprint(wantSizes) {
			t.Fatalf("trial %d (block %d): chunks counted %v, want %v", trial, block, gotSizes, wantSizes)
		}
	}
}

func BenchmarkAssemble(b *testing.B) {
	w := newWorld()
	sizes := make([]int, 512)
	for i := range sizes {
		sizes[i] = 64 << 10
	}
	x := w.addXorb(1, sizes...)
	terms := []fileTerm{{x, 0, 512}}
	size := uint64(512 << 16)
	ans := w.answer(terms, 0, size-1)
	dst := make([]byte, 0, size)
	b.SetBytes(int64(size))
	for b.Loop() {
		p, err := NewPlan(ans, size)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Assemble(dst[:0], w.decoded(p)); err != nil {
			b.Fatal(err)
		}
	}
}
