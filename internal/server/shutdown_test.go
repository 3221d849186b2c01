package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
)

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// stallingEngine serves the real engine's bytes but never ends a stream on
// its own: a 100-byte range stalls before its first byte (no status line
// yet), anything longer after 1000 bytes (status line and part of the body
// sent). Both wait for their context.
// Each stalled stream sends on stalled once it waits.
type stallingEngine struct {
	Engine
	stalled chan string
}

func (e stallingEngine) Open(ctx context.Context, token string, meta *hub.FileMeta, offset, length int64) (io.ReadCloser, error) {
	if length == 100 {
		e.stalled <- "before the status line"
		<-ctx.Done()
		return nil, ctx.Err()
	}
	body, err := e.Engine.Open(ctx, token, meta, offset, length)
	if err != nil {
		return nil, err
	}
	return &stallAfter{ctx: ctx, ReadCloser: body, left: 1000, stalled: e.stalled}, nil
}

type stallAfter struct {
	ctx context.Context
	io.ReadCloser
	left    int
	stalled chan string
}

func (s *stallAfter) Read(p []byte) (int, error) {
	if s.left == 0 {
		// the first 1000 bytes were written: the status line is out
		s.stalled <- "mid-body"
		<-s.ctx.Done()
		return 0, s.ctx.Err()
	}
	n, err := s.ReadCloser.Read(p[:min(len(p), s.left)])
	s.left -= n
	return n, err
}

// Downloads cut at the drain deadline, before and after their status line,
// still get their request log line, at warn, saying why, and before Serve
// returns (the process exits right after).
func TestDrainDeadlineLogsCutRequests(t *testing.T) {
	f := newFixture(t, nil)
	cfg := testConfig(f.hub.URL)
	cfg.DrainTimeout = 200 * time.Millisecond
	eng, _ := testEngine(t, cfg, engineOptions{})
	var logs lockedBuffer
	stalled := make(chan string, 2)
	s, err := New(Options{Config: cfg, Engine: stallingEngine{eng, stalled}, Version: "v",
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln, nil) }()

	url := "http://" + ln.Addr().String() + "/download/org/m/model.safetensors"
	go func() { // status line out, then stalled
		if res, err := http.Get(url); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}()
	go func() { // stalled before its status line
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Range", "bytes=0-99")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	for range 2 {
		select {
		case <-stalled:
		case <-time.After(10 * time.Second):
			t.Fatal("the downloads did not reach their stalls")
		}
	}
	cancel()
	if err := <-served; !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("Serve = %v, want ErrDrainTimeout", err)
	}
	var cut []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "download" && m["path"] == "/download/org/m/model.safetensors" {
			cut = append(cut, m)
		}
	}
	if len(cut) != 2 {
		t.Fatalf("%d request lines for the two cut downloads when Serve returned, want 2:\n%s", len(cut), logs.String())
	}
	statuses := map[float64]bool{}
	for _, m := range cut {
		statuses[m["status"].(float64)] = true
		if m["level"] != "WARN" || m["aborted"] != true || m["error"] != errDrainDeadline.Error() {
			t.Errorf("cut download logged as %v", m)
		}
	}
	if !statuses[200] || !statuses[503] {
		t.Errorf("statuses %v, want 200 (cut mid-body) and 503 (cut before the status line)", statuses)
	}
}
