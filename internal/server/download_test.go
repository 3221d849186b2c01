package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

type answer struct {
	status int
	header http.Header
	body   []byte
	err    error // body read error
}

func (f *fixture) do(method, path string, hdr ...string) answer {
	f.t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, b, err}
}

// TestDownloadWhole runs in both modes: plain clients get the same bytes
// and headers; Xet mode adds the Xet headers of Xet files on the path
// routes, and nothing else.
func TestDownloadWhole(t *testing.T) {
	for _, xet := range []bool{false, true} {
		t.Run(fmt.Sprintf("xet=%v", xet), func(t *testing.T) { testDownloadWhole(t, xet) })
	}
}

func testDownloadWhole(t *testing.T, xet bool) {
	f := newFixture(t, func(c *Config) { c.Xet, c.SigningKey = xet, xetTestKey })
	for _, path := range []string{"/download/org/m/model.safetensors", "/org/m/resolve/main/model.safetensors", "/download/org/m/model.safetensors?revision=main"} {
		a := f.do("GET", path)
		if a.status != 200 || !bytes.Equal(a.body, f.big.data) || a.err != nil {
			t.Fatalf("%s: %d, %d bytes, %v", path, a.status, len(a.body), a.err)
		}
		h := a.header
		etag := `"` + f.big.etag + `"`
		for k, want := range map[string]string{
			"Content-Length": itoa(int64(len(f.big.data))), "Accept-Ranges": "bytes", "ETag": etag,
			"X-Linked-Etag": etag, "X-Linked-Size": itoa(int64(len(f.big.data))), "X-Repo-Commit": f.commit,
			"Content-Type": "application/octet-stream",
		} {
			if h.Get(k) != want {
				t.Errorf("%s: %s = %q, want %q", path, k, h.Get(k), want)
			}
		}
		if cd := h.Get("Content-Disposition"); !strings.Contains(cd, `filename="model.safetensors"`) {
			t.Errorf("%s: Content-Disposition %q", path, cd)
		}
		if xet {
			if h.Get("X-Xet-Hash") != f.big.xetHash.String() || !strings.HasPrefix(h.Get("X-Xet-Refresh-Route"), f.ts.URL+"/api/models/org/m/xet-read-token/") ||
				!strings.Contains(h.Get("Link"), `rel="xet-reconstruction-info"`) {
				t.Errorf("%s: Xet headers %v", path, h)
			}
			continue
		}
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "x-xet") {
				t.Errorf("%s: Xet header %s leaked", path, k)
			}
		}
		if h.Get("Link") != "" {
			t.Errorf("%s: Link header %q", path, h.Get("Link"))
		}
	}
	a := f.do("GET", "/org/m/resolve/main/config.json")
	if a.status != 200 || string(a.body) != `{"a":1}` || a.header.Get("Content-Type") != "application/json" ||
		a.header.Get("X-Linked-Etag") != "" || a.header.Get("ETag") != `"`+f.small.etag+`"` || a.header.Get("X-Xet-Hash") != "" ||
		!strings.HasPrefix(a.header.Get("Content-Disposition"), "inline;") {
		t.Errorf("plain file: %d %v %q", a.status, a.header, a.body)
	}
	a = f.do("GET", "/org/m/resolve/refs%2Fpr%2F1/sub/dir/w.bin")
	if a.status != 200 || !bytes.Equal(a.body, f.big.data[:1000]) {
		t.Errorf("refs/pr/1 sub-directory: %d", a.status)
	}
	a = f.do("GET", "/download/org/m/sub/dir/w.bin?revision=refs/pr/1")
	if a.status != 200 || len(a.body) != 1000 {
		t.Errorf("/download refs/pr/1: %d", a.status)
	}
	a = f.do("GET", "/datasets/org/d/resolve/main/data/train.csv")
	if a.status != 200 || string(a.body) != "a,b\n1,2\n" {
		t.Errorf("dataset resolve: %d %q", a.status, a.body)
	}
	a = f.do("GET", "/download/datasets/org/d/data/train.csv")
	if a.status != 200 || string(a.body) != "a,b\n1,2\n" {
		t.Errorf("dataset download: %d %q", a.status, a.body)
	}
	a = f.do("GET", "/download/org/m/empty.txt")
	if a.status != 200 || len(a.body) != 0 || a.header.Get("Content-Length") != "0" {
		t.Errorf("empty: %d %v", a.status, a.header)
	}
	h := f.big.xetHash.String()
	a = f.do("GET", "/download-hash/"+h+"?repo=org/m&filename=weights.safetensors")
	if a.status != 200 || !bytes.Equal(a.body, f.big.data) || !strings.Contains(a.header.Get("Content-Disposition"), "weights.safetensors") || a.header.Get("X-Xet-Hash") != "" {
		t.Errorf("download-hash: %d %v", a.status, a.header)
	}
	a = f.do("GET", "/download-hash/"+h[:10]+"?repo=org/m")
	if a.status != 400 || a.header.Get("X-Error-Code") != "InvalidHash" {
		t.Errorf("bad hash: %d", a.status)
	}
}

