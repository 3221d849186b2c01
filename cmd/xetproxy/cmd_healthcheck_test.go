package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func runHealthcheck(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"healthcheck"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHealthcheckHealthy(t *testing.T) {
	var hits atomic.Int32
	var gotPath, gotUA string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		gotPath, gotUA = r.URL.Path, r.UserAgent()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok","version":"v9.8.7"}`))
	}))
	defer srv.Close()

	code, stdout, stderr := runHealthcheck(t, "--url", srv.URL+"/health")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if hits.Load() != 1 || gotPath != "/health" || gotUA != "xetproxy-healthcheck" {
		t.Fatalf("server saw %d requests, path %q, user agent %q", hits.Load(), gotPath, gotUA)
	}
	if strings.Count(stdout, "\n") != 1 || !strings.HasPrefix(stdout, "healthy: ") || !strings.Contains(stdout, "v9.8.7") {
		t.Fatalf("stdout %q: want one line starting with healthy: and naming the version", stdout)
	}
	if stderr != "" {
		t.Fatalf("stderr %q, want empty", stderr)
	}
}

func TestHealthcheckUnhealthyStatuses(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusNotFound, http.StatusInternalServerError, http.StatusFound, http.StatusNoContent} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if status == http.StatusFound {
				// A redirect to a healthy page must not count as healthy.
				http.Redirect(w, r, "/ok", status)
				return
			}
			if r.URL.Path == "/ok" {
				return
			}
			w.WriteHeader(status)
		}))
		code, stdout, stderr := runHealthcheck(t, "--url", srv.URL+"/health")
		srv.Close()
		if code != exitError {
			t.Errorf("status %d: exit %d, want %d", status, code, exitError)
		}
		if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "unhealthy: ") {
			t.Errorf("status %d: stdout %q stderr %q, want one unhealthy line on stderr", status, stdout, stderr)
		}
		if !strings.Contains(stderr, http.StatusText(status)) {
			t.Errorf("status %d: stderr %q does not name the status", status, stderr)
		}
	}
}

func TestHealthcheckConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	code, _, stderr := runHealthcheck(t, "--url", "http://"+addr+"/health")
	if code != exitError || !strings.HasPrefix(stderr, "unhealthy: ") {
		t.Fatalf("exit %d stderr %q, want 1 and an unhealthy line", code, stderr)
	}
}

func TestHealthcheckTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	start := time.Now()
	code, _, stderr := runHealthcheck(t, "--url", srv.URL+"/health", "--timeout", "200ms")
	if code != exitError {
		t.Fatalf("exit %d, want %d (stderr %q)", code, exitError, stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v with a 200ms timeout", d)
	}
	if !strings.Contains(stderr, "deadline exceeded") {
		t.Fatalf("stderr %q does not say it timed out", stderr)
	}
}

func TestHealthcheckUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "ftp://127.0.0.1/health"},
		{"--url", "not a url"},
		{"--timeout", "0s"},
		{"extra"},
		{"--nope"},
	} {
		if code, _, _ := runHealthcheck(t, args...); code != exitUsage {
			t.Errorf("args %q: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, _, _ := runHealthcheck(t, "-h"); code != exitOK {
		t.Errorf("-h: exit %d, want 0", code)
	}
}

func TestDefaultHealthURL(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "http://127.0.0.1:8080/health"},
		{map[string]string{"PORT": "9090"}, "http://127.0.0.1:9090/health"},
		{map[string]string{"XETPROXY_LISTEN": ":7000", "PORT": "9090"}, "http://127.0.0.1:7000/health"},
		{map[string]string{"XETPROXY_LISTEN": "0.0.0.0:7001"}, "http://127.0.0.1:7001/health"},
		{map[string]string{"XETPROXY_LISTEN": "[::]:7002"}, "http://127.0.0.1:7002/health"},
		{map[string]string{"XETPROXY_LISTEN": "127.0.0.2:7003"}, "http://127.0.0.2:7003/health"},
		{map[string]string{"XETPROXY_LISTEN": "[::1]:7004"}, "http://[::1]:7004/health"},
		{map[string]string{"XETPROXY_LISTEN": "localhost:7005"}, "http://localhost:7005/health"},
		{map[string]string{"XETPROXY_LISTEN": "garbage"}, "http://127.0.0.1:8080/health"},
	} {
		got := defaultHealthURL(func(k string) string { return tc.env[k] })
		if got != tc.want {
			t.Errorf("env %v: got %q, want %q", tc.env, got, tc.want)
		}
	}
}

// The flag default comes from the process environment, so a container that
// sets PORT gets the right probe with a bare `xetproxy healthcheck`.
func TestHealthcheckDefaultFromEnv(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("XETPROXY_LISTEN", "")
	t.Setenv("PORT", port)
	if code, _, stderr := runHealthcheck(t); code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
