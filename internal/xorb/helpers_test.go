package xorb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"runtime/metrics"
	"testing"

	"github.com/pierrec/lz4/v4"

	"github.com/xetproxy/xetproxy/internal/xettest"
)

// Inputs of the kinds a xorb sees: incompressible bytes, text-like bytes
// that LZ4 shrinks, and float32 numbers of one binade (random mantissas, a
// constant exponent byte) that only BG4 makes compressible.

func randomBytes(seed uint64, n int) []byte { return xettest.SplitMix64(seed, n) }

func textBytes(seed uint64, n int) []byte {
	words := []string{"the ", "xorb ", "chunk ", "of ", "a ", "model ", "weights ", "file ", "is ",
		"stored ", "compressed ", "and ", "hashed ", "\n", "Hugging ", "Face ", "CAS ", "range "}
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]byte, 0, n+16)
	for len(out) < n {
		out = append(out, words[r.IntN(len(words))]...)
	}
	return out[:n]
}

func floatBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	out := make([]byte, (n+3)/4*4)
	for i := 0; i+4 <= len(out); i += 4 {
		binary.LittleEndian.PutUint32(out[i:], math.Float32bits(float32(1+r.Float64())))
	}
	return out[:n]
}

// mixedChunks returns count chunks cycling through the three kinds, with
// sizes between 8 KiB and 128 KiB.
func mixedChunks(seed uint64, count int) [][]byte {
	r := rand.New(rand.NewPCG(seed, 3))
	chunks := make([][]byte, count)
	for i := range chunks {
		n := 8<<10 + r.IntN(MaxChunkSize-8<<10+1)
		switch i % 3 {
		case 0:
			chunks[i] = randomBytes(seed+uint64(i), n)
		case 1:
			chunks[i] = textBytes(seed+uint64(i), n)
		default:
			chunks[i] = floatBytes(seed+uint64(i), n)
		}
	}
	return chunks
}

// naiveSplit and naiveJoin are the BG4 definition, byte by byte.
func naiveSplit(src []byte) []byte {
	dst := make([]byte, 0, len(src))
	for g := 0; g < 4; g++ {
		for i := g; i < len(src); i += 4 {
			dst = append(dst, src[i])
		}
	}
	return dst
}

func naiveJoin(dst, src []byte) {
	n := len(src)
	k := 0
	for g := 0; g < 4; g++ {
		for i := g; i < n; i += 4 {
			dst[i] = src[k]
			k++
		}
	}
}

// pierrecDecode decodes LZ4 frames with pierrec's own frame reader, the
// reference our frame parser is checked against. It reads at most limit+1
// bytes.
func pierrecDecode(payload []byte, limit int) ([]byte, error) {
	zr := lz4.NewReader(bytes.NewReader(payload))
	return io.ReadAll(io.LimitReader(zr, int64(limit)+1))
}

// pierrecFrame encodes data as an LZ4 frame with pierrec's writer.
func pierrecFrame(t testing.TB, data []byte, opts ...lz4.Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := lz4.NewWriter(&buf)
	if err := zw.Apply(opts...); err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func isFormatError(err error) bool {
	var fe *FormatError
	return errors.As(err, &fe)
}

// allocatedBy returns the heap bytes allocated while f runs. The runtime
// counts small objects per span, and the count is process-wide, so callers
// allow some slack; large allocations, the ones that matter, are exact.
// Unlike runtime.ReadMemStats it does not stop the world, so fuzz targets
// can afford it on every input. Under the fuzzing engine its own goroutines
// allocate at the same time (seen: 1 MiB during a call that allocated
// nothing), so a count past 1 MiB is taken twice more and the least counts:
// an allocation of f's own happens on every run.
func allocatedBy(f func()) uint64 {
	n := allocatedOnce(f)
	for i := 0; i < 2 && n > 1<<20; i++ {
		n = min(n, allocatedOnce(f))
	}
	return n
}

func allocatedOnce(f func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	f()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// allocLimit is what handling n hostile input bytes may allocate: the pooled
// chunk and payload buffers, plus a small multiple of the input.
func allocLimit(n int) uint64 { return 1<<20 + 64*uint64(n) }

func buildXorb(t testing.TB, p Policy, chunks [][]byte) *Xorb {
	t.Helper()
	b := NewBuilder(p)
	for i, c := range chunks {
		if !b.Add(c) {
			t.Fatalf("Add(chunk %d of %d bytes) refused", i, len(c))
		}
	}
	return b.Finish()
}

var allPolicies = []Policy{PolicyAuto, PolicyNone, PolicyLZ4, PolicyBG4}
