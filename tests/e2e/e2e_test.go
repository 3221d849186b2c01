package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/sample"
	"go.uber.org/goleak"
)

// inFlight reads xetproxy_downloads_in_flight from /metrics.
func (p *proxy) inFlight() int {
	a := p.do("GET", "/metrics")
	sc := bufio.NewScanner(bytes.NewReader(a.body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "xetproxy_downloads_in_flight "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return -1
}

func TestEveryRoute(t *testing.T) {
	p := startProxy(t, nil)
	want := content[weightsKey]
	meta := files[weightsKey]

	for _, path := range []string{weightsPath, resolvePath, weightsPath + "?revision=main"} {
		a := p.do("GET", path)
		if a.status != 200 || a.err != nil || !bytes.Equal(a.body, want) {
			t.Fatalf("GET %s: %d, %d of %d bytes, %v", path, a.status, len(a.body), len(want), a.err)
		}
		if a.header.Get("ETag") != `"`+sha256hex(want)+`"` || a.header.Get("Content-Length") != strconv.Itoa(len(want)) ||
			a.header.Get("Accept-Ranges") != "bytes" || len(a.header.Get("X-Repo-Commit")) != 40 {
			t.Errorf("GET %s headers: %v", path, a.header)
		}
		checkXetHeaders(t, p, "GET "+path, a.header, xetHashOf(t, sample.ModelRepo, "model.safetensors"))
		h := p.do("HEAD", path)
		if h.status != 200 || len(h.body) != 0 || h.header.Get("Content-Length") != strconv.Itoa(len(want)) || h.header.Get("ETag") != a.header.Get("ETag") {
			t.Errorf("HEAD %s: %d %v", path, h.status, h.header)
		}
	}
	_ = meta

	// HEAD is answered from metadata: nothing is fetched from the CAS
	hub.ResetStats()
	if h := p.do("HEAD", resolvePath, "Range", "bytes=0-99"); h.status != 206 || h.header.Get("Content-Length") != "100" {
		t.Errorf("HEAD with Range: %d %v", h.status, h.header)
	}
	if st := hub.Stats(); st[fakehub.ClassXorb].Requests != 0 || st[fakehub.ClassBridge].Requests != 0 {
		t.Errorf("HEAD downloaded: %+v", st)
	}

	// every generated file, plain or Xet, in sub-directories, both repo types
	for key, f := range files {
		if f.Repo == sample.PrivateRepo {
			continue
		}
		prefix, repo := "", f.Repo
		if r, ok := strings.CutPrefix(f.Repo, "datasets/"); ok {
			prefix, repo = "datasets/", r
		}
		for _, path := range []string{"/download/" + prefix + repo + "/" + f.Path, "/" + prefix + repo + "/resolve/main/" + f.Path} {
			a := p.do("GET", path)
			if a.status != 200 || !bytes.Equal(a.body, content[key]) {
				t.Errorf("GET %s: %d, %d bytes", path, a.status, len(a.body))
			}
		}
	}

	// by Xet hash
	xh := xetHashOf(t, sample.ModelRepo, "model.safetensors")
	a := p.do("GET", "/download-hash/"+xh+"?repo="+sample.ModelRepo+"&filename=w.safetensors")
	if a.status != 200 || !bytes.Equal(a.body, want) || !strings.Contains(a.header.Get("Content-Disposition"), "w.safetensors") {
		t.Errorf("download-hash: %d %d bytes %v", a.status, len(a.body), a.header)
	}
	if a := p.do("HEAD", "/download-hash/"+xh+"?repo="+sample.ModelRepo); a.status != 200 || a.header.Get("Content-Length") != strconv.Itoa(len(want)) {
		t.Errorf("HEAD download-hash: %d %v", a.status, a.header)
	}
	if a := p.do("GET", "/download-hash/"+xh+"?repo="+sample.PrivateRepo); a.status != 401 {
		t.Errorf("download-hash against a private repo without token: %d", a.status)
	}

	// /api passthrough: Xet metadata kept in Xet mode (it leads clients to
	// the proxy's CAS), removed in plain mode; the upstream never named
	for _, path := range []string{
		"/api/models/" + sample.ModelRepo, "/api/models/" + sample.ModelRepo + "/revision/main",
		"/api/models/" + sample.ModelRepo + "/tree/main?recursive=true", "/api/datasets/xetproxy/demo-dataset/tree/main/data",
	} {
		a := p.do("GET", path)
		if a.status != 200 || bytes.Contains(a.body, []byte("xetHash")) != *xetMode || !json.Valid(a.body) ||
			bytes.Contains(a.body, []byte(strings.TrimPrefix(hubURL, "http://"))) {
			t.Errorf("GET %s (xet mode %v): %d %s", path, *xetMode, a.status, a.body)
		}
	}
	req, _ := http.NewRequest("POST", p.url+"/api/models/"+sample.ModelRepo+"/paths-info/main", strings.NewReader("paths=model.safetensors&paths=config.json&expand=false"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || bytes.Contains(body, []byte("xetHash")) != *xetMode || !bytes.Contains(body, []byte("model.safetensors")) {
		t.Errorf("paths-info: %d %s", res.StatusCode, body)
	}

	for path, want := range map[string]int{"/health": 200, "/readyz": 200, "/": 200, "/metrics": 200, "/nope": 404} {
		if a := p.do("GET", path); a.status != want {
			t.Errorf("GET %s: %d, want %d", path, a.status, want)
		}
	}
	if a := p.do("DELETE", weightsPath); a.status != 405 {
		t.Errorf("DELETE: %d", a.status)
	}
}

// xetHashOf asks the fake Hub directly (not through the proxy).
// checkXetHeaders checks the Xet metadata of a file answer: none in plain
// mode; in Xet mode the file's hash, and a refresh route and Links on the
// proxy's own origin, never the upstream's.
func checkXetHeaders(t *testing.T, p *proxy, what string, h http.Header, xetHash string) {
	t.Helper()
	if !*xetMode {
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "x-xet") {
				t.Errorf("%s: %s leaked", what, k)
			}
		}
		if strings.Contains(h.Get("Link"), "xet") {
			t.Errorf("%s: Link %q", what, h.Get("Link"))
		}
		return
	}
	if h.Get("X-Xet-Hash") != xetHash {
		t.Errorf("%s: X-Xet-Hash %q, want %s", what, h.Get("X-Xet-Hash"), xetHash)
	}
	if r := h.Get("X-Xet-Refresh-Route"); !strings.HasPrefix(r, p.url+"/api/") {
		t.Errorf("%s: X-Xet-Refresh-Route %q not on the proxy", what, r)
	}
	link := h.Get("Link")
	for _, rel := range []string{`rel="xet-auth"`, `rel="xet-reconstruction-info"`} {
		if !strings.Contains(link, rel) {
			t.Errorf("%s: Link %q lacks %s", what, link, rel)
		}
	}
	for _, part := range strings.Split(link, ",") {
		if u, _, ok := strings.Cut(strings.TrimSpace(part), ">"); ok && !strings.HasPrefix(u, "<"+p.url+"/") {
			t.Errorf("%s: Link %q not on the proxy", what, part)
		}
	}
}

func xetHashOf(t *testing.T, repo, path string) string {
	t.Helper()
	fs, err := hub.Files(repo, "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Path == path && f.Xet {
			return f.XetHash.String()
		}
	}
	t.Fatalf("%s/%s is not a Xet file", repo, path)
	return ""
}

func TestTreePaginationStaysOnProxy(t *testing.T) {
	p := startProxy(t, nil)
	// the shared hub pages at 1000 entries; ask for a small page via the
	// client-side limit the Hub honours, or fall back to checking the Link
	a := p.do("GET", "/api/models/"+sample.ModelRepo+"/tree/main?recursive=true&limit=2")
	if a.status != 200 {
		t.Fatalf("tree: %d", a.status)
	}
	if l := a.header.Get("Link"); l != "" && (!strings.Contains(l, p.url) || strings.Contains(l, hubURL)) {
		t.Errorf("pagination Link not rewritten: %q", l)
	}
}

func TestRanges(t *testing.T) {
	p := startProxy(t, nil)
	want := content[weightsKey]
	size := int64(len(want))
	for _, tc := range []struct {
		rng        string
		status     int
		start, end int64
	}{
		{"bytes=0-0", 206, 0, 1},
		{"bytes=0-99", 206, 0, 100},
		{"bytes=5000000-9000000", 206, 5000000, 9000001},
		{"bytes=20000000-", 206, 20000000, size},
		{"bytes=-12345", 206, size - 12345, size},
		{"bytes=-99999999999", 206, 0, size},
		{fmt.Sprintf("bytes=%d-", size-1), 206, size - 1, size},
		{fmt.Sprintf("bytes=1-%d", size*2), 206, 1, size},
		{"bytes=0-1,10-20", 200, 0, size},
		{fmt.Sprintf("bytes=%d-", size), 416, 0, 0},
		{"bytes=x-y", 416, 0, 0},
		{"bytes=10-5", 416, 0, 0},
	} {
		for _, path := range []string{weightsPath, resolvePath} {
			a := p.do("GET", path, "Range", tc.rng)
			if a.status != tc.status || a.err != nil {
				t.Errorf("%s %s: %d %v, want %d", path, tc.rng, a.status, a.err, tc.status)
				continue
			}
			switch tc.status {
			case 206:
				if !bytes.Equal(a.body, want[tc.start:tc.end]) || a.header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end-1, size) {
					t.Errorf("%s %s: %d bytes, %q", path, tc.rng, len(a.body), a.header.Get("Content-Range"))
				}
			case 200:
				if !bytes.Equal(a.body, want) {
					t.Errorf("%s %s: whole file expected", path, tc.rng)
				}
			case 416:
				if a.header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
					t.Errorf("%s %s: Content-Range %q", path, tc.rng, a.header.Get("Content-Range"))
				}
			}
		}
	}
	// a plain git file
	cfg := content[sample.ModelRepo+":config.json"]
	if a := p.do("GET", "/"+sample.ModelRepo+"/resolve/main/config.json", "Range", "bytes=2-9"); a.status != 206 || !bytes.Equal(a.body, cfg[2:10]) {
		t.Errorf("plain file range: %d %q", a.status, a.body)
	}
	// the @huggingface/hub probe
	a := p.do("GET", resolvePath, "Range", "bytes=0-0", "Accept", "application/vnd.xet-fileinfo+json, */*")
	if *xetMode {
		// the fileinfo answer, leading to the proxy's own CAS
		if a.status != 200 || !strings.Contains(a.header.Get("Content-Type"), "xet-fileinfo") {
			t.Errorf("fileinfo probe (xet mode): %d %v", a.status, a.header)
		}
		checkXetHeaders(t, p, "fileinfo probe", a.header, xetHashOf(t, sample.ModelRepo, "model.safetensors"))
	} else if a.status != 206 || a.header.Get("Content-Range") != fmt.Sprintf("bytes 0-0/%d", size) || strings.Contains(a.header.Get("Content-Type"), "xet") || a.header.Get("X-Xet-Hash") != "" {
		t.Errorf("fileinfo probe: %d %v", a.status, a.header)
	}
}

