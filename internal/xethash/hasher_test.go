package xethash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// record is what a test keeps of a chunk.
type record struct {
	end  uint64
	hash merklehash.Hash
}

// reference computes the chunk list and file hash the slow, obvious way:
// the streaming chunker, then merklehash.FileHash over every leaf.
func reference(t testing.TB, data []byte) ([]record, merklehash.Hash) {
	t.Helper()
	var recs []record
	var leaves []merklehash.Leaf
	var end uint64
	c := chunking.New(bytes.NewReader(data))
	for {
		chunk, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		h := merklehash.ChunkHash(chunk)
		end += uint64(len(chunk))
		recs = append(recs, record{end, h})
		leaves = append(leaves, merklehash.Leaf{Hash: h, Size: uint64(len(chunk))})
	}
	return recs, merklehash.FileHash(leaves)
}

// collector returns an OnChunk that records chunks and checks that their
// offsets are contiguous and their hashes right.
func collector(recs *[]record) func(Chunk) error {
	var next uint64
	return func(c Chunk) error {
		if c.Offset != next {
			return fmt.Errorf("chunk at %d, want %d", c.Offset, next)
		}
		if c.Hash != merklehash.ChunkHash(c.Data) {
			return fmt.Errorf("chunk at %d: hash does not match its data", c.Offset)
		}
		next += uint64(len(c.Data))
		*recs = append(*recs, record{next, c.Hash})
		return nil
	}
}

// writeSplit writes data to h in pieces whose sizes cycle through sizes.
func writeSplit(t testing.TB, h *Hasher, data []byte, sizes []int) {
	t.Helper()
	for i := 0; len(data) > 0; i++ {
		n := min(len(data), sizes[i%len(sizes)])
		if w, err := h.Write(data[:n]); err != nil || w != n {
			t.Fatalf("Write(%d bytes) = %d, %v", n, w, err)
		}
		data = data[n:]
	}
}

// TestVectors checks the known-answer vectors of the protocol reference:
// chunk boundaries, chunk hashes, file hash and SHA-256, through Write in
// several splits and through HashReader.
func TestVectors(t *testing.T) {
	v := xettest.MustLoad()
	if len(v.DataVectors) == 0 {
		t.Fatal("no data vectors")
	}
	splits := map[string][]int{
		"whole":  {1 << 30},
		"7":      {7},
		"odd":    {1, 65535, 4096, 131073, 3},
		"blocks": {defaultBlockSize},
	}
	for i, dv := range v.DataVectors {
		data := xettest.DataVectorInput(i)
		if len(data) != dv.Length {
			t.Fatalf("vector %d: input of %d bytes, want %d", i, len(data), dv.Length)
		}
		check := func(name string, sum Sum, recs []record) {
			t.Helper()
			if got := sum.FileHash.String(); got != dv.FileHash {
				t.Errorf("vector %d (%s) %s: file hash %s, want %s", i, dv.Description, name, got, dv.FileHash)
			}
			if got := hex.EncodeToString(sum.SHA256[:]); got != dv.SHA256 {
				t.Errorf("vector %d %s: sha256 %s, want %s", i, name, got, dv.SHA256)
			}
			if sum.Size != uint64(dv.Length) {
				t.Errorf("vector %d %s: size %d, want %d", i, name, sum.Size, dv.Length)
			}
			if len(recs) != len(dv.Chunks) {
				t.Fatalf("vector %d %s: %d chunks, want %d", i, name, len(recs), len(dv.Chunks))
			}
			for j, c := range dv.Chunks {
				if recs[j].end != uint64(c.EndOffset) || recs[j].hash.String() != c.Hash {
					t.Fatalf("vector %d %s: chunk %d ends at %d with %s, want %d with %s",
						i, name, j, recs[j].end, recs[j].hash, c.EndOffset, c.Hash)
				}
			}
		}
		for name, sizes := range splits {
			var recs []record
			h := New(Options{SHA256: true, OnChunk: collector(&recs)})
			writeSplit(t, h, data, sizes)
			sum, err := h.Sum()
			if err != nil {
				t.Fatal(err)
			}
			check(name, sum, recs)
		}
		var recs []record
		sum, err := HashReader(context.Background(), iotest.HalfReader(bytes.NewReader(data)),
			Options{SHA256: true, OnChunk: collector(&recs)})
		if err != nil {
			t.Fatal(err)
		}
		check("HashReader", sum, recs)
	}
}

func TestEmpty(t *testing.T) {
	for _, opt := range []Options{{}, {SHA256: true}} {
		h := New(opt)
		h.Write(nil)
		sum, err := h.Sum()
		if err != nil || sum.Size != 0 || !sum.FileHash.IsZero() {
			t.Fatalf("%+v: %+v, %v", opt, sum, err)
		}
		if opt.SHA256 && sum.SHA256 != sha256.Sum256(nil) {
			t.Fatalf("sha256 of nothing = %x", sum.SHA256)
		}
	}
}

