package chunking

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// referenceBoundaries is the normative rule of PROTOCOL.md §2.2 written as
// plainly as possible: every byte is hashed, h is reset at each boundary,
// no skipping and no buffering.
func referenceBoundaries(data []byte) []int {
	ends := []int{}
	var h uint64
	start := 0
	for i, b := range data {
		h = (h << 1) + gearTable[b]
		size := i - start + 1
		if size < MinSize {
			continue
		}
		if size >= MaxSize || h&mask == 0 {
			ends = append(ends, i+1)
			start = i + 1
			h = 0
		}
	}
	if start < len(data) {
		ends = append(ends, len(data))
	}
	return ends
}

// fixedReader returns at most n bytes per Read.
type fixedReader struct {
	r io.Reader
	n int
}

func (f *fixedReader) Read(p []byte) (int, error) {
	if len(p) > f.n {
		p = p[:f.n]
	}
	return f.r.Read(p)
}

// readers lists ways of delivering the same bytes in different reads.
func readers() []struct {
	name string
	make func([]byte) io.Reader
} {
	return []struct {
		name string
		make func([]byte) io.Reader
	}{
		{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }},
		{"one-byte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
		{"37", func(b []byte) io.Reader { return &fixedReader{bytes.NewReader(b), 37} }},
		{"255", func(b []byte) io.Reader { return &fixedReader{bytes.NewReader(b), 255} }},
		{"8191", func(b []byte) io.Reader { return &fixedReader{bytes.NewReader(b), 8191} }},
		{"131073", func(b []byte) io.Reader { return &fixedReader{bytes.NewReader(b), 131073} }},
		{"half", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
		{"data-err", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
	}
}

// streamBoundaries chunks r with a Chunker and returns the chunk end
// offsets, checking on the way that the chunks are the input's bytes.
func streamBoundaries(t testing.TB, r io.Reader, data []byte) []int {
	t.Helper()
	c := New(r)
	ends := []int{}
	off := 0
	for {
		chunk, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d bytes: %v", off, err)
		}
		if len(chunk) == 0 {
			t.Fatalf("empty chunk at %d", off)
		}
		if data != nil && !bytes.Equal(chunk, data[off:off+len(chunk)]) {
			t.Fatalf("chunk at %d does not hold the input bytes", off)
		}
		off += len(chunk)
		ends = append(ends, off)
	}
	if _, err := c.Next(); err != io.EOF {
		t.Fatalf("Next after EOF = %v, want io.EOF again", err)
	}
	return ends
}

// checkAll compares Boundaries, the reference and the Chunker under every
// reader with want (the reference result if want is nil).
func checkAll(t *testing.T, data []byte, want []int) {
	t.Helper()
	ref := referenceBoundaries(data)
	if want == nil {
		want = ref
	} else if !slices.Equal(ref, want) {
		t.Fatalf("reference = %v, want %v", ref, want)
	}
	if got := Boundaries(data); !slices.Equal(got, want) {
		t.Fatalf("Boundaries = %v, want %v", got, want)
	}
	for _, rd := range readers() {
		if rd.name == "one-byte" && len(data) > 3*MaxSize {
			continue
		}
		if got := streamBoundaries(t, rd.make(data), data); !slices.Equal(got, want) {
			t.Fatalf("Chunker with %s reads = %v, want %v", rd.name, got, want)
		}
	}
	checkSizes(t, want, len(data))
}

// checkSizes checks the size limits every chunking must respect.
func checkSizes(t *testing.T, ends []int, n int) {
	t.Helper()
	prev := 0
	for i, e := range ends {
		size := e - prev
		last := i == len(ends)-1
		if size <= 0 || size > MaxSize || (!last && size < MinSize) {
			t.Fatalf("chunk %d has size %d", i, size)
		}
		prev = e
	}
	if prev != n {
		t.Fatalf("chunks cover %d bytes, want %d", prev, n)
	}
}

func TestGearTableChecksum(t *testing.T) {
	var b [256 * 8]byte
	for i, v := range gearTable {
		binary.LittleEndian.PutUint64(b[i*8:], v)
	}
	sum := sha256.Sum256(b[:])
	const want = "e1d3936666d7ae7a977c958e9afcc75f90aaca758ce5fbe4ece61dffefe1912c"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("sha256(gear table) = %s, want %s", got, want)
	}
}

