package fakehub

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// BenchmarkIngest measures the upload pipeline (chunk, hash, compress,
// pack, store, shard) on 64 MiB of random or bf16-like data.
func BenchmarkIngest(b *testing.B) {
	for _, c := range []struct {
		name, policy string
		data         []byte
	}{
		{"random/auto", "auto", randomBytes(1, 64<<20)},
		{"random/none", "none", randomBytes(1, 64<<20)},
		{"weights/auto", "auto", weights(2, 64<<20)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				h, err := New(Config{Compression: c.policy})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := h.ingest(context.Background(), bytes.NewReader(c.data)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkXorbFetch measures serving one whole 64 MiB xorb range over
// loopback, from memory and from disk (sendfile).
func BenchmarkXorbFetch(b *testing.B) {
	for _, mode := range []string{"memory", "disk"} {
		b.Run(mode, func(b *testing.B) {
			cfg := Config{Compression: "none"}
			if mode == "disk" {
				cfg.Dir = b.TempDir()
			}
			h, srv := testHub(b, cfg)
			mustCreate(b, h, RepoSpec{ID: "org/m"})
			f := mustAdd(b, h, "org/m", "w.bin", randomBytes(3, 60<<20))
			c := &xetClient{t: b, srv: srv}
			tok := c.casToken("org/m")
			_, rec := c.reconstruct(tok, f.XetHash, "", "v2")
			var e reconstruction.XorbFetch
			for _, es := range rec.Xorbs {
				e = es[0]
			}
			r := e.Ranges[0].Bytes
			b.SetBytes(int64(r.Len()))
			client := &http.Client{}
			for b.Loop() {
				req, _ := http.NewRequest("GET", e.URL, nil)
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", r.Start, r.End))
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != int64(r.Len()) {
					b.Fatalf("%d bytes, %v", n, err)
				}
			}
		})
	}
}
