package engineconf

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// recorder is a transport that records the hosts and user agents of the
// requests it carries.
type recorder struct {
	mu     sync.Mutex
	agents map[string]bool
	n      int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.agents[req.Header.Get("User-Agent")] = true
	r.n++
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// TestNew downloads a file through an engine of New, with a disk cache,
// and checks the wiring: every upstream request (Hub, CAS, transfers) goes
// through Config.Transport with Config.UserAgent and no transfer carries
// credentials; the cache fills and is flushed by the close function, so a
// second engine on the same directory serves the file without a transfer.
func TestNew(t *testing.T) {
	fh, err := fakehub.New(fakehub.Config{MaxXorbBytes: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fh)
	defer srv.Close()
	fh.SetPublicURL(srv.URL)
	if err := fh.CreateRepo(fakehub.RepoSpec{ID: "org/m"}); err != nil {
		t.Fatal(err)
	}
	data := xettest.SplitMix64(7, 3<<20)
	if _, err := fh.AddFile(context.Background(), "org/m", "w.bin", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec := &recorder{agents: map[string]bool{}}
	cfg := Config{HubURL: srv.URL, Transport: rec, UserAgent: "engineconf-test", Cache: CacheConfig{Dir: dir, Size: 1 << 30}}

	read := func() {
		t.Helper()
		eng, closeEngine, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		meta, err := eng.Stat(context.Background(), "", hub.Repo{Type: hub.Model, ID: "org/m"}, "main", "w.bin")
		if err != nil {
			t.Fatal(err)
		}
		rc, err := eng.Open(context.Background(), "", meta, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, %v", len(got), err)
		}
		if err := closeEngine(); err != nil {
			t.Fatal(err)
		}
	}

	read()
	xorbs := 0
	for _, r := range fh.Requests() {
		if r.Class == fakehub.ClassXorb {
			xorbs++
			if r.HasAuth {
				t.Errorf("a transfer carried credentials: %s", r.Path)
			}
		}
	}
	if xorbs == 0 || rec.n < len(fh.Requests()) || len(rec.agents) != 1 || !rec.agents["engineconf-test"] {
		t.Fatalf("%d xorb transfers; the transport carried %d of %d requests with agents %v",
			xorbs, rec.n, len(fh.Requests()), rec.agents)
	}

	fh.ResetStats()
	read()
	if st := fh.Stats()[fakehub.ClassXorb]; st.Requests != 0 {
		t.Fatalf("a second engine on the same cache made %d transfers", st.Requests)
	}
}

// blockingCloser is an engine whose Close waits for its context.
type blockingCloser struct{}

func (blockingCloser) Close(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestCloseBound checks that the close function gives up at its bound:
// a slow bucket must not hold the process.
func TestCloseBound(t *testing.T) {
	start := time.Now()
	err := closeWithin(blockingCloser{}, 50*time.Millisecond)()
	if el := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || el < 50*time.Millisecond || el > 10*time.Second {
		t.Fatalf("close returned %v after %v", err, el)
	}
}

func TestNewCacheTiers(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		cfg  CacheConfig
		want string
	}{
		{CacheConfig{}, "none"},
		{CacheConfig{Memory: 64 << 20}, "memory 64MiB"},
		{CacheConfig{Dir: dir, Size: 1 << 30}, "disk " + dir + " 1GiB"},
		{CacheConfig{Dir: dir, Size: 1 << 30, Memory: 8 << 20}, "memory 8MiB -> disk " + dir},
	} {
		store, desc, err := NewCache(c.cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(desc, c.want) || (store == nil) != (c.want == "none") {
			t.Errorf("%+v: %q (store %v), want %q", c.cfg, desc, store, c.want)
		}
		if cl, ok := store.(io.Closer); ok {
			cl.Close()
		}
	}
}