func TestConditional(t *testing.T) {
	p := startProxy(t, nil)
	want := content[weightsKey]
	etag := `"` + sha256hex(want) + `"`
	if a := p.do("GET", weightsPath, "If-None-Match", etag); a.status != 304 || len(a.body) != 0 {
		t.Errorf("If-None-Match: %d", a.status)
	}
	if a := p.do("GET", resolvePath, "If-None-Match", `"nope"`, "Range", "bytes=0-9"); a.status != 206 {
		t.Errorf("If-None-Match other: %d", a.status)
	}
	if a := p.do("GET", weightsPath, "If-Range", etag, "Range", "bytes=10-19"); a.status != 206 || !bytes.Equal(a.body, want[10:20]) {
		t.Errorf("If-Range current: %d", a.status)
	}
	if a := p.do("GET", weightsPath, "If-Range", `"old"`, "Range", "bytes=10-19"); a.status != 200 || !bytes.Equal(a.body, want) {
		t.Errorf("If-Range stale: %d", a.status)
	}
}

func TestPrivateAndGated(t *testing.T) {
	p := startProxy(t, func(c *server.Config) {
		c.ServerTokenEnabled, c.ServerToken, c.APIKeys = true, sample.ReaderToken, []string{testAPIKey}
	})
	for _, repo := range []string{sample.PrivateRepo, gatedRepo} {
		path := "/" + repo + "/resolve/main/model.safetensors"
		for _, tc := range []struct {
			hdr  []string
			ok   bool
			code string
		}{
			{nil, false, ""},
			{[]string{"Authorization", "Bearer hf_wrong_token"}, false, ""},
			{[]string{"Authorization", "Bearer " + validUser}, false, ""},
			{[]string{"Authorization", "Bearer " + sample.ReaderToken}, true, ""},
			{[]string{"X-Proxy-Key", testAPIKey}, true, ""},
			{[]string{"Authorization", "Bearer " + testAPIKey}, true, ""},
			{[]string{"X-Proxy-Key", "key-not-the-right-one"}, false, "InvalidProxyKey"},
		} {
			a := p.do("GET", path, tc.hdr...)
			if tc.ok != (a.status == 200) {
				t.Errorf("%s %v: %d %s", repo, tc.hdr, a.status, a.header.Get("X-Error-Code"))
			}
			if !tc.ok && (a.status != 401 && a.status != 403 && a.status != 404 || a.header.Get("X-Error-Message") == "") {
				t.Errorf("%s %v: %d without the Hub's error", repo, tc.hdr, a.status)
			}
			if tc.code != "" && a.header.Get("X-Error-Code") != tc.code {
				t.Errorf("%s %v: code %q", repo, tc.hdr, a.header.Get("X-Error-Code"))
			}
			if bytes.Contains(a.body, []byte("hf_")) || bytes.Contains(a.body, []byte("key-")) {
				t.Errorf("%s %v: a credential in the answer: %s", repo, tc.hdr, a.body)
			}
		}
	}
	if a := p.do("GET", "/"+gatedRepo+"/resolve/main/model.safetensors"); a.header.Get("X-Error-Code") != "GatedRepo" {
		t.Errorf("gated anonymous: %d %q", a.status, a.header.Get("X-Error-Code"))
	}
	if a := p.do("GET", "/"+gatedRepo+"/resolve/main/model.safetensors", "Authorization", "Bearer "+validUser); a.status != 403 || a.header.Get("X-Error-Code") != "GatedRepo" {
		t.Errorf("gated not approved: %d %q", a.status, a.header.Get("X-Error-Code"))
	}
	// without the server token enabled, a key grants nothing
	q := startProxy(t, func(c *server.Config) { c.APIKeys = []string{testAPIKey} })
	if a := q.do("GET", "/"+sample.PrivateRepo+"/resolve/main/model.safetensors", "X-Proxy-Key", testAPIKey); a.status == 200 {
		t.Error("API key used the server token while it is disabled")
	}
	// no presigned transfer request ever carried an Authorization header
	for _, r := range hub.Requests() {
		if r.Class == fakehub.ClassXorb && r.HasAuth {
			t.Errorf("presigned URL got an Authorization header: %s", r.Path)
		}
	}
}

