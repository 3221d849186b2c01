package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

func TestCheckAPIRoute(t *testing.T) {
	const forward, bad, forbidden, method = 0, 400, 403, 405
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "whoami-v2", forward},
		{"GET", "models", forward},
		{"GET", "models/org/m", forward},
		{"HEAD", "models/org/m", forward},
		{"GET", "datasets/org/d/revision/main", forward},
		{"GET", "spaces/org/s/revision/refs%2Fpr%2F1", forward},
		{"GET", "models/gpt2", forward},
		{"GET", "models/gpt2/revision/main", forward},
		{"GET", "models/org/m/tree/main", forward},
		{"GET", "models/org/m/tree/main/sub/dir", forward},
		{"GET", "models/gpt2/tree/main/sub", forward},
		{"POST", "models/org/m/paths-info/main", forward},
		{"POST", "datasets/org/d/paths-info/refs%2Fconvert%2Fparquet", forward},
		{"GET", "models/org/m/refs", forward},
		{"GET", "models/org/m/commits/main", forward},

		{"POST", "models/org/m/commit/main", forbidden},
		{"POST", "models/org/m/preupload/main", forbidden},
		{"GET", "models/org/m/xet-write-token/main", forbidden},
		{"GET", "models/org/m/xet-read-token/main", forbidden},
		{"GET", "models/gpt2/xet-write-token/main", forbidden},
		{"POST", "repos/create", forbidden},
		{"DELETE", "repos/delete", forbidden},
		{"PUT", "models/org/m/settings", forbidden},
		{"POST", "models/org/m/branch/dev", forbidden},
		{"POST", "models/org/m/discussions", forbidden},
		{"GET", "models/org/m/resolve/main/x", forbidden},
		{"GET", "whoami", forbidden},
		{"GET", "organizations/org/members", forbidden},
		// two readings of one path: neither may hide a write
		{"POST", "models/gpt2/commit/paths-info/main", forbidden}, // not paths-info of "gpt2/commit"
		{"POST", "models/org/paths-info/discussions", forbidden},  // not paths-info of "org" at "discussions"
		{"GET", "models/org/xet-write-token/main", forbidden},     // not info of "org/xet-write-token"
		{"GET", "models/org/m/tree/main/a%2Fb", forbidden},        // encoded slash in a file path
		{"GET", "models/org%2Fm/tree/main", forbidden},            // in a repo name

		{"POST", "models/org/m", method},
		{"DELETE", "models/org/m", method},
		{"PUT", "models/org/m/tree/main/a.txt", method},
		{"GET", "models/org/m/paths-info/main", method},
		{"PATCH", "whoami-v2", method},
		{"OPTIONS", "models/org/m/refs", method},

		{"GET", "../org/m/resolve/main/x", bad},
		{"GET", "%2e%2e/org/m/resolve/main/x", bad},
		{"GET", "models/org/m/tree/main/%2E%2E/%2e%2e", bad},
		{"GET", "models/org/m/tree/main/./a", bad},
		{"GET", "models/org/m/tree/main/%252e%252e/x", bad},
		{"GET", "models/org/%2e", bad},
		{"GET", "models//org/m", bad},
		{"GET", "models/org/m/tree/main/a%5Cb", bad},
		{"GET", "models/org/m/tree/main/a%00", bad},
		{"GET", "models/org/m/tree/main/%zz", bad},
	}
	for _, tc := range tests {
		allow, err := checkAPIRoute(tc.method, tc.path)
		got := forward
		if err != nil {
			got = err.Status
			if got != bad && err.Code != "ReadOnlyProxy" {
				t.Errorf("%s %s: code %q, want ReadOnlyProxy", tc.method, tc.path, err.Code)
			}
		}
		if got != tc.want || (got == method) != (allow != nil) {
			t.Errorf("%s /api/%s: %d (allow %v), want %d", tc.method, tc.path, got, allow, tc.want)
		}
	}
}

// Credentials of the write fixture: the server token (lent to API-key
// callers) and a user token may both write org/w upstream.
const (
	serverWriter = "hf_serverwriter"
	userWriter   = "hf_userwriter"
	roKey        = "key-readonly-0123456789"
)

