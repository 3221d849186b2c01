package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/castoken"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/sample"
)

// demoCommand runs a local fake Hub with generated repos and the proxy in
// front of it, on loopback ports, and prints commands to try. It needs no
// network and no token.
func demoCommand() command {
	return command{
		name:    "demo",
		summary: "run the proxy in front of a local fake Hub with sample repos (no network needed)",
		run: func(ctx context.Context, e env, args []string) int {
			fs := newFlagSet(e, "demo", "[flags]")
			listen := fs.String("listen", "127.0.0.1:8080", "proxy address (a free port is picked if this one is taken)")
			hubListen := fs.String("hub-listen", "127.0.0.1:0", "fake Hub address")
			weights := fs.String("weights-size", "100MB", "size of the generated model.safetensors")
			logLevel := fs.String("log-level", "info", "log level of the proxy: debug, info, warn, error")
			if code, ok := parseFlags(fs, args); !ok {
				return code
			}
			if fs.NArg() > 0 {
				fs.Usage()
				return exitUsage
			}
			size, err := server.ParseSize(*weights)
			if err != nil || size < 1 {
				fmt.Fprintf(e.stderr, "xetproxy demo: --weights-size: %v\n", err)
				return exitUsage
			}
			if err := runDemo(ctx, e, *listen, *hubListen, size, *logLevel); err != nil {
				fmt.Fprintf(e.stderr, "xetproxy demo: %v\n", err)
				return exitError
			}
			return exitOK
		},
	}
}

func runDemo(ctx context.Context, e env, listen, hubListen string, weightsSize int64, logLevel string) error {
	log, err := server.NewLogger(e.stderr, "text", logLevel)
	if err != nil {
		return err
	}
	hln, err := net.Listen("tcp", hubListen)
	if err != nil {
		return err
	}
	hubURL := "http://" + hln.Addr().String()
	fh, err := fakehub.New(fakehub.Config{PublicURL: hubURL})
	if err != nil {
		hln.Close()
		return err
	}
	hubSrv := &http.Server{Handler: fh, ReadHeaderTimeout: 10 * time.Second}
	go hubSrv.Serve(hln)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hubSrv.Shutdown(sctx)
	}()

	fmt.Fprintf(e.stdout, "xetproxy demo: generating sample repos (%s of weights)...\n", humanBytes(weightsSize))
	start := time.Now()
	files, err := sample.Populate(ctx, fh, weightsSize)
	if err != nil {
		return err
	}
	took := time.Since(start)

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		// the default port may be taken: any free loopback port will do
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
	}
	var cfg server.Config
	cfg.RegisterFlags(flag.NewFlagSet("demo", flag.ContinueOnError), func(string) string { return "" })
	cfg.CacheDir = demoCacheDir()
	cfg.Listen = ln.Addr().String()
	cfg.HubURL = hubURL
	cfg.LogLevel = logLevel
	cfg.DrainTimeout = 10 * time.Second
	// one process: a key of its own is all it needs (and no warning)
	cfg.SigningKey = hex.EncodeToString(castoken.GenerateKey())
	if err := cfg.Validate(); err != nil {
		ln.Close()
		return err
	}
	printDemoBanner(e.stdout, "http://"+ln.Addr().String(), hubURL, files, took)
	err = runServer(ctx, cfg, log, ln, nil)
	if err == nil || errors.Is(err, context.Canceled) {
		fmt.Fprintln(e.stdout, "xetproxy demo: stopped")
		return nil
	}
	return err
}

// demoCacheDir is the disk chunk cache of the demo: $XETPROXY_CACHE_DIR,
// else the user's cache directory, as for serve.
func demoCacheDir() string {
	if d := os.Getenv("XETPROXY_CACHE_DIR"); d != "" {
		return d
	}
	return server.DefaultCacheDir(os.Getenv)
}

func printDemoBanner(w io.Writer, proxy, hub string, files []sample.File, took time.Duration) {
	byRepo := map[string][]string{}
	var order []string
	for _, f := range files {
		if _, ok := byRepo[f.Repo]; !ok {
			order = append(order, f.Repo)
		}
		byRepo[f.Repo] = append(byRepo[f.Repo], fmt.Sprintf("%s (%s)", f.Path, humanBytes(f.Size)))
	}
	fmt.Fprintf(w, `
xetproxy demo: a local fake Hub (files stored with Xet, like huggingface.co)
and the proxy in front of it. Nothing here touches the network.

  proxy     %s
  fake Hub  %s

Repos (generated in %.1fs):
`, proxy, hub, took.Seconds())
	for _, r := range order {
		note := ""
		if r == sample.PrivateRepo {
			note = "   [private: token " + sample.ReaderToken + "]"
		}
		fmt.Fprintf(w, "  %s%s\n      %s\n", r, note, strings.Join(byRepo[r], ", "))
	}
	m := sample.ModelRepo
	fmt.Fprintf(w, `
Try:
  curl -fLO %[1]s/download/%[2]s/model.safetensors
  curl -fL -r 0-1023 -o head.bin %[1]s/download/%[2]s/model.safetensors
  aria2c -x4 -s4 %[1]s/download/%[2]s/model.safetensors
  curl -fL %[1]s/download/datasets/xetproxy/demo-dataset/data/train.csv | head -3
  curl -fL -H 'Authorization: Bearer %[3]s' %[1]s/download/%[4]s/config.json
  curl -sI %[1]s/%[2]s/resolve/main/model.safetensors

  HF_ENDPOINT=%[1]s hf download %[2]s --local-dir demo-model
  HF_ENDPOINT=%[1]s python3 -c 'from huggingface_hub import hf_hub_download as d; print(d("%[2]s", "config.json"))'
  @huggingface/hub:  downloadFile({ repo: "%[2]s", path: "config.json", hubUrl: "%[1]s" })

  curl -s %[1]s/metrics | grep ^xetproxy_

Press Ctrl-C to stop.
`, proxy, m, sample.ReaderToken, sample.PrivateRepo)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
