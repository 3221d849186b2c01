package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/xetproxy/xetproxy/internal/buildinfo"
	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

// DefaultS3Staging is the memory tier put in front of the S3 tier when
// neither --cache-dir nor --cache-memory gives a local one: shared writes
// are queued behind a local tier (cache.Tiered), so that a slow bucket
// never holds up a fill.
const DefaultS3Staging = 64 << 20

// NewEngine builds the download engine for a server of cfg: a Hub client
// for cfg.HubURL and a CAS client, both sending through transport (give it
// Metrics.Transport so upstream requests are counted), with cfg.ReadAhead
// as the per-stream buffer and cfg.MaxBuffer as the engine-wide one, and
// the chunk cache of NewCache. The CAS fetch client strips Authorization
// on every redirect; presigned transfer requests never carry one in the
// first place. It logs the cache configuration. Close the engine
// (Engine.Close) after the server has drained: it finishes the cache
// fills in flight and the queued shared writes.
func NewEngine(cfg Config, transport http.RoundTripper, log *slog.Logger) (*proxy.Engine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ua := "xetproxy/" + buildinfo.Version()
	hc := hub.NewClient(cfg.HubURL)
	hc.HTTP = &http.Client{Transport: transport}
	hc.UserAgent = ua
	cas, err := casclient.New(casclient.Config{
		API:       &http.Client{Transport: transport},
		Fetch:     &http.Client{Transport: transport, CheckRedirect: stripAuthRedirect},
		UserAgent: ua,
	})
	if err != nil {
		return nil, err
	}
	store, desc, err := NewCache(cfg, log)
	if err != nil {
		return nil, err
	}
	var staging cache.Store
	if store != nil {
		if staging, err = NewStaging(cfg, log); err != nil {
			if c, ok := store.(interface{ Close() error }); ok {
				c.Close()
			}
			return nil, err
		}
	}
	log.Info("cache", "tiers", desc, "auth_cache_ttl", cfg.AuthTTL.String())
	eng, err := proxy.New(proxy.Config{
		Hub:          hc,
		CAS:          cas,
		StreamBuffer: cfg.ReadAhead,
		MaxBuffer:    cfg.MaxBuffer,
		Logger:       log,
		Cache:        store,
		Staging:      staging,
		FillBuffer:   max(64<<20, cfg.MaxBuffer/4),
		AuthTTL:      cfg.AuthTTL,
	})
	if err != nil {
		if c, ok := store.(interface{ Close() error }); ok {
			c.Close()
		}
		return nil, err
	}
	return eng, nil
}

// NewCache builds the chunk cache cfg describes, and a description of it
// for the log (no secrets):
//
//	--cache-memory only           Memory
//	--cache-dir only              Disk
//	both                          Tiered(Memory, Disk), written through
//	--s3-bucket and a local tier  Tiered(local, S3): S3 writes queued
//	--s3-bucket alone             Tiered(Memory 64 MiB, S3)
//	nothing                       nil: no cache (every byte from upstream)
func NewCache(cfg Config, log *slog.Logger) (cache.Store, string, error) {
	var tiers []string
	var local cache.Store
	var mem *cache.Memory
	memSize := cfg.CacheMemory
	if memSize == 0 && cfg.CacheDir == "" && cfg.S3Bucket != "" {
		memSize = DefaultS3Staging
	}
	if memSize > 0 {
		m, err := cache.NewMemory(memSize)
		if err != nil {
			return nil, "", err
		}
		mem, local = m, m
		tiers = append(tiers, "memory "+humanSize(memSize))
	}
	if cfg.CacheDir != "" {
		d, err := cache.NewDisk(cache.DiskConfig{Dir: cfg.CacheDir, MaxBytes: cfg.CacheSize, Logger: log})
		if err != nil {
			return nil, "", fmt.Errorf("disk cache: %w", err)
		}
		st := d.Stats()
		tiers = append(tiers, fmt.Sprintf("disk %s %s (%d entries, %s found)", cfg.CacheDir, humanSize(cfg.CacheSize), st.Entries, humanSize(st.Size)))
		local = d
		if mem != nil {
			t, err := cache.NewTiered(mem, d, cache.TieredConfig{SyncShared: true, Logger: log})
			if err != nil {
				return nil, "", err
			}
			local = t
		}
	}
	if cfg.S3Bucket != "" {
		s3, err := cache.NewS3(context.Background(), cfg.s3Config(log))
		if err != nil {
			return nil, "", fmt.Errorf("s3 cache: %w", err)
		}
		where := cfg.S3Bucket
		if cfg.S3Prefix != "" {
			where += "/" + strings.TrimSuffix(cfg.S3Prefix, "/")
		}
		if cfg.S3Endpoint != "" {
			where += " at " + redactURL(cfg.S3Endpoint)
		}
		creds := "default AWS credential chain"
		if cfg.S3AccessKeyID != "" {
			creds = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
		}
		tiers = append(tiers, fmt.Sprintf("s3 %s (%s)", where, creds))
		t, err := cache.NewTiered(local, s3, cache.TieredConfig{QueueBytes: cfg.S3Queue, Logger: log})
		if err != nil {
			return nil, "", err
		}
		return t, strings.Join(tiers, " -> "), nil
	}
	if local == nil {
		return nil, "none", nil
	}
	return local, strings.Join(tiers, " -> "), nil
}

// s3Config is the S3 tier's configuration.
func (c *Config) s3Config(log *slog.Logger) cache.S3Config {
	return cache.S3Config{
		Endpoint:        c.S3Endpoint,
		Bucket:          c.S3Bucket,
		Prefix:          c.S3Prefix,
		Region:          c.S3Region,
		PathStyle:       c.S3PathStyle,
		AccessKeyID:     c.S3AccessKeyID,
		SecretAccessKey: c.S3SecretAccessKey,
		Logger:          log,
	}
}

// redactURL drops user information, query and fragment from a URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid url)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%dB", n)
}

func stripAuthRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return http.ErrUseLastResponse
	}
	req.Header.Del("Authorization")
	return nil
}
