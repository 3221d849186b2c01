package server

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/castoken"
	"github.com/xetproxy/xetproxy/internal/engineconf"
	"github.com/xetproxy/xetproxy/internal/metacache"
)

// Config is everything `xetproxy serve` can be told. Flags take their
// defaults from the environment (the names the container image and the
// Worker use), so RegisterFlags is the one place configuration is read.
type Config struct {
	Listen        string // main listener address
	MetricsListen string // separate metrics listener; "" = /metrics on Listen
	HubURL        string // upstream Hub base URL

	// ServerTokenEnabled allows ServerToken (HF_TOKEN) to be used upstream,
	// and then only for callers presenting one of APIKeys.
	ServerTokenEnabled bool
	ServerToken        string   // from HF_TOKEN only, never a flag
	APIKeys            []string // from XETPROXY_API_KEYS and APIKeysFile
	APIKeysFile        string   // one key per line, '#' comments

	DrainTimeout time.Duration
	LogFormat    string // text or json
	LogLevel     string // debug, info, warn, error

	MaxDownloads int // concurrent downloads; more wait in the queue
	// MaxBuffer is the memory of data in flight: the read-ahead of all
	// streams and the cache fills (see docs/operations.md, Memory). A
	// download also reserves min(1MiB, ReadAhead, length) of it at
	// admission for its lifetime.
	MaxBuffer int64
	// ReadAhead is the read-ahead one download may hold.
	ReadAhead int64
	// QueueMax bounds the downloads waiting for admission (0 = none wait,
	// negative = 4×MaxDownloads); QueueTimeout bounds their wait. Past
	// either the answer is 503 + Retry-After.
	QueueMax     int
	QueueTimeout time.Duration

	ReadHeaderTimeout time.Duration // time to read request headers
	IdleTimeout       time.Duration // keep-alive idle connections
	MaxHeaderBytes    int           // larger request headers get 431
	UpstreamTimeout   time.Duration // resolve + token + first bytes, else 504
	StallTimeout      time.Duration // a client that accepts no byte for this long is dropped
	// BodyTimeout is the time a client has to send a request body (only
	// /api paths-info reads one; others are discarded within it); 0 means
	// DefaultBodyTimeout.
	BodyTimeout time.Duration

	// Chunk cache of the download engine (see engineconf.NewCache and
	// docs/cache.md):
	// a disk tier in CacheDir bounded by CacheSize, a memory tier of
	// CacheMemory bytes (0 = none), and a shared S3/R2 tier when S3Bucket
	// is set.
	CacheDir    string
	CacheSize   int64
	CacheMemory int64
	// NoCacheSendfile: disk hits are written from memory, not sent from
	// their files (--cache-sendfile=false; proxy.Config.NoSendfile).
	NoCacheSendfile bool
	S3Endpoint      string
	S3Bucket        string
	S3Prefix        string
	S3Region        string
	S3PathStyle     bool
	// S3Queue bounds the decoded bytes waiting to be written to the S3
	// tier (on the disk tier when there is one); a fill that finds it
	// full waits for room (see engineconf.CacheConfig.S3Queue).
	S3Queue int64
	// S3AccessKeyID and S3SecretAccessKey come from AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY only (never flags); both empty = the AWS SDK's
	// default credential chain.
	S3AccessKeyID, S3SecretAccessKey string
	// AuthTTL is how long positive upstream answers (resolve, file size,
	// reconstruction) are reused for the same caller token, repo and
	// revision; 0 asks upstream on every request.
	AuthTTL time.Duration

	// Allow and Deny are the repo policy globs (package policy); AuditKey
	// keys the caller digest of the download log lines (env only).
	Allow, Deny []string
	AuditKey    string
	// Metadata cache and offline mode (offline.go): Revalidate is how long
	// an answer about a branch or tag is used before it is asked again;
	// Offline serves from the caches only; UpstreamGrace is how long the
	// Hub may be unreachable before the server goes offline by itself
	// (0 = DefaultUpstreamGrace).
	Revalidate    time.Duration
	Offline       bool
	UpstreamGrace time.Duration
	// Xet serves the Xet protocol to Xet clients (docs/operations.md,
	// "Xet clients"): Xet metadata kept in Hub answers, the xet-read-token
	// route answered with the proxy's own CAS token, /cas served. false
	// strips every Xet trace and serves all files as plain HTTP.
	Xet bool
	// SigningKey seals CAS tokens and xorb URLs: hex or base64 of at least
	// 32 bytes, from XETPROXY_SIGNING_KEY only (never a flag). Empty: a
	// key generated per process (tokens fail on other instances).
	SigningKey string
	// XetTokenTTL bounds the life of a CAS token (never past the caller's
	// upstream token); XetURLTTL the life of a xorb URL (never past the
	// CAS token it was issued under). 0 means the default (an hour).
	XetTokenTTL time.Duration
	XetURLTTL   time.Duration

	envErrs []error // malformed environment values, reported by Validate
	// health is the upstream state of the server of this Config: Engine
	// makes it (and puts it on the engine's transport), New adopts it.
	health *metacache.Health
}

