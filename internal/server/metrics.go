package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

// Metrics are the server's Prometheus metrics, on an explicit registry.
// Labels are bounded: route names, methods, status codes and upstream
// target kinds; never paths, repos or credentials.
type Metrics struct {
	Registry *prometheus.Registry

	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	servedBytes     *prometheus.CounterVec
	inFlight        prometheus.Gauge
	rejected        *prometheus.CounterVec
	reserved        prometheus.Gauge
	queued          prometheus.Gauge     // downloads waiting for admission (limits.go)
	queueWait       prometheus.Histogram // time spent in that queue, admitted or not
	firstByte       prometheus.Histogram
	aborted         *prometheus.CounterVec
	upstreamReqs    *prometheus.CounterVec
	upstreamBytes   *prometheus.CounterVec
	upstreamLatency *prometheus.HistogramVec
	upstreamRetries *prometheus.CounterVec
	downloads       *prometheus.CounterVec // by repo_type, outcome (audit.go)
	downloadBytes   *prometheus.CounterVec // by repo_type, source (audit.go)
}

// NewMetrics creates the metrics on a new registry, together with the Go
// runtime and process collectors and a build-info gauge.
func NewMetrics(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xetproxy_http_requests_total", Help: "HTTP requests answered, by route, method and status (499 = client went away).",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xetproxy_http_request_duration_seconds", Help: "Time from request to the end of the answer, by route.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 15, 60, 300, 1800},
		}, []string{"route"}),
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xetproxy_served_bytes_total", Help: "File bytes sent to clients, by route.",
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xetproxy_downloads_in_flight", Help: "Downloads holding a slot now.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xetproxy_downloads_rejected_total", Help: "Downloads refused with 503, by reason (queue_full, queue_timeout, draining; slots or buffer when there is no queue).",
		}, []string{"reason"}),
		reserved: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xetproxy_buffer_reserved_bytes", Help: "Bytes of --max-buffer reserved at admission by downloads in flight.",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xetproxy_downloads_queued", Help: "Downloads waiting for a slot (or budget) in the admission queue.",
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xetproxy_download_queue_wait_seconds", Help: "Time downloads spent in the admission queue, whether admitted, timed out or gone.",
			Buckets: []float64{.01, .05, .1, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
		firstByte: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xetproxy_download_first_byte_seconds", Help: "Time from request to the status line of a download (resolve, token, first bytes).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		aborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xetproxy_downloads_aborted_total", Help: "Downloads cut after the status line, by reason (client, upstream, stall).",
		}, []string{"reason"}),
		upstreamReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xetproxy_upstream_requests_total", Help: "Requests sent upstream, by target (hub, cas) and status (error = no answer).",
		}, []string{"target", "code"}),
		upstreamBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xetproxy_upstream_bytes_total", Help: "Response body bytes read from upstream, by target.",
		}, []string{"target"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xetproxy_upstream_request_duration_seconds", Help: "Time to the upstream response headers, by target.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"target"}),
		upstreamRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xetproxy_upstream_retries_total", Help: "Upstream requests repeated after a retryable failure, by target.",
		}, []string{"target"}),
	}
	m.downloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xetproxy_downloads_total", Help: "Requests on the download routes that named a repo, by repo type and outcome (ok, refused, unauthorized, not_found, client_error, overloaded, upstream_error, aborted, client_gone).",
	}, []string{"repo_type", "outcome"})
	m.downloadBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xetproxy_download_bytes_total", Help: "File bytes sent by the download routes, by repo type and where they came from (cache, shared = another request's fill, upstream).",
	}, []string{"repo_type", "source"})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xetproxy_build_info", Help: "Always 1; the version label tells the build.",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	reg.MustRegister(m.requests, m.duration, m.servedBytes, m.inFlight, m.rejected, m.reserved, m.queued, m.queueWait,
		m.firstByte, m.aborted, m.upstreamReqs, m.upstreamBytes, m.upstreamLatency, m.upstreamRetries, m.downloads, m.downloadBytes, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