func TestDownloadHead(t *testing.T) {
	f := newFixture(t, nil)
	for _, path := range []string{"/download/org/m/model.safetensors", "/org/m/resolve/main/model.safetensors", "/download-hash/" + f.big.xetHash.String() + "?repo=org/m"} {
		a := f.do("HEAD", path)
		if a.status != 200 || len(a.body) != 0 || a.header.Get("Content-Length") != itoa(int64(len(f.big.data))) {
			t.Errorf("HEAD %s: %d %v", path, a.status, a.header)
		}
		// /download-hash names content, not a revision: the engine
		// resolves no commit for it, so only the path routes carry one.
		if !strings.HasPrefix(path, "/download-hash/") && a.header.Get("X-Repo-Commit") != f.commit {
			t.Errorf("HEAD %s: X-Repo-Commit %q, want %s", path, a.header.Get("X-Repo-Commit"), f.commit)
		}
	}
	a := f.do("HEAD", "/download/org/m/model.safetensors", "Range", "bytes=10-19")
	if a.status != 206 || a.header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", len(f.big.data)) || a.header.Get("Content-Length") != "10" {
		t.Errorf("HEAD range: %d %v", a.status, a.header)
	}
	if n := f.opens(); n != 0 {
		t.Errorf("HEAD opened %d downloads", n)
	}
}

func TestDownloadRanges(t *testing.T) {
	f := newFixture(t, nil)
	size := int64(len(f.big.data))
	tests := []struct {
		rng        string
		status     int
		start, end int64 // expected body = data[start:end]
	}{
		{"bytes=0-0", 206, 0, 1},
		{"bytes=100-199", 206, 100, 200},
		{"bytes=100-", 206, 100, size},
		{"bytes=-500", 206, size - 500, size},
		{"bytes=-99999999999", 206, 0, size},
		{fmt.Sprintf("bytes=%d-", size-1), 206, size - 1, size},
		{fmt.Sprintf("bytes=5-%d", size+1000), 206, 5, size},
		{"bytes=0-1,5-9", 200, 0, size},
		{"items=0-5", 200, 0, size},
		{fmt.Sprintf("bytes=%d-", size), 416, 0, 0},
		{"bytes=-0", 416, 0, 0},
		{"bytes=abc", 416, 0, 0},
		{"bytes=9-3", 416, 0, 0},
		{"bytes=--1", 416, 0, 0},
	}
	for _, tc := range tests {
		a := f.do("GET", "/download/org/m/model.safetensors", "Range", tc.rng)
		if a.status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.rng, a.status, tc.status)
			continue
		}
		switch tc.status {
		case 206:
			if !bytes.Equal(a.body, f.big.data[tc.start:tc.end]) || a.header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end-1, size) {
				t.Errorf("%s: %d bytes, Content-Range %q", tc.rng, len(a.body), a.header.Get("Content-Range"))
			}
		case 200:
			if !bytes.Equal(a.body, f.big.data) || a.header.Get("Content-Range") != "" {
				t.Errorf("%s: whole file expected", tc.rng)
			}
		case 416:
			if a.header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) || a.header.Get("X-Error-Code") != "RangeNotSatisfiable" {
				t.Errorf("%s: 416 headers %v", tc.rng, a.header)
			}
		}
	}
	a := f.do("GET", "/download/org/m/empty.txt", "Range", "bytes=0-0")
	if a.status != 416 || a.header.Get("Content-Range") != "bytes */0" {
		t.Errorf("empty range: %d %v", a.status, a.header)
	}
	// what @huggingface/hub sends first: a plain 206 makes it download plainly
	a = f.do("GET", "/org/m/resolve/main/model.safetensors", "Range", "bytes=0-0", "Accept", "application/vnd.xet-fileinfo+json, */*")
	if a.status != 206 || a.header.Get("Content-Range") != fmt.Sprintf("bytes 0-0/%d", size) || len(a.body) != 1 ||
		strings.Contains(a.header.Get("Content-Type"), "xet") || a.header.Get("X-Xet-Hash") != "" || a.header.Get("Link") != "" {
		t.Errorf("xet fileinfo probe: %d %v", a.status, a.header)
	}
}

