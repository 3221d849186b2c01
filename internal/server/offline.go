package server

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/metacache"
)

// Defaults of the metadata cache and offline settings.
const (
	DefaultRevalidate    = metacache.DefaultRevalidate
	DefaultUpstreamGrace = metacache.DefaultGrace
)

// headerOffline marks an answer given from the caches while the Hub is
// unreachable (or with --offline).
const headerOffline = "X-Xetproxy-Offline"

// DefaultCacheDir is the disk cache directory used when none is
// configured: "xetproxy" in the user's cache directory ($XDG_CACHE_HOME,
// else ~/.cache, on Linux and other Unix systems; os.UserCacheDir
// elsewhere), read through getenv. "" when there is none.
func DefaultCacheDir(getenv func(string) string) string {
	switch runtime.GOOS {
	case "windows", "darwin", "ios", "plan9":
		d, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		return filepath.Join(d, "xetproxy")
	}
	if d := getenv("XDG_CACHE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "xetproxy")
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".cache", "xetproxy")
	}
	return ""
}

func (c *Config) registerOfflineFlags(fs *flag.FlagSet, env func(name, def string) string) {
	c.Revalidate = c.envDuration("XETPROXY_REVALIDATE", env("XETPROXY_REVALIDATE", DefaultRevalidate.String()))
	fs.DurationVar(&c.Revalidate, "revalidate", c.Revalidate, "answers about a branch or tag are used this long before the Hub is asked again; commit ids never are (env XETPROXY_REVALIDATE)")
	c.Offline = c.envBool("XETPROXY_OFFLINE", env("XETPROXY_OFFLINE", "false"))
	fs.BoolVar(&c.Offline, "offline", c.Offline, "serve from the caches only, never asking the Hub (env XETPROXY_OFFLINE)")
	c.UpstreamGrace = c.envDuration("XETPROXY_UPSTREAM_GRACE", env("XETPROXY_UPSTREAM_GRACE", DefaultUpstreamGrace.String()))
	fs.DurationVar(&c.UpstreamGrace, "upstream-grace", c.UpstreamGrace, "go offline once the Hub has been unreachable this long; 0 = the default (env XETPROXY_UPSTREAM_GRACE)")
}

func (c *Config) validateOffline(bad func(string, ...any)) {
	if c.Revalidate < 0 || c.UpstreamGrace < 0 {
		bad("revalidate and upstream-grace must not be negative")
	}
}

// UpstreamState is the health of the upstream Hub as the server sees it.
type UpstreamState struct {
	// Offline: answers come from the caches only.
	Offline bool
	// Forced: offline by configuration (--offline).
	Forced bool
	// Since is when the Hub became unreachable (when the server started,
	// if forced); zero while online.
	Since time.Time
	// LastError describes the last failure to reach the Hub, without
	// credentials or query strings ("" if none).
	LastError string
	// LastOK is when the Hub last answered (zero if never).
	LastOK time.Time
}

// UpstreamState returns the current health of the upstream Hub.
func (s *Server) UpstreamState() UpstreamState {
	st := s.upstream.State()
	return UpstreamState{Offline: st.Offline, Forced: st.Forced, Since: st.Since, LastError: st.LastError, LastOK: st.LastOK}
}

// withMetaCache decorates the engine with the metadata cache and the
// offline mode (the /api transport gets the same cache in New): its store
// lives under the cache directory (meta/hub), or in memory without one.
func (s *Server) withMetaCache(eng Engine) (Engine, error) {
	s.upstream = s.cfg.upstreamHealth()
	dir := ""
	if s.cfg.CacheDir != "" {
		dir = filepath.Join(s.cfg.CacheDir, "meta", "hub")
	}
	st, err := metacache.NewStore(metacache.StoreConfig{Dir: dir, Logger: s.log})
	if err != nil {
		return nil, err
	}
	s.meta = metacache.New(metacache.Config{
		Store: st, Health: s.upstream, Revalidate: s.cfg.Revalidate, AuthTTL: s.cfg.AuthTTL,
	})
	return s.meta.Engine(eng), nil
}

// upstreamHealth is the upstream state of the server of c, made on first
// use: by Engine (so that the engine's own upstream traffic feeds it) or
// by New.
func (c *Config) upstreamHealth() *metacache.Health {
	if c.health == nil {
		grace := c.UpstreamGrace
		if grace == 0 {
			grace = DefaultUpstreamGrace
		}
		c.health = metacache.NewHealth(metacache.HealthConfig{Offline: c.Offline, Grace: grace})
	}
	return c.health
}

// markOffline sets the offline header on an answer given while offline.
func (s *Server) markOffline(h http.Header) {
	if s.upstream.Offline() {
		h.Set(headerOffline, "1")
	}
}

// checkOffline answers a HEAD while offline as the GET would: 503 for a
// file not fully in the cache (clients HEAD before they GET).
func (s *Server) checkOffline(ctx context.Context, meta *hub.FileMeta) error {
	if c, ok := s.engine.(interface {
		CheckOffline(context.Context, *hub.FileMeta) error
	}); ok {
		return c.CheckOffline(ctx, meta)
	}
	return nil
}

// readyState is what /readyz says besides admission: "degraded" (still
// 200: the caches keep serving) while offline, with the reason.
func (s *Server) readyState() (status, reason string) {
	st := s.upstream.State()
	if !st.Offline {
		return "ready", ""
	}
	if st.Forced {
		return "degraded", "offline mode (--offline): serving from the caches only"
	}
	return "degraded", "the Hub is unreachable since " + st.Since.UTC().Format(time.RFC3339) + ": serving from the caches only"
}

// classifyOffline maps an offline refusal to 503.
func classifyOffline(err error) *apiError {
	var oe *metacache.OfflineError
	if !errors.As(err, &oe) {
		return nil
	}
	e := newAPIError(http.StatusServiceUnavailable, oe.Code, oe.Message)
	e.RetryAfter = "30"
	e.cause = err
	return e
}
