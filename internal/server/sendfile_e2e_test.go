package server_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
)

// A warm download through the server goes from the cache files through
// the response writer's ReadFrom (sendfile on HTTP/1 over TCP): exact
// bytes with Content-Length and with a chunked body (trailers), and every
// lent file given back.
func TestCacheHitSentFromFileThroughServer(t *testing.T) {
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := cacheTestData(9, 10<<20+321)
	h.add(t, "org/m", "w.bin", data)
	p := startCacheProxy(t, h.url, func(c *server.Config) { c.CacheDir = t.TempDir() })
	p.get("/download/org/m/w.bin")
	p.flush()

	before := p.eng.CacheStats().SentFromFile
	g := p.get("/download/org/m/w.bin")
	if g.status != 200 || !bytes.Equal(g.body, data) {
		t.Fatalf("warm: %d, %d bytes, content differs", g.status, len(g.body))
	}
	sent := p.eng.CacheStats().SentFromFile - before
	if sent < int64(len(data))/2 {
		t.Fatalf("%d of %d bytes sent from cache files", sent, len(data))
	}
	g = p.get("/download/org/m/w.bin", "TE", "trailers")
	if g.status != 200 || !bytes.Equal(g.body, data) || g.trailer.Get("X-Xetproxy-Cache-Bytes") == "" {
		t.Fatalf("warm, chunked: %d, %d bytes, trailers %v", g.status, len(g.body), g.trailer)
	}
	g = p.get("/download/org/m/w.bin", "Range", "bytes=1000-4000999")
	if g.status != 206 || !bytes.Equal(g.body, data[1000:4001000]) {
		t.Fatalf("warm range: %d, %d bytes", g.status, len(g.body))
	}
	// The handler gives the last files back after the client has its
	// bytes: poll.
	for deadline := time.Now().Add(10 * time.Second); cache.LentFiles() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d cache files still lent after the answers", cache.LentFiles())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
