package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/server/servertest"
)

// serveTestBuffer collects a command's output while it runs.
type serveTestBuffer = servertest.Buffer

func serveWaitMatch(t *testing.T, buf *serveTestBuffer, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(buf.String()); m != nil {
			return m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no match for %s in:\n%s", re, buf.String())
	return ""
}

func TestServeUsageErrors(t *testing.T) {
	t.Setenv("XETPROXY_MAX_DOWNLOADS", "")
	for _, args := range [][]string{
		{"serve", "extra-arg"},
		{"serve", "--no-such-flag"},
		{"serve", "--log-format", "xml"},
		{"serve", "--api-keys-file", "/nonexistent/keys"},
	} {
		var out, errb serveTestBuffer
		if code := run(args, strings.NewReader(""), &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errb.String())
		}
	}
	var out, errb serveTestBuffer
	if code := run([]string{"serve", "-h"}, strings.NewReader(""), &out, &errb); code != exitOK || !strings.Contains(errb.String(), "-max-downloads") {
		t.Errorf("serve -h: exit %d\n%s", code, errb.String())
	}
}

// TestServeRuns starts serve in-process, checks /health, and stops it the
// way SIGTERM does (context cancellation): exit 0 after a clean drain.
func TestServeRuns(t *testing.T) {
	t.Setenv("XETPROXY_CACHE_DIR", t.TempDir()) // never the user's cache
	hub := serveTestHub(t, http.NotFoundHandler())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb serveTestBuffer
	done := make(chan int, 1)
	go func() {
		done <- serveCommand().run(ctx, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb},
			[]string{"--listen", "127.0.0.1:0", "--hub-url", hub, "--log-format", "json"})
	}()
	addr := serveWaitMatch(t, &errb, regexp.MustCompile(`"msg":"serving","addr":"([^"]+)"`))
	res, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), `"status":"ok"`) {
		t.Errorf("health: %d %s", res.StatusCode, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d after a clean drain\n%s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(errb.String(), `"msg":"drained"`) {
		t.Errorf("no drained line:\n%s", errb.String())
	}
}

func serveTestHub(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h}
	ln, err := serveTestListen()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
