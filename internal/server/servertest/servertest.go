package servertest

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/engineconf"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/server"
)

// Config is the configuration the tests share: a loopback listener,
// timeouts short enough for a test and generous for a loaded machine,
// and a 1 GiB cache in a directory of the test's own (or in memory if
// the caller clears CacheDir).
func Config(t testing.TB, hubURL string) server.Config {
	return server.Config{
		Listen: "127.0.0.1:0", HubURL: hubURL, DrainTimeout: 10 * time.Second,
		LogFormat: "text", LogLevel: "debug", MaxDownloads: 16, MaxBuffer: 256 << 20, ReadAhead: 8 << 20,
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 32 << 10,
		UpstreamTimeout: 20 * time.Second, StallTimeout: 20 * time.Second,
		CacheDir: t.TempDir(), CacheSize: 1 << 30,
	}
}

// Buffer is a bytes.Buffer safe for a logger and a test at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type options struct {
	format    string // "", "text" or "json": where the server logs
	level     slog.Level
	engineLog bool
	logger    *slog.Logger
	observe   bool
	version   string
}

// Option changes how Start builds the server.
type Option func(*options)

// Log writes the server's log to Server.Log in format ("text" or
// "json") from level on; without it the log is discarded.
func Log(format string, level slog.Level) Option {
	return func(o *options) { o.format, o.level = format, level }
}

// EngineLog gives the engine the server's logger; without it the
// engine's log is discarded.
func EngineLog() Option { return func(o *options) { o.engineLog = true } }

// Logger makes the server and the engine log to l (Server.Log stays
// empty); it wins over Log and EngineLog.
func Logger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// ObserveEngine exports the engine's cache and fill figures in the
// server's metrics, as the xetproxy command does.
func ObserveEngine() Option { return func(o *options) { o.observe = true } }

// Version is the version the server and its metrics report ("test"
// without it).
func Version(v string) Option { return func(o *options) { o.version = v } }

// Server is one running server with its parts.
type Server struct {
	URL     string // http://127.0.0.1:port
	Srv     *server.Server
	Engine  *proxy.Engine
	Metrics *server.Metrics
	// Upstream is the engine's own transport to the hub (under the
	// metrics' counting wrapper), for tests that cut its connections.
	Upstream *http.Transport
	Log      *Buffer

	t        testing.TB
	once     sync.Once
	cancel   context.CancelFunc
	done     chan error
	serveErr error
}

// Start validates cfg, builds the engine and the server and serves on a
// loopback port until Stop or the end of the test.
func Start(t testing.TB, cfg server.Config, opts ...Option) *Server {
	t.Helper()
	o := options{version: "test"}
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, Log: &Buffer{}, done: make(chan error, 1)}
	log, engLog := slog.New(slog.DiscardHandler), slog.New(slog.DiscardHandler)
	switch o.format {
	case "text":
		log = slog.New(slog.NewTextHandler(s.Log, &slog.HandlerOptions{Level: o.level}))
	case "json":
		log = slog.New(slog.NewJSONHandler(s.Log, &slog.HandlerOptions{Level: o.level}))
	case "":
	default:
		t.Fatalf("servertest: log format %q", o.format)
	}
	if o.engineLog {
		engLog = log
	}
	if o.logger != nil {
		log, engLog = o.logger, o.logger
	}
	s.Metrics = server.NewMetrics(o.version)
	s.Upstream = http.DefaultTransport.(*http.Transport).Clone()
	tr := s.Metrics.Transport(s.Upstream, cfg.HubURL)
	eng, _, err := engineconf.New(cfg.Engine(tr, engLog))
	if err != nil {
		t.Fatal(err)
	}
	s.Engine = eng
	if o.observe {
		s.Metrics.ObserveEngine(eng)
	}
	s.Srv, err = server.New(server.Options{Config: cfg, Engine: eng, Logger: log, Metrics: s.Metrics, Version: o.version, Transport: tr})
	if err != nil {
		closeEngine(t, eng)
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		closeEngine(t, eng)
		t.Fatal(err)
	}
	s.URL = "http://" + ln.Addr().String()
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go func() { s.done <- s.Srv.Serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		if first, err := s.stop(); first && err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// Stop shuts the server down (a graceful drain), then closes the engine;
// it returns what Serve returned. Calls after the first return the same.
func (s *Server) Stop() error {
	_, err := s.stop()
	return err
}

// stop reports whether this call was the one that stopped the server.
func (s *Server) stop() (first bool, err error) {
	s.once.Do(func() {
		first = true
		s.cancel()
		s.serveErr = <-s.done
		closeEngine(s.t, s.Engine)
	})
	return first, s.serveErr
}

func closeEngine(t testing.TB, eng *proxy.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := eng.Close(ctx); err != nil {
		t.Errorf("engine close: %v", err)
	}
}
