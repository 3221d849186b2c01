package engineconf

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/buildinfo"
	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/metacache"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

// Defaults of Config.
const (
	// DefaultCloseTimeout bounds the wait, when the engine is closed, for
	// the cache fills in flight and the writes queued for a shared tier.
	DefaultCloseTimeout = 30 * time.Second
	// DefaultS3Staging is the memory tier put in front of the S3 tier when
	// no local tier is configured: shared writes are queued behind a local
	// tier (cache.Tiered), so that a bucket a little slower than the
	// fill does not hold it up.
	DefaultS3Staging = 64 << 20
)

// Config is what the download engine is built from. Zero fields take the
// defaults of this package or, below it, of proxy.Config.
type Config struct {
	// HubURL is the Hub's base URL (default hub.DefaultEndpoint).
	HubURL string
	// Transport carries every upstream request of the engine: Hub and CAS
	// API calls and presigned transfers (default NewTransport()). serve
	// passes NewTransport() decorated with its metrics.
	Transport http.RoundTripper
	// UserAgent is sent upstream (default "xetproxy/" + the version).
	UserAgent string

	// Parallel bounds the xorb range downloads of one stream; ReadAhead the
	// decoded bytes one stream holds ahead of its reader; MaxBuffer all
	// the decoded data in flight: the read-ahead of all streams and, with
	// a cache, the fills (SplitBuffer; proxy.Config Parallel,
	// StreamBuffer, MaxBuffer, FillBuffer).
	Parallel  int
	ReadAhead int64
	MaxBuffer int64
	// AuthTTL is how long positive upstream answers are reused for the
	// same caller token, repo and revision; 0 asks upstream every time.
	AuthTTL time.Duration

	// Cache selects the chunk cache tiers; the zero value is no cache.
	Cache CacheConfig
	// NoSendfile: see proxy.Config.NoSendfile.
	NoSendfile bool
	// CloseTimeout bounds the close function New returns (default
	// DefaultCloseTimeout).
	CloseTimeout time.Duration
	// Logger gets the cache description at start and the engine's events
	// (default: discard).
	Logger *slog.Logger
}

// CacheConfig selects the chunk cache (see NewCache and docs/cache.md).
type CacheConfig struct {
	Dir    string // disk tier directory; "" = no disk tier
	Size   int64  // disk tier capacity; 0 = AutoCacheSize(Dir)
	Memory int64  // memory tier bytes; 0 = none

	// A shared S3/R2 tier when S3Bucket is set.
	S3Endpoint  string
	S3Bucket    string
	S3Prefix    string
	S3Region    string
	S3PathStyle bool
	// S3Queue bounds the decoded bytes waiting to be written to the S3
	// tier: on the disk tier when there is one (the queue holds keys),
	// in memory otherwise. A fill that finds it full waits for room (at
	// most 30 s, then the write is dropped, counted and logged).
	S3Queue int64
	// Both empty: the AWS SDK's default credential chain.
	S3AccessKeyID, S3SecretAccessKey string
}

// NewTransport returns the upstream transport of the engine: the CAS
// client's tuning for many parallel range requests to few hosts, with
// HTTP/2 attempted over TLS (the Hub and its CDN speak it).
func NewTransport() *http.Transport {
	t := casclient.NewTransport()
	t.ForceAttemptHTTP2 = true
	return t
}

