package servertest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server/servertest"
)

// TestStartStop: the server answers on its URL until Stop, which may be
// called again and stops taking connections.
func TestStartStop(t *testing.T) {
	fh, err := fakehub.New(fakehub.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fh)
	t.Cleanup(ts.Close)
	fh.SetPublicURL(ts.URL)
	s := servertest.Start(t, servertest.Config(t, ts.URL), servertest.ObserveEngine())
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || s.Srv == nil || s.Engine == nil || s.Metrics == nil || s.Upstream == nil {
		t.Fatalf("server %+v", s)
	}
	res, err := http.Get(s.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/health: %d", res.StatusCode)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
	if res, err := http.Get(s.URL + "/health"); err == nil {
		res.Body.Close()
		t.Fatalf("answered %d after Stop", res.StatusCode)
	}
}

// TestBuffer: writes from many goroutines all arrive.
func TestBuffer(t *testing.T) {
	var b servertest.Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if n := len(b.String()); n != 800 {
		t.Fatalf("%d bytes, want 800", n)
	}
}
