package server

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	firstByte       prometheus.Histogram
	aborted         *prometheus.CounterVec
	upstreamReqs    *prometheus.CounterVec
	upstreamBytes   *prometheus.CounterVec
	upstreamLatency *prometheus.HistogramVec
	upstreamRetries *prometheus.CounterVec
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
			Name: "xetproxy_downloads_rejected_total", Help: "Downloads refused with 503, by reason (slots, buffer, draining).",
		}, []string{"reason"}),
		reserved: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xetproxy_buffer_reserved_bytes", Help: "Read-ahead bytes reserved by downloads in flight.",
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
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xetproxy_build_info", Help: "Always 1; the version label tells the build.",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	reg.MustRegister(m.requests, m.duration, m.servedBytes, m.inFlight, m.rejected, m.reserved,
		m.firstByte, m.aborted, m.upstreamReqs, m.upstreamBytes, m.upstreamLatency, m.upstreamRetries, build,
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
