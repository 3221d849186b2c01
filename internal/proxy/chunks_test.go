package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/xetproxy/xetproxy/internal/xorb"
)

// chunkRange is a xorb range of n chunks of every storage scheme and of
// sizes up to the largest, with each chunk's bytes and where it ends.
func chunkRange(n int) (data []byte, chunks [][]byte, ends []int) {
	r := rand.New(rand.NewPCG(7, 9))
	policies := []xorb.Policy{xorb.PolicyLZ4, xorb.PolicyBG4, xorb.PolicyNone}
	for i := range n {
		size := 1 + r.IntN(xorb.MaxChunkSize)
		c := make([]byte, size)
		switch i % 3 {
		case 0: // compressible text
			for j := range c {
				c[j] = "abcabcxyz "[r.IntN(10)]
			}
		case 1: // bf16-like: exponent bytes repeat
			for j := range c {
				if j%2 == 1 {
					c[j] = 0x3f
				} else {
					c[j] = byte(r.Uint32())
				}
			}
		default: // incompressible
			for j := range c {
				c[j] = byte(r.Uint32())
			}
		}
		data = xorb.AppendChunk(data, c, policies[i%3])
		chunks = append(chunks, c)
		ends = append(ends, len(data))
	}
	return data, chunks, ends
}

type failAfter struct{ err error }

func (f failAfter) Read([]byte) (int, error) { return 0, f.err }

// With read-ahead, every chunk decodes as without it, across refills of
// the buffer; a reader that fails mid-range fails the stream after the
// chunks it delivered whole, with its own error (a broken upstream is a
// broken download, never a clean end).
func TestChunkStreamReadAhead(t *testing.T) {
	data, chunks, ends := chunkRange(60)
	if len(data) < 4*xorb.MaxCompressedSize {
		t.Fatalf("range of %d bytes: too short to refill the buffer", len(data))
	}
	d := decodeAll(t, &chunkStream{r: bytes.NewReader(data), ahead: true})
	if d.err != nil || len(d.chunks) != len(chunks) {
		t.Fatalf("%d of %d chunks, %v", len(d.chunks), len(chunks), d.err)
	}
	for i := range chunks {
		if !bytes.Equal(d.chunks[i], chunks[i]) {
			t.Fatalf("chunk %d differs", i)
		}
	}

	boom := errors.New("connection reset")
	for _, cut := range []int{ends[9] - 1, ends[9], ends[9] + 3, ends[30] + 100} {
		k := 0 // chunks wholly before cut
		for k < len(ends) && ends[k] <= cut {
			k++
		}
		r := io.MultiReader(bytes.NewReader(data[:cut]), failAfter{boom})
		d := decodeAll(t, &chunkStream{r: r, ahead: true})
		if !errors.Is(d.err, boom) {
			t.Fatalf("cut at %d: ends with %v, want the reader's error", cut, d.err)
		}
		if len(d.chunks) != k {
			t.Fatalf("cut at %d: %d chunks before the error, want %d", cut, len(d.chunks), k)
		}
	}
	// A clean end of the reader inside a chunk is a truncated range.
	d = decodeAll(t, &chunkStream{r: bytes.NewReader(data[:ends[5]+3]), ahead: true})
	if d.err != io.ErrUnexpectedEOF || len(d.chunks) != 6 {
		t.Fatalf("truncated: %d chunks, %v", len(d.chunks), d.err)
	}
}

// skip moves past chunks with read-ahead too, whether their bytes are
// buffered or not.
func TestChunkStreamReadAheadSkip(t *testing.T) {
	data, chunks, _ := chunkRange(20)
	for _, from := range []int{1, 7, 19} {
		cs := &chunkStream{r: bytes.NewReader(data), ahead: true}
		for range from {
			h, err := cs.header()
			if err == nil {
				err = cs.skip(h)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		d := decodeAll(t, cs)
		if d.err != nil || len(d.chunks) != len(chunks)-from {
			t.Fatalf("from %d: %d chunks, %v", from, len(d.chunks), d.err)
		}
		for i, c := range d.chunks {
			if !bytes.Equal(c, chunks[from+i]) {
				t.Fatalf("from %d: chunk %d differs", from, from+i)
			}
		}
	}
}
