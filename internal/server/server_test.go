package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func testConfig(hubURL string) Config {
	return Config{
		Listen: "127.0.0.1:0", HubURL: hubURL, DrainTimeout: 5 * time.Second,
		LogFormat: "text", LogLevel: "debug", MaxDownloads: 4, MaxBuffer: 64 << 20, ReadAhead: 1 << 20,
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10,
		UpstreamTimeout: 10 * time.Second, StallTimeout: 10 * time.Second, CacheSize: 1 << 30,
	}
}

func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	eng, _ := testEngine(t, cfg, engineOptions{})
	s, err := New(Options{Config: cfg, Engine: eng, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHealthReadyUsage(t *testing.T) {
	s := newTestServer(t, testConfig("http://127.0.0.1:1"))
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	res, err := http.Get(ts.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]string
	json.NewDecoder(res.Body).Decode(&health)
	res.Body.Close()
	if res.StatusCode != 200 || health["status"] != "ok" || health["version"] != "v-test" || res.Header.Get("X-Request-Id") == "" {
		t.Errorf("health: %d %v %v", res.StatusCode, health, res.Header)
	}

	res, _ = http.Get(ts.URL + "/readyz")
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("readyz idle: %d", res.StatusCode)
	}
	s.adm.setDraining()
	res, _ = http.Get(ts.URL + "/readyz")
	res.Body.Close()
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
		t.Errorf("readyz draining: %d", res.StatusCode)
	}

	res, _ = http.Get(ts.URL + "/")
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), ts.URL+"/download/") || !strings.Contains(string(b), "HF_ENDPOINT="+ts.URL) {
		t.Errorf("usage: %d %s", res.StatusCode, b)
	}

	req, _ := http.NewRequest("GET", ts.URL+"/nope/nothing", nil)
	req.Header.Set("X-Request-Id", "my-id.1")
	res, _ = http.DefaultClient.Do(req)
	var eb errorBody
	json.NewDecoder(res.Body).Decode(&eb)
	res.Body.Close()
	if res.StatusCode != 404 || eb.RequestID != "my-id.1" || res.Header.Get("X-Request-Id") != "my-id.1" || eb.Code != "NotFound" {
		t.Errorf("404: %d %+v", res.StatusCode, eb)
	}

	req, _ = http.NewRequest("GET", ts.URL+"/nope", nil)
	req.Header.Set("X-Request-Id", "bad id\twith spaces")
	res, _ = http.DefaultClient.Do(req)
	res.Body.Close()
	if id := res.Header.Get("X-Request-Id"); id == "" || strings.Contains(id, " ") {
		t.Errorf("unsafe request id kept: %q", id)
	}

	for _, p := range []string{"/download/a/b/c", "/org/m/resolve/main/x", "/download-hash/" + strings.Repeat("0", 64) + "?repo=a/b"} {
		res, _ = http.Post(ts.URL+p, "text/plain", nil)
		res.Body.Close()
		if res.StatusCode != 405 || res.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST %s: %d", p, res.StatusCode)
		}
	}

	res, _ = http.Get(ts.URL + "/metrics")
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`xetproxy_http_requests_total{code="200",method="GET",route="health"} 1`, `xetproxy_build_info{version="v-test"} 1`, "go_goroutines", "xetproxy_downloads_in_flight 0"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestHugeHeaders(t *testing.T) {
	s := newTestServer(t, testConfig("http://127.0.0.1:1"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/health", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("huge header: %d", res.StatusCode)
	}
}

func TestLogsHaveNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		w.WriteHeader(401)
	}))
	defer upstream.Close()
	cfg := testConfig(upstream.URL)
	cfg.ServerTokenEnabled, cfg.ServerToken, cfg.APIKeys = true, "hf_serversecret", []string{"key-secretsecretsecret"}
	eng, _ := testEngine(t, cfg, engineOptions{})
	s, err := New(Options{Config: cfg, Engine: eng, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Version: "v"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for _, hdr := range [][2]string{{"Authorization", "Bearer hf_usersecret"}, {"X-Proxy-Key", "key-secretsecretsecret"}, {"X-Proxy-Key", "key-wrongsecret"}} {
		for _, p := range []string{"/api/models/a/b", "/download/a/b/c.bin", "/a/b/resolve/main/c.bin"} {
			req, _ := http.NewRequest("GET", ts.URL+p, nil)
			req.Header.Set(hdr[0], hdr[1])
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if strings.Contains(string(b), "secret") || strings.Contains(res.Header.Get("X-Error-Message"), "secret") {
				t.Errorf("%s answer shows a secret: %s", p, b)
			}
		}
	}
	res, _ := http.Get(ts.URL + "/metrics")
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(b), "secret") {
		t.Error("metrics show a secret")
	}
	if logs.Len() == 0 || strings.Contains(logs.String(), "secret") {
		t.Errorf("logs (%d bytes) show a secret:\n%s", logs.Len(), logs.String())
	}
}

func TestMetricsListener(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	cfg.MetricsListen = "127.0.0.1:0"
	s := newTestServer(t, cfg)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	mln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, mln) }()
	get := func(u string) int {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := get("http://" + mln.Addr().String() + "/metrics"); c != 200 {
		t.Errorf("metrics listener: %d", c)
	}
	if c := get("http://" + ln.Addr().String() + "/metrics"); c != 404 {
		t.Errorf("/metrics on the main listener with a separate one: %d", c)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