func TestConstants(t *testing.T) {
	// xet-core derives the mask from the target size.
	tm := uint64(TargetSize - 1)
	lz := 0
	for v := tm; v&(1<<63) == 0; v <<= 1 {
		lz++
	}
	if got := tm << lz; got != mask {
		t.Fatalf("mask from target = %#x, want %#x", got, uint64(mask))
	}
	if MinSize != TargetSize/8 || MaxSize != TargetSize*2 || skip != 8127 {
		t.Fatalf("sizes %d/%d/%d skip %d", MinSize, TargetSize, MaxSize, skip)
	}
}

func TestDataVectors(t *testing.T) {
	v := xettest.MustLoad()
	if len(v.DataVectors) != 5 {
		t.Fatalf("%d data vectors, want 5", len(v.DataVectors))
	}
	for i, dv := range v.DataVectors {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			data := xettest.DataVectorInput(i)
			if len(data) != dv.Length {
				t.Fatalf("input has %d bytes, want %d", len(data), dv.Length)
			}
			checkAll(t, data, dv.ChunkEndOffsets)
			// The chunks themselves, by hash.
			c := New(bytes.NewReader(data))
			for j, want := range dv.Chunks {
				chunk, err := c.Next()
				if err != nil {
					t.Fatalf("chunk %d: %v", j, err)
				}
				if len(chunk) != want.Size {
					t.Fatalf("chunk %d has %d bytes, want %d", j, len(chunk), want.Size)
				}
				if got := merklehash.ChunkHash(chunk).String(); got != want.Hash {
					t.Fatalf("chunk %d hash %s, want %s", j, got, want.Hash)
				}
			}
		})
	}
}

func TestDataVectorSpotChecks(t *testing.T) {
	// PROTOCOL.md §9.3 check bytes of C1, so a broken generator cannot
	// make the vector test vacuous.
	d := xettest.DataVectorInput(0)
	if d[0] != 175 || d[127] != 132 || d[111111] != 118 {
		t.Fatalf("SplitMix64 check bytes %d %d %d", d[0], d[127], d[111111])
	}
}

func TestTriggerPatterns(t *testing.T) {
	v := xettest.MustLoad()
	tv := v.Trigger.Vectors
	if len(tv.Cases) != 128 || len(tv.BasePattern) != 128 {
		t.Fatalf("%d cases, base pattern %d bytes; want 128 and 128", len(tv.Cases), len(tv.BasePattern))
	}
	for _, tc := range tv.Cases {
		t.Run(fmt.Sprint(tc.Padding), func(t *testing.T) {
			data := xettest.TriggerInput(tv.BasePattern, tc.Padding)
			if len(data) != 65536 {
				t.Fatalf("input has %d bytes", len(data))
			}
			if int(data[11111]) != tc.DataAt11111 {
				t.Fatalf("data[11111] = %d, want %d", data[11111], tc.DataAt11111)
			}
			checkAll(t, data, tc.Boundaries)
		})
	}
}

func TestSizes(t *testing.T) {
	for _, n := range []int{0, 1, 8191, 8192, 8193, 131071, 131072, 131073, 2 * MaxSize, 2*MaxSize + 1, bufSize + 1} {
		random := xettest.SplitMix64(uint64(n), n)
		constant := bytes.Repeat([]byte{59}, n)
		t.Run(fmt.Sprintf("random-%d", n), func(t *testing.T) {
			var want []int
			switch {
			case n == 0:
				want = []int{}
			case n <= MinSize:
				want = []int{n} // too short for a boundary test to cut early
			}
			checkAll(t, random, want)
		})
		t.Run(fmt.Sprintf("constant-%d", n), func(t *testing.T) {
			// 59 never matches: only forced cuts every MaxSize bytes.
			want := []int{}
			for e := MaxSize; e < n; e += MaxSize {
				want = append(want, e)
			}
			if n > 0 {
				want = append(want, n)
			}
			checkAll(t, constant, want)
		})
	}
}

func TestEmpty(t *testing.T) {
	c := New(bytes.NewReader(nil))
	for range 3 {
		if chunk, err := c.Next(); err != io.EOF || chunk != nil {
			t.Fatalf("Next on empty input = %v, %v; want nil, io.EOF", chunk, err)
		}
	}
	if got := Boundaries(nil); got == nil || len(got) != 0 {
		t.Fatalf("Boundaries(nil) = %#v, want an empty slice", got)
	}
}