// TestAnySplit compares the hasher with the reference on inputs that are
// not vectors, written in awkward pieces and cut into blocks small enough
// that many chunks span two of them.
func TestAnySplit(t *testing.T) {
	sizes := []int{0, 1, chunking.MinSize, chunking.MaxSize - 1, chunking.MaxSize, chunking.MaxSize + 1, 1<<20 + 12345}
	// Below MaxSize the block size is raised to it; 1000 checks that.
	blockSizes := []int{0, 1000, chunking.MaxSize, chunking.MaxSize + 1, 2*chunking.MaxSize - 1, 300_000}
	splits := [][]int{{1 << 30}, {1}, {4093, 1, 131072, 77}, {chunking.MaxSize}}
	for _, n := range sizes {
		for i, data := range [][]byte{
			xettest.SplitMix64(uint64(n)+9, n),
			bytes.Repeat([]byte{59}, n), // forced cuts only
		} {
			want, wantHash := reference(t, data)
			for _, bs := range blockSizes {
				for _, split := range splits {
					if len(split) == 1 && split[0] == 1 && n > chunking.MaxSize+1 {
						continue // byte by byte: slow, and the small sizes cover it
					}
					var got []record
					h := New(Options{SHA256: true, OnChunk: collector(&got), blockSize: bs})
					writeSplit(t, h, data, split)
					sum, err := h.Sum()
					if err != nil {
						t.Fatalf("n=%d input %d block %d split %v: %v", n, i, bs, split, err)
					}
					if !slices.Equal(got, want) {
						t.Fatalf("n=%d input %d block %d split %v: %d chunks, want %d (or they differ)", n, i, bs, split, len(got), len(want))
					}
					if sum.Size != uint64(n) || sum.FileHash != wantHash || sum.SHA256 != sha256.Sum256(data) {
						t.Fatalf("n=%d input %d block %d split %v: %+v", n, i, bs, split, sum)
					}
				}
			}
		}
	}
}

// TestRandomBlocks cuts random mixtures of noise and constant runs (which
// force MaxSize cuts, often right at block edges) into blocks of random
// sizes, read through ReadFrom, and compares the chunk ends with
// chunking.Boundaries.
func TestRandomBlocks(t *testing.T) {
	rng := xettest.SplitMix64(2024, 8*40)
	word := func(i int) int { return int(binary.LittleEndian.Uint64(rng[8*i:]) >> 1) }
	for i := range 40 {
		n := word(i) % (1 << 20)
		data := xettest.SplitMix64(uint64(i), n)
		for j := 0; j < n; j += 200_000 {
			run := data[j:min(n, j+(word(i)>>(j%13))%chunking.MaxSize*2)]
			for k := range run {
				run[k] = 7
			}
		}
		bs := chunking.MaxSize + word((i+1)%40)%(2*chunking.MaxSize)
		var got []int
		h := New(Options{blockSize: bs, OnChunk: func(c Chunk) error {
			got = append(got, int(c.Offset)+len(c.Data))
			return nil
		}})
		if _, err := h.ReadFrom(iotest.OneByteReader(io.LimitReader(bytes.NewReader(data), 1000))); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(h, bytes.NewReader(data[min(n, 1000):])); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Sum(); err != nil {
			t.Fatal(err)
		}
		if want := chunking.Boundaries(data); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("case %d (n=%d, block %d): ends %v, want %v", i, n, bs, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	boom := errors.New("boom")
	data := xettest.SplitMix64(5, 3<<20)
	for _, withSHA := range []bool{false, true} {
		// A failing reader.
		r := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom))
		if _, err := HashReader(context.Background(), r, Options{SHA256: withSHA}); !errors.Is(err, boom) {
			t.Fatalf("sha256=%v: err %v, want %v", withSHA, err, boom)
		}

		// A failing chunk callback stops the pipeline; Write and Sum
		// report it.
		stop := errors.New("stop")
		calls := 0
		h := New(Options{SHA256: withSHA, OnChunk: func(Chunk) error { calls++; return stop }})
		var werr error
		// The error shows once the stages have stopped and the channels
		// are full: a few blocks later at most.
		for i := 0; i < 1000 && werr == nil; i++ {
			_, werr = h.Write(data[:64<<10])
		}
		if !errors.Is(werr, stop) {
			t.Fatalf("sha256=%v: Write err %v, want %v", withSHA, werr, stop)
		}
		if _, err := h.Sum(); !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("sha256=%v: Sum err %v after %d calls, want %v after 1", withSHA, err, calls, stop)
		}
		if _, err := h.Write([]byte{1}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Write after Sum: %v", err)
		}

		// Cancellation.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := HashReader(ctx, bytes.NewReader(data), Options{SHA256: withSHA}); !errors.Is(err, context.Canceled) {
			t.Fatalf("sha256=%v: err %v, want context.Canceled", withSHA, err)
		}
		ctx, cancel = context.WithCancel(context.Background())
		n := 0
		_, err := HashReader(ctx, bytes.NewReader(data), Options{SHA256: withSHA, OnChunk: func(Chunk) error {
			if n++; n == 3 {
				cancel()
			}
			return nil
		}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("sha256=%v: cancelled midway: err %v", withSHA, err)
		}
	}
}

