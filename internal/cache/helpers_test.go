package cache_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/xetproxy/xetproxy/internal/cache"
)

const testBucket = "xetproxy-cache"

// fakeS3 is a real S3 API server (gofakes3, in-memory backend) with request
// counters, for testing the S3 store through the AWS SDK.
type fakeS3 struct {
	URL     string
	backend *s3mem.Backend

	mu     sync.Mutex
	counts map[string]int // "GET", "GET range", "LIST", "PUT", "DELETE"
}

func newFakeS3(t testing.TB) *fakeS3 {
	t.Helper()
	f := &fakeS3{backend: s3mem.New(), counts: make(map[string]int)}
	if err := f.backend.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	handler := gofakes3.New(f.backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.count(r)
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *fakeS3) count(r *http.Request) {
	op := r.Method
	switch {
	case r.Method == http.MethodGet && r.URL.Query().Has("list-type"):
		op = "LIST"
	case r.Method == http.MethodGet && r.Header.Get("Range") != "":
		op = "GET range"
	}
	f.mu.Lock()
	f.counts[op]++
	f.mu.Unlock()
}

// Count returns how many requests of kind op the server has seen.
func (f *fakeS3) Count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

func (f *fakeS3) reset() {
	f.mu.Lock()
	clear(f.counts)
	f.mu.Unlock()
}

// object returns the stored bytes of key, or nil.
func (f *fakeS3) object(t testing.TB, key string) []byte {
	t.Helper()
	obj, err := f.backend.GetObject(testBucket, key, nil)
	if err != nil {
		return nil
	}
	defer obj.Contents.Close()
	b, err := io.ReadAll(obj.Contents)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// setObject replaces the bytes of key behind the store's back.
func (f *fakeS3) setObject(t testing.TB, key string, b []byte) {
	t.Helper()
	if _, err := f.backend.PutObject(testBucket, key, map[string]string{}, bytes.NewReader(b), int64(len(b)), nil); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeS3) keys(t testing.TB) []string {
	t.Helper()
	res, err := f.backend.ListBucket(testBucket, &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range res.Contents {
		out = append(out, c.Key)
	}
	return out
}

func (f *fakeS3) config(prefix string) cache.S3Config {
	return cache.S3Config{
		Endpoint:        f.URL,
		Bucket:          testBucket,
		Prefix:          prefix,
		Region:          "auto",
		PathStyle:       true,
		AccessKeyID:     "test-key",
		SecretAccessKey: "test-secret",
	}
}

func newS3Store(t testing.TB, cfg cache.S3Config) *cache.S3 {
	t.Helper()
	s, err := cache.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newDisk(t testing.TB, dir string, maxBytes int64) *cache.Disk {
	t.Helper()
	d, err := cache.NewDisk(cache.DiskConfig{Dir: dir, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newMemory(t testing.TB, maxBytes int64) *cache.Memory {
	t.Helper()
	m, err := cache.NewMemory(maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newTiered(t testing.TB, local, shared cache.Store, cfg cache.TieredConfig) *cache.Tiered {
	t.Helper()
	ts, err := cache.NewTiered(local, shared, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	return ts
}

func hasPrefixCount(keys []string, prefix string) int {
	n := 0
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
