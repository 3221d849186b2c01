package proxy

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// verifyNoLeaks fails the test if a goroutine of ours outlives the streams:
// connections are closed first, so only goroutines that should not exist
// remain.
func verifyNoLeaks(t *testing.T, f *fixture, before goleak.Option) {
	t.Helper()
	f.eng.cas.CloseIdleConnections()
	f.hc.HTTP.CloseIdleConnections()
	f.srv.CloseClientConnections()
	goleak.VerifyNone(t,
		goleak.IgnoreAnyFunction("net/http.(*Server).Serve"),
		goleak.IgnoreAnyFunction("net/http/httptest.(*Server).goServe.func1"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		before,
	)
}

func TestCancelMidStream(t *testing.T) {
	f := newFixture(t, fakehub.Config{}, func(c *Config) { c.StreamBuffer = 256 << 10 })
	f.fh.SetLatency(fakehub.ClassXorb, 20*time.Millisecond)
	before := goleak.IgnoreCurrent()
	for _, how := range []string{"cancel", "close", "cancel-blocked"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rc, err := f.eng.Open(ctx, "", f.meta, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			p := make([]byte, 100<<10)
			if _, err := io.ReadFull(rc, p); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "cancel":
				cancel()
				_, err := io.ReadAll(rc)
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("read after cancel: %v", err)
				}
			case "close":
			case "cancel-blocked":
				// Wait until the read-ahead has filled the stream's
				// budget and a fetch is blocked on it, then cancel.
				waitUntil(t, func() bool { return budgetWaiters(t, rc) > 0 })
				cancel()
			}
			done := make(chan struct{})
			go func() { rc.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not return")
			}
			if used, _ := f.eng.budget.stats(); used != 0 {
				t.Fatalf("%d budget bytes held after Close", used)
			}
		})
	}
	verifyNoLeaks(t, f, before)
}

// A stream that fails (corrupt data) stops its other transfers too.
func TestFailureLeaksNothing(t *testing.T) {
	f := newFixture(t, fakehub.Config{Compression: "lz4"})
	f.fh.CorruptXorb([32]byte{}, 0, 1)
	before := goleak.IgnoreCurrent()
	rc, err := f.eng.Open(context.Background(), "", f.meta, 0, -1)
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	var ie *IntegrityError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v", err)
	}
	verifyNoLeaks(t, f, before)
}

// budgetWaiters returns how many of rc's fetches wait for room in the
// stream's read-ahead budget.
func budgetWaiters(t *testing.T, rc io.ReadCloser) int {
	t.Helper()
	s, ok := rc.(*stream)
	if !ok {
		t.Fatalf("Open returned a %T, not a *stream: update budgetWaiters", rc)
	}
	s.budget.mu.Lock()
	defer s.budget.mu.Unlock()
	return s.budget.waiters
}
