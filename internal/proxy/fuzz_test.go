package proxy

import (
	"bytes"
	"errors"
	"io"
	"testing"

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
		cs := &chunkStream{r: bytes.NewReader(data)}
		defer cs.release()
		for {
			h, err := cs.header()
			if err == io.EOF {
				return
			}
			if err != nil {
				checkStreamErr(t, err)
				return
			}
			buf := make([]byte, h.UncompressedLen, h.UncompressedLen+16)
			canary := buf[len(buf):cap(buf)]
			for i := range canary {
				canary[i] = 0xa5
			}
			if err := cs.body(h, buf); err != nil {
				checkStreamErr(t, err)
				return
			}
			for _, b := range canary {
				if b != 0xa5 {
					t.Fatal("decoded past the buffer")
				}
			}
		}
	})
}

func checkStreamErr(t *testing.T, err error) {
	var fe *xorb.FormatError
	if !errors.As(err, &fe) && err != io.ErrUnexpectedEOF {
		t.Fatalf("unexpected error type %T: %v", err, err)
	}
}
