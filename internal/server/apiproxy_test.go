package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

func TestStripXetJSON(t *testing.T) {
	tests := map[string]string{
		`{"id":"a/b","xetEnabled":true,"siblings":[{"rfilename":"x","xetHash":"ab"}],"n":12345678901234567890}`: `{"id":"a/b","n":12345678901234567890,"siblings":[{"rfilename":"x"}]}`,
		`[{"type":"file","path":"a","xetHash":"00","lfs":{"oid":"x","xetHash":"y"}},{"type":"directory"}]`:      `[{"lfs":{"oid":"x"},"path":"a","type":"file"},{"type":"directory"}]`,
		"{\"a\":1,\"xetHash\":2}\n{\"b\":\"<&>\",\"xetEnabled\":false}\n":                                       "{\"a\":1}\n{\"b\":\"<&>\"}\n",
		`not json {"xetHash"`: `not json {"xetHash"`,
		``:                    ``,
	}
	for in, want := range tests {
		if got := string(stripXetJSON([]byte(in))); got != want {
			t.Errorf("stripXetJSON(%s)\n = %s\nwant %s", in, got, want)
		}
	}
}

func TestRewriteLinks(t *testing.T) {
	hub, _ := url.Parse("https://hub.example")
	got := rewriteLinks(`<https://hub.example/api/models/a/b/tree/main?cursor=x,y&limit=2>; rel="next", <https://other.example/p>; rel="prev"`, hub, "http://127.0.0.1:8080")
	want := `<http://127.0.0.1:8080/api/models/a/b/tree/main?cursor=x,y&limit=2>; rel="next", <https://other.example/p>; rel="prev"`
	if got != want {
		t.Errorf("rewriteLinks =\n %s\nwant\n %s", got, want)
	}
	if got := rewriteLinks(`<https://hub.example/api/models/a/xet-read-token/main>; rel="xet-auth", <https://cas/v1/reconstructions/h>; rel=xet-reconstruction-info`, hub, "http://p"); got != "" {
		t.Errorf("xet rels kept: %q", got)
	}
	based, _ := url.Parse("http://127.0.0.1:9/hub")
	if got := rewriteHubURL("http://127.0.0.1:9/hub/api/x?c=1", based, "http://p"); got != "http://p/api/x?c=1" {
		t.Errorf("base path: %q", got)
	}
	if got := rewriteHubURL("http://127.0.0.1:9/other", based, "http://p"); got != "http://127.0.0.1:9/other" {
		t.Errorf("outside base path rewritten: %q", got)
	}
	if got := rewriteHubURL("/relative", hub, "http://p"); got != "/relative" {
		t.Errorf("relative rewritten: %q", got)
	}
}

// upstreamXetHeaders are the Xet headers a Hub answer can carry; the last
// one stands for any future X-Xet-* header.
var upstreamXetHeaders = []string{"X-Xet-Hash", "X-Xet-Refresh-Route", "X-Xet-Access-Token", "X-Xet-Cas-Url", "X-Xet-Token-Expiration", "X-Xet-Something-New"}

// TestAPIProxy runs the passthrough against a stand-in Hub that echoes what
// it received.
// TestAPIProxy runs in both modes: Xet mode keeps xetHash and xetEnabled
// in JSON (the proxy is the CAS they lead to), and both strip the Hub's
// X-Xet-* headers.
func TestAPIProxy(t *testing.T) {
	for _, xet := range []bool{false, true} {
		t.Run(fmt.Sprintf("xet=%v", xet), func(t *testing.T) { testAPIProxy(t, xet) })
	}
}