func (m *Metrics) observeRequest(route, method string, status int, d time.Duration) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch:
	default:
		method = "other"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// UpstreamRetry counts one retry of an upstream request; the download
// engine calls it through its retry hook.
func (m *Metrics) UpstreamRetry(target string) { m.upstreamRetries.WithLabelValues(target).Inc() }

// Transport decorates base so that every upstream request is counted and
// timed, and its response bytes are counted. Requests to the Hub's host are
// labelled "hub", all others (CAS, presigned transfer URLs) "cas".
func (m *Metrics) Transport(base http.RoundTripper, hubURL string) http.RoundTripper {
	host := ""
	if u, err := url.Parse(hubURL); err == nil {
		host = u.Host
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &meteredTransport{base: base, m: m, hubHost: host, failed: map[string]time.Time{}}
}

// meteredTransport counts upstream requests, bytes and latency, and
// recognises retries: a request identical (method, URL, Range) to one that
// failed (no answer, 408, 429, 5xx, or a body cut short) within
// retryWindow is a retry. The Hub and CAS clients retry only after such
// failures, so this counts their retries without a hook into either.
type meteredTransport struct {
	base    http.RoundTripper
	m       *Metrics
	hubHost string

	mu     sync.Mutex
	failed map[string]time.Time // request key → when it failed
}

const (
	retryWindow   = 5 * time.Minute
	maxFailedKeys = 4096
)

func requestKey(req *http.Request) string {
	return req.Method + " " + req.URL.String() + " " + req.Header.Get("Range")
}

// markFailed remembers that the request with key failed.
func (t *meteredTransport) markFailed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.failed) >= maxFailedKeys {
		now := time.Now()
		for k, at := range t.failed {
			if now.Sub(at) > retryWindow || len(t.failed) >= maxFailedKeys {
				delete(t.failed, k)
			}
		}
	}
	t.failed[key] = time.Now()
}

// isRetry reports (and forgets) an earlier failure of key.
func (t *meteredTransport) isRetry(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.failed[key]
	if ok {
		delete(t.failed, key)
	}
	return ok && time.Since(at) <= retryWindow
}

func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

var _ http.RoundTripper = (*meteredTransport)(nil)

func (t *meteredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	target := "cas"
	if req.URL.Host == t.hubHost {
		target = "hub"
	}
	key := requestKey(req)
	if t.isRetry(key) {
		t.m.upstreamRetries.WithLabelValues(target).Inc()
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	t.m.upstreamLatency.WithLabelValues(target).Observe(time.Since(start).Seconds())
	if err != nil {
		t.m.upstreamReqs.WithLabelValues(target, "error").Inc()
		if req.Context().Err() == nil {
			t.markFailed(key)
		}
		return nil, err
	}
	t.m.upstreamReqs.WithLabelValues(target, strconv.Itoa(resp.StatusCode)).Inc()
	if retryableStatus(resp.StatusCode) {
		t.markFailed(key)
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, c: t.m.upstreamBytes.WithLabelValues(target), t: t, key: key, ctx: req.Context()}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	c   prometheus.Counter
	t   *meteredTransport
	key string
	ctx context.Context
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.c.Add(float64(n))
	}
	if err != nil && err != io.EOF && b.ctx.Err() == nil {
		b.t.markFailed(b.key) // a body cut short: the same request may follow
	}
	return n, err
}

// ObserveEngine exports the download engine's cache at every scrape: the
// engine's counters (where served bytes came from, lookups, fills, writes)
// and the Stats of each store of its cache, labelled by tier (memory,
// disk, s3). Call it once per engine.
func (m *Metrics) ObserveEngine(e *proxy.Engine) {
	m.Registry.MustRegister(newCacheCollector(e))
}

// cacheCollector reads the engine's and the stores' counters when scraped,
// so the hot path pays nothing for metrics.
type cacheCollector struct {
	e     *proxy.Engine
	tiers []namedTier
	descs map[string]*prometheus.Desc
}