// Default values of the settings that have no environment variable.
const (
	DefaultReadAhead         = 16 << 20
	DefaultQueueTimeout      = 30 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout       = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultUpstreamTimeout   = 60 * time.Second
	DefaultStallTimeout      = 2 * time.Minute
	DefaultAuthTTL           = 30 * time.Second
	DefaultXetTokenTTL       = time.Hour
	DefaultXetURLTTL         = time.Hour
)

// RegisterFlags declares every serve flag on fs, with defaults taken from
// getenv (os.Getenv in the binary, a map in tests), and fills c as fs is
// parsed. HF_TOKEN and the AWS keys are read from the environment only.
func (c *Config) RegisterFlags(fs *flag.FlagSet, getenv func(string) string) {
	env := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	listen := ":8080"
	if p := strings.TrimSpace(getenv("PORT")); p != "" {
		listen = ":" + p
	}
	fs.StringVar(&c.Listen, "listen", env("XETPROXY_LISTEN", listen), "listen address (env XETPROXY_LISTEN, else :$PORT)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", env("XETPROXY_METRICS_LISTEN", ""), "separate listener for /metrics; empty serves /metrics on --listen (env XETPROXY_METRICS_LISTEN)")
	fs.StringVar(&c.HubURL, "hub-url", env("HF_ENDPOINT", "https://huggingface.co"), "upstream Hub (env HF_ENDPOINT)")
	c.ServerTokenEnabled = c.envBool("XETPROXY_SERVER_TOKEN_ENABLED", env("XETPROXY_SERVER_TOKEN_ENABLED", "false"))
	fs.BoolVar(&c.ServerTokenEnabled, "server-token-enabled", c.ServerTokenEnabled, "use the server's HF_TOKEN upstream for callers presenting a proxy API key (env XETPROXY_SERVER_TOKEN_ENABLED)")
	c.ServerToken = strings.TrimSpace(getenv("HF_TOKEN"))
	c.APIKeys = splitKeys(getenv("XETPROXY_API_KEYS"), ",")
	fs.StringVar(&c.APIKeysFile, "api-keys-file", env("XETPROXY_API_KEYS_FILE", ""), "file of proxy API keys, one per line; adds to env XETPROXY_API_KEYS (comma-separated)")
	c.DrainTimeout = c.envDuration("XETPROXY_DRAIN_TIMEOUT", env("XETPROXY_DRAIN_TIMEOUT", "10m"))
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "on SIGTERM, how long in-flight downloads may take to finish (env XETPROXY_DRAIN_TIMEOUT)")
	fs.StringVar(&c.LogFormat, "log-format", env("XETPROXY_LOG_FORMAT", "text"), "log format: text or json (env XETPROXY_LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", env("XETPROXY_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env XETPROXY_LOG_LEVEL)")
	c.MaxDownloads = c.envInt("XETPROXY_MAX_DOWNLOADS", env("XETPROXY_MAX_DOWNLOADS", "64"))
	fs.IntVar(&c.MaxDownloads, "max-downloads", c.MaxDownloads, "concurrent downloads; more wait in the admission queue (env XETPROXY_MAX_DOWNLOADS)")
	c.MaxBuffer = c.envSize("XETPROXY_MAX_BUFFER", env("XETPROXY_MAX_BUFFER", "1GiB"))
	fs.Var((*sizeFlag)(&c.MaxBuffer), "max-buffer", "memory for data in flight: read-ahead of all downloads and cache fills, e.g. 1GiB (env XETPROXY_MAX_BUFFER)")
	c.QueueMax = c.envInt("XETPROXY_QUEUE_MAX", env("XETPROXY_QUEUE_MAX", "-1"))
	fs.IntVar(&c.QueueMax, "queue-max", c.QueueMax, "downloads that may wait for admission before answering 503; -1 = 4×max-downloads, 0 = no queue (env XETPROXY_QUEUE_MAX)")
	c.QueueTimeout = c.envDuration("XETPROXY_QUEUE_TIMEOUT", env("XETPROXY_QUEUE_TIMEOUT", DefaultQueueTimeout.String()))
	fs.DurationVar(&c.QueueTimeout, "queue-timeout", c.QueueTimeout, "longest wait in the admission queue before answering 503 (env XETPROXY_QUEUE_TIMEOUT)")
	c.ReadAhead = DefaultReadAhead
	fs.Var((*sizeFlag)(&c.ReadAhead), "read-ahead", "read-ahead bytes one download may hold (counted against --max-buffer)")
	c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "time a client has to send its request headers")
	c.BodyTimeout = DefaultBodyTimeout
	fs.DurationVar(&c.BodyTimeout, "body-timeout", c.BodyTimeout, "time a client has to send a request body")
	c.IdleTimeout = DefaultIdleTimeout
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "how long an idle keep-alive connection is kept")
	c.MaxHeaderBytes = DefaultMaxHeaderBytes
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "largest request header block (larger ones get 431)")
	c.UpstreamTimeout = DefaultUpstreamTimeout
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", c.UpstreamTimeout, "deadline for the first upstream step of a download (resolve, token, first bytes); past it 504")
	c.StallTimeout = DefaultStallTimeout
	fs.DurationVar(&c.StallTimeout, "stall-timeout", c.StallTimeout, "drop a client that accepts no byte for this long")
	fs.StringVar(&c.CacheDir, "cache-dir", env("XETPROXY_CACHE_DIR", DefaultCacheDir(getenv)), "disk chunk cache directory; --cache-dir \"\" = no disk cache (env XETPROXY_CACHE_DIR)")
	c.CacheSize = c.envSize("XETPROXY_CACHE_SIZE", env("XETPROXY_CACHE_SIZE", "0"))
	fs.Var((*sizeFlag)(&c.CacheSize), "cache-size", "disk chunk cache capacity; 0 = min(10GiB, half the free space at start) (env XETPROXY_CACHE_SIZE)")
	c.CacheMemory = c.envSize("XETPROXY_CACHE_MEMORY", env("XETPROXY_CACHE_MEMORY", "0"))
	fs.Var((*sizeFlag)(&c.CacheMemory), "cache-memory", "in-process chunk cache in front of the others, e.g. 512MiB; 0 = none (env XETPROXY_CACHE_MEMORY)")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", env("XETPROXY_S3_ENDPOINT", ""), "shared S3/R2 cache tier endpoint (env XETPROXY_S3_ENDPOINT)")
	fs.StringVar(&c.S3Bucket, "s3-bucket", env("XETPROXY_S3_BUCKET", ""), "shared cache bucket (env XETPROXY_S3_BUCKET)")
	fs.StringVar(&c.S3Prefix, "s3-prefix", env("XETPROXY_S3_PREFIX", ""), "key prefix in the bucket (env XETPROXY_S3_PREFIX)")
	fs.StringVar(&c.S3Region, "s3-region", env("XETPROXY_S3_REGION", ""), "bucket region, auto for R2 (env XETPROXY_S3_REGION)")
	c.S3PathStyle = c.envBool("XETPROXY_S3_PATH_STYLE", env("XETPROXY_S3_PATH_STYLE", "false"))
	fs.BoolVar(&c.S3PathStyle, "s3-path-style", c.S3PathStyle, "address the bucket in the URL path (MinIO and most self-hosted servers) (env XETPROXY_S3_PATH_STYLE)")
	c.NoCacheSendfile = !c.envBool("XETPROXY_CACHE_SENDFILE", env("XETPROXY_CACHE_SENDFILE", "true"))
	fs.BoolFunc("cache-sendfile", "send disk cache hits from their files with sendfile (default true); false sends the checked copy from memory, for a cache directory something else might write in place (env XETPROXY_CACHE_SENDFILE)", func(v string) error {
		on, err := strconv.ParseBool(v)
		c.NoCacheSendfile = !on
		return err
	})
	c.S3Queue = c.envSize("XETPROXY_S3_QUEUE", env("XETPROXY_S3_QUEUE", "256MiB"))
	fs.Var((*sizeFlag)(&c.S3Queue), "s3-queue", "bytes waiting to be written to the S3 tier (on the disk tier if any, else in memory); when full, fills wait for room (env XETPROXY_S3_QUEUE)")
	c.S3AccessKeyID = strings.TrimSpace(getenv("AWS_ACCESS_KEY_ID"))
	c.S3SecretAccessKey = strings.TrimSpace(getenv("AWS_SECRET_ACCESS_KEY"))
	c.AuthTTL = c.envDuration("XETPROXY_AUTH_CACHE_TTL", env("XETPROXY_AUTH_CACHE_TTL", DefaultAuthTTL.String()))
	fs.DurationVar(&c.AuthTTL, "auth-cache-ttl", c.AuthTTL, "reuse a caller's positive Hub/CAS answers (resolve, reconstruction) this long; 0 = ask every time (env XETPROXY_AUTH_CACHE_TTL)")
	c.registerPolicyFlags(fs, getenv)
	c.registerOfflineFlags(fs, env)
	c.Xet = c.envBool("XETPROXY_XET", env("XETPROXY_XET", "true"))
	fs.BoolVar(&c.Xet, "xet", c.Xet, "serve Xet clients as their CAS (token route, /cas); false strips all Xet metadata (env XETPROXY_XET)")
	c.SigningKey = strings.TrimSpace(getenv("XETPROXY_SIGNING_KEY"))
	c.XetTokenTTL = DefaultXetTokenTTL
	fs.DurationVar(&c.XetTokenTTL, "xet-token-ttl", c.XetTokenTTL, "longest life of a CAS token the proxy issues (never past the caller's upstream token)")
	c.XetURLTTL = DefaultXetURLTTL
	fs.DurationVar(&c.XetURLTTL, "xet-url-ttl", c.XetURLTTL, "life of the xorb URLs in reconstructions (never past the CAS token)")
}

