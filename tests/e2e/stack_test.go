package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/sample"
	"github.com/xetproxy/xetproxy/internal/server/servertest"
)

// One fake Hub serves every test: populating it takes a second, and the
// tests that turn its fault knobs clear them when they end (no test here
// runs in parallel).
var (
	hub     *fakehub.Hub
	hubURL  string
	files   map[string]sample.File // key: repo + ":" + path
	content map[string][]byte
	// bigContent is bigRepo's big.safetensors
	bigContent []byte
	// xetMode runs every test against a server in Xet mode (the default
	// of xetproxy serve); without it the servers are plain-only
	// (--xet=false). scripts/test.sh runs the suite both ways.
	xetMode = flag.Bool("xet", false, "run the proxies in Xet mode")
)

const (
	weightsSize  = 24 << 20
	gatedRepo    = "xetproxy/gated-model"
	bigRepo      = "xetproxy/big-model"
	bigSize      = 96 << 20
	bigPath      = "/download/" + bigRepo + "/big.safetensors"
	validUser    = "hf_valid_but_not_a_reader"
	weightsKey   = sample.ModelRepo + ":model.safetensors"
	weightsPath  = "/download/" + sample.ModelRepo + "/model.safetensors"
	resolvePath  = "/" + sample.ModelRepo + "/resolve/main/model.safetensors"
	testAPIKey   = "key-e2e-0123456789abcdef"
	serverSecret = "hf_server_secret_token"
)

func TestMain(m *testing.M) {
	flag.Parse()
	var err error
	hub, err = fakehub.New(fakehub.Config{MaxXorbBytes: 4 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ts := httptest.NewServer(hub)
	hubURL = ts.URL
	hub.SetPublicURL(ts.URL)
	list, err := sample.Populate(context.Background(), hub, weightsSize)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	files, content = map[string]sample.File{}, map[string][]byte{}
	for _, f := range list {
		b, _ := io.ReadAll(f.Content())
		files[f.Repo+":"+f.Path] = f
		content[f.Repo+":"+f.Path] = b
	}
	if err := hub.CreateRepo(fakehub.RepoSpec{ID: gatedRepo, Gated: true, Readers: []string{sample.ReaderToken}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := hub.AddFile(context.Background(), gatedRepo, "model.safetensors", sample.NewSafetensors(1<<20, 5)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// a file of many xorbs, larger than the engine's fetch window, for the
	// tests that must act while a download is still fetching
	if err := hub.CreateRepo(fakehub.RepoSpec{ID: bigRepo}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	big := sample.NewSafetensors(bigSize, 77)
	bigContent, _ = io.ReadAll(sample.NewSafetensors(bigSize, 77))
	if _, err := hub.AddFile(context.Background(), bigRepo, "big.safetensors", big); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hub.AddToken(validUser)
	code := m.Run()
	ts.Close()
	os.Exit(code)
}

// proxy is one xetproxy server in front of the shared fake Hub.
type proxy struct {
	t        *testing.T
	srv      *server.Server
	url      string
	upstream *http.Transport // the engine's connections to the fake Hub
}

// startProxy runs a server (real engine, memory cache) on a loopback port
// until the test ends; mod adjusts its configuration.
func startProxy(t *testing.T, mod func(*server.Config)) *proxy {
	t.Helper()
	cfg := servertest.Config(t, hubURL)
	cfg.CacheDir = ""
	cfg.Xet, cfg.SigningKey = *xetMode, "e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0" // 32 bytes, hex
	if mod != nil {
		mod(&cfg)
	}
	opts := []servertest.Option{servertest.Version("e2e")}
	if testing.Verbose() && os.Getenv("E2E_LOG") != "" {
		opts = append(opts, servertest.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	// registered first, so it runs after the server has stopped
	t.Cleanup(hub.ClearFaults)
	s := servertest.Start(t, cfg, opts...)
	return &proxy{t: t, srv: s.Srv, url: s.URL, upstream: s.Upstream}
}

type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// do sends one request; hdr is key, value pairs.
func (p *proxy) do(method, path string, hdr ...string) answer {
	p.t.Helper()
	req, err := http.NewRequest(method, p.url+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, b, err}
}

// raw sends path exactly as written (no client-side cleaning).
func (p *proxy) raw(method, path string) answer {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.url, nil)
	req.URL.Opaque = path
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, b, err}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// needTool finds a command-line tool; missing tools skip the test, except
// in CI (CI=true), where they fail it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (scripts/test.sh installs it): %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
