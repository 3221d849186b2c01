package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/xetproxy/xetproxy/internal/buildinfo"
	"github.com/xetproxy/xetproxy/internal/engineconf"
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
	logCPUFit(log)
	if os.Getenv("GOMEMLIMIT") == "" {
		// Hold the heap near the memory model of the config instead of
		// the collector's default of twice the live heap.
		debug.SetMemoryLimit(cfg.MemoryLimit())
		log.Info("memory limit", "bytes", cfg.MemoryLimit())
	}
	transport := metrics.Transport(engineconf.NewTransport(), cfg.HubURL)
	eng, closeEngine, err := engineconf.New(cfg.Engine(transport, log))
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
		closeEngine()
		return err
	}
	// Collect the start-up garbage before listening: otherwise the
	// process's first collection, which also sets up the collector's
	// own structures, runs during its first download (half of that
	// download's time to first byte, measured in
	// docs/performance-server.md).
	runtime.GC()
	err = srv.Serve(ctx, ln, mln)
	// Finish the cache fills still running and the queued shared-tier
	// writes, within a bound of their own after the drain.
	if cerr := closeEngine(); cerr != nil {
		log.Warn("closing the cache", "error", cerr)
	}
	if errors.Is(err, server.ErrDrainTimeout) {
		return fmt.Errorf("%w (after %v)", err, cfg.DrainTimeout)
	}
	return err
}

// logCPUFit says how GOMAXPROCS was fitted to the CPU limit at start.
func logCPUFit(log *slog.Logger) {
	r := cpuFit.r
	switch {
	case cpuFit.err != nil:
		log.Warn("reading the cgroup CPU limit", "error", cpuFit.err, "gomaxprocs", r.Procs)
	case r.Changed():
		log.Info("GOMAXPROCS fitted to the CPU limit", "cpu_limit", r.Limit, "gomaxprocs", r.Procs, "go_default", r.Was)
	case r.Limit > 0 || r.Env:
		log.Info("CPU limit", "cpu_limit", r.Limit, "gomaxprocs", r.Procs, "from_env", r.Env)
	}
}