// Engine is the configuration of the download engine of a server of c,
// for engineconf.New: transport carries its upstream requests (give it
// Metrics.Transport over engineconf.NewTransport so that they are
// counted), c.ReadAhead is the per-stream buffer and c.MaxBuffer the
// engine-wide one.
func (c *Config) Engine(transport http.RoundTripper, log *slog.Logger) engineconf.Config {
	if transport == nil {
		transport = engineconf.NewTransport()
	}
	return engineconf.Config{
		HubURL:     c.HubURL,
		Transport:  c.upstreamHealth().Transport(transport),
		ReadAhead:  c.ReadAhead,
		MaxBuffer:  c.MaxBuffer,
		AuthTTL:    c.AuthTTL,
		Cache:      c.cacheConfig(),
		NoSendfile: c.NoCacheSendfile,
		Logger:     log,
	}
}

func (c *Config) cacheConfig() engineconf.CacheConfig {
	return engineconf.CacheConfig{
		Dir: c.CacheDir, Size: c.CacheSize, Memory: c.CacheMemory,
		S3Endpoint: c.S3Endpoint, S3Bucket: c.S3Bucket, S3Prefix: c.S3Prefix, S3Region: c.S3Region,
		S3PathStyle: c.S3PathStyle, S3Queue: c.S3Queue,
		S3AccessKeyID: c.S3AccessKeyID, S3SecretAccessKey: c.S3SecretAccessKey,
	}
}

