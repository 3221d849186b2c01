package sample

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"testing"

	"github.com/xetproxy/xetproxy/internal/chunking"
)

func TestSafetensorsHeader(t *testing.T) {
	for _, total := range []int64{1, 5000, 3 << 20, 100e6} {
		s := NewSafetensors(total, 7)
		all, err := io.ReadAll(s)
		if err != nil || int64(len(all)) != s.Size() {
			t.Fatalf("total %d: read %d of %d, %v", total, len(all), s.Size(), err)
		}
		n := binary.LittleEndian.Uint64(all)
		if (8+n)%8 != 0 || 8+n > uint64(len(all)) {
			t.Fatalf("header length %d", n)
		}
		var hdr map[string]json.RawMessage
		if err := json.Unmarshal(all[8:8+n], &hdr); err != nil {
			t.Fatalf("header JSON: %v", err)
		}
		var end int64
		for name, raw := range hdr {
			if name == "__metadata__" {
				continue
			}
			var ti struct {
				DType   string  `json:"dtype"`
				Shape   []int64 `json:"shape"`
				Offsets []int64 `json:"data_offsets"`
			}
			if err := json.Unmarshal(raw, &ti); err != nil || ti.DType != "BF16" || len(ti.Offsets) != 2 {
				t.Fatalf("tensor %s: %s", name, raw)
			}
			if ti.Offsets[1]-ti.Offsets[0] != ti.Shape[0]*ti.Shape[1]*2 {
				t.Errorf("tensor %s: offsets %v do not match shape %v", name, ti.Offsets, ti.Shape)
			}
			end = max(end, ti.Offsets[1])
		}
		if 8+int64(n)+end != s.Size() {
			t.Errorf("tensors end at %d, file is %d", 8+int64(n)+end, s.Size())
		}
		if total > 1<<20 && (s.Size() < total*9/10 || s.Size() > total) {
			t.Errorf("size %d for target %d", s.Size(), total)
		}
	}
}

func TestSafetensorsReadAtConsistent(t *testing.T) {
	s := NewSafetensors(1<<20, 3)
	all, _ := io.ReadAll(NewSafetensors(1<<20, 3))
	for _, c := range []struct{ off, n int64 }{{0, 1}, {3, 17}, {int64(len(s.header)) - 3, 11}, {12345, 8}, {int64(len(all)) - 5, 5}} {
		p := make([]byte, c.n)
		if _, err := s.ReadAt(p, c.off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(p, all[c.off:c.off+c.n]) {
			t.Errorf("ReadAt(%d, %d) differs from the stream", c.off, c.n)
		}
	}
	other, _ := io.ReadAll(NewSafetensors(1<<20, 4))
	if bytes.Equal(all, other) {
		t.Error("seed does not change the weights")
	}
}

// TestSafetensorsSeedsShareNoChunks: benchmarks and tests take files of
// different seeds for different content, so Xet deduplication must find
// nothing in common between them (their equal headers aside), whatever
// the seeds, near or far.
func TestSafetensorsSeedsShareNoChunks(t *testing.T) {
	const size = 8 << 20
	header := int64(len(NewSafetensors(size, 1).header))
	chunks := func(seed uint64) map[[32]byte]bool {
		out := map[[32]byte]bool{}
		c := chunking.New(NewSafetensors(size, seed))
		var off int64
		for {
			b, err := c.Next()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			if off+int64(len(b)) > header { // chunks of the header alone may repeat
				out[sha256.Sum256(b)] = true
			}
			off += int64(len(b))
		}
	}
	seen := chunks(1)
	for _, seed := range []uint64{2, 3, 100, 1000, 1 << 40} {
		shared := 0
		for h := range chunks(seed) {
			if seen[h] {
				shared++
			}
		}
		if shared > 0 {
			t.Errorf("seeds 1 and %d share %d of their chunks", seed, shared)
		}
	}
}

func BenchmarkSafetensors(b *testing.B) {
	buf := make([]byte, 1<<20)
	s := NewSafetensors(1<<30, 1)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.ReadAt(buf, int64(i%1000)*int64(len(buf)))
	}
}