func testAPIProxy(t *testing.T, xet bool) {
	var mu sync.Mutex
	var seen []http.Header
	var upstream *httptest.Server
	upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("X-Request-Id", "hub-req-1")
		switch r.URL.Path {
		case "/api/models/org/m/tree/main":
			w.Header().Set("Link", "<"+upstream.URL+"/api/models/org/m/tree/main?cursor=abc>; rel=\"next\"")
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			io.WriteString(w, `[{"type":"file","path":"w.bin","size":5,"xetHash":"`+strings.Repeat("a", 64)+`","lfs":{"oid":"x","size":5}}]`)
		case "/api/models/org/m":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=60, s-maxage=600")
			w.Header().Set("Set-Cookie", "hub=1")
			for _, k := range upstreamXetHeaders {
				w.Header().Set(k, "upstream-secret")
			}
			io.WriteString(w, `{"id":"org/m","sha":"0123","xetEnabled":true,"siblings":[{"rfilename":"w.bin","xetHash":"x"}]}`)
		case "/api/models/old/m":
			w.Header().Set("Location", upstream.URL+"/api/models/new/m")
			w.WriteHeader(http.StatusTemporaryRedirect)
		case "/api/models/org/m/paths-info/refs%2Fpr%2F1", "/api/models/org/m/paths-info/refs/pr/1":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode([]map[string]any{{"path": string(b), "rawpath": r.URL.RawPath, "xetHash": "z"}})
		default:
			w.Header().Set("X-Error-Code", "RepoNotFound")
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer upstream.Close()

	const key = "key-0123456789abcdef"
	cfg := testConfig(upstream.URL)
	cfg.ServerTokenEnabled, cfg.ServerToken, cfg.APIKeys = true, "hf_server", []string{key}
	cfg.Xet, cfg.SigningKey = xet, xetTestKey
	s := newTestServer(t, cfg)
	front := httptest.NewServer(s.Handler())
	defer front.Close()

	send := func(method, base, path string, hdr map[string]string) (*http.Response, string) {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("paths=a")
		}
		req, _ := http.NewRequest(method, base+path, body)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(b)
	}
	get := func(path string, hdr map[string]string) (*http.Response, string) {
		return send("GET", front.URL, path, hdr)
	}

	res, body := get("/api/models/org/m/tree/main", map[string]string{"Authorization": "Bearer hf_user", "Accept-Encoding": "gzip", "Cookie": "s=1", "X-Proxy-Key": key})
	if res.StatusCode != 200 || strings.Contains(body, "xetHash") != xet || !strings.Contains(body, `"lfs":{"oid":"x","size":5}`) {
		t.Errorf("tree: %d %s", res.StatusCode, body)
	}
	if ids := res.Header.Values("X-Request-Id"); len(ids) != 1 || ids[0] == "hub-req-1" || res.Header.Get("X-Upstream-Request-Id") != "hub-req-1" {
		t.Errorf("request ids: %v / %q", ids, res.Header.Get("X-Upstream-Request-Id"))
	}
	if l := res.Header.Get("Link"); l != "<"+front.URL+"/api/models/org/m/tree/main?cursor=abc>; rel=\"next\"" {
		t.Errorf("tree Link = %q", l)
	}
	mu.Lock()
	h := seen[len(seen)-1]
	mu.Unlock()
	if h.Get("Authorization") != "Bearer hf_user" || h.Get("X-Proxy-Key") != "" || h.Get("Cookie") != "" {
		t.Errorf("upstream saw %v", h)
	}

	// the premise: the Hub does send the headers that must not pass
	if res, _ := send("GET", upstream.URL, "/api/models/org/m", nil); res.Header.Get("X-Xet-Access-Token") == "" || res.Header.Get("Set-Cookie") == "" {
		t.Fatalf("stand-in Hub sends no X-Xet-Access-Token / Set-Cookie: %v", res.Header)
	}
	res, body = get("/api/models/org/m", map[string]string{"X-Proxy-Key": key})
	if xet && !(strings.Contains(body, `"xetEnabled":true`) && strings.Contains(body, `"xetHash":"x"`)) ||
		!xet && strings.Contains(body, "xet") || res.Header.Get("Content-Length") != itoa(int64(len(body))) {
		t.Errorf("info: %v %s", res.Header, body)
	}
	for k := range res.Header {
		if strings.HasPrefix(k, "X-Xet-") || k == "Set-Cookie" {
			t.Errorf("info: the Hub's %s reached the client", k)
		}
	}
	if cc, vary := res.Header.Values("Cache-Control"), strings.Join(res.Header.Values("Vary"), ","); len(cc) != 1 || cc[0] != "private, max-age=60" ||
		!strings.Contains(vary, "Authorization") || !strings.Contains(vary, "X-Proxy-Key") {
		t.Errorf("keyed info: Cache-Control %q, Vary %q; want private, max-age=60 and Vary on both credentials", cc, vary)
	}
	mu.Lock()
	h = seen[len(seen)-1]
	mu.Unlock()
	if h.Get("Authorization") != "Bearer hf_server" {
		t.Errorf("keyed caller: upstream Authorization = %q", h.Get("Authorization"))
	}

	res, _ = get("/api/models/org/m", nil)
	if res.Header.Get("Cache-Control") != "public, max-age=60, s-maxage=600" || res.Header.Get("Vary") != "" {
		t.Errorf("anonymous info: Cache-Control %q, Vary %q: the Hub's own should pass", res.Header.Get("Cache-Control"), res.Header.Get("Vary"))
	}
	mu.Lock()
	h = seen[len(seen)-1]
	mu.Unlock()
	if h.Get("Authorization") != "" {
		t.Errorf("anonymous caller: upstream Authorization = %q", h.Get("Authorization"))
	}

	res, _ = get("/api/models/old/m", nil)
	if res.StatusCode != 307 || res.Header.Get("Location") != front.URL+"/api/models/new/m" {
		t.Errorf("redirect: %d %q", res.StatusCode, res.Header.Get("Location"))
	}

	res, body = send("POST", front.URL, "/api/models/org/m/paths-info/refs%2Fpr%2F1", nil)
	if res.StatusCode != 200 || strings.Contains(body, "xetHash") != xet || !strings.Contains(body, `refs%2Fpr%2F1`) || !strings.Contains(body, `"path":"paths=a"`) {
		t.Errorf("paths-info: %d %s", res.StatusCode, body)
	}

	res, _ = get("/api/models/private/m", nil)
	if res.StatusCode != 401 || res.Header.Get("X-Error-Code") != "RepoNotFound" {
		t.Errorf("error passthrough: %d %v", res.StatusCode, res.Header)
	}

	res, body = get("/api/models/org/m", map[string]string{"X-Proxy-Key": "wrong-key-wrong-key"})
	if res.StatusCode != 401 || !strings.Contains(body, "InvalidProxyKey") || strings.Contains(body, "wrong-key") {
		t.Errorf("wrong key: %d %s", res.StatusCode, body)
	}
}