// TestSkipAheadMatchesReference checks the skip-ahead against the
// hash-every-byte reference on random inputs and inputs built to put
// matches where the skip could matter.
func TestSkipAheadMatchesReference(t *testing.T) {
	// compare checks Boundaries against the reference, and every streaming
	// reader too when stream is set (slow under -race, so not for all).
	compare := func(name string, data []byte, stream bool) {
		t.Helper()
		if stream {
			checkAll(t, data, nil)
			return
		}
		want := referenceBoundaries(data)
		if got := Boundaries(data); !slices.Equal(got, want) {
			t.Fatalf("%s: Boundaries = %v, reference %v", name, got, want)
		}
	}

	for seed := uint64(100); seed < 116; seed++ {
		n := int(seed*7919)%(3*MaxSize) + int(seed-100)*MaxSize/2
		compare(fmt.Sprint("random seed ", seed), xettest.SplitMix64(seed, n), seed%4 == 0)
	}

	// Every constant byte value: only forced cuts, or a match at the first
	// testable offset for values whose 64-byte window hash matches.
	// After 64 equal bytes h is constant, so two chunks' worth of testing
	// shows the behaviour; a few values run past MaxSize twice.
	for b := range 256 {
		n := 2*MinSize + 100
		if b%64 == 0 {
			n = 2*MaxSize + 100
		}
		compare(fmt.Sprint("constant ", b), bytes.Repeat([]byte{byte(b)}, n), b%64 == 0)
	}

	// Periodic inputs of short random periods.
	for p := 1; p <= 200; p += 7 {
		data := xettest.SplitMix64(uint64(p), p)
		data = bytes.Repeat(data, (2*MaxSize)/p+1)
		compare(fmt.Sprint("period ", p), data, p%5 == 1)
	}

	// A 64-byte window whose hash matches, planted so that it ends at
	// every chunk offset around the first testable one, at MaxSize and
	// right after a match, over random and constant backgrounds.
	w := matchingWindow(t)
	var positions []int
	for k := MinSize - window - 16; k <= MinSize+16; k++ {
		positions = append(positions, k)
	}
	positions = append(positions, MaxSize-2, MaxSize-1, MaxSize, MaxSize+MinSize-1)
	for _, k := range positions {
		n := k + 2*MinSize + window
		for bg, background := range [][]byte{
			xettest.SplitMix64(uint64(k), n),
			bytes.Repeat([]byte{59}, n), // 59 alone never matches (vector C2)
		} {
			data := slices.Clone(background)
			copy(data[k-window+1:], w)
			// A second copy right where the next chunk could start
			// testing, if the first one cut.
			if j := k + MinSize; j+1 <= len(data) {
				copy(data[j-window+1:], w)
			}
			want := referenceBoundaries(data)
			if got := Boundaries(data); !slices.Equal(got, want) {
				t.Fatalf("window ending at %d (background %d): Boundaries = %v, reference %v", k, bg, got, want)
			}
			if k >= MinSize-1 && k < MaxSize-1 && bg == 1 && want[0] != k+1 {
				t.Fatalf("window ending at %d did not cut there: %v", k, want)
			}
		}
	}
	// Many consecutive matching windows: a match at every byte position
	// where the window repeats.
	data := bytes.Repeat(w, 3*MaxSize/window)
	checkAll(t, data, nil)
}

// TestBoundariesPrefix checks the property the hash pipeline relies on:
// Boundaries of a prefix agrees with Boundaries of the whole input on every
// offset but its last.
func TestBoundariesPrefix(t *testing.T) {
	data := xettest.SplitMix64(77, 3*MaxSize)
	periodic := bytes.Repeat(xettest.SplitMix64(78, 100), 3*MaxSize/100)
	for _, in := range [][]byte{data, periodic, bytes.Repeat([]byte{59}, 3*MaxSize)} {
		whole := Boundaries(in)
		for p := 0; p <= len(in); p += 997 {
			got := Boundaries(in[:p])
			if len(got) == 0 {
				continue
			}
			if head := got[:len(got)-1]; !slices.Equal(head, whole[:len(head)]) {
				t.Fatalf("prefix %d: %v, whole input %v", p, got, whole)
			}
		}
	}
}

// matchingWindow finds 64 bytes whose gear hash has the top 16 bits zero.
func matchingWindow(t *testing.T) []byte {
	t.Helper()
	data := xettest.SplitMix64(42, 4<<20)
	var h uint64
	for i, b := range data {
		h = h<<1 + gearTable[b]
		if i >= window && h&mask == 0 {
			return data[i-window+1 : i+1]
		}
	}
	t.Fatal("no matching window in 4 MiB of random data")
	return nil
}