// writeFixture is a fakehub with org/w writable by both tokens, and a
// server in front of it that lends serverWriter to roKey callers.
type writeFixture struct {
	fh     *fakehub.Hub
	hub    *httptest.Server
	front  *httptest.Server
	commit string // main of org/w
}

func newWriteFixture(t *testing.T, mod func(*Config)) *writeFixture {
	t.Helper()
	fh, err := fakehub.New(fakehub.Config{Compression: "none"})
	if err != nil {
		t.Fatal(err)
	}
	hubSrv := httptest.NewServer(fh)
	t.Cleanup(hubSrv.Close)
	fh.SetPublicURL(hubSrv.URL)
	if err := fh.CreateRepo(fakehub.RepoSpec{ID: "org/w", Writers: []string{serverWriter, userWriter}}); err != nil {
		t.Fatal(err)
	}
	commit, err := fh.Commit(context.Background(), "org/w", fakehub.CommitSpec{Branch: "main", Title: "add",
		Files: []fakehub.FileSpec{{Path: "a.txt", Content: strings.NewReader("hello"), Storage: fakehub.StoragePlain}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(hubSrv.URL)
	cfg.ServerTokenEnabled, cfg.ServerToken, cfg.APIKeys = true, serverWriter, []string{roKey}
	if mod != nil {
		mod(&cfg)
	}
	front := httptest.NewServer(newTestServer(t, cfg).Handler())
	t.Cleanup(front.Close)
	f := &writeFixture{fh: fh, hub: hubSrv, front: front, commit: commit}
	if c := f.head(t); c != commit {
		t.Fatalf("fixture: main of org/w is %q, committed %q", c, commit)
	}
	return f
}

func (f *writeFixture) head(t *testing.T) string {
	t.Helper()
	c, err := f.fh.Resolve("org/w", "main")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func send(t *testing.T, method, url string, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// writeRequests are the writes a client could try through the proxy.
var writeRequests = []struct{ method, path, body string }{
	{"POST", "/api/models/org/w/commit/main", `{"key":"header","value":{"summary":"x"}}` + "\n" + `{"key":"file","value":{"path":"b.txt","content":"aGk=","encoding":"base64"}}`},
	{"POST", "/api/models/org/w/preupload/main", `{"files":[{"path":"b.bin","size":5,"sample":"aGVsbG8="}]}`},
	{"GET", "/api/models/org/w/xet-write-token/main", ""},
	{"GET", "/api/models/org/w/xet-read-token/main", ""},
	{"POST", "/org/w.git/info/lfs/objects/batch", `{"operation":"upload","transfers":["basic","xet"],"objects":[{"oid":"` + strings.Repeat("a", 64) + `","size":5}]}`},
	{"POST", "/api/repos/create", `{"name":"new","organization":"org","type":"model"}`},
	{"DELETE", "/api/repos/delete", `{"name":"w","organization":"org","type":"model"}`},
	{"POST", "/api/repos/move", `{"fromRepo":"org/w","toRepo":"org/moved"}`},
	{"PUT", "/api/models/org/w/settings", `{"private":true}`},
	{"POST", "/api/models/org/w/branch/dev", `{}`},
	{"DELETE", "/api/models/org/w/branch/main", ""},
	{"POST", "/api/models/org/w/tag/v1", `{"tag":"v1"}`},
	{"POST", "/api/models/org/w/super-squash/main", `{}`},
	{"POST", "/api/models/org/w/discussions", `{"title":"x"}`},
	{"DELETE", "/api/models/org/w", ""},
	{"PUT", "/api/models/org/w", `{}`},
	{"PATCH", "/api/models/org/w/tree/main", `{}`},
	{"PUT", "/api/models/org/w/tree/main/a.txt", "x"},
	{"POST", "/api/models/org/w/tree/main", "x"},
	{"GET", "/api/models/org/w/paths-info/main", ""},
	{"POST", "/api/models/org/w/commit/paths-info/main", `{"paths":["a.txt"]}`},
	{"PUT", "/org/w/resolve/main/a.txt", "x"},
	{"DELETE", "/download/org/w/a.txt", ""},
	{"POST", "/org/w/upload/main", "x"},
}

// Every write, token mint and non-read API call is refused whatever the
// caller holds, and nothing of it reaches the Hub.
func TestReadOnlyRefusesWrites(t *testing.T) {
	f := newWriteFixture(t, nil)
	// The premise: upstream, these credentials can write and mint a write
	// token, so forwarding any of it would be a real privilege leak.
	res, b := send(t, "GET", f.hub.URL+"/api/models/org/w/xet-write-token/main", "", "Authorization", "Bearer "+serverWriter)
	if res.StatusCode != 200 || !strings.Contains(string(b), "accessToken") {
		t.Fatalf("premise: the server token gets no write token upstream: %d %s", res.StatusCode, b)
	}
	f.fh.ResetStats()

	creds := []struct {
		name string
		hdr  []string
	}{
		{"api key header", []string{"X-Proxy-Key", roKey}},
		{"api key bearer", []string{"Authorization", "Bearer " + roKey}},
		{"user token", []string{"Authorization", "Bearer " + userWriter}},
		{"anonymous", nil},
		{"wrong key", []string{"X-Proxy-Key", "wrong-key-wrong-key"}},
	}
	for _, c := range creds {
		for _, wr := range writeRequests {
			res, b := send(t, wr.method, f.front.URL+wr.path, wr.body, c.hdr...)
			var eb errorBody
			json.Unmarshal(b, &eb)
			readOnly := (res.StatusCode == 403 || res.StatusCode == 405) && eb.Code == "ReadOnlyProxy" && res.Header.Get("X-Error-Code") == "ReadOnlyProxy"
			// the download routes are GET/HEAD only and say so
			methodOnly := res.StatusCode == 405 && eb.Code == "MethodNotAllowed" && !strings.HasPrefix(wr.path, "/api/")
			if !readOnly && !methodOnly {
				t.Errorf("%s: %s %s = %d %s, want 403/405 ReadOnlyProxy", c.name, wr.method, wr.path, res.StatusCode, b)
			}
			if strings.Contains(string(b), serverWriter) || strings.Contains(string(b), "accessToken") {
				t.Errorf("%s: %s %s answer holds a credential: %s", c.name, wr.method, wr.path, b)
			}
		}
	}
	if reqs := f.fh.Requests(); len(reqs) != 0 {
		for _, r := range reqs {
			t.Errorf("the Hub saw %s %s (%s)", r.Method, r.Path, r.Class)
		}
	}
	if c := f.head(t); c != f.commit {
		t.Errorf("main of org/w moved from %s to %s", f.commit, c)
	}

	// the reads still work, with the lent server token for a key
	res, b = send(t, "GET", f.front.URL+"/api/models/org/w", "", "X-Proxy-Key", roKey)
	if res.StatusCode != 200 || !strings.Contains(string(b), f.commit) {
		t.Errorf("repo info through the proxy: %d %s", res.StatusCode, b)
	}
	res, b = send(t, "POST", f.front.URL+"/api/models/org/w/paths-info/main", `{"paths":["a.txt"]}`, "X-Proxy-Key", roKey, "Content-Type", "application/json")
	if res.StatusCode != 200 || !strings.Contains(string(b), `"a.txt"`) {
		t.Errorf("paths-info through the proxy: %d %s", res.StatusCode, b)
	}
	reqs := f.fh.Requests()
	if len(reqs) != 2 || !reqs[0].HasAuth || !reqs[1].HasAuth {
		t.Errorf("the Hub saw %d requests for the two reads, want 2 with the server token", len(reqs))
	}
}

// A read is forwarded as the read it was checked to be: no method override
// header and no body go along.
func TestReadOnlyStripsMethodOverride(t *testing.T) {
	f := newWriteFixture(t, nil)
	f.fh.ResetStats()
	res, b := send(t, "GET", f.front.URL+"/api/models/org/w", `{"private":true}`, "X-Proxy-Key", roKey,
		"X-HTTP-Method-Override", "DELETE", "X-Http-Method", "DELETE", "X-Method-Override", "PUT")
	if res.StatusCode != 200 {
		t.Fatalf("read with override headers: %d %s", res.StatusCode, b)
	}
	reqs := f.fh.Requests()
	if len(reqs) != 1 {
		t.Fatalf("the Hub saw %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != "GET" || r.BytesIn != 0 {
		t.Errorf("upstream got %s with %d body bytes", r.Method, r.BytesIn)
	}
	for _, k := range []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"} {
		if v := r.Header.Get(k); v != "" {
			t.Errorf("upstream got %s: %s", k, v)
		}
	}
}

// rawGet writes a request line by hand (like curl --path-as-is), so that
// no client cleans the path before the server sees it.
func rawGet(t *testing.T, addr, target string, hdr ...string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n"
	for i := 0; i+1 < len(hdr); i += 2 {
		req += hdr[i] + ": " + hdr[i+1] + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// Dot segments, raw or percent-encoded, never reach the Hub: they could
// turn an allowed /api path into a resolve or write URL upstream.
func TestDotSegmentsRefused(t *testing.T) {
	f := newWriteFixture(t, nil)
	f.fh.ResetStats()
	addr := strings.TrimPrefix(f.front.URL, "http://")
	for _, target := range []string{
		"/api/../org/w/resolve/main/a.txt",
		"/api/%2e%2e/org/w/resolve/main/a.txt",
		"/api/%2E%2E/api/models/org/w/xet-write-token/main",
		"/api/models/org/w/tree/main/../../xet-write-token/main",
		"/api/models/org/w/tree/main/%2e%2e/%2e%2e/xet-write-token/main",
		"/api/models/org/w/revision/main/..",
		"/api/models/org/w/tree/./main",
		"/api/models/org/w/tree/main/%252e%252e/x",
		"/api/models/org/w/tree/main/a%5C..%5Cb",
		"/org/w/resolve/main/../../api/models/org/w/xet-write-token/main",
		"/org/w/resolve/main/%2e%2e/a.txt",
		"/download/org/w/%2e%2e/w/a.txt",
	} {
		for _, cred := range [][]string{{"X-Proxy-Key", roKey}, {"Authorization", "Bearer " + userWriter}, nil} {
			res, b := rawGet(t, addr, target, cred...)
			if res.StatusCode != 400 || res.Header.Get("X-Error-Code") != "InvalidPath" {
				t.Errorf("GET %s: %d %s, want 400 InvalidPath", target, res.StatusCode, b)
			}
		}
	}
	// the premise: the server saw the dots as sent (the message names them)
	if _, b := rawGet(t, addr, "/api/../x"); !strings.Contains(b, "dot segments") {
		t.Errorf("raw request: %s", b)
	}
	if n := len(f.fh.Requests()); n != 0 {
		t.Errorf("the Hub saw %d requests", n)
	}
}

// Whatever checkAPIRoute forwards is a read: GET or HEAD, or POST to
// paths-info; no segment is empty or a dot segment in any encoding, and
// no segment where the Hub looks for an action below a one- or two-part
// repo id names a token or write route.
func FuzzCheckAPIRoute(f *testing.F) {
	for _, s := range []string{"models/org/m", "models/org/m/tree/main/a/b", "models/gpt2/paths-info/main",
		"models/org/m/commit/main", "%2e%2e/x", "whoami-v2", "datasets/a/b/revision/refs%2Fpr%2F1"} {
		f.Add("GET", s)
		f.Add("POST", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		if _, err := checkAPIRoute(method, path); err != nil {
			return
		}
		switch {
		case method == "GET" || method == "HEAD":
		case method == "POST" && strings.Contains(path, "/paths-info/"):
		default:
			t.Fatalf("forwarded %s %s", method, path)
		}
		for i, s := range strings.Split(path, "/") {
			u, err := url.PathUnescape(s)
			if err != nil {
				t.Fatalf("forwarded %s with a bad escape", path)
			}
			u2, _ := url.PathUnescape(u)
			for _, v := range []string{u, u2} {
				switch v {
				case ".", "..", "":
					t.Fatalf("forwarded %s %s (segment %q)", method, path, v)
				case "xet-write-token", "xet-read-token", "commit", "preupload":
					if i == 2 || i == 3 {
						t.Fatalf("forwarded %s %s (action %q)", method, path, v)
					}
				}
			}
		}
	})
}
