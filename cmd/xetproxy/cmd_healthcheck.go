package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// healthcheckCommand probes a running server. It exists so that a container
// image without a shell, curl or wget can still declare a HEALTHCHECK:
// HEALTHCHECK CMD ["xetproxy", "healthcheck"]. Exit 0 means the server
// answered 200, exit 1 anything else; it prints exactly one line.
func healthcheckCommand() command {
	return command{
		name:    "healthcheck",
		summary: "probe a running server's /health (for container health checks)",
		run: func(ctx context.Context, e env, args []string) int {
			fs := newFlagSet(e, "healthcheck", "[--url URL] [--timeout 3s]")
			target := fs.String("url", defaultHealthURL(os.Getenv),
				"URL to GET (default from XETPROXY_LISTEN, else PORT, else port 8080)")
			timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
			if code, ok := parseFlags(fs, args); !ok {
				return code
			}
			if fs.NArg() > 0 {
				fs.Usage()
				return exitUsage
			}
			u, err := url.Parse(*target)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				fmt.Fprintf(e.stderr, "xetproxy healthcheck: --url must be an http(s) URL, got %q\n", *target)
				return exitUsage
			}
			if *timeout <= 0 {
				fmt.Fprintln(e.stderr, "xetproxy healthcheck: --timeout must be positive")
				return exitUsage
			}
			line, healthy := probeHealth(ctx, u.String(), *timeout)
			if healthy {
				fmt.Fprintln(e.stdout, line)
				return exitOK
			}
			fmt.Fprintln(e.stderr, line)
			return exitError
		},
	}
}

// defaultHealthURL derives the probe address from the same environment the
// server reads: XETPROXY_LISTEN, else ":"+PORT, else ":8080". An unspecified
// host (":8080", "0.0.0.0:8080", "[::]:8080") is probed on 127.0.0.1.
func defaultHealthURL(getenv func(string) string) string {
	listen := getenv("XETPROXY_LISTEN")
	if listen == "" {
		if p := getenv("PORT"); p != "" {
			listen = ":" + p
		} else {
			listen = ":8080"
		}
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" {
		host, port = "", "8080"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/health"
}

// probeHealth GETs target once and describes the outcome in one line.
func probeHealth(ctx context.Context, target string, timeout time.Duration) (line string, healthy bool) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{
		// A probe of a local listener never goes through HTTP_PROXY, and a
		// redirect is an answer in itself, not something to follow.
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Sprintf("unhealthy: %s: %v", target, err), false
	}
	req.Header.Set("User-Agent", "xetproxy-healthcheck")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Sprintf("unhealthy: %v", err), false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("unhealthy: %s answered %s", target, resp.Status), false
	}
	var status struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(body, &status) == nil && status.Version != "" {
		return fmt.Sprintf("healthy: %s answered %s (version %s)", target, resp.Status, status.Version), true
	}
	return fmt.Sprintf("healthy: %s answered %s", target, resp.Status), true
}
