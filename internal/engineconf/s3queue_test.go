package engineconf

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
)

// With a disk tier (alone or under a memory tier) the S3 write queue
// spools to it and holds keys; without one it holds the entries.
func TestNewCacheS3QueueSpool(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("b"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		name    string
		dir     bool
		memory  int64
		spooled bool
	}{
		{"disk", true, 0, true},
		{"memory and disk", true, 8 << 20, true},
		{"memory", false, 8 << 20, false},
		{"bucket alone", false, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := CacheConfig{Memory: c.memory, S3Endpoint: srv.URL, S3Bucket: "b", S3Region: "auto",
				S3PathStyle: true, S3AccessKeyID: "k", S3SecretAccessKey: "s"}
			if c.dir {
				cfg.Dir, cfg.Size = t.TempDir(), 1<<30
			}
			store, _, err := NewCache(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			ts := store.(*cache.Tiered)
			defer ts.Close()
			if err := ts.Put(context.Background(), cachetest.MakeEntry(cachetest.Xorb(1), 0, 8, 0)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := ts.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			q := ts.Queue()
			if (q.Spooled == 1) != c.spooled || q.Dropped != 0 || q.Limit != 256<<20 {
				t.Errorf("queue %+v; want spooled %v, limit 256 MiB", q, c.spooled)
			}
		})
	}
}
