package proxy

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// withCache runs every engine test with a cache: "memory" or "disk"
// (go test ./internal/proxy/ -args -cache=disk). The cache tests in
// cache_test.go set their own.
var withCache = flag.String("cache", "", "give every test engine a cache: memory or disk")

// testCache returns the cache -cache asks for, or nil.
func testCache(t testing.TB) cache.Store {
	switch *withCache {
	case "":
		return nil
	case "memory":
		m, err := cache.NewMemory(1 << 30)
		if err != nil {
			t.Fatal(err)
		}
		return m
	case "disk":
		d, err := cache.NewDisk(cache.DiskConfig{Dir: t.TempDir(), MaxBytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Fatalf("-cache=%q: want memory or disk", *withCache)
	return nil
}

// testEnv is a fakehub on loopback and an Engine pointed at it.
type testEnv struct {
	fh  *fakehub.Hub
	srv *httptest.Server
	eng *Engine
	hc  *hub.Client
}

func newEnv(t testing.TB, fcfg fakehub.Config, tweak ...func(*Config)) *testEnv {
	t.Helper()
	return newEnvWrapped(t, fcfg, nil, tweak...)
}

// newEnvWrapped is newEnv with the fake Hub's handler wrapped by wrap (nil:
// as it is), for tests that watch or hold upstream requests.
func newEnvWrapped(t testing.TB, fcfg fakehub.Config, wrap func(http.Handler) http.Handler, tweak ...func(*Config)) *testEnv {
	t.Helper()
	fh, err := fakehub.New(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = fh
	if wrap != nil {
		h = wrap(fh)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	fh.SetPublicURL(srv.URL)
	hc := &hub.Client{BaseURL: srv.URL, RetryBase: time.Millisecond, RetryMax: 50 * time.Millisecond}
	cas, err := casclient.New(casclient.Config{
		Backoff:      casclient.Backoff{Attempts: 5, Base: time.Millisecond, Max: 2 * time.Second},
		StallTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Hub: hc, CAS: cas, BlockSize: 1 << 20, Parallel: 4, StreamBuffer: 4 << 20, Cache: testCache(t)}
	for _, f := range tweak {
		f(&cfg)
	}
	eng, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Fills outlive their streams: wait for them before the fake Hub
		// goes away, so no test leaves goroutines behind.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := eng.Close(ctx); err != nil {
			t.Errorf("engine close: %v", err)
		}
	})
	return &testEnv{fh: fh, srv: srv, eng: eng, hc: hc}
}

func (e *testEnv) repo(t testing.TB, spec fakehub.RepoSpec) {
	t.Helper()
	if err := e.fh.CreateRepo(spec); err != nil {
		t.Fatal(err)
	}
}

func (e *testEnv) add(t testing.TB, repo, path string, data []byte, s ...fakehub.Storage) fakehub.File {
	t.Helper()
	f, err := e.fh.AddFile(context.Background(), repo, path, bytes.NewReader(data), s...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (e *testEnv) stat(t testing.TB, token string, repo hub.Repo, path string) *hub.FileMeta {
	t.Helper()
	m, err := e.eng.Stat(context.Background(), token, repo, "main", path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// read opens [off, off+n) and reads it all.
func (e *testEnv) read(ctx context.Context, token string, m *hub.FileMeta, off, n int64) ([]byte, error) {
	rc, err := e.eng.Open(ctx, token, m, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Test content: random bytes (stored raw), text (LZ4) and bf16-like
// weights (BG4), mixed so one file uses every scheme.

func randomData(seed uint64, n int) []byte { return xettest.SplitMix64(seed, n) }

func weights(seed uint64, n int) []byte {
	r := xettest.SplitMix64(seed, n)
	for i := 1; i < len(r); i += 2 {
		r[i] = 0x3c + r[i]&0x3
	}
	return r
}

func text(seed uint64, n int) []byte {
	words := []string{"tensor ", "layer ", "weight ", "attention ", "the ", "model ", "of ", "xet ", "chunk ", "\n"}
	r := xettest.SplitMix64(seed, n)
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString(words[int(r[i%len(r)])%len(words)])
	}
	return b.Bytes()[:n]
}

func mixed(seed uint64, n int) []byte {
	var b []byte
	for i := uint64(0); len(b) < n; i++ {
		part := min(n-len(b), 300<<10)
		switch i % 3 {
		case 0:
			b = append(b, weights(seed+i, part)...)
		case 1:
			b = append(b, text(seed+i, part)...)
		default:
			b = append(b, randomData(seed+i, part)...)
		}
	}
	return b
}
