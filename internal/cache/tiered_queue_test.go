package cache_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
)

// syncBuffer is a log destination safe for the queue's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A fill 64 times the queue's size loses no shared write: Put waits for
// room instead of dropping, every entry reaches a real S3 server
// (versitygw), and the queue never holds more than its bound. With a
// spool (the disk tier) the queue holds keys only.
func TestTieredQueueFillLargerThanQueue(t *testing.T) {
	const (
		key, secret = "queue-key", "queue-secret-0123456789"
		queue       = 1 << 20
		total       = 64 << 20
		maxChunk    = 32 << 10 // entries of 16 chunks: about 256 KiB
	)
	url, dir := cachetest.Versity(t, key, secret, testBucket)
	for _, spooled := range []bool{true, false} {
		name := "memory"
		if spooled {
			name = "disk spool"
		}
		t.Run(name, func(t *testing.T) {
			cfg := versityConfig(url, key, secret)
			cfg.Prefix = strings.ReplaceAll(name, " ", "-") + "/"
			var local cache.Store
			tc := cache.TieredConfig{QueueBytes: queue}
			var d *cache.Disk
			if spooled {
				d = newDisk(t, t.TempDir(), 1<<30)
				local, tc.Spool = d, d
			} else {
				local = newMemory(t, 1<<30)
			}
			ts := newTiered(t, local, newS3Store(t, cfg), tc)

			// four writers, as concurrent fills would be
			var entries []*cache.Entry
			for size, x := 0, uint64(1000); size < total; x++ {
				for c := uint32(0); c < 64 && size < total; c += 16 {
					e := cachetest.MakeEntry(cachetest.Xorb(x), c, c+16, maxChunk)
					entries = append(entries, e)
					size += len(e.Data)
				}
			}
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < len(entries); i += 4 {
						if err := ts.Put(bg, entries[i]); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			flush(t, ts)

			q := ts.Queue()
			if st := ts.Stats(); st.Dropped != 0 || st.Errors != 0 || q.Dropped != 0 {
				t.Fatalf("dropped %d, errors %d", st.Dropped, st.Errors)
			}
			if q.Waits == 0 {
				t.Error("no Put waited for room: the fill never outran the queue")
			}
			if q.PeakBytes > queue {
				t.Errorf("queue held up to %d bytes, bound %d", q.PeakBytes, queue)
			}
			if spooled {
				if q.Spooled != uint64(len(entries)) {
					t.Errorf("%d of %d writes spooled", q.Spooled, len(entries))
				}
				// a record per write, no entry bytes
				if q.PeakMemBytes > 64<<10 {
					t.Errorf("spooled queue held up to %d bytes of memory", q.PeakMemBytes)
				}
				// reading back is not a lookup
				if h := d.Stats().Hits; h != 0 {
					t.Errorf("the disk counted %d hits for the uploads", h)
				}
			} else if q.PeakMemBytes > queue+64<<10 {
				t.Errorf("queue held up to %d bytes of memory, bound %d", q.PeakMemBytes, queue)
			}
			if q.Entries != 0 || q.Bytes != 0 || q.MemBytes != 0 {
				t.Errorf("after Flush: %+v", q)
			}

			// every entry is in the bucket, whole: a fresh store reads each
			if n := hasPrefixCount(cachetest.BucketFiles(t, dir), cfg.Prefix); n != len(entries) {
				t.Errorf("bucket holds %d objects under %s, want %d", n, cfg.Prefix, len(entries))
			}
			fresh := newS3Store(t, cfg)
			for _, e := range entries {
				mustHit(t, fresh, e.Xorb, e.Start, e.End, maxChunk)
			}
		})
	}
}

// hangingS3 is an S3 endpoint that answers nothing until released, then
// fails every request: a bucket that stopped answering.
func hangingS3(t *testing.T) (url string, release func()) {
	t.Helper()
	ch := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ch
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(func() { release(); srv.Close() })
	return srv.URL, release
}

// When the bucket stops answering, a Put waits QueueWait for room, then
// drops its shared write: counted, logged at Warn (once), and the queue is
// congested so the next Put drops without waiting. Once the queue drains,
// writes are queued again.
func TestTieredQueueWaitsThenDrops(t *testing.T) {
	url, release := hangingS3(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := cache.S3Config{Endpoint: url, Bucket: testBucket, Region: "auto", PathStyle: true,
		AccessKeyID: "k", SecretAccessKey: "s"}
	local := newMemory(t, 1<<20)
	ts := newTiered(t, local, newS3Store(t, cfg), cache.TieredConfig{
		QueueBytes: 1, QueueWait: 50 * time.Millisecond, Workers: 1, Logger: log})

	a := cachetest.MakeEntry(cachetest.Xorb(1), 0, 4, 0)
	b := cachetest.MakeEntry(cachetest.Xorb(2), 0, 4, 0)
	c := cachetest.MakeEntry(cachetest.Xorb(3), 0, 4, 0)
	mustPut(t, ts, a) // an empty queue takes it; its write hangs
	mustPut(t, ts, b) // waits, then drops
	q := ts.Queue()
	if q.Waits != 1 || q.Dropped != 1 || ts.Stats().Dropped != 1 {
		t.Fatalf("after the second Put: %+v, Stats.Dropped %d; want 1 wait, 1 drop", q, ts.Stats().Dropped)
	}
	mustPut(t, ts, c) // congested: drops at once
	if q := ts.Queue(); q.Waits != 1 || q.Dropped != 2 {
		t.Fatalf("after the third Put: %+v; want still 1 wait, 2 drops", q)
	}
	// the local tier has all three
	for _, e := range []*cache.Entry{a, b, c} {
		mustHit(t, local, e.Xorb, e.Start, e.End, 0)
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN msg=\"cache: a write to the shared tier was dropped\""); n != 1 {
		t.Errorf("%d warnings for 2 drops, want 1 (rate-limited):\n%s", n, out)
	}
	if n := strings.Count(out, "a write to the shared tier was dropped"); n != 2 {
		t.Errorf("%d log lines for 2 drops, want 2:\n%s", n, out)
	}

	// a Flush that runs out says what is left
	ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	if err := ts.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with a hung write = %v", err)
	}
	if out := logs.String(); !strings.Contains(out, `level=WARN msg="cache: writes to the shared tier still queued" writes=1`) {
		t.Errorf("no warning of the writes left by Flush:\n%s", out)
	}

	release() // the hung write fails; the queue drains
	flush(t, ts)
	d := cachetest.MakeEntry(cachetest.Xorb(4), 0, 4, 0)
	mustPut(t, ts, d)
	flush(t, ts)
	if q := ts.Queue(); q.Dropped != 2 || q.Entries != 0 {
		t.Errorf("after the queue drained: %+v; want the fourth write queued (2 drops)", q)
	}
	if st := ts.Stats(); st.Errors != 2 {
		t.Errorf("errors %d, want 2 (the two failed bucket writes)", st.Errors)
	}
}

// A spooled write whose entry left the disk before its upload is dropped,
// counted and logged, never silently lost.
func TestTieredSpoolEntryGone(t *testing.T) {
	url, release := hangingS3(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := cache.S3Config{Endpoint: url, Bucket: testBucket, Region: "auto", PathStyle: true,
		AccessKeyID: "k", SecretAccessKey: "s"}
	d := newDisk(t, t.TempDir(), 1<<30)
	ts := newTiered(t, d, newS3Store(t, cfg), cache.TieredConfig{Spool: d, Workers: 1, Logger: log})
	a := cachetest.MakeEntry(cachetest.Xorb(1), 0, 4, 0)
	b := cachetest.MakeEntry(cachetest.Xorb(2), 0, 4, 0)
	c := cachetest.MakeEntry(cachetest.Xorb(3), 0, 4, 0)
	mustPut(t, ts, a) // in flight, hung
	mustPut(t, ts, b) // queued as a key
	mustPut(t, ts, c)
	if q := ts.Queue(); q.Spooled != 3 || q.MemBytes >= 3*200 || q.Bytes != int64(len(a.Data)+len(b.Data)+len(c.Data)) {
		t.Errorf("queue of three spooled writes: %+v; want under 200 bytes of memory each", q)
	}
	// behind the queue's back: b is gone, c holds other chunks
	if err := d.Delete(bg, b.Xorb, 0, 4); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(bg, c.Xorb, 0, 4); err != nil {
		t.Fatal(err)
	}
	mustPut(t, d, cachetest.MakeEntry(c.Xorb, 0, 4, 100))
	release()
	flush(t, ts)
	if st := ts.Stats(); st.Dropped != 2 {
		t.Errorf("dropped %d, want 2", st.Dropped)
	}
	out := logs.String()
	if !strings.Contains(out, "reading it back from the disk tier") || !strings.Contains(out, b.Xorb.String()) {
		t.Errorf("no warning naming the lost write:\n%s", out)
	}
	if !strings.Contains(out, "other chunk hashes") || !strings.Contains(out, c.Xorb.String()) {
		t.Errorf("no log line naming the changed entry:\n%s", out)
	}
}

// Close ends a Put waiting for room: its shared write is dropped and
// counted, and Close returns once the queue is drained.
func TestTieredCloseEndsWaits(t *testing.T) {
	url, release := hangingS3(t)
	cfg := cache.S3Config{Endpoint: url, Bucket: testBucket, Region: "auto", PathStyle: true,
		AccessKeyID: "k", SecretAccessKey: "s"}
	ts := newTiered(t, newMemory(t, 1<<20), newS3Store(t, cfg), cache.TieredConfig{QueueBytes: 1, QueueWait: time.Hour, Workers: 1})
	mustPut(t, ts, cachetest.MakeEntry(cachetest.Xorb(1), 0, 4, 0))
	done := make(chan error, 1)
	go func() { done <- ts.Put(bg, cachetest.MakeEntry(cachetest.Xorb(2), 0, 4, 0)) }()
	deadline := time.Now().Add(10 * time.Second)
	for ts.Queue().Waits == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second Put never waited")
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { ts.Close(); close(closed) }()
	if err := <-done; err != nil {
		t.Errorf("waiting Put = %v, want nil (the local write succeeded)", err)
	}
	release()
	<-closed
	if st := ts.Stats(); st.Dropped != 1 {
		t.Errorf("dropped %d, want 1", st.Dropped)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := ts.Put(ctx, cachetest.MakeEntry(cachetest.Xorb(3), 0, 1, 0)); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context = %v", err)
	}
}

// The queue bounds its number of writes as well as their bytes, and with a
// spool it is at most half the disk.
func TestTieredQueueBounds(t *testing.T) {
	url, release := hangingS3(t)
	defer release()
	cfg := cache.S3Config{Endpoint: url, Bucket: testBucket, Region: "auto", PathStyle: true,
		AccessKeyID: "k", SecretAccessKey: "s"}
	d := newDisk(t, t.TempDir(), 1<<20)
	spooled := newTiered(t, d, newS3Store(t, cfg), cache.TieredConfig{Spool: d})
	if l := spooled.Queue().Limit; l != 512<<10 {
		t.Errorf("spooled queue limit %d, want half the disk (%d)", l, 512<<10)
	}

	ts := newTiered(t, newMemory(t, 64<<20), newS3Store(t, cfg), cache.TieredConfig{
		QueueBytes: 1 << 30, QueueWait: time.Millisecond, Workers: 1})
	const n = 4096 + 2 // one in flight, 4096 waiting, one too many
	for i := range n {
		mustPut(t, ts, cachetest.MakeEntry(cachetest.Xorb(uint64(i)), 0, 1, 16))
	}
	q := ts.Queue()
	if q.Dropped != 1 || q.Entries != n-1 {
		t.Errorf("after %d one-chunk writes: %+v; want 1 dropped, %d queued", n, q, n-1)
	}
}

// With a spool a manifest is queued as its xorb hash and read back from
// the disk (where it is verified again) when it is uploaded.
func TestTieredSpoolManifest(t *testing.T) {
	f := newFakeS3(t)
	d := newDisk(t, t.TempDir(), 1<<30)
	ts := newTiered(t, d, newS3Store(t, f.config("s")), cache.TieredConfig{Spool: d})
	m, _ := cachetest.MakeManifest(21, 300<<10)
	if err := ts.PutManifest(bg, m); err != nil {
		t.Fatal(err)
	}
	flush(t, ts)
	if q := ts.Queue(); q.Spooled != 1 || q.Dropped != 0 {
		t.Errorf("queue after one manifest: %+v; want 1 spooled, 0 dropped", q)
	}
	if f.object(t, "s/manifests/"+m.Xorb.String()) == nil {
		t.Fatalf("manifest did not reach the bucket: %v", f.keys(t))
	}
	got, err := newS3Store(t, f.config("s")).GetManifest(bg, m.Xorb)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cachetest.SameManifest(got, m); diff != "" {
		t.Error(diff)
	}
}

// An entry the disk did not take (here: larger than the whole disk) is
// queued with its bytes and still reaches the bucket.
func TestTieredSpoolLocalPutFailed(t *testing.T) {
	f := newFakeS3(t)
	d := newDisk(t, t.TempDir(), 1<<10)
	ts := newTiered(t, d, newS3Store(t, f.config("")), cache.TieredConfig{Spool: d})
	e := cachetest.MakeEntry(cachetest.Xorb(5), 0, 8, 0)
	if err := ts.Put(bg, e); !errors.Is(err, cache.ErrTooLarge) {
		t.Fatalf("Put of an entry larger than the disk = %v", err)
	}
	flush(t, ts)
	if q := ts.Queue(); q.Spooled != 0 || q.Dropped != 0 || q.PeakMemBytes < int64(len(e.Data)) {
		t.Errorf("queue %+v; want the entry held in memory, not spooled", q)
	}
	mustHit(t, newS3Store(t, f.config("")), e.Xorb, 0, 8, 0)
}