// queueMax is QueueMax with -1 resolved.
func (c *Config) queueMax() int {
	if c.QueueMax < 0 {
		return 4 * c.MaxDownloads
	}
	return c.QueueMax
}

// LoadAPIKeysFile adds the keys of APIKeysFile (if set) to APIKeys.
func (c *Config) LoadAPIKeysFile() error {
	if c.APIKeysFile == "" {
		return nil
	}
	b, err := os.ReadFile(c.APIKeysFile)
	if err != nil {
		return fmt.Errorf("api keys file: %w", err)
	}
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		keys = append(keys, splitKeys(line, ",")...)
	}
	c.APIKeys = append(c.APIKeys, keys...)
	return nil
}

// Validate reports every setting that cannot work, joined.
func (c *Config) Validate() error {
	errs := append([]error(nil), c.envErrs...)
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad("metrics-listen %q: %v", c.MetricsListen, err)
		}
	}
	if u, err := url.Parse(c.HubURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("hub-url %q: want an http(s) URL", c.HubURL)
	} else if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		bad("hub-url %q: no user, query or fragment allowed", c.HubURL)
	}
	if c.ServerTokenEnabled {
		if c.ServerToken == "" {
			bad("server-token-enabled needs HF_TOKEN in the environment")
		}
		if len(c.APIKeys) == 0 {
			bad("server-token-enabled needs at least one proxy API key (XETPROXY_API_KEYS or --api-keys-file): the server token is never used for anonymous callers")
		}
	}
	for _, k := range c.APIKeys {
		if len(k) < 16 {
			bad("proxy API keys must be at least 16 characters")
			break
		}
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log-format %q: want text or json", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.DrainTimeout <= 0 {
		bad("drain-timeout must be positive")
	}
	if c.MaxDownloads < 1 {
		bad("max-downloads must be at least 1")
	}
	if c.ReadAhead < 64<<10 {
		bad("read-ahead must be at least 64KiB")
	}
	if c.QueueMax < -1 {
		bad("queue-max must be -1 (4×max-downloads), 0 or positive")
	}
	if c.QueueTimeout < 0 {
		bad("queue-timeout must not be negative")
	}
	if c.MaxBuffer < c.ReadAhead {
		bad("max-buffer (%d) must be at least read-ahead (%d)", c.MaxBuffer, c.ReadAhead)
	}
	if c.ReadHeaderTimeout <= 0 || c.UpstreamTimeout <= 0 || c.StallTimeout <= 0 || c.IdleTimeout <= 0 {
		bad("timeouts must be positive")
	}
	if c.BodyTimeout < 0 {
		bad("body-timeout must not be negative")
	}
	if c.MaxHeaderBytes < 4<<10 {
		bad("max-header-bytes must be at least 4096")
	}
	if c.CacheSize < 0 {
		bad("cache-size must not be negative")
	}
	c.validateOffline(bad)
	if c.CacheMemory < 0 || c.S3Queue < 0 {
		bad("cache-memory and s3-queue must not be negative")
	}
	if c.AuthTTL < 0 {
		bad("auth-cache-ttl must not be negative")
	}
	if c.SigningKey != "" {
		if _, err := castoken.ParseKey(c.SigningKey); err != nil {
			bad("XETPROXY_SIGNING_KEY: %v", err)
		}
	}
	if c.XetTokenTTL < 0 || c.XetURLTTL < 0 {
		bad("xet-token-ttl and xet-url-ttl must not be negative")
	}
	if (c.S3Endpoint != "" || c.S3Prefix != "" || c.S3Region != "" || c.S3PathStyle) && c.S3Bucket == "" {
		bad("s3 settings given without --s3-bucket")
	}
	if c.S3Bucket != "" {
		if err := c.cacheConfig().S3Config(nil).Validate(); err != nil {
			bad("s3: %v", err)
		}
	}
	if err := c.validatePolicy(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Redacted returns a printable summary of c with secrets replaced by their
// presence, for the startup log line.
func (c *Config) Redacted() []any {
	return []any{
		"listen", c.Listen, "metrics_listen", c.MetricsListen, "hub_url", c.HubURL,
		"server_token_enabled", c.ServerTokenEnabled, "server_token_set", c.ServerToken != "",
		"api_keys", len(c.APIKeys), "max_downloads", c.MaxDownloads, "max_buffer", c.MaxBuffer, "queue_max", c.queueMax(), "queue_timeout", c.QueueTimeout.String(),
		"read_ahead", c.ReadAhead, "drain_timeout", c.DrainTimeout.String(),
		"cache_dir", c.CacheDir, "cache_size", c.CacheSize, "cache_memory", c.CacheMemory, "cache_sendfile", !c.NoCacheSendfile,
		"s3_bucket", c.S3Bucket, "s3_endpoint", engineconf.RedactURL(c.S3Endpoint), "s3_prefix", c.S3Prefix,
		"s3_credentials", c.S3AccessKeyID != "", "auth_cache_ttl", c.AuthTTL.String(),
		"allow", c.Allow, "deny", c.Deny, "audit_key_set", c.AuditKey != "",
		"revalidate", c.Revalidate.String(), "offline", c.Offline, "upstream_grace", c.UpstreamGrace.String(),
		"xet", c.Xet, "signing_key_set", c.SigningKey != "",
	}
}

func (c *Config) envBool(name, v string) bool {
	b, err := strconv.ParseBool(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: want true or false", name, v))
	}
	return b
}

func (c *Config) envInt(name, v string) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: want an integer", name, v))
	}
	return n
}