// New builds the download engine of cfg and returns it with the function
// that closes it: that function waits, at most cfg.CloseTimeout, for the
// cache fills in flight and the queued shared-tier writes, then closes the
// cache. Call it once the engine's last stream has ended.
func New(cfg Config) (*proxy.Engine, func() error, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	hc := HubClient(cfg)
	cas, err := casclient.New(casclient.Config{
		API:       &http.Client{Transport: cfg.Transport},
		Fetch:     casclient.FetchClient(cfg.Transport),
		UserAgent: cfg.UserAgent,
	})
	if err != nil {
		return nil, nil, err
	}
	if cfg.Cache.Dir != "" && cfg.Cache.Size == 0 {
		var why string
		cfg.Cache.Size, why = AutoCacheSize(cfg.Cache.Dir)
		log.Info("cache size chosen", "dir", cfg.Cache.Dir, "size", humanSize(cfg.Cache.Size), "from", why)
	}
	store, desc, err := NewCache(cfg.Cache, log)
	if err != nil {
		return nil, nil, err
	}
	var staging cache.Store
	if store != nil {
		if staging, err = NewStaging(cfg.Cache, log); err != nil {
			if c, ok := store.(interface{ Close() error }); ok {
				c.Close()
			}
			return nil, nil, err
		}
	}
	log.Info("cache", "tiers", desc, "auth_cache_ttl", cfg.AuthTTL.String())
	pc := proxy.Config{
		Hub:          hc,
		CAS:          cas,
		Parallel:     cfg.Parallel,
		StreamBuffer: cfg.ReadAhead,
		MaxBuffer:    cfg.MaxBuffer,
		Logger:       log,
		Cache:        store,
		Staging:      staging,
		AuthTTL:      cfg.AuthTTL,
		NoSendfile:   cfg.NoSendfile,
	}
	if store != nil {
		// The terms of files read whole, so that they can be served from
		// the cache without the CAS (offline): next to the chunks.
		dir := ""
		if cfg.Cache.Dir != "" {
			dir = filepath.Join(cfg.Cache.Dir, "meta", "terms")
		}
		terms, err := metacache.NewStore(metacache.StoreConfig{Dir: dir, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		pc.Terms = terms
	}
	if cfg.MaxBuffer > 0 && store != nil {
		// MaxBuffer is all the data in flight: cache fills (decoding and
		// staging segments until they are stored) get a quarter of it,
		// the read-ahead of the streams the rest.
		pc.FillBuffer, pc.MaxBuffer = SplitBuffer(cfg.MaxBuffer)
	}
	eng, err := proxy.New(pc)
	if err != nil {
		for _, st := range []cache.Store{staging, store} {
			if c, ok := st.(interface{ Close() error }); ok {
				c.Close()
			}
		}
		return nil, nil, err
	}
	timeout := cfg.CloseTimeout
	if timeout <= 0 {
		timeout = DefaultCloseTimeout
	}
	return eng, closeWithin(eng, timeout), nil
}

// HubClient returns the Hub client of the engine New builds from cfg, for
// commands that need the Hub alone (ls): same endpoint, transport and user
// agent.
func HubClient(cfg Config) *hub.Client {
	cfg = cfg.withDefaults()
	hc := hub.NewClient(cfg.HubURL)
	hc.HTTP = &http.Client{Transport: cfg.Transport}
	hc.UserAgent = cfg.UserAgent
	return hc
}

// withDefaults fills the transport and the user agent.
func (cfg Config) withDefaults() Config {
	if cfg.Transport == nil {
		cfg.Transport = NewTransport()
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "xetproxy/" + buildinfo.Version()
	}
	return cfg
}

// closeWithin returns a function that closes c with a deadline of d from
// the moment it is called.
func closeWithin(c interface{ Close(context.Context) error }, d time.Duration) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return c.Close(ctx)
	}
}