type namedTier struct {
	name  string
	store cache.StatsReporter
	// queue is set for the shared tier of a cache.Tiered: its write queue
	// and the writes it dropped are the Tiered store's.
	queue *cache.Tiered
}

// cacheTiers lists the leaf stores of a cache, naming each by its kind.
func cacheTiers(s cache.Store) []namedTier {
	var out []namedTier
	var walk func(s cache.Store, queue *cache.Tiered)
	walk = func(s cache.Store, queue *cache.Tiered) {
		name := ""
		switch v := s.(type) {
		case nil:
			return
		case *cache.Tiered:
			walk(v.Local(), nil)
			walk(v.Shared(), v)
			return
		case *cache.Memory:
			name = "memory"
		case *cache.Disk:
			name = "disk"
		case *cache.S3:
			name = "s3"
		default:
			name = "other"
		}
		r, ok := s.(cache.StatsReporter)
		if !ok {
			return
		}
		for _, t := range out {
			if t.name == name {
				name = fmt.Sprintf("%s%d", name, len(out))
			}
		}
		out = append(out, namedTier{name: name, store: r, queue: queue})
	}
	walk(s, nil)
	return out
}

func newCacheCollector(e *proxy.Engine) *cacheCollector {
	c := &cacheCollector{e: e, tiers: cacheTiers(e.Cache()), descs: map[string]*prometheus.Desc{}}
	tier := []string{"tier"}
	for name, help := range map[string]string{
		"xetproxy_cache_tier_hits_total":         "Lookups a cache tier answered.",
		"xetproxy_cache_tier_misses_total":       "Lookups a cache tier did not hold.",
		"xetproxy_cache_tier_hit_bytes_total":    "Decoded bytes cache tier hits returned.",
		"xetproxy_cache_tier_puts_total":         "Entries written to a cache tier.",
		"xetproxy_cache_tier_put_bytes_total":    "Decoded bytes written to a cache tier.",
		"xetproxy_cache_tier_evictions_total":    "Entries a cache tier dropped to stay within its capacity.",
		"xetproxy_cache_tier_corrupt_total":      "Stored entries found damaged (checksum or hash) and deleted.",
		"xetproxy_cache_tier_errors_total":       "Cache tier failures other than misses (I/O, bucket errors).",
		"xetproxy_cache_tier_dropped_total":      "Writes to the shared tier given up: queue full after waiting for room, or the entry gone from the disk before its upload (logged at warn).",
		"xetproxy_cache_tier_queue_bytes":        "Bytes waiting to be written to the shared tier (on the disk tier when there is one, else in memory).",
		"xetproxy_cache_tier_queue_memory_bytes": "Memory the shared tier's write queue holds.",
		"xetproxy_cache_tier_queue_waits_total":  "Cache writes that waited for room in the shared tier's queue (the fill slowed to the bucket's pace).",
		"xetproxy_cache_tier_entries":            "Entries a cache tier holds (s3: the keys this instance knows of).",
		"xetproxy_cache_tier_manifests":          "Xorb manifests a cache tier holds (s3: the ones this instance knows of).",
		"xetproxy_cache_tier_size_bytes":         "Bytes a cache tier holds, stored form (s3: of the keys this instance knows of).",
		"xetproxy_cache_tier_capacity_bytes":     "Configured capacity of a cache tier (0: unbounded, e.g. s3).",
	} {
		c.descs[name] = prometheus.NewDesc(name, help, tier, nil)
	}
	for name, help := range map[string]string{
		"xetproxy_cache_lookups_total":         "Segment lookups of the download engine in its cache, by result (hit, miss, error).",
		"xetproxy_cache_writes_total":          "Segments the download engine wrote to its cache, by result (ok, error).",
		"xetproxy_cache_fills_total":           "Cache fills started: xorb ranges fetched once from upstream for every request needing them.",
		"xetproxy_cache_fill_failures_total":   "Cache fills that failed (upstream or integrity errors).",
		"xetproxy_cache_fill_joins_total":      "Requests that joined a fill another request had started instead of fetching the range again.",
		"xetproxy_cache_fill_bytes_total":      "Decoded bytes cache fills fetched from upstream.",
		"xetproxy_cache_fallbacks_total":       "Xorb ranges a request had to fetch again for itself (its fill had moved on and the cache no longer held the bytes).",
		"xetproxy_cache_purges_total":          "Chunk ranges deleted from the cache after a failed integrity check.",
		"xetproxy_cache_fills_in_flight":       "Cache fills running now.",
		"xetproxy_cache_fill_buffer_bytes":     "Decoded bytes cache fills hold in memory now.",
		"xetproxy_download_source_bytes_total": "Xet file bytes sent to clients, by where their chunks came from (cache, shared = another request's fill, upstream).",
		"xetproxy_proofs_total":                "Proofs of content: xorb = a fetch of a whole xorb hashed to its name (its manifest is kept), file = a whole-file read whose Xet file hash checked.",
		"xetproxy_integrity_failures_total":    "Content that failed its proof: file_hash = a whole-file read, manifest = a chunk (fetched or cached) against its xorb's manifest.",
		"xetproxy_cache_staged_bytes_total":    "Decoded bytes put in the staging store to await a proof.",
		"xetproxy_cache_promoted_bytes_total":  "Staged bytes moved to the cache once proven.",
		"xetproxy_unverified_bytes_total":      "Bytes sent to ranged reads whose chunks no proof covered (no manifest of their xorb): lengths checked, content not.",
		"xetproxy_cas_chunk_bytes_total":       "Decoded chunk bytes of the xorb ranges served to Xet clients, by where they came from (cache, upstream).",
		"xetproxy_cas_joins_total":             "Waits of xorb ranges served to Xet clients for another request's upstream fetch to put chunks they missed in the cache, one per segment waited for (result: joined, stalled = gave up on a fetch that stopped moving).",
		"xetproxy_cas_served_bytes_total":      "Bytes of the xorb ranges handed to Xet clients (chunk records with their headers).",
		"xetproxy_cache_hit_bytes_total":       "Decoded bytes of the download engine's cache hits.",
		"xetproxy_cache_write_bytes_total":     "Decoded bytes the download engine wrote to its cache (puts and promotions).",
		"xetproxy_cache_adopted_bytes_total":   "Promoted bytes whose staged files became cache entries as they were (linked, not copied).",
		"xetproxy_cache_staging_reads_total":   "Staged segments a request read back from the staging store because its fill had let go of them.",
		"xetproxy_cache_kept_evictions_total":  "Segments a fill kept in memory for the requests reading it and let go of to make room for its next segment.",
		"xetproxy_cache_sendfile_bytes_total":  "Xet file bytes sent to clients straight from disk cache files (sendfile), part of the cache and shared sources.",
	} {
		var labels []string
		switch name {
		case "xetproxy_cache_lookups_total", "xetproxy_cache_writes_total":
			labels = []string{"result"}
		case "xetproxy_download_source_bytes_total", "xetproxy_cas_chunk_bytes_total":
			labels = []string{"source"}
		case "xetproxy_cas_joins_total":
			labels = []string{"result"}
		case "xetproxy_proofs_total":
			labels = []string{"kind"}
		case "xetproxy_integrity_failures_total":
			labels = []string{"check"}
		}
		c.descs[name] = prometheus.NewDesc(name, help, labels, nil)
	}
	return c
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v, labels...)
	}
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	for _, t := range c.tiers {
		s := t.store.Stats()
		counter("xetproxy_cache_tier_hits_total", float64(s.Hits), t.name)
		counter("xetproxy_cache_tier_misses_total", float64(s.Misses), t.name)
		counter("xetproxy_cache_tier_hit_bytes_total", float64(s.HitBytes), t.name)
		counter("xetproxy_cache_tier_puts_total", float64(s.Puts), t.name)
		counter("xetproxy_cache_tier_put_bytes_total", float64(s.PutBytes), t.name)
		counter("xetproxy_cache_tier_evictions_total", float64(s.Evictions), t.name)
		counter("xetproxy_cache_tier_corrupt_total", float64(s.Corrupt), t.name)
		counter("xetproxy_cache_tier_errors_total", float64(s.Errors), t.name)
		dropped := s.Dropped
		if t.queue != nil {
			q := t.queue.Queue()
			dropped += q.Dropped
			gauge("xetproxy_cache_tier_queue_bytes", float64(q.Bytes), t.name)
			gauge("xetproxy_cache_tier_queue_memory_bytes", float64(q.MemBytes), t.name)
			counter("xetproxy_cache_tier_queue_waits_total", float64(q.Waits), t.name)
		}
		counter("xetproxy_cache_tier_dropped_total", float64(dropped), t.name)
		gauge("xetproxy_cache_tier_entries", float64(s.Entries), t.name)
		gauge("xetproxy_cache_tier_manifests", float64(s.Manifests), t.name)
		gauge("xetproxy_cache_tier_size_bytes", float64(s.Size), t.name)
		gauge("xetproxy_cache_tier_capacity_bytes", float64(s.Capacity), t.name)
	}
	st := c.e.CacheStats()
	counter("xetproxy_cache_lookups_total", float64(st.Hits), "hit")
	counter("xetproxy_cache_lookups_total", float64(st.Misses), "miss")
	counter("xetproxy_cache_lookups_total", float64(st.GetErrors), "error")
	counter("xetproxy_cache_writes_total", float64(st.Puts), "ok")
	counter("xetproxy_cache_writes_total", float64(st.PutErrors), "error")
	counter("xetproxy_cache_fills_total", float64(st.Fills))
	counter("xetproxy_cache_fill_failures_total", float64(st.FillErrors))
	counter("xetproxy_cache_fill_joins_total", float64(st.FillJoins))
	counter("xetproxy_cache_fill_bytes_total", float64(st.FillBytes))
	counter("xetproxy_cache_fallbacks_total", float64(st.Fallbacks))
	counter("xetproxy_cache_purges_total", float64(st.Purges))
	gauge("xetproxy_cache_fills_in_flight", float64(st.FillsInFlight))
	gauge("xetproxy_cache_fill_buffer_bytes", float64(st.FillBufferUsed))
	counter("xetproxy_download_source_bytes_total", float64(st.ServedCache), "cache")
	counter("xetproxy_download_source_bytes_total", float64(st.ServedShared), "shared")
	counter("xetproxy_download_source_bytes_total", float64(st.ServedUpstream), "upstream")
	counter("xetproxy_proofs_total", float64(st.XorbProofs), "xorb")
	counter("xetproxy_proofs_total", float64(st.FileProofs), "file")
	counter("xetproxy_integrity_failures_total", float64(st.FileMismatches), "file_hash")
	counter("xetproxy_integrity_failures_total", float64(st.ProofFailures), "manifest")
	counter("xetproxy_cache_staged_bytes_total", float64(st.StagedBytes))
	counter("xetproxy_cache_promoted_bytes_total", float64(st.PromotedBytes))
	counter("xetproxy_unverified_bytes_total", float64(st.ServedUnverified))
	counter("xetproxy_cas_chunk_bytes_total", float64(st.XorbFromCache), "cache")
	counter("xetproxy_cas_chunk_bytes_total", float64(st.XorbFromUpstream), "upstream")
	counter("xetproxy_cas_joins_total", float64(st.XorbJoins), "joined")
	counter("xetproxy_cas_joins_total", float64(st.XorbJoinStalls), "stalled")
	counter("xetproxy_cas_served_bytes_total", float64(st.XorbServed))
	counter("xetproxy_cache_hit_bytes_total", float64(st.HitBytes))
	counter("xetproxy_cache_write_bytes_total", float64(st.PutBytes))
	counter("xetproxy_cache_adopted_bytes_total", float64(st.AdoptedBytes))
	counter("xetproxy_cache_staging_reads_total", float64(st.StagingReads))
	counter("xetproxy_cache_kept_evictions_total", float64(st.KeptEvicted))
	counter("xetproxy_cache_sendfile_bytes_total", float64(st.SentFromFile))
}
