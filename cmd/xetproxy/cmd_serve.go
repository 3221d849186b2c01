package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/xetproxy/xetproxy/internal/buildinfo"
	"github.com/xetproxy/xetproxy/internal/server"
)

// serveCommand runs the proxy server until SIGINT/SIGTERM, then drains.
// Exit 0 after a clean drain, 1 if the drain deadline cut downloads or the
// server could not start, 2 for a bad configuration.
func serveCommand() command {
	return command{
		name:    "serve",
		summary: "run the download proxy (plain HTTP downloads, drop-in HF_ENDPOINT mirror)",
		run: func(ctx context.Context, e env, args []string) int {
			fs := newFlagSet(e, "serve", "[flags]")
			var cfg server.Config
			cfg.RegisterFlags(fs, os.Getenv)
			if code, ok := parseFlags(fs, args); !ok {
				return code
			}
			if fs.NArg() > 0 {
				fs.Usage()
				return exitUsage
			}
			if err := cfg.LoadAPIKeysFile(); err != nil {
				fmt.Fprintf(e.stderr, "xetproxy serve: %v\n", err)
				return exitUsage
			}
			if err := cfg.Validate(); err != nil {
				fmt.Fprintf(e.stderr, "xetproxy serve: %v\n", err)
				return exitUsage
			}
			log, err := server.NewLogger(e.stderr, cfg.LogFormat, cfg.LogLevel)
			if err != nil {
				fmt.Fprintf(e.stderr, "xetproxy serve: %v\n", err)
				return exitUsage
			}
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				log.Error("listen", "addr", cfg.Listen, "error", err)
				return exitError
			}
			var mln net.Listener
			if cfg.MetricsListen != "" {
				if mln, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
					ln.Close()
					log.Error("listen", "addr", cfg.MetricsListen, "error", err)
					return exitError
				}
			}
			log.Info("starting", cfg.Redacted()...)
			if err := runServer(ctx, cfg, log, ln, mln); err != nil {
				log.Error("stopped", "error", err)
				return exitError
			}
			return exitOK
		},
	}
}

// runServer wires the engine and the server and serves until ctx ends.
func runServer(ctx context.Context, cfg server.Config, log *slog.Logger, ln, mln net.Listener) error {
	metrics := server.NewMetrics(buildinfo.Version())
	transport := metrics.Transport(upstreamTransport(), cfg.HubURL)
	eng, err := server.NewEngine(cfg, transport, log)
	if err != nil {
		ln.Close()
		if mln != nil {
			mln.Close()
		}
		return err
	}
	metrics.ObserveEngine(eng)
	srv, err := server.New(server.Options{
		Config: cfg, Engine: eng, Logger: log, Metrics: metrics,
		Version: buildinfo.Version(), Transport: transport,
	})
	if err != nil {
		eng.Close(context.Background())
		return err
	}
	err = srv.Serve(ctx, ln, mln)
	// Finish the cache fills still running and the queued shared-tier
	// writes, within a bound of their own after the drain.
	cctx, cancel := context.WithTimeout(context.Background(), cacheCloseTimeout)
	if cerr := eng.Close(cctx); cerr != nil {
		log.Warn("closing the cache", "error", cerr)
	}
	cancel()
	if errors.Is(err, server.ErrDrainTimeout) {
		return fmt.Errorf("%w (after %v)", err, cfg.DrainTimeout)
	}
	return err
}

// cacheCloseTimeout bounds the wait for cache fills and shared-tier
// writes at shutdown.
const cacheCloseTimeout = 30 * time.Second

// upstreamTransport is tuned for many parallel range requests to a few
// hosts (the Hub, the CAS, the presigned storage URLs).
func upstreamTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	t.ResponseHeaderTimeout = 60 * time.Second
	t.ForceAttemptHTTP2 = true
	return t
}