func TestDownloadConditional(t *testing.T) {
	f := newFixture(t, nil)
	etag := `"` + f.big.etag + `"`
	p := "/download/org/m/model.safetensors"
	a := f.do("GET", p, "If-None-Match", etag)
	if a.status != 304 || len(a.body) != 0 || a.header.Get("ETag") != etag {
		t.Errorf("If-None-Match: %d %v", a.status, a.header)
	}
	a = f.do("HEAD", p, "If-None-Match", `W/`+etag)
	if a.status != 304 {
		t.Errorf("weak If-None-Match on HEAD: %d", a.status)
	}
	a = f.do("GET", p, "If-None-Match", `"other"`, "Range", "bytes=0-9")
	if a.status != 206 || len(a.body) != 10 {
		t.Errorf("If-None-Match mismatch: %d", a.status)
	}
	a = f.do("GET", p, "If-Range", etag, "Range", "bytes=0-9")
	if a.status != 206 || len(a.body) != 10 {
		t.Errorf("If-Range match: %d", a.status)
	}
	a = f.do("GET", p, "If-Range", `"stale"`, "Range", "bytes=0-9")
	if a.status != 200 || !bytes.Equal(a.body, f.big.data) {
		t.Errorf("If-Range mismatch: %d %d bytes", a.status, len(a.body))
	}
	a = f.do("GET", p, "If-Match", `"stale"`)
	if a.status != 412 {
		t.Errorf("If-Match mismatch: %d", a.status)
	}
	if n := f.opens(); n != 3 {
		t.Errorf("opens = %d, want 3 (304 and 412 must not download)", n)
	}
}

