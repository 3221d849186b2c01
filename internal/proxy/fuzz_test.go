package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
	"unsafe"

	"github.com/xetproxy/xetproxy/internal/xorb"
)

// FuzzChunkStream: any bytes either decode into chunks of the sizes their
// headers announce or fail with a format error or an unexpected EOF; never
// a panic, never a buffer written beyond its length.
func FuzzChunkStream(f *testing.F) {
	var seed []byte
	seed = xorb.AppendChunk(seed, []byte("hello hello hello hello hello"), xorb.PolicyLZ4)
	seed = xorb.AppendChunk(seed, bytes.Repeat([]byte{1, 2, 3, 4}, 1000), xorb.PolicyBG4)
	seed = xorb.AppendChunk(seed, []byte("raw"), xorb.PolicyNone)
	f.Add(seed)
	f.Add(seed[:len(seed)-1])
	f.Add([]byte("XETBLOB\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		plain := decodeAll(t, &chunkStream{r: bytes.NewReader(data)})
		// Read-ahead, fed in pieces of every size: the same chunks, the
		// same end.
		ahead := decodeAll(t, &chunkStream{r: iotest.HalfReader(bytes.NewReader(data)), ahead: true})
		if len(plain.chunks) != len(ahead.chunks) {
			t.Fatalf("%d chunks plain, %d with read-ahead", len(plain.chunks), len(ahead.chunks))
		}
		for i := range plain.chunks {
			if !bytes.Equal(plain.chunks[i], ahead.chunks[i]) {
				t.Fatalf("chunk %d differs with read-ahead", i)
			}
		}
		for _, err := range []error{plain.err, ahead.err} {
			if err != nil {
				checkStreamErr(t, err)
			}
		}
		if fmt.Sprint(plain.err) != fmt.Sprint(ahead.err) {
			t.Fatalf("plain ends with %v, read-ahead with %v", plain.err, ahead.err)
		}
	})
}

type decoded struct {
	chunks [][]byte
	err    error // nil: a clean end
}

// decodeAll decodes every chunk of cs, checking that each is written
// within its buffer and none lies in the stream's own buffer (which goes
// back to the pool while the chunk is still in use).
func decodeAll(t *testing.T, cs *chunkStream) decoded {
	defer cs.release()
	var d decoded
	for {
		h, err := cs.header()
		if err == io.EOF {
			return d
		}
		if err != nil {
			d.err = err
			return d
		}
		buf := make([]byte, h.UncompressedLen, h.UncompressedLen+16)
		canary := buf[len(buf):cap(buf)]
		for i := range canary {
			canary[i] = 0xa5
		}
		if err := cs.body(h, buf); err != nil {
			d.err = err
			return d
		}
		for _, b := range canary {
			if b != 0xa5 {
				t.Fatal("decoded past the buffer")
			}
		}
		if cs.payload != nil && overlaps(buf, *cs.payload) {
			t.Fatal("a decoded chunk lies in the stream's buffer")
		}
		d.chunks = append(d.chunks, buf)
	}
}

func overlaps(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0, b0 := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&b[0]))
	return a0 < b0+uintptr(cap(b)) && b0 < a0+uintptr(len(a))
}

func checkStreamErr(t *testing.T, err error) {
	var fe *xorb.FormatError
	if !errors.As(err, &fe) && err != io.ErrUnexpectedEOF {
		t.Fatalf("unexpected error type %T: %v", err, err)
	}
}
