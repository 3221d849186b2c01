package server

import "testing"

// ?revision=% cannot be decoded: it must not quietly become main.
func TestMalformedQueryRefused(t *testing.T) {
	f := newFixture(t, nil)
	for _, p := range []string{
		"/download/org/m/config.json?revision=%",
		"/download/org/m/config.json?revision=%zz",
		"/download/org/m/config.json?revision=main&revision=refs%2Fpr%2F1",
		"/download-hash/" + f.big.xetHash.String() + "?repo=org/m&revision=%",
		"/download-hash/" + f.big.xetHash.String() + "?repo=org/m;x",
	} {
		a := f.do("GET", p)
		if a.status != 400 || a.header.Get("X-Error-Code") != "InvalidQuery" {
			t.Errorf("GET %s: %d %s, want 400 InvalidQuery", p, a.status, a.body)
		}
	}
	if n := len(f.fh.Requests()); n != 0 {
		t.Errorf("the Hub saw %d requests", n)
	}
	// the premise: the same URL without the bad pair is served from main
	if a := f.do("GET", "/download/org/m/config.json"); a.status != 200 || string(a.body) != string(f.small.data) {
		t.Errorf("control: %d %q", a.status, a.body)
	}
}
