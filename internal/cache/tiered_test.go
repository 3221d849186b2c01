package cache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
)

func flush(t *testing.T, ts *cache.Tiered) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := ts.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// Two instances with their own disks and one bucket: what the first puts,
// the second serves, first from the bucket and then from its own disk.
func TestTieredSharedBucket(t *testing.T) {
	f := newFakeS3(t)
	one := newTiered(t, newDisk(t, t.TempDir(), 1<<30), newS3Store(t, f.config("shared")), cache.TieredConfig{})
	twoLocal := newDisk(t, t.TempDir(), 1<<30)
	two := newTiered(t, twoLocal, newS3Store(t, f.config("shared")), cache.TieredConfig{})

	x := cachetest.Xorb(1)
	mustPut(t, one, cachetest.MakeEntry(x, 0, 50, 0))
	flush(t, one)
	if n := hasPrefixCount(f.keys(t), "shared/"+x.String()+"/"); n != 1 {
		t.Fatalf("bucket holds %d objects of the xorb, want 1", n)
	}

	f.reset()
	mustHit(t, two, x, 10, 20, 0)
	if f.Count("LIST") != 1 || f.Count("GET")+f.Count("GET range") == 0 {
		t.Errorf("first read: %d listings, %d GETs", f.Count("LIST"), f.Count("GET")+f.Count("GET range"))
	}
	// Filled into two's disk: the same range again costs no request.
	f.reset()
	mustHit(t, two, x, 10, 20, 0)
	mustHit(t, two, x, 12, 13, 0)
	if n := f.Count("GET") + f.Count("GET range") + f.Count("LIST"); n != 0 {
		t.Errorf("%d requests for locally cached ranges", n)
	}
	if st := twoLocal.Stats(); st.Entries != 1 || st.Hits != 2 {
		t.Errorf("second instance's disk: %d entries, %d hits; want 1, 2", st.Entries, st.Hits)
	}
	// Filling the local tier does not write the entry back to the bucket.
	flush(t, two)
	if n := f.Count("PUT"); n != 0 {
		t.Errorf("%d PUTs after a shared hit", n)
	}
}

func TestTieredCloseDrains(t *testing.T) {
	f := newFakeS3(t)
	ts := newTiered(t, newMemory(t, 1<<20), newS3Store(t, f.config("")), cache.TieredConfig{Workers: 1})
	for i := range 20 {
		mustPut(t, ts, cachetest.MakeEntry(cachetest.Xorb(uint64(i)), 0, 3, 0))
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.keys(t)); n != 20 {
		t.Errorf("bucket holds %d objects after Close, want 20", n)
	}
	if err := ts.Put(bg, cachetest.MakeEntry(cachetest.Xorb(99), 0, 1, 0)); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("Put after Close = %v, want ErrClosed", err)
	}
	mustHit(t, ts, cachetest.Xorb(3), 0, 3, 0) // reads still work
	if err := ts.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// A broken shared tier degrades to the local tier: hits still hit, writes
// still land locally, misses surface the failure instead of ErrNotFound.
func TestTieredBrokenShared(t *testing.T) {
	f := newFakeS3(t)
	cfg := f.config("")
	cfg.Bucket = "missing"
	local := newMemory(t, 1<<20)
	ts := newTiered(t, local, newS3Store(t, cfg), cache.TieredConfig{})
	e := cachetest.MakeEntry(cachetest.Xorb(3), 0, 5, 0)
	mustPut(t, ts, e)
	flush(t, ts)
	mustHit(t, ts, e.Xorb, 1, 4, 0)
	_, err := ts.Get(bg, cachetest.Xorb(4), 0, 1)
	if err == nil || errors.Is(err, cache.ErrNotFound) {
		t.Errorf("miss with a broken shared tier = %v, want its error", err)
	}
	if st := ts.Stats(); st.Errors != 2 || st.Misses != 1 || st.Hits != 1 {
		t.Errorf("errors %d, misses %d, hits %d; want 2, 1, 1", st.Errors, st.Misses, st.Hits)
	}
}

func TestTieredSyncSharedReturnsSharedError(t *testing.T) {
	f := newFakeS3(t)
	cfg := f.config("")
	cfg.Bucket = "missing"
	ts := newTiered(t, newMemory(t, 1<<20), newS3Store(t, cfg), cache.TieredConfig{SyncShared: true})
	e := cachetest.MakeEntry(cachetest.Xorb(5), 0, 2, 0)
	if err := ts.Put(bg, e); err == nil {
		t.Error("Put with a failing shared tier succeeded in sync mode")
	}
	mustHit(t, ts, e.Xorb, 0, 2, 0)
}

func TestTieredConfig(t *testing.T) {
	m := newMemory(t, 1<<20)
	if _, err := cache.NewTiered(m, nil, cache.TieredConfig{}); err == nil {
		t.Error("nil shared tier accepted")
	}
	if _, err := cache.NewTiered(m, m, cache.TieredConfig{Workers: -1}); err == nil {
		t.Error("negative worker count accepted")
	}
}

// A Delete wins over shared writes queued before it, whether they are still
// waiting, in flight or done.
func TestTieredDeleteCancelsQueuedWrites(t *testing.T) {
	f := newFakeS3(t)
	ts := newTiered(t, newMemory(t, 1<<20), newS3Store(t, f.config("")), cache.TieredConfig{Workers: 1})
	x, y := cachetest.Xorb(40), cachetest.Xorb(41)
	for i := range uint32(30) {
		mustPut(t, ts, cachetest.MakeEntry(x, 2*i, 2*i+2, 0))
	}
	mustPut(t, ts, cachetest.MakeEntry(y, 0, 2, 0))
	if err := ts.Delete(bg, x, 0, 60); err != nil {
		t.Fatal(err)
	}
	flush(t, ts)
	if keys := f.keys(t); len(keys) != 1 || hasPrefixCount(keys, y.String()) != 1 {
		t.Errorf("bucket after Delete and Flush: %d objects %v, want only y's", len(keys), keys)
	}
	mustMiss(t, ts, x, 0, 2)
	mustHit(t, ts, y, 0, 2, 0)
}