func TestDownloadAuth(t *testing.T) {
	const key = "key-0123456789abcdef"
	f := newFixture(t, func(c *Config) {
		c.ServerTokenEnabled, c.ServerToken, c.APIKeys = true, readerToken, []string{key}
	})
	p := "/org/private/resolve/main/w.bin"
	tests := []struct {
		hdr    []string
		status int
		code   string
	}{
		{nil, 401, "RepoNotFound"},
		{[]string{"Authorization", "Bearer " + userToken}, 404, "RepoNotFound"},
		{[]string{"Authorization", "Bearer " + readerToken}, 200, ""},
		{[]string{"X-Proxy-Key", key}, 200, ""},
		{[]string{"Authorization", "Bearer " + key}, 200, ""},
		{[]string{"X-Proxy-Key", "key-not-a-valid-key"}, 401, "InvalidProxyKey"},
	}
	for _, tc := range tests {
		a := f.do("GET", p, tc.hdr...)
		if a.status != tc.status || a.header.Get("X-Error-Code") != tc.code {
			t.Errorf("%v: %d %q, want %d %q", tc.hdr, a.status, a.header.Get("X-Error-Code"), tc.status, tc.code)
		}
	}
	// The downloads used a token that may read the repo (readerToken, the
	// only one), all the same one: a single read token was minted.
	var minted []fakehub.Request
	for _, r := range f.fh.Requests() {
		if r.Class == fakehub.ClassToken {
			minted = append(minted, r)
		}
	}
	if len(minted) != 1 || minted[0].Status != 200 || !minted[0].HasAuth {
		t.Errorf("read tokens minted upstream: %+v, want one, with a reader's token", minted)
	}
	f2 := newFixture(t, func(c *Config) { c.APIKeys = []string{key} }) // server token not enabled
	if a := f2.do("GET", p, "X-Proxy-Key", key); a.status != 401 {
		t.Errorf("key without server token enabled: %d", a.status)
	}
	a := f.do("GET", "/org/m/resolve/main/missing.bin")
	if a.status != 404 || a.header.Get("X-Error-Code") != "EntryNotFound" {
		t.Errorf("missing entry: %d %v", a.status, a.header)
	}
}

func TestDownloadMalformed(t *testing.T) {
	f := newFixture(t, nil)
	for _, p := range []string{
		"/download/org/m/../m/model.safetensors", "/download/org/m/%2E%2E/x", "/download/org/m/a%2Fb",
		"/org/m/resolve/main/%2e%2e/%2e%2e/etc/passwd", "/org/m/resolve/..%2F..%2Fmain/x", "/download/org/m//x",
		"/download/org/m/x%00y", "/download/or%20g/m/x", "/download-hash/zz?repo=org/m",
		"/download-hash/" + strings.Repeat("0", 64) + "?repo=../etc",
	} {
		req, _ := http.NewRequest("GET", f.ts.URL, nil)
		req.URL.Opaque = p // send the path exactly as written
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", p, res.StatusCode)
		}
	}
	if n := f.fh.Stats().Total().Requests; n != 0 {
		t.Errorf("malformed requests reached the Hub %d times", n)
	}
}

func TestDownloadUpstreamErrors(t *testing.T) {
	f := newFixture(t, nil)
	p := "/download/org/m/model.safetensors"
	remove := f.fh.InjectFault(fakehub.Fault{Class: fakehub.ClassResolve, Status: 503}) // every resolve
	if a := f.do("GET", p); a.status != 502 || a.header.Get("X-Error-Code") != "UpstreamError" {
		t.Errorf("hub 503: %d %q", a.status, a.header.Get("X-Error-Code"))
	}
	remove()
	a := f.do("GET", "/org/gated/resolve/main/w.bin", "Authorization", "Bearer "+userToken)
	if a.status != 403 || a.header.Get("X-Error-Code") != "GatedRepo" || !strings.Contains(a.header.Get("X-Error-Message"), "restricted") {
		t.Errorf("gated: %d %v", a.status, a.header)
	}
	remove = f.fh.InjectFault(fakehub.Fault{Class: fakehub.ClassReconstruction, Status: 500}) // every query
	if a := f.do("GET", p); a.status != 502 || a.header.Get("X-Error-Code") != "UpstreamError" {
		t.Errorf("open failure: %d", a.status)
	}
	remove()
	// The first chunk header of every xorb is garbage: the first read fails.
	f.fh.CorruptXorb(merklehash.Zero, 0, 1)
	if a := f.do("GET", p); a.status != 502 || a.header.Get("X-Error-Code") != "IntegrityError" {
		t.Errorf("failure before the first byte: %d %q, want 502 IntegrityError", a.status, a.header.Get("X-Error-Code"))
	}
	f.fh.ClearFaults()
	// failure after the status line: the client must see a broken transfer.
	// The last chunk header of the file is garbage. The engine decodes no
	// further ahead of the reader than its read-ahead (ReadAhead, 1 MiB), so
	// it reaches that header only after about 2 MiB went out.
	hdrs := chunkHeaders(f.big.data)
	f.fh.CorruptXorb(merklehash.Zero, hdrs[len(hdrs)-1], 1)
	a = f.do("GET", p)
	if a.status != 200 || a.err == nil || len(a.body) >= len(f.big.data) {
		t.Errorf("mid-stream failure: %d, %d bytes, err %v (want a read error)", a.status, len(a.body), a.err)
	}
	a = f.do("GET", p, "Range", "bytes=100-")
	if a.status != 206 || a.err == nil {
		t.Errorf("mid-stream failure in a range: %d, err %v", a.status, a.err)
	}

	// The Hub answers too slowly: the engine's own timeout, not ours.
	ft := newFixtureWith(t, nil, engineOptions{hubHeaderTimeout: 200 * time.Millisecond})
	ft.fh.SetLatency(fakehub.ClassResolve, time.Minute)
	if a := ft.do("GET", p); a.status != 504 {
		t.Errorf("timeout: %d", a.status)
	}
}