func TestBoundedMemory(t *testing.T) {
	const total = 16 << 20
	c := New(io.LimitReader(&splitMixReader{state: 7}, total))
	off := 0
	if _, err := c.Next(); err != nil {
		t.Fatal(err)
	}
	buf := c.buf
	allocs := testing.AllocsPerRun(100, func() {
		chunk, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		off += len(chunk)
	})
	if allocs != 0 {
		t.Errorf("Next allocates %.1f times per call", allocs)
	}
	for {
		_, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(c.buf) != bufSize || &c.buf[0] != &buf[0] {
		t.Fatalf("buffer changed: %d bytes, want the same %d", len(c.buf), bufSize)
	}
}

// splitMixReader is an endless SplitMix64 stream, delivered in reads of
// any size.
type splitMixReader struct {
	state uint64
	word  [8]byte
	left  int // unread bytes at the end of word
}

func (s *splitMixReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if s.left == 0 {
			s.state += 0x9E3779B97F4A7C15
			z := s.state
			z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
			z = (z ^ (z >> 27)) * 0x94D049BB133111EB
			binary.LittleEndian.PutUint64(s.word[:], z^(z>>31))
			s.left = 8
		}
		c := copy(p[n:], s.word[8-s.left:])
		s.left -= c
		n += c
	}
	return n, nil
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	data := xettest.SplitMix64(3, 5*MaxSize)
	c := New(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)))
	var got int
	var err error
	for {
		var chunk []byte
		chunk, err = c.Next()
		if err != nil {
			break
		}
		got += len(chunk)
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Next = %v, want %v", err, boom)
	}
	if got > len(data) {
		t.Fatalf("returned %d bytes of %d", got, len(data))
	}
	// Only chunks that the full input would also have.
	ref := referenceBoundaries(data)
	if got != 0 && !slices.Contains(ref, got) {
		t.Fatalf("returned chunks end at %d, not a boundary of %v", got, ref)
	}
	if _, err := c.Next(); !errors.Is(err, boom) {
		t.Fatalf("Next after error = %v, want %v again", err, boom)
	}
}

func TestNoProgress(t *testing.T) {
	c := New(zeroReader{})
	if _, err := c.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("Next = %v, want io.ErrNoProgress", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestBadReader(t *testing.T) {
	c := New(badReader{})
	if _, err := c.Next(); !errors.Is(err, errBadRead) {
		t.Fatalf("Next = %v, want %v", err, errBadRead)
	}
}

type badReader struct{}

func (badReader) Read(p []byte) (int, error) { return len(p) + 1, nil }

func FuzzChunker(f *testing.F) {
	f.Add([]byte("Hello World!"), uint32(0), uint64(0), uint16(1))
	f.Add([]byte{59}, uint32(3*MaxSize), uint64(0), uint16(255))
	f.Add([]byte{0, 1, 2, 3}, uint32(MaxSize+1), uint64(1), uint16(37))
	f.Add([]byte{}, uint32(MinSize), uint64(7), uint16(0))
	f.Fuzz(func(t *testing.T, pattern []byte, length uint32, seed uint64, readSize uint16) {
		// The fuzzer's bytes are tiled up to length (at most 4 MaxSize)
		// so that inputs reach the sizes where boundaries are tested; an
		// odd seed mixes in random bytes.
		data := pattern
		if n := int(length % (4*MaxSize + 1)); n > len(pattern) {
			data = make([]byte, n)
			for i := 0; len(pattern) > 0 && i < n; {
				i += copy(data[i:], pattern)
			}
			if seed&1 == 1 {
				noise := xettest.SplitMix64(seed, n)
				for i := range data {
					data[i] ^= noise[i] & byte(seed>>8)
				}
			}
		}
		want := referenceBoundaries(data)
		if got := Boundaries(data); !slices.Equal(got, want) {
			t.Fatalf("Boundaries = %v, reference %v", got, want)
		}
		rs := int(readSize)%(MaxSize+100) + 1
		r := &fixedReader{bytes.NewReader(data), rs}
		if got := streamBoundaries(t, r, data); !slices.Equal(got, want) {
			t.Fatalf("Chunker with %d-byte reads = %v, reference %v", rs, got, want)
		}
	})
}

func BenchmarkChunker(b *testing.B) {
	data := xettest.SplitMix64(1, 64<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		c := New(bytes.NewReader(data))
		for {
			_, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkBoundaries(b *testing.B) {
	data := xettest.SplitMix64(1, 64<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		Boundaries(data)
	}
}

func BenchmarkReference(b *testing.B) {
	data := xettest.SplitMix64(1, 64<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		referenceBoundaries(data)
	}
}