func TestMissing(t *testing.T) {
	p := startProxy(t, nil)
	for _, tc := range []struct{ path, code string }{
		{"/" + sample.ModelRepo + "/resolve/main/nope.bin", "EntryNotFound"},
		{"/" + sample.ModelRepo + "/resolve/no-such-branch/config.json", "RevisionNotFound"},
		{"/xetproxy/no-such-repo/resolve/main/config.json", "RepoNotFound"},
		{"/download/" + sample.ModelRepo + "/sub/nope.bin", "EntryNotFound"},
	} {
		a := p.do("GET", tc.path)
		if (a.status != 404 && a.status != 401) || a.header.Get("X-Error-Code") != tc.code {
			t.Errorf("%s: %d %q, want 404 %s", tc.path, a.status, a.header.Get("X-Error-Code"), tc.code)
		}
	}
}

func TestMalformed(t *testing.T) {
	p := startProxy(t, nil)
	hub.ResetStats()
	for _, path := range []string{
		"/download-hash/abc?repo=" + sample.ModelRepo,
		"/download-hash/" + strings.Repeat("g", 64) + "?repo=" + sample.ModelRepo,
		"/download-hash/" + strings.Repeat("0", 65) + "?repo=" + sample.ModelRepo,
		"/download-hash/" + strings.Repeat("0", 64),
		"/download/" + sample.ModelRepo + "/../../etc/passwd",
		"/download/" + sample.ModelRepo + "/%2E%2E/%2E%2E/etc/passwd",
		"/download/" + sample.ModelRepo + "/a%2F..%2Fb",
		"/" + sample.ModelRepo + "/resolve/main/..%2F..%2Fx",
		"/" + sample.ModelRepo + "/resolve/%2E%2E/config.json",
		"/xetproxy%2Fdemo-model/x/resolve/main/config.json",
		"/download/" + sample.ModelRepo + "/config.json?revision=..%2F..",
	} {
		if a := p.raw("GET", path); a.status != 400 {
			t.Errorf("%s: %d, want 400", path, a.status)
		}
	}
	if n := hub.Stats().Total().Requests; n != 0 {
		t.Errorf("malformed requests caused %d upstream requests", n)
	}
	if a := p.do("GET", weightsPath, "Range", "bytes=1-2-3"); a.status != 416 {
		t.Errorf("bad Range syntax: %d", a.status)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.Contains(line, "431") {
		t.Errorf("huge header: %q", line)
	}
}

// TestUpstreamFaultMidStream: once the status line is out, an upstream
// failure must reach the client as a broken transfer. The file has more
// xorbs than the engine fetches ahead, so fetches start after the fault.
func TestUpstreamFaultMidStream(t *testing.T) {
	p := startProxy(t, func(c *server.Config) { c.ReadAhead = 1 << 20 })
	for _, rng := range []string{"", "bytes=1000-"} {
		req, _ := http.NewRequest("GET", p.url+bigPath, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 200 && res.StatusCode != 206 {
			t.Fatalf("status %d", res.StatusCode)
		}
		buf := make([]byte, 1<<20)
		if _, err := io.ReadFull(res.Body, buf); err != nil {
			t.Fatal(err)
		}
		// from now on every CAS answer fails, permanently
		hub.InjectFault(fakehub.Fault{Class: fakehub.ClassXorb, Status: 404})
		hub.InjectFault(fakehub.Fault{Class: fakehub.ClassReconstruction, Status: 404})
		rest, err := io.ReadAll(res.Body)
		res.Body.Close()
		total := len(buf) + len(rest)
		if err == nil || int64(total) >= res.ContentLength {
			t.Errorf("%q: transfer ended cleanly after %d of %d bytes (err %v)", rng, total, res.ContentLength, err)
		}
		hub.ClearFaults()
	}
	if a := p.do("GET", bigPath); a.status != 200 || !bytes.Equal(a.body, bigContent) {
		t.Errorf("after the fault: %d", a.status)
	}
	// retryable faults are absorbed by the engine
	hub.FailNth(fakehub.ClassXorb, 1, 503, 0)
	if a := p.do("GET", weightsPath); a.status != 200 || !bytes.Equal(a.body, content[weightsKey]) {
		t.Errorf("with one 503: %d %v", a.status, a.err)
	}
	if m := p.do("GET", "/metrics"); !regexp.MustCompile(`xetproxy_upstream_retries_total\{target="(hub|cas)"\} [1-9]`).Match(m.body) {
		t.Error("the retry after the 503 was not counted") // fakehub serves the CAS on the Hub's host: target "hub"
	}
}

func TestUpstreamErrorsBeforeFirstByte(t *testing.T) {
	p := startProxy(t, nil)
	hub.InjectFault(fakehub.Fault{Class: fakehub.ClassResolve, Status: 500})
	if a := p.do("GET", weightsPath); a.status != 502 || a.header.Get("X-Error-Code") != "UpstreamError" {
		t.Errorf("hub 500 on resolve: %d %q", a.status, a.header.Get("X-Error-Code"))
	}
	hub.ClearFaults()
	hub.InjectFault(fakehub.Fault{Class: fakehub.ClassXorb, Status: 404})
	if a := p.do("GET", weightsPath); a.status != 502 || a.header.Get("X-Error-Code") != "UpstreamError" {
		t.Errorf("xorb 404 before the first byte: %d %q", a.status, a.header.Get("X-Error-Code"))
	}
	hub.ClearFaults()
}

func TestClientDisconnect(t *testing.T) {
	p := startProxy(t, nil)
	p.do("GET", "/health")
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	before := goleak.IgnoreCurrent() // the server's own goroutines
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", p.url+weightsPath, nil)
		tr := &http.Transport{}
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadFull(res.Body, make([]byte, 100<<10))
		cancel()
		res.Body.Close()
		tr.CloseIdleConnections()
	}
	waitFor(t, "downloads to end", func() bool { return p.inFlight() == 0 })
	// each is recorded as 499 (client gone)
	gone := []byte(`xetproxy_http_requests_total{code="499",method="GET",route="download"} 3`)
	waitFor(t, "three 499s in the metrics", func() bool { return bytes.Contains(p.do("GET", "/metrics").body, gone) })
	// No engine fetcher, body copier or connection may outlive its
	// download. Pooled keep-alive connections are not leaks, but a fetch
	// that ends just after the check may return one to its pool: close the
	// pools again before each look.
	var err error
	for i := 0; i < 5; i++ {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		p.upstream.CloseIdleConnections()
		if err = goleak.Find(before); err == nil {
			break
		}
	}
	if err != nil {
		t.Error(err)
	}
}

func TestOverload(t *testing.T) {
	p := startProxy(t, func(c *server.Config) { c.MaxDownloads = 1 })
	// hold one download open without reading it
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", weightsPath)
	waitFor(t, "the first download", func() bool { return p.inFlight() == 1 })
	a := p.do("GET", "/download/"+sample.ModelRepo+"/onnx/model.onnx")
	if a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Errorf("second download: %d %v", a.status, a.header)
	}
	if a := p.do("GET", "/readyz"); a.status != 503 {
		t.Errorf("readyz: %d", a.status)
	}
	conn.Close()
	waitFor(t, "the slot to free", func() bool { return p.inFlight() == 0 })
	if a := p.do("GET", "/download/"+sample.ModelRepo+"/onnx/model.onnx"); a.status != 200 {
		t.Errorf("after: %d", a.status)
	}
}
