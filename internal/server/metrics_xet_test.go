package server

import (
	"bytes"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// The xorb bytes the engine hands to Xet clients are exported as
// xetproxy_cas_served_bytes_total, as the engine counts them.
func TestMetricsCASServedBytes(t *testing.T) {
	f := newXetFixture(t, true, nil)
	file := f.files["org/pub/big.bin"]
	_, r := f.reconstruct(f.mustToken("models/org/pub"), file.hash, true, "")
	if r == nil || !bytes.Equal(f.rebuild(r), file.data) {
		t.Fatal("download differs")
	}
	want := f.eng.CacheStats().XorbServed
	if want == 0 {
		t.Fatal("premise: the engine served no xorb bytes")
	}
	// the fixture's server does not export its engine: a registry that
	// does
	m := NewMetrics("test")
	m.ObserveEngine(f.eng)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got := -1.0
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "xetproxy_cas_served_bytes_total "); ok {
			got, _ = strconv.ParseFloat(v, 64)
		}
	}
	if int64(got) != want {
		t.Fatalf("xetproxy_cas_served_bytes_total = %v, the engine counts %d", got, want)
	}
}
