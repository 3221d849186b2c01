package xetclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/servertest"
)

// testSigningKey is XETPROXY_SIGNING_KEY of every test proxy (hex, 32 bytes).
const testSigningKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// proxyServer is one xetproxy server (real engine, disk cache) in front of
// the shared fake Hub.
type proxyServer struct {
	url string
}

// newProxy starts a proxy with Xet on and its own cache for one test; mod
// adjusts its configuration.
func newProxy(t *testing.T, mod func(*server.Config)) *proxyServer {
	t.Helper()
	cfg := servertest.Config(t, hubURL)
	cfg.Xet, cfg.SigningKey = true, testSigningKey
	cfg.XetTokenTTL, cfg.XetURLTTL = server.DefaultXetTokenTTL, server.DefaultXetURLTTL
	if mod != nil {
		mod(&cfg)
	}
	opts := []servertest.Option{servertest.Version("xetclient")}
	if os.Getenv("XETCLIENT_LOG") != "" {
		opts = append(opts, servertest.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	return &proxyServer{url: servertest.Start(t, cfg, opts...).URL}
}

func proxyTarget(p *proxyServer) target {
	return target{name: "proxy", endpoint: p.url, viaProxy: true, xorbPart: "/cas/xorbs/"}
}

// waitHubQuiet waits until the fake Hub's request log stops growing: it
// logs a request after its handler returns, so the last upstream fetches of
// a download may be counted after the download ends.
func waitHubQuiet(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := -1
	for time.Now().Before(deadline) {
		n := int(hub.Stats().Total().Requests)
		if n == last {
			return
		}
		last = n
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the fake Hub never went quiet")
}

// xorbBytes is what the fake Hub has sent of xorb ranges so far.
func xorbBytes() int64 { return hub.Stats()[fakehub.ClassXorb].BytesOut }

// TestProxySecondClientFree: a fresh client downloading what another
// client downloaded costs the fake Hub no xorb bytes: the proxy serves
// every range from its cache.
func TestProxySecondClientFree(t *testing.T) {
	tg := proxyTarget(newProxy(t, nil))
	ctx := context.Background()
	download := func() {
		c, _ := newClient(tg, "")
		for _, p := range dedupFiles {
			fi, err := c.Resolve(ctx, "", dedupRepo, "main", p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, content[dedupRepo+":"+p]) {
				t.Fatalf("%s: bytes differ", p)
			}
		}
		assertOrigin(t, c, tg.endpoint)
	}
	download()
	assertSecondRunFree(t, download)
}

// TestProxyTokenReplay: a CAS token the proxy issued for one repo is
// refused for a file of another repo, for a private file, tampered, and
// after it expired.
func TestProxyTokenReplay(t *testing.T) {
	p := newProxy(t, func(c *server.Config) { c.XetTokenTTL = 2 * time.Second })
	tg := proxyTarget(p)
	ctx := context.Background()
	c, _ := newClient(tg, "")
	route := c.TokenRoute("model", dedupRepo, "main")
	tok, casURL, exp, err := c.AccessToken(ctx, route)
	if err != nil {
		t.Fatal(err)
	}
	if casURL != p.url+"/cas" {
		t.Errorf("casUrl %s, want %s/cas", casURL, p.url)
	}
	if d := time.Until(exp); d > 3*time.Second {
		t.Errorf("token lives %v, more than the proxy's 2s", d)
	}
	hashOf := func(repo, path string) string {
		files, err := hub.Files(repo, "main")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if f.Path == path {
				return f.XetHash.String()
			}
		}
		t.Fatalf("%s:%s not found", repo, path)
		return ""
	}
	query := func(token, hash string) int {
		req, _ := http.NewRequest(http.MethodGet, casURL+"/v2/reconstructions/"+hash, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	own := hashOf(dedupRepo, "a.bin")
	if s := query(tok, own); s != http.StatusOK {
		t.Fatalf("own file: status %d", s)
	}
	refused := func(what string, s int) {
		t.Helper()
		if s != http.StatusUnauthorized && s != http.StatusForbidden && s != http.StatusNotFound {
			t.Errorf("%s: status %d, want a refusal", what, s)
		}
	}
	refused("another repo's file", query(tok, hashOf(otherRepo, "o.bin")))
	refused("a private repo's file", query(tok, hashOf(privateRepo, "p.bin")))
	b := []byte(tok)
	b[len(b)/2] ^= 1
	refused("tampered token", query(string(b), own))
	refused("no token", query("", own))
	// after expiry: poll until refused (exp is in whole seconds)
	deadline := time.Now().Add(15 * time.Second)
	for query(tok, own) == http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("an expired CAS token is still accepted")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if time.Now().Before(exp) {
		t.Errorf("refused before its exp %v", exp)
	}
}

// TestProxySharedSigningKey: behind the Cloudflare Worker a client's
// reconstruction and its xorb ranges reach different instances. With one
// XETPROXY_SIGNING_KEY the xorb URLs one instance issued are served by
// another; with different keys they are refused with 403 (the client asks
// for the reconstruction again, and gives up when every URL is refused).
func TestProxySharedSigningKey(t *testing.T) {
	ctx := context.Background()
	a := newProxy(t, nil)
	for _, tc := range []struct {
		name string
		key  string
		ok   bool
	}{
		{"same key", testSigningKey, true},
		{"other key", "ff" + testSigningKey[2:], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newProxy(t, func(c *server.Config) { c.SigningKey = tc.key })
			c, rec := newClient(proxyTarget(a), "")
			var served atomic.Int64
			rec.rewrite = func(r *http.Request) {
				if strings.Contains(r.URL.Path, "/cas/xorbs/") {
					r.URL.Host = strings.TrimPrefix(b.url, "http://")
					r.Host = r.URL.Host
					served.Add(1)
				}
			}
			fi, err := c.Resolve(ctx, "", dedupRepo, "main", "b.bin")
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, nil)
			if served.Load() == 0 {
				t.Fatal("no xorb range went to the second instance")
			}
			if !tc.ok {
				if !errors.Is(err, errForbidden) {
					t.Fatalf("err = %v, want 403 on every xorb URL", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, content[dedupRepo+":b.bin"]) {
				t.Fatal("bytes differ")
			}
		})
	}
}