// TestSumAndClose checks the end of a Hasher's life: Sum twice gives the
// same answer, Close after Sum changes nothing, Close midway stops the
// pipeline (its goroutines are waited for) and later calls fail.
func TestSumAndClose(t *testing.T) {
	data := xettest.SplitMix64(3, 5<<20+17)
	_, want := reference(t, data)
	h := New(Options{})
	h.Write(data)
	s1, err1 := h.Sum()
	s2, err2 := h.Sum()
	h.Close()
	s3, err3 := h.Sum()
	if err1 != nil || err2 != nil || err3 != nil || s1.FileHash != want || s2 != s1 || s3 != s1 {
		t.Fatalf("Sum: %v %v %v / %v %v %v", s1, s2, s3, err1, err2, err3)
	}

	for _, n := range []int{10, 3 << 20} { // before and after the pipeline starts
		h = New(Options{SHA256: true})
		h.Write(data[:n])
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Write(data); !errors.Is(err, ErrClosed) {
			t.Fatalf("Write after Close: %v", err)
		}
		if _, err := h.Sum(); !errors.Is(err, ErrClosed) {
			t.Fatalf("Sum after Close: %v", err)
		}
	}
}

// FuzzSplits feeds fuzzer-chosen data, tiled up to a fuzzer-chosen length
// so that chunk boundaries are reached, in fuzzer-chosen write sizes and
// block sizes, and compares the chunks and the file hash with the
// reference.
func FuzzSplits(f *testing.F) {
	f.Add([]byte("Hello World!"), uint32(12), uint64(0), uint16(5), uint32(0))
	f.Add([]byte{59}, uint32(3*chunking.MaxSize+1), uint64(0), uint16(4096), uint32(1))
	f.Add([]byte{0, 1, 2, 3}, uint32(chunking.MaxSize+1), uint64(1), uint16(37), uint32(chunking.MaxSize+5))
	f.Add([]byte{}, uint32(chunking.MinSize), uint64(7), uint16(0), uint32(2*chunking.MaxSize))
	f.Fuzz(func(t *testing.T, pattern []byte, length uint32, seed uint64, split uint16, block uint32) {
		data := pattern
		if n := int(length % (5*chunking.MaxSize + 1)); n > len(pattern) {
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
		want, wantHash := reference(t, data)
		var got []record
		bs := int(block % (3 * chunking.MaxSize))
		h := New(Options{SHA256: seed&2 == 2, OnChunk: collector(&got), blockSize: bs})
		defer h.Close()
		sizes := []int{int(split)%(2*chunking.MaxSize) + 1, int(split>>3) + 1}
		writeSplit(t, h, data, sizes)
		sum, err := h.Sum()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) || sum.FileHash != wantHash || sum.Size != uint64(len(data)) {
			t.Fatalf("%d bytes, writes of %v, block %d: %d chunks, hash %s; want %d, %s",
				len(data), sizes, bs, len(got), sum.FileHash, len(want), wantHash)
		}
	})
}

func benchmarkHasher(b *testing.B, opt Options, write bool) {
	data := xettest.SplitMix64(1, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if write {
			h := New(opt)
			for p := data; len(p) > 0; p = p[min(len(p), 32<<10):] {
				h.Write(p[:min(len(p), 32<<10)])
			}
			if _, err := h.Sum(); err != nil {
				b.Fatal(err)
			}
			continue
		}
		if _, err := HashReader(context.Background(), bytes.NewReader(data), opt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHashReader is `xetproxy hash` without output: reading into
// blocks, chunking and chunk hashing in their own goroutines.
func BenchmarkHashReader(b *testing.B) { benchmarkHasher(b, Options{}, false) }

// BenchmarkHashReaderSHA256 adds the SHA-256 stage of `hash --json`.
func BenchmarkHashReaderSHA256(b *testing.B) { benchmarkHasher(b, Options{SHA256: true}, false) }

// BenchmarkWrite writes 32 KiB at a time (io.Copy's buffer size), which
// adds a copy into the blocks.
func BenchmarkWrite(b *testing.B) { benchmarkHasher(b, Options{}, true) }

// BenchmarkSerial is the single-goroutine baseline the pipeline replaces:
// chunking.Chunker, then the chunk hashes and the Merkle tree.
func BenchmarkSerial(b *testing.B) {
	data := xettest.SplitMix64(1, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var mb merklehash.Builder
		c := chunking.New(bytes.NewReader(data))
		for {
			chunk, err := c.Next()
			if err != nil {
				break
			}
			mb.Add(merklehash.ChunkHash(chunk), uint64(len(chunk)))
		}
		mb.FileHash()
	}
}
