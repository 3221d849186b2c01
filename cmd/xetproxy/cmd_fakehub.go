package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// fakehubTokenList is a repeatable string flag.
type fakehubTokenList []string

func (s *fakehubTokenList) String() string     { return strings.Join(*s, ",") }
func (s *fakehubTokenList) Set(v string) error { *s = append(*s, v); return nil }

// fakehubCommand serves a directory tree as a local Hugging Face Hub with
// its Xet CAS, for offline tries, the demo and the benchmarks.
func fakehubCommand() command {
	return command{
		name:    "fakehub",
		summary: "serve a directory tree as a local Hugging Face Hub with Xet storage",
		run: func(ctx context.Context, e env, args []string) int {
			fs := newFlagSet(e, "fakehub", "--dir DIR [--listen ADDR] [--compression auto|none|lz4|bg4] [flags]")
			dir := fs.String("dir", "", "tree to serve: DIR/<ns>/<name> models, DIR/datasets/<ns>/<name>, DIR/spaces/<ns>/<name>")
			listen := fs.String("listen", "127.0.0.1:8090", "address to listen on")
			compression := fs.String("compression", "auto", "xorb compression: auto, none, lz4 or bg4")
			state := fs.String("state", defaultFakehubState(), "directory keeping xorbs (reused across runs); empty keeps them in memory")
			private := fs.Bool("private", false, "make every repo private (readable with a --token only)")
			gated := fs.Bool("gated", false, "make every repo gated (files readable with a --token only)")
			var tokens fakehubTokenList
			fs.Var(&tokens, "token", "Hub token (hf_...) allowed to read and write every repo; repeatable")
			if code, ok := parseFlags(fs, args); !ok {
				return code
			}
			if fs.NArg() > 0 || *dir == "" {
				fs.Usage()
				return exitUsage
			}
			if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
				fmt.Fprintf(e.stderr, "xetproxy fakehub: --dir %s is not a directory\n", *dir)
				return exitUsage
			}
			if err := runFakehub(ctx, e, fakehubOptions{
				dir: *dir, listen: *listen, compression: *compression, state: *state,
				private: *private, gated: *gated, tokens: tokens,
			}); err != nil {
				fmt.Fprintf(e.stderr, "xetproxy fakehub: %v\n", err)
				return exitError
			}
			return exitOK
		},
	}
}

type fakehubOptions struct {
	dir, listen, compression, state string
	private, gated                  bool
	tokens                          []string
}

func defaultFakehubState() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "xetproxy", "fakehub")
}

func runFakehub(ctx context.Context, e env, o fakehubOptions) error {
	h, err := fakehub.New(fakehub.Config{Dir: o.state, Compression: o.compression})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	start := time.Now()
	fmt.Fprintf(e.stderr, "xetproxy fakehub: loading %s (xorbs in %s)\n", o.dir, fakehubOrMemory(o.state))
	repos, err := h.LoadTree(ctx, o.dir, fakehub.TreeOptions{
		Private: o.private, Gated: o.gated, Writers: o.tokens, Progress: e.stderr,
	})
	if err != nil {
		return err
	}
	for _, t := range o.tokens {
		h.AddToken(t)
	}
	url := "http://" + fakehubDisplayAddr(ln.Addr())
	fmt.Fprintf(e.stderr, "xetproxy fakehub: %d repos ready in %v\n", len(repos), time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(e.stdout, "fakehub serving at %s\n", url)
	for _, r := range repos {
		fmt.Fprintf(e.stdout, "  %s/%s\n", url, r)
	}
	fmt.Fprintf(e.stdout, "Try: HF_ENDPOINT=%s hf download %s\n", url, fakehubFirstOr(repos, "<repo>"))

	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

func fakehubOrMemory(s string) string {
	if s == "" {
		return "memory"
	}
	return s
}

func fakehubFirstOr(ss []string, def string) string {
	if len(ss) == 0 {
		return def
	}
	return ss[0]
}

// fakehubDisplayAddr prints an unspecified listen host as 127.0.0.1.
func fakehubDisplayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
