package server_test

import (
	"bytes"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
)

// A cold fill 64 times the S3 write queue loses no bucket write, with a
// disk tier (the queue spools to it) and without one (the queue holds the
// entries in memory): the fill waits for room instead of dropping, and a
// second instance with an empty disk serves the file from a real S3 server
// (versitygw) without one xorb byte from upstream.
func TestCacheS3QueueSmallerThanFill(t *testing.T) {
	const key, secret, bucket = "xetproxy-key", "xetproxy-secret-0123456789", "xetproxy-cache"
	url, _ := cachetest.Versity(t, key, secret, bucket)
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/q"})
	data := cacheTestData(9, 64<<20)
	h.add(t, "org/q", "big.bin", data)

	for _, tc := range []struct {
		name   string
		prefix string
		disk   bool
	}{
		{"disk tier", "disk/", true},
		{"no disk tier", "memory/", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shared := func(c *server.Config) {
				c.S3Endpoint, c.S3Bucket, c.S3Prefix, c.S3Region, c.S3PathStyle = url, bucket, tc.prefix, "us-east-1", true
				c.S3AccessKeyID, c.S3SecretAccessKey = key, secret
				c.S3Queue = 1 << 20
			}
			a := startCacheProxy(t, h.url, func(c *server.Config) {
				shared(c)
				if !tc.disk {
					c.CacheDir, c.CacheSize = "", 0
				}
			})
			if g := a.get("/download/org/q/big.bin"); !bytes.Equal(g.body, data) {
				t.Fatal("instance a: bytes differ")
			}
			a.flush()
			if v := a.metric(`xetproxy_cache_tier_dropped_total{tier="s3"}`); v != 0 {
				t.Fatalf("instance a dropped %v bucket writes", v)
			}
			if v := a.metric(`xetproxy_cache_tier_queue_waits_total{tier="s3"}`); v == 0 {
				t.Error("no write waited: the fill never outran the 1 MiB queue")
			}
			if v := a.metric(`xetproxy_cache_tier_queue_bytes{tier="s3"}`); v != 0 {
				t.Errorf("%v bytes still queued after the flush", v)
			}
			a.stop()

			h.ResetStats()
			b := startCacheProxy(t, h.url, shared) // a disk of its own, empty
			g := b.get("/download/org/q/big.bin")
			if !bytes.Equal(g.body, data) {
				t.Fatal("instance b: bytes differ")
			}
			if n := h.xorbBytes(); n != 0 {
				t.Fatalf("instance b fetched %d xorb bytes upstream", n)
			}
		})
	}
}