func (c *Config) envDuration(name, v string) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: want a duration like 10m", name, v))
	}
	return d
}

func (c *Config) envSize(name, v string) int64 {
	n, err := ParseSize(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q: %w", name, v, err))
	}
	return n
}

func splitKeys(s, sep string) []string {
	var out []string
	for _, k := range strings.Split(s, sep) {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}

// ParseSize reads a byte count: a plain integer or one with a unit
// (B, KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024;
// K, M, G, T are read as the binary ones).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit like 512MiB", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	var mult int64
	switch strings.ToLower(strings.TrimSpace(s[i:])) {
	case "", "b":
		mult = 1
	case "kb":
		mult = 1e3
	case "mb":
		mult = 1e6
	case "gb":
		mult = 1e9
	case "tb":
		mult = 1e12
	case "k", "kib":
		mult = 1 << 10
	case "m", "mib":
		mult = 1 << 20
	case "g", "gib":
		mult = 1 << 30
	case "t", "tib":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("size %q: unknown unit", s)
	}
	if n > (1<<63-1)/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// sizeFlag is a flag.Value for byte counts.
type sizeFlag int64

func (f *sizeFlag) String() string { return strconv.FormatInt(int64(*f), 10) }

func (f *sizeFlag) Set(s string) error {
	n, err := ParseSize(s)
	if err != nil {
		return err
	}
	*f = sizeFlag(n)
	return nil
}