// A file whose content fails its hash before a byte went out (here a
// one-chunk file, stored uncompressed, with a flipped payload byte: it
// decodes fine) gets a 502 with the integrity code, after one more try.
func TestDownloadIntegrityFailureBeforeFirstByte(t *testing.T) {
	f := newFixture(t, nil)
	p := "/download/org/m/sub/dir/w.bin?revision=refs%2Fpr%2F1"
	if a := f.do("GET", p); a.status != 200 || !bytes.Equal(a.body, f.big.data[:1000]) {
		t.Fatalf("healthy: %d, %d bytes", a.status, len(a.body))
	}
	f.fh.CorruptXorb(merklehash.Zero, xorb.HeaderSize+500, 1) // a payload byte of chunk 0 of every xorb
	f.fh.ResetStats()
	a := f.do("GET", p)
	if a.status != 502 || a.header.Get("X-Error-Code") != "IntegrityError" || len(a.body) == 1000 {
		t.Fatalf("corrupt: %d %q, %d bytes", a.status, a.header.Get("X-Error-Code"), len(a.body))
	}
	if n := f.fh.Stats()[fakehub.ClassXorb].Requests; n != 2 {
		t.Fatalf("%d xorb fetches, want 2 (one more try)", n)
	}
	f.fh.ClearFaults()
	if a := f.do("GET", p); a.status != 200 || !bytes.Equal(a.body, f.big.data[:1000]) {
		t.Fatalf("healthy again: %d, %d bytes", a.status, len(a.body))
	}
}

// The Hub rate limiting the proxy is passed on as 429 with a Retry-After:
// the Hub's own when it gave one, ours otherwise (after the Hub client's
// retries), so that clients back off instead of failing.
func TestDownloadHubRateLimited(t *testing.T) {
	f := newFixture(t, nil)
	p := "/download/org/m/model.safetensors"
	for _, tc := range []struct {
		hubRetryAfter time.Duration
		want          string
	}{
		{7 * time.Second, "7"},         // longer than the client waits: passed on at once
		{0, retryAfterSeconds},         // none from the Hub: ours
		{1500 * time.Millisecond, "2"}, // whole seconds, rounded up by fakehub
	} {
		f.fh.ResetStats()
		remove := f.fh.InjectFault(fakehub.Fault{Class: fakehub.ClassResolve, Status: http.StatusTooManyRequests, RetryAfter: tc.hubRetryAfter})
		a := f.do("GET", p)
		remove()
		if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != tc.want {
			t.Errorf("hub 429 (Retry-After %v): %d, Retry-After %q, want 429 and %q", tc.hubRetryAfter, a.status, a.header.Get("Retry-After"), tc.want)
		}
		if st := f.fh.Stats()[fakehub.ClassResolve]; st.Errors == 0 || st.Errors != st.Requests {
			t.Errorf("fakehub answered %d resolves, %d of them errors: the 429 did not fire", st.Requests, st.Errors)
		}
	}
	if a := f.do("GET", p); a.status != 200 || !bytes.Equal(a.body, f.big.data) {
		t.Errorf("after the rate limit: %d, %d bytes", a.status, len(a.body))
	}
}

