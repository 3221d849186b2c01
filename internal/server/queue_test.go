package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// getAsync downloads path from f's server in the background.
func (f *fixture) getAsync(path string) <-chan answer {
	done := make(chan answer, 1)
	go func() {
		res, err := http.Get(f.ts.URL + path)
		if err != nil {
			done <- answer{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		done <- answer{status: res.StatusCode, header: res.Header, body: b, err: err}
	}()
	return done
}

// With the one slot taken, a second download waits in the queue and is
// served when the first ends; /readyz stays ready while the queue has
// room and the status page shows the waiter.
func TestDownloadQueueWaitsForSlot(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxDownloads, c.QueueMax, c.QueueTimeout = 1, 4, time.Hour })
	f.holdXorbs()
	first := f.getAsync("/download/org/m/model.safetensors")
	waitFor(t, func() bool { return f.srv.adm.inFlight() == 1 })
	second := f.getAsync("/download/org/m/model.safetensors")
	waitFor(t, func() bool { return f.srv.adm.queued() == 1 })
	if a := f.do("GET", "/readyz"); a.status != 200 {
		t.Errorf("readyz with room in the queue: %d", a.status)
	}
	if snap := f.srv.statusSnapshot(false); snap.Downloads.Queued != 1 || !snap.Downloads.Ready {
		t.Errorf("status downloads = %+v", snap.Downloads)
	}
	select {
	case a := <-second:
		t.Fatalf("second answered while the slot is taken: %d", a.status)
	default:
	}
	f.releaseXorbs()
	for i, ch := range []<-chan answer{first, second} {
		if a := <-ch; a.err != nil || a.status != 200 || !bytes.Equal(a.body, f.big.data) {
			t.Errorf("download %d: %d %d bytes %v", i+1, a.status, len(a.body), a.err)
		}
	}
	m := f.do("GET", "/metrics")
	for _, want := range []string{"xetproxy_download_queue_wait_seconds_count 1", "xetproxy_downloads_queued 0"} {
		if !bytes.Contains(m.body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// A wait past --queue-timeout ends in 503 + Retry-After, counted.
func TestDownloadQueueTimeout(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxDownloads, c.QueueMax, c.QueueTimeout = 1, 4, 20*time.Millisecond })
	f.holdXorbs()
	first := f.getAsync("/download/org/m/model.safetensors")
	waitFor(t, func() bool { return f.srv.adm.inFlight() == 1 })
	a := f.do("GET", "/download/org/m/config.json")
	if a.status != 503 || a.header.Get("Retry-After") == "" || a.header.Get("X-Error-Code") != "Overloaded" {
		t.Errorf("after the queue timeout: %d %v", a.status, a.header)
	}
	f.releaseXorbs()
	if a := <-first; a.status != 200 {
		t.Errorf("first: %d", a.status)
	}
	if m := f.do("GET", "/metrics"); !bytes.Contains(m.body, []byte(`xetproxy_downloads_rejected_total{reason="queue_timeout"} 1`)) {
		t.Error("timeout not counted")
	}
}

// With the queue full a download is refused at once; /readyz says so.
func TestDownloadQueueFull(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxDownloads, c.QueueMax, c.QueueTimeout = 1, 1, time.Hour })
	f.holdXorbs()
	first := f.getAsync("/download/org/m/model.safetensors")
	waitFor(t, func() bool { return f.srv.adm.inFlight() == 1 })
	second := f.getAsync("/download/org/m/config.json")
	waitFor(t, func() bool { return f.srv.adm.queued() == 1 })
	a := f.do("GET", "/download/org/m/config.json")
	if a.status != 503 || a.header.Get("Retry-After") == "" || a.header.Get("X-Error-Code") != "Overloaded" {
		t.Errorf("queue full: %d %v", a.status, a.header)
	}
	if a := f.do("GET", "/readyz"); a.status != 503 || !bytes.Contains(a.body, []byte("download queue full")) {
		t.Errorf("readyz with the queue full: %d %s", a.status, a.body)
	}
	f.releaseXorbs()
	for i, ch := range []<-chan answer{first, second} {
		if a := <-ch; a.status != 200 {
			t.Errorf("download %d: %d", i+1, a.status)
		}
	}
	if m := f.do("GET", "/metrics"); !bytes.Contains(m.body, []byte(`xetproxy_downloads_rejected_total{reason="queue_full"} 1`)) {
		t.Error("full queue not counted")
	}
}

// 16 readers streaming one file hold the read-ahead bound of 16 full
// read-aheads; a 17th reader of the same file is admitted at once, for
// admission charges each only a small share.
func TestSeventeenthReaderAdmitted(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.MaxDownloads, c.ReadAhead, c.MaxBuffer = 64, 16<<20, 256<<20 // 16 read-aheads
	})
	f.holdXorbs()
	var all []<-chan answer
	for range 17 {
		all = append(all, f.getAsync("/download/org/m/model.safetensors"))
	}
	waitFor(t, func() bool { return f.srv.adm.inFlight() == 17 })
	if f.srv.adm.queued() != 0 {
		t.Error("readers queued")
	}
	f.releaseXorbs()
	for i, ch := range all {
		if a := <-ch; a.err != nil || a.status != 200 || !bytes.Equal(a.body, f.big.data) {
			t.Errorf("reader %d: %d %d bytes %v", i+1, a.status, len(a.body), a.err)
		}
	}
}

// The upstream timeout does not run while a download waits for admission.
func TestDownloadQueueWaitIsNotUpstreamTime(t *testing.T) {
	const upstream = 100 * time.Millisecond
	f := newFixture(t, func(c *Config) {
		c.MaxDownloads, c.QueueMax, c.QueueTimeout, c.UpstreamTimeout = 1, 4, time.Hour, upstream
	})
	hold, err := f.srv.adm.acquire(context.Background(), 0) // the one slot
	if err != nil {
		t.Fatal(err)
	}
	waiting := f.getAsync("/download/org/m/model.safetensors")
	waitFor(t, func() bool { return f.srv.adm.queued() == 1 })
	time.Sleep(3 * upstream) // well past the upstream timeout, in the queue
	hold()
	if a := <-waiting; a.err != nil || a.status != 200 || !bytes.Equal(a.body, f.big.data) {
		t.Errorf("after a wait longer than the upstream timeout: %d %d bytes %v", a.status, len(a.body), a.err)
	}
}

// The memory limit is the budget, the in-memory stores and the headroom.
func TestMemoryLimit(t *testing.T) {
	c := &Config{MaxBuffer: 256 << 20, CacheDir: "/c"}
	if got := c.MemoryLimit(); got != 256<<20+MemoryHeadroom {
		t.Errorf("disk cache: %d", got)
	}
	c = &Config{MaxBuffer: 256 << 20, CacheDir: "/c", CacheMemory: 100 << 20, S3Bucket: "b", S3Queue: 32 << 20}
	// with a disk tier the bucket's write queue waits on disk: 1 MiB of keys
	if got := c.MemoryLimit(); got != 256<<20+100<<20+1<<20+MemoryHeadroom {
		t.Errorf("memory tier, disk and bucket: %d", got)
	}
	c = &Config{MaxBuffer: 256 << 20, CacheMemory: 100 << 20, S3Bucket: "b", S3Queue: 32 << 20}
	if got := c.MemoryLimit(); got != 256<<20+2*100<<20+32<<20+MemoryHeadroom {
		t.Errorf("memory tier (and its staging twin) and bucket: %d", got)
	}
}