// NewCache builds the chunk cache cfg describes, and a description of it
// for the log (no secrets):
//
//	Memory only             Memory
//	Dir only                Disk
//	both                    Tiered(Memory, Disk), written through
//	S3Bucket, a local tier  Tiered(local, S3): S3 writes queued (keys
//	                        read back from the disk tier when there is one)
//	S3Bucket alone          Tiered(Memory DefaultS3Staging, S3)
//	nothing                 nil: no cache (every byte from upstream)
func NewCache(cfg CacheConfig, log *slog.Logger) (cache.Store, string, error) {
	var tiers []string
	var local cache.Store
	var mem *cache.Memory
	var disk *cache.Disk
	memSize := cfg.Memory
	if memSize == 0 && cfg.Dir == "" && cfg.S3Bucket != "" {
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
	if cfg.Dir != "" {
		d, err := cache.NewDisk(cache.DiskConfig{Dir: cfg.Dir, MaxBytes: cfg.Size, Logger: log})
		if err != nil {
			return nil, "", fmt.Errorf("disk cache: %w", err)
		}
		st := d.Stats()
		tiers = append(tiers, fmt.Sprintf("disk %s %s (%d entries, %s found)", cfg.Dir, humanSize(cfg.Size), st.Entries, humanSize(st.Size)))
		local, disk = d, d
		if mem != nil {
			t, err := cache.NewTiered(mem, d, cache.TieredConfig{SyncShared: true, Logger: log})
			if err != nil {
				return nil, "", err
			}
			local = t
		}
	}
	if cfg.S3Bucket != "" {
		s3, err := cache.NewS3(context.Background(), cfg.S3Config(log))
		if err != nil {
			return nil, "", fmt.Errorf("s3 cache: %w", err)
		}
		where := cfg.S3Bucket
		if cfg.S3Prefix != "" {
			where += "/" + strings.TrimSuffix(cfg.S3Prefix, "/")
		}
		if cfg.S3Endpoint != "" {
			where += " at " + RedactURL(cfg.S3Endpoint)
		}
		creds := "default AWS credential chain"
		if cfg.S3AccessKeyID != "" {
			creds = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
		}
		tiers = append(tiers, fmt.Sprintf("s3 %s (%s)", where, creds))
		// With a disk tier the queue holds keys and reads the entries
		// back from the disk (Spool): its memory stays small whatever
		// S3Queue is.
		t, err := cache.NewTiered(local, s3, cache.TieredConfig{QueueBytes: cfg.S3Queue, Spool: disk, Logger: log})
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

// S3Config is the configuration of the S3 tier.
func (c CacheConfig) S3Config(log *slog.Logger) cache.S3Config {
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

// RedactURL drops user information, query and fragment from a URL.
func RedactURL(s string) string {
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

// MemoryStores is the memory the cache cfg describes may hold in its own
// stores, outside the data in flight: the memory tier (DefaultS3Staging
// in front of a bucket alone), the staging store of unproven chunks when
// there is no disk tier, and the queue of writes to the S3 tier.
func MemoryStores(cfg CacheConfig) int64 {
	n := cfg.Memory
	if n == 0 && cfg.Dir == "" && cfg.S3Bucket != "" {
		n = DefaultS3Staging
	}
	if cfg.Dir == "" {
		n *= 2 // NewStaging: a memory store of the memory tier's size
	}
	switch {
	case cfg.S3Bucket != "" && cfg.Dir != "":
		n += spooledQueueMemory // the queue waits on disk and holds keys
	case cfg.S3Bucket != "":
		n += cfg.S3Queue
	}
	return n
}

// spooledQueueMemory bounds the memory of an S3 write queue spooled to the
// disk tier: at most 4096 waiting writes of under 200 bytes each
// (cache.Tiered).
const spooledQueueMemory = 1 << 20

// SplitBuffer divides a memory budget for data in flight between the
// cache fills (a quarter) and the read-ahead of the streams (the rest).
func SplitBuffer(total int64) (fills, streams int64) {
	fills = total / 4
	return fills, total - fills
}

// NewStaging builds the store for chunks that await a proof (proxy.Config.
// Staging): a disk store in a folder of this process's own under the cache
// directory (cache.OpenStaging: emptied at start, removed at exit), or a
// memory store when there is no cache directory. nil when there is no
// cache.
func NewStaging(cfg CacheConfig, log *slog.Logger) (cache.Store, error) {
	switch {
	case cfg.Dir != "":
		return cache.OpenStaging(cfg.Dir, cfg.Size, log)
	case cfg.Memory > 0:
		return cache.NewMemory(cfg.Memory)
	case cfg.S3Bucket != "":
		return cache.NewMemory(DefaultS3Staging)
	}
	return nil, nil
}
