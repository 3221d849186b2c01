package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	c.Write(&m)
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestMeteredTransport(t *testing.T) {
	var calls atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky":
			if calls.Add(1) == 1 {
				w.WriteHeader(503)
				return
			}
		case "/missing":
			w.WriteHeader(404)
			return
		}
		io.WriteString(w, "hello")
	}))
	defer upstream.Close()
	m := NewMetrics("t")
	c := &http.Client{Transport: m.Transport(http.DefaultTransport.(*http.Transport).Clone(), upstream.URL)}
	get := func(p string) {
		res, err := c.Get(upstream.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	get("/flaky")   // 503
	get("/flaky")   // retry, 200
	get("/missing") // 404: not retryable
	get("/missing") // so not a retry
	get("/ok")
	if got := value(m.upstreamRetries.WithLabelValues("hub")); got != 1 {
		t.Errorf("retries = %v, want 1", got)
	}
	if got := value(m.upstreamReqs.WithLabelValues("hub", "200")); got != 2 {
		t.Errorf("200s = %v, want 2", got)
	}
	if got := value(m.upstreamBytes.WithLabelValues("hub")); got != 10 {
		t.Errorf("bytes = %v, want 10", got)
	}
	other := &http.Client{Transport: m.Transport(nil, "http://elsewhere.example")}
	res, err := other.Get(upstream.URL + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := value(m.upstreamReqs.WithLabelValues("cas", "200")); got != 1 {
		t.Errorf("cas 200s = %v", got)
	}
}
