package server_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/server"
)

// engineCounter is one counter of the engine's CacheStats and the sample
// /metrics exports it as.
type engineCounter struct {
	sample string
	value  func(proxy.CacheStats) float64
}

var (
	hitBytesCounter = engineCounter{"xetproxy_cache_hit_bytes_total",
		func(s proxy.CacheStats) float64 { return float64(s.HitBytes) }}
	writeBytesCounter = engineCounter{"xetproxy_cache_write_bytes_total",
		func(s proxy.CacheStats) float64 { return float64(s.PutBytes) }}
	adoptedCounter = engineCounter{"xetproxy_cache_adopted_bytes_total",
		func(s proxy.CacheStats) float64 { return float64(s.AdoptedBytes) }}
	stagingReadsCounter = engineCounter{"xetproxy_cache_staging_reads_total",
		func(s proxy.CacheStats) float64 { return float64(s.StagingReads) }}
	keptEvictionsCounter = engineCounter{"xetproxy_cache_kept_evictions_total",
		func(s proxy.CacheStats) float64 { return float64(s.KeptEvicted) }}
	sendfileCounter = engineCounter{"xetproxy_cache_sendfile_bytes_total",
		func(s proxy.CacheStats) float64 { return float64(s.SentFromFile) }}
)

// moved asserts that each counter's /metrics sample equals the engine's
// count and has grown since the stats in before. The engine must be idle
// (flushed, no download in flight) so that the two reads agree.
func (p *cacheProxy) moved(before proxy.CacheStats, counters ...engineCounter) {
	p.t.Helper()
	st := p.eng.CacheStats()
	for _, c := range counters {
		got, want := p.metric(c.sample), c.value(st)
		if got != want {
			p.t.Errorf("%s = %v, the engine counts %v", c.sample, got, want)
		}
		if got <= c.value(before) {
			p.t.Errorf("%s = %v, did not grow from %v", c.sample, got, c.value(before))
		}
	}
}

// A cold download through a server with a disk cache adopts its proven
// staged segments as entries, and a warm one hits them and sends their
// bytes from the files: /metrics exports each of those counters as the
// engine counts it.
func TestMetricsCacheFillAndHitCounters(t *testing.T) {
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := cacheTestData(11, 12<<20+77)
	h.add(t, "org/m", "c.bin", data)
	p := startCacheProxy(t, h.url, func(c *server.Config) { c.CacheDir = t.TempDir() })
	const path = "/download/org/m/c.bin"

	before := p.eng.CacheStats()
	if g := p.get(path); g.status != 200 || !bytes.Equal(g.body, data) {
		t.Fatalf("cold: %d, %d bytes, content differs", g.status, len(g.body))
	}
	p.flush()
	p.moved(before, writeBytesCounter, adoptedCounter)

	before = p.eng.CacheStats()
	if g := p.get(path); g.status != 200 || !bytes.Equal(g.body, data) {
		t.Fatalf("warm: %d, %d bytes, content differs", g.status, len(g.body))
	}
	p.flush()
	p.moved(before, hitBytesCounter, sendfileCounter)
}

// A client that stops reading after the first byte of a cold file, while
// the fills its read-ahead started run to their end in a fill buffer too
// small to keep the file for it, makes the fills let go of kept segments
// for room, and reads those back from the stores when it goes on. The
// file is an edit of another one, so that its fills are parts of that
// one's xorbs: those prove nothing until the file's hash checks at its
// end, and their segments wait in the staging store until then.
func TestMetricsCacheKeptSegmentCounters(t *testing.T) {
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	orig := cacheTestData(12, 40<<20+5)
	data := bytes.Clone(orig)
	for off := 2 << 20; off < len(data); off += 4 << 20 {
		copy(data[off:], "a few edited bytes")
	}
	h.add(t, "org/m", "v1.bin", orig)
	h.add(t, "org/m", "v2.bin", data)
	p := startCacheProxy(t, h.url, func(c *server.Config) {
		c.CacheDir = t.TempDir()
		// a quarter of MaxBuffer is the fill buffer: 32 MiB, four
		// segments; the read-ahead covers most of the file
		c.MaxBuffer, c.ReadAhead = 128<<20, 64<<20
	})

	before := p.eng.CacheStats()
	res, err := http.Get(p.url + "/download/org/m/v2.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for st := p.eng.CacheStats(); st.Fills == before.Fills || st.FillsInFlight != 0 || st.StagedBytes == before.StagedBytes; st = p.eng.CacheStats() {
		if time.Now().After(deadline) {
			t.Fatalf("fills still running: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rest, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || !bytes.Equal(append(first, rest...), data) {
		t.Fatalf("%d, %d bytes, content differs", res.StatusCode, 1+len(rest))
	}
	p.flush()
	p.moved(before, keptEvictionsCounter, stagingReadsCounter)
}