func TestDownloadUpstreamTimeout(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.UpstreamTimeout = 100 * time.Millisecond })
	f.holdXorbs() // never released: the first read waits
	start := time.Now()
	a := f.do("GET", "/download/org/m/model.safetensors")
	if a.status != 504 || a.header.Get("X-Error-Code") != "UpstreamTimeout" {
		t.Errorf("first read past the deadline: %d", a.status)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("timeout took %v", time.Since(start))
	}
}

func TestDownloadOverload(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxDownloads = 1 })
	f.holdXorbs()
	done := make(chan answer)
	go func() {
		req, _ := http.NewRequest("GET", f.ts.URL+"/download/org/m/model.safetensors", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		done <- answer{status: res.StatusCode, body: b, err: err}
	}()
	waitFor(t, func() bool { return f.srv.adm.inFlight() == 1 })
	a := f.do("GET", "/download/org/m/config.json")
	if a.status != 503 || a.header.Get("Retry-After") == "" || a.header.Get("X-Error-Code") != "Overloaded" {
		t.Errorf("overload: %d %v", a.status, a.header)
	}
	if a := f.do("GET", "/readyz"); a.status != 503 {
		t.Errorf("readyz while full: %d", a.status)
	}
	if a := f.do("HEAD", "/download/org/m/config.json"); a.status != 200 {
		t.Errorf("HEAD while full: %d (needs no slot)", a.status)
	}
	// A lookup by hash lists the repo upstream: it needs a slot, even
	// for HEAD, and asks the Hub nothing when it gets none.
	f.fh.ResetStats()
	for _, method := range []string{"GET", "HEAD"} {
		a := f.do(method, "/download-hash/"+f.big.xetHash.String()+"?repo=org/m")
		if a.status != 503 || a.header.Get("X-Error-Code") != "Overloaded" {
			t.Errorf("%s download-hash while full: %d %v", method, a.status, a.header)
		}
	}
	if st := f.fh.Stats()[fakehub.ClassAPI]; st.Requests != 0 {
		t.Errorf("refused lookups made %d Hub API requests", st.Requests)
	}
	f.releaseXorbs()
	if a := <-done; a.status != 200 || !bytes.Equal(a.body, f.big.data) || a.err != nil {
		t.Errorf("first download: %d %d %v", a.status, len(a.body), a.err)
	}
	if a := f.do("GET", "/download/org/m/config.json"); a.status != 200 {
		t.Errorf("after the slot freed: %d", a.status)
	}
	if a := f.do("GET", "/metrics"); !bytes.Contains(a.body, []byte(`xetproxy_downloads_rejected_total{reason="slots"} 3`)) {
		t.Error("rejection not counted")
	}
}

func TestClientDisconnect(t *testing.T) {
	before := goleak.IgnoreCurrent()
	f := newFixtureWith(t, nil, engineOptions{blockSize: 1 << 20})
	// The CAS asks to come back in 30 s for the second block: the download
	// sends its first MiB, then waits.
	f.fh.FailNth(fakehub.ClassReconstruction, 2, http.StatusServiceUnavailable, 30*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.ts.URL+"/download/org/m/model.safetensors", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return f.fh.Stats()[fakehub.ClassReconstruction].Errors == 1 }) // waiting now
	cancel()
	res.Body.Close()
	// the slot is released after the engine's body is closed
	waitFor(t, func() bool { return f.srv.adm.inFlight() == 0 })
	// and the request is recorded as 499 (client gone), not as a success
	// or an upstream failure
	want := []byte(`xetproxy_http_requests_total{code="499",method="GET",route="download"} 1`)
	waitFor(t, func() bool { return bytes.Contains(f.do("GET", "/metrics").body, want) })
	f.closeAll()
	// nothing of the stream is left: not the scheduler asleep in its
	// 30-second retry, not a fetch
	goleak.VerifyNone(t, before)
}

