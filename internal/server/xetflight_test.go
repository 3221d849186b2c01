package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// TestXetConcurrentColdRangeFetchedOnce: Xet clients, each with its own
// token and reconstruction, asking at once for a xorb range the cache
// lost (its manifest known, so it is served as records) cost upstream
// the range once: while one request fetches it, the others wait for its
// chunks in the cache. Every client gets the exact bytes.
func TestXetConcurrentColdRangeFetchedOnce(t *testing.T) {
	const n = 6
	f := newXetFixture(t, true, func(c *Config) { c.MaxDownloads = n })
	data := compressible(11, 6<<20)
	fs, err := f.fh.AddFile(context.Background(), "org/pub", "huge.bin", bytes.NewReader(data), fakehub.StorageXet)
	if err != nil {
		t.Fatal(err)
	}
	before := f.xorbBytes()
	_, r := f.reconstruct(f.mustToken("models/org/pub"), fs.XetHash, true, "")
	if !bytes.Equal(f.rebuild(r), data) {
		t.Fatal("cold download differs")
	}
	once := f.xorbBytes() - before
	_, x, rg := firstRange(t, r)
	if len(r.Xorbs) != 1 || rg.Chunks.Start != 0 || rg.Chunks.End <= 64 {
		t.Fatalf("premise: one xorb of more than one segment, got %d xorbs, chunks %v", len(r.Xorbs), rg.Chunks)
	}
	if err := f.eng.Cache().Delete(context.Background(), x, 0, rg.Chunks.End); err != nil {
		t.Fatal(err)
	}
	// each client's own token, reconstruction and ticket
	type req struct {
		url, rng string
	}
	reqs := make([]req, n)
	for i := range reqs {
		_, r := f.reconstruct(f.mustToken("models/org/pub"), fs.XetHash, true, "")
		if r == nil {
			t.Fatal("reconstruction refused")
		}
		u, _, rg := firstRange(t, r)
		reqs[i] = req{u, fmt.Sprintf("bytes=%d-%d", rg.Bytes.Start, rg.Bytes.End)}
	}
	joins := f.eng.CacheStats().XorbJoins
	before = f.xorbBytes()
	// upstream answers late: the requests meet while the first waits
	f.fh.SetLatency(fakehub.ClassXorb, 500*time.Millisecond)
	start := make(chan struct{})
	type answer struct {
		body []byte
		err  error
	}
	answers := make(chan answer, n)
	for _, q := range reqs {
		go func() {
			<-start
			hr, _ := http.NewRequest("GET", q.url, nil)
			hr.Header.Set("Range", q.rng)
			resp, err := f.client.Do(hr)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusPartialContent {
				err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
			}
			answers <- answer{b, err}
		}()
	}
	close(start)
	var bodies [][]byte
	for range n {
		a := <-answers
		if a.err != nil {
			t.Fatal(a.err)
		}
		bodies = append(bodies, a.body)
	}
	if spent := f.xorbBytes() - before; spent != once {
		t.Errorf("%d concurrent requests fetched %d xorb bytes upstream, want the range's %d once", n, spent, once)
	}
	st := f.eng.CacheStats()
	if j := st.XorbJoins - joins; j == 0 {
		t.Error("no request waited for another's fetch: the test tests nothing")
	}
	// as exported
	m := NewMetrics("test")
	m.ObserveEngine(f.eng)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for result, want := range map[string]uint64{"joined": st.XorbJoins, "stalled": st.XorbJoinStalls} {
		line := fmt.Sprintf("xetproxy_cas_joins_total{result=%q} %d\n", result, want)
		if !strings.Contains(rec.Body.String(), line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	f.fh.SetLatency(fakehub.ClassXorb, 0)
	// the reference: the file rebuilt from the cache, and the range as
	// the cache serves it; every concurrent answer is that range
	_, r = f.reconstruct(f.mustToken("models/org/pub"), fs.XetHash, true, "")
	if !bytes.Equal(f.rebuild(r), data) {
		t.Fatal("warm download differs")
	}
	u, _, rg := firstRange(t, r)
	want := f.do("GET", u, "Range", fmt.Sprintf("bytes=%d-%d", rg.Bytes.Start, rg.Bytes.End)).body
	for i, b := range bodies {
		if !bytes.Equal(b, want) {
			t.Errorf("request %d: %d bytes differ from the range's %d", i, len(b), len(want))
		}
	}
}