func TestDrain(t *testing.T) {
	f := newFixture(t, nil)
	f.holdXorbs()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx, ln, nil) }()
	done := make(chan answer)
	go func() {
		res, err := http.Get("http://" + ln.Addr().String() + "/download/org/m/model.safetensors")
		if err != nil {
			done <- answer{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		done <- answer{status: res.StatusCode, body: b, err: err}
	}()
	waitFor(t, func() bool { return f.srv.adm.inFlight() == 1 })
	cancel()
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close() // a connection left open in StateNew would hold up the drain 5 s
		}
		return err != nil // stopped accepting
	})
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with a download in flight", err)
	default:
	}
	f.releaseXorbs()
	if a := <-done; a.status != 200 || !bytes.Equal(a.body, f.big.data) || a.err != nil {
		t.Errorf("download during drain: %d %d %v", a.status, len(a.body), a.err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after a clean drain: %v", err)
	}
}

func TestDrainDeadline(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.DrainTimeout = 200 * time.Millisecond })
	f.holdXorbs() // never released
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx, ln, nil) }()
	go func() {
		res, err := http.Get("http://" + ln.Addr().String() + "/download/org/m/model.safetensors")
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}()
	waitFor(t, func() bool { return f.srv.adm.inFlight() == 1 })
	cancel()
	if err := <-served; !errors.Is(err, ErrDrainTimeout) {
		t.Errorf("Serve = %v, want ErrDrainTimeout", err)
	}
}

// A path missing from a revision that exists: the Hub answers 404
// EntryNotFound with the revision's X-Repo-Commit, and so does the mirror.
// A missing revision or repo has no commit to give.
func TestDownloadMissingEntryCommit(t *testing.T) {
	f := newFixture(t, nil)
	pr, err := f.fh.Resolve("org/m", "refs/pr/1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string // on the server; the Hub's resolve URL is the same without /download
		hub    string
		status int
		code   string
		commit string
	}{
		{"/org/m/resolve/main/missing.bin", "", 404, "EntryNotFound", f.commit},
		{"/download/org/m/sub/missing.bin", "/org/m/resolve/main/sub/missing.bin", 404, "EntryNotFound", f.commit},
		{"/org/m/resolve/refs%2Fpr%2F1/missing.bin", "", 404, "EntryNotFound", pr},
		{"/org/m/resolve/" + f.commit + "/sub/dir/w.bin", "", 404, "EntryNotFound", f.commit},
		{"/org/m/resolve/nobranch/config.json", "", 404, "RevisionNotFound", ""},
		{"/org/nothere/resolve/main/config.json", "", 401, "RepoNotFound", ""},
	}
	for _, tc := range tests {
		if tc.hub == "" {
			tc.hub = tc.path
		}
		for _, method := range []string{"GET", "HEAD"} {
			a := f.do(method, tc.path)
			if a.status != tc.status || a.header.Get("X-Error-Code") != tc.code || a.header.Get("X-Repo-Commit") != tc.commit {
				t.Errorf("%s %s: %d %q commit %q, want %d %q commit %q", method, tc.path, a.status,
					a.header.Get("X-Error-Code"), a.header.Get("X-Repo-Commit"), tc.status, tc.code, tc.commit)
			}
			// what the Hub itself answers
			req, _ := http.NewRequest(method, f.hub.URL+tc.hub, nil)
			res, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != a.status || res.Header.Get("X-Error-Code") != a.header.Get("X-Error-Code") ||
				res.Header.Get("X-Repo-Commit") != a.header.Get("X-Repo-Commit") {
				t.Errorf("%s %s: the Hub answers %d %q commit %q, the mirror %d %q commit %q", method, tc.path,
					res.StatusCode, res.Header.Get("X-Error-Code"), res.Header.Get("X-Repo-Commit"),
					a.status, a.header.Get("X-Error-Code"), a.header.Get("X-Repo-Commit"))
			}
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
