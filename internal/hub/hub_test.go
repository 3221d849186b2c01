package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Real HTTP servers answering canned Hub messages; nothing of ours mocked.

const xetHashStr = "d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb"
const commit = "0123456789abcdef0123456789abcdef01234567"

func newHub(t *testing.T, h http.HandlerFunc) (*httptest.Server, *Client) {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	c := &Client{BaseURL: s.URL, RetryBase: time.Millisecond, RetryMax: 100 * time.Millisecond}
	return s, c
}

func TestResolveXetFile(t *testing.T) {
	var bridgeHits atomic.Int64
	bridge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { bridgeHits.Add(1) }))
	defer bridge.Close()
	var path string
	_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.EscapedPath()
		if r.Method != http.MethodHead || r.Header.Get("Authorization") != "Bearer hf_user" {
			w.WriteHeader(400)
			return
		}
		h := w.Header()
		h.Set("X-Xet-Hash", xetHashStr)
		h.Set("X-Linked-Size", "123456789012")
		h.Set("X-Linked-Etag", `W/"5dab0b4e6f6a1bd1e7f2ef4bb8d1bb55bcd9e2d54dbbbd0a5e5a6e0a4c0ab2a4"`)
		h.Set("ETag", `"gitsha"`)
		h.Set("X-Repo-Commit", commit)
		h.Add("Link", `<https://hub.test/api/models/a/b/xet-read-token/`+commit+`>; rel="xet-auth", <https://cas.test/v1/reconstructions/`+xetHashStr+`>; rel="xet-reconstruction-info"`)
		h.Set("Location", bridge.URL+"/xet-bridge/abc?sig=1")
		w.WriteHeader(http.StatusFound)
	})
	m, err := c.Resolve(context.Background(), "hf_user", Repo{Model, "a/b"}, "refs/pr/1", "dir/model file.bin")
	if err != nil {
		t.Fatal(err)
	}
	if path != "/a/b/resolve/refs%2Fpr%2F1/dir/model%20file.bin" {
		t.Errorf("requested %s", path)
	}
	if bridgeHits.Load() != 0 {
		t.Error("the redirect to the bridge was followed")
	}
	if m.XetHash == nil || m.XetHash.String() != xetHashStr || m.Size != 123456789012 || m.Commit != commit ||
		m.ETag != "5dab0b4e6f6a1bd1e7f2ef4bb8d1bb55bcd9e2d54dbbbd0a5e5a6e0a4c0ab2a4" ||
		m.RefreshURL != "https://hub.test/api/models/a/b/xet-read-token/"+commit ||
		m.ReconstructionURL != "https://cas.test/v1/reconstructions/"+xetHashStr {
		t.Fatalf("meta %+v", m)
	}
	if m.TokenRevision() != commit {
		t.Errorf("token revision %q", m.TokenRevision())
	}
}

func TestResolveFollowsRelativeRedirects(t *testing.T) {
	_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/datasets/old/name/resolve/main/f.txt":
			w.Header().Set("Location", "/datasets/new/name/resolve/main/f.txt")
			w.WriteHeader(http.StatusTemporaryRedirect)
		case "/datasets/new/name/resolve/main/f.txt":
			w.Header().Set("ETag", `"e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"`)
			w.Header().Set("X-Repo-Commit", commit)
			w.Header().Set("Content-Length", "42")
		default:
			w.WriteHeader(404)
		}
	})
	m, err := c.Resolve(context.Background(), "", Repo{Dataset, "old/name"}, "", "f.txt")
	if err != nil {
		t.Fatal(err)
	}
	if m.XetHash != nil || m.Size != 42 || m.ETag != "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391" ||
		!strings.HasSuffix(m.PlainURL, "/datasets/new/name/resolve/main/f.txt") {
		t.Fatalf("meta %+v", m)
	}
}

func TestResolveErrors(t *testing.T) {
	cases := []struct {
		status int
		code   string
		is     error
	}{
		{404, "EntryNotFound", ErrNotFound},
		{404, "RevisionNotFound", ErrNotFound},
		{401, "RepoNotFound", ErrUnauthorized},
		{401, "GatedRepo", ErrUnauthorized},
		{403, "GatedRepo", ErrForbidden},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status, tc.code), func(t *testing.T) {
			_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Error-Code", tc.code)
				w.Header().Set("X-Error-Message", "no luck for hf_secret")
				w.WriteHeader(tc.status)
			})
			_, err := c.Resolve(context.Background(), "hf_secret", Repo{Model, "a/b"}, "main", "x")
			var he *Error
			if !errors.As(err, &he) || he.Status != tc.status || he.Code != tc.code || !errors.Is(err, tc.is) {
				t.Fatalf("err = %#v", err)
			}
			if strings.Contains(err.Error(), "hf_secret") {
				t.Fatalf("token in error: %v", err)
			}
		})
	}
}

func TestRetriesAndRetryAfter(t *testing.T) {
	var n atomic.Int64
	_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.WriteHeader(503)
		case 2:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(429)
		default:
			w.Header().Set("Content-Length", "5")
		}
	})
	if _, err := c.Resolve(context.Background(), "", Repo{Model, "a"}, "", "x"); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 3 {
		t.Fatalf("%d requests", n.Load())
	}
	// A Retry-After beyond RetryMax is not waited for.
	n.Store(0)
	_, c2 := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(503)
	})
	_, err := c2.Resolve(context.Background(), "", Repo{Model, "a"}, "", "x")
	var he *Error
	if !errors.As(err, &he) || he.RetryAfter != time.Hour || n.Load() != 1 {
		t.Fatalf("err %v after %d requests", err, n.Load())
	}
}

func TestResolveRejectsBadNames(t *testing.T) {
	c := &Client{BaseURL: "http://127.0.0.1:1"}
	for _, id := range []string{"", "a/b/c", "../x", "a/..", "a?b"} {
		if _, err := c.Resolve(context.Background(), "", Repo{Model, id}, "", "f"); err == nil {
			t.Errorf("repo id %q accepted", id)
		}
	}
}

func TestListPaginates(t *testing.T) {
	var srv *httptest.Server
	srv, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.EscapedPath() != "/api/models/org/m/tree/main/sub" || r.URL.Query().Get("recursive") != "true" {
			w.WriteHeader(400)
			return
		}
		switch r.URL.Query().Get("cursor") {
		case "":
			w.Header().Set("Link", `<`+srv.URL+`/api/models/org/m/tree/main/sub?recursive=true&cursor=2>; rel="next"`)
			io.WriteString(w, `[{"type":"directory","oid":"t","size":0,"path":"sub/d"},
				{"type":"file","oid":"o1","size":10,"path":"sub/a.txt"}]`)
		case "2":
			w.Header().Set("Link", `</api/models/org/m/tree/main/sub?recursive=true&cursor=3>; rel="next"`)
			io.WriteString(w, `[{"type":"file","oid":"o2","size":5234139343,"path":"sub/d/big.safetensors",
				"lfs":{"oid":"abc","size":5234139343,"pointerSize":134},"xetHash":"`+xetHashStr+`"}]`)
		case "3":
			io.WriteString(w, `[{"type":"file","oid":"o3","size":7,"path":"sub/redacted","xetHash":"`+strings.Repeat("*", 64)+`"},
				{"type":"file","oid":"o4","size":7,"path":"sub/bad","xetHash":"xyz"}]`)
		}
	})
	got, err := c.List(context.Background(), "", Repo{Model, "org/m"}, "main", "/sub/", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || !got[0].IsDir() || got[1].Size != 10 || got[2].XetHash == nil ||
		got[2].XetHash.String() != xetHashStr || got[2].LFS == nil || got[2].LFS.OID != "abc" ||
		got[3].XetHash != nil || got[4].XetHash != nil {
		t.Fatalf("entries %+v", got)
	}
}

func TestListDetectsPaginationLoops(t *testing.T) {
	_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", `<`+r.URL.String()+`>; rel="next"`)
		io.WriteString(w, `[]`)
	})
	if _, err := c.List(context.Background(), "", Repo{Model, "a"}, "", "", false); err == nil {
		t.Fatal("endless pagination accepted")
	}
}

// A next link to another origin (here another port of the same host) must
// not receive the caller's token: List refuses it before any request goes
// there.
func TestListRefusesForeignNextLink(t *testing.T) {
	var foreignHits atomic.Int64
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreignHits.Add(1)
		io.WriteString(w, `[]`)
	}))
	defer foreign.Close()
	var hubHits atomic.Int64
	_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		hubHits.Add(1)
		w.Header().Set("Link", `<`+foreign.URL+`/api/models/org/m/tree/main?cursor=2>; rel="next"`)
		io.WriteString(w, `[{"type":"file","oid":"o1","size":1,"path":"a"}]`)
	})
	for _, token := range []string{"hf_user", ""} {
		_, err := c.List(context.Background(), token, Repo{Model, "org/m"}, "main", "", true)
		if !errors.Is(err, ErrForeignLink) || strings.Contains(err.Error(), "hf_user") {
			t.Errorf("token %q: List error = %v, want ErrForeignLink", token, err)
		}
	}
	if hubHits.Load() != 2 || foreignHits.Load() != 0 {
		t.Errorf("hub saw %d requests (want 2: the premise), the foreign origin %d (want 0)", hubHits.Load(), foreignHits.Load())
	}
	// the guard under every call: a token is never sent off the Hub
	if _, err := c.do(context.Background(), "x", http.MethodGet, foreign.URL+"/x", "hf_user", nil, false); !errors.Is(err, ErrForeignLink) {
		t.Errorf("do with a token to another origin: %v", err)
	}
	if foreignHits.Load() != 0 {
		t.Errorf("the foreign origin was reached")
	}
}

func TestOnHub(t *testing.T) {
	c := &Client{BaseURL: "https://Hub.example"}
	c.init()
	for u, want := range map[string]bool{
		"https://hub.example/api/x":      true,
		"https://hub.example:443/api/x":  true,
		"HTTPS://HUB.EXAMPLE/api":        true,
		"http://hub.example/api/x":       false,
		"https://hub.example:8443/api/x": false,
		"https://other.example/api/x":    false,
		"https://hub.example.evil/api/x": false,
		"//hub.example/x":                false,
		"/api/x":                         false,
	} {
		if got := c.onHub(u); got != want {
			t.Errorf("onHub(%q) = %v, want %v", u, got, want)
		}
	}
}

func TestPathsInfo(t *testing.T) {
	_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/api/spaces/s/x/paths-info/main" || !bytes.Contains(body, []byte(`"paths":["a.bin"]`)) {
			w.WriteHeader(400)
			return
		}
		io.WriteString(w, `[{"type":"file","oid":"o","size":3,"path":"a.bin","xetHash":"`+xetHashStr+`"}]`)
	})
	got, err := c.PathsInfo(context.Background(), "", Repo{Space, "s/x"}, "", []string{"a.bin"})
	if err != nil || len(got) != 1 || got[0].XetHash == nil {
		t.Fatalf("%+v %v", got, err)
	}
}

func tokenServer(t *testing.T, exp func() int64) (*atomic.Int64, *Client) {
	var n atomic.Int64
	_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		if !strings.HasPrefix(r.URL.EscapedPath(), "/api/models/org/m/xet-read-token/") {
			w.WriteHeader(404)
			return
		}
		fmt.Fprintf(w, `{"accessToken":"cas-%d-%s","exp":%d,"casUrl":"https://cas.test"}`,
			k, r.Header.Get("Authorization"), exp())
	})
	return &n, c
}

func TestReadTokenCaches(t *testing.T) {
	n, c := tokenServer(t, func() int64 { return time.Now().Add(time.Hour).Unix() })
	repo := Repo{Model, "org/m"}
	if _, err := c.ReadToken(context.Background(), "u1", repo, "main"); err != nil {
		t.Fatal(err)
	}
	// Another user, another revision: other entries. Anonymous works. The
	// first one again: cached.
	for _, call := range []struct{ user, rev string }{{"u2", "main"}, {"u1", "dev"}, {"", "main"}, {"u1", "main"}} {
		if _, err := c.ReadToken(context.Background(), call.user, repo, call.rev); err != nil {
			t.Fatal(err)
		}
	}
	if n.Load() != 4 {
		t.Fatalf("%d token requests, want 4", n.Load())
	}
	tok, _ := c.ReadToken(context.Background(), "u1", repo, "main")
	c.ForgetToken("u1", repo, "main", tok.AccessToken)
	tok2, _ := c.ReadToken(context.Background(), "u1", repo, "main")
	if tok2.AccessToken == tok.AccessToken || n.Load() != 5 {
		t.Fatalf("forgotten token reused (%d requests)", n.Load())
	}
	if strings.Contains(tok2.String(), tok2.AccessToken) {
		t.Fatal("String shows the token")
	}
}

func TestReadTokenRefreshesBeforeExpiry(t *testing.T) {
	// A token that expires within the margin is replaced at once.
	n, c := tokenServer(t, func() int64 { return time.Now().Add(30 * time.Second).Unix() })
	c.RefreshMargin = time.Minute
	// Lifetime 30 s < 2 x margin: used for the first half of its life.
	for range 3 {
		if _, err := c.ReadToken(context.Background(), "u", Repo{Model, "org/m"}, "main"); err != nil {
			t.Fatal(err)
		}
	}
	if n.Load() != 1 {
		t.Fatalf("%d requests, want 1", n.Load())
	}
	n2, c2 := tokenServer(t, func() int64 { return time.Now().Add(-time.Second).Unix() })
	for range 3 {
		if _, err := c2.ReadToken(context.Background(), "u", Repo{Model, "org/m"}, "main"); err != nil {
			t.Fatal(err)
		}
	}
	if n2.Load() != 3 {
		t.Fatalf("expired token reused: %d requests, want 3", n2.Load())
	}
}

func TestReadTokenHeadersAndErrors(t *testing.T) {
	_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.EscapedPath() == "/api/datasets/o/d/xet-read-token/refs%2Fpr%2F1" {
			w.Header().Set("X-Xet-Access-Token", "hdr-tok")
			w.Header().Set("X-Xet-Cas-Url", "https://cas.test")
			w.Header().Set("X-Xet-Token-Expiration", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
			return
		}
		w.Header().Set("X-Error-Code", "GatedRepo")
		w.WriteHeader(403)
	})
	tok, err := c.ReadToken(context.Background(), "", Repo{Dataset, "o/d"}, "refs/pr/1")
	if err != nil || tok.AccessToken != "hdr-tok" || time.Until(tok.Exp) < 50*time.Minute {
		t.Fatalf("%+v %v", tok, err)
	}
	_, err = c.ReadToken(context.Background(), "", Repo{Dataset, "o/gated"}, "main")
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("err = %v", err)
	}
}

// heldHub is an in-memory Hub transport for the single-flight tests, run
// in a synctest bubble: it counts the token requests and holds each one
// until release is closed, so that a test knows, with synctest.Wait, that
// every caller is waiting and how many requests went upstream.
type heldHub struct {
	release chan struct{}
	n       atomic.Int64
}

func (h *heldHub) RoundTrip(r *http.Request) (*http.Response, error) {
	k := h.n.Add(1)
	if !strings.HasPrefix(r.URL.EscapedPath(), "/api/models/org/m/xet-read-token/") {
		return &http.Response{StatusCode: 404, Body: http.NoBody, Request: r}, nil
	}
	select {
	case <-h.release:
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	body := fmt.Sprintf(`{"accessToken":"cas-%d","exp":%d,"casUrl":"https://cas.test"}`, k, time.Now().Add(time.Hour).Unix())
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

func heldClient() (*heldHub, *Client) {
	h := &heldHub{release: make(chan struct{})}
	return h, &Client{BaseURL: "http://hub.test", HTTP: &http.Client{Transport: h}}
}

// Concurrent callers for the same (user, repo, revision) share one request:
// while it is held upstream, 20 callers wait and one request was sent.
func TestReadTokenSharesOneRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up, c := heldClient()
		var wg sync.WaitGroup
		toks := make([]string, 20)
		for i := range toks {
			wg.Go(func() {
				tok, err := c.ReadToken(context.Background(), "u1", Repo{Model, "org/m"}, "main")
				if err != nil {
					t.Error(err)
					return
				}
				toks[i] = tok.AccessToken
			})
		}
		synctest.Wait() // every caller is blocked: on the request, or waiting for it
		if n := up.n.Load(); n != 1 {
			t.Fatalf("%d token requests while 20 callers wait, want 1", n)
		}
		close(up.release)
		wg.Wait()
		for _, tok := range toks {
			if tok != "cas-1" {
				t.Fatalf("callers got %q, want the one token cas-1", toks)
			}
		}
		if n := up.n.Load(); n != 1 {
			t.Fatalf("%d token requests for 20 concurrent callers, want 1", n)
		}
	})
}

// A caller that gives up does not fail the others sharing its request, and
// they do not ask again.
func TestReadTokenCallerCancelDoesNotFailOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up, c := heldClient()
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() {
			_, err := c.ReadToken(ctx, "u", Repo{Model, "org/m"}, "main")
			first <- err
		}()
		synctest.Wait() // the first caller's request is upstream, held
		second := make(chan error, 1)
		go func() {
			tok, err := c.ReadToken(context.Background(), "u", Repo{Model, "org/m"}, "main")
			if err == nil && tok.AccessToken != "cas-1" {
				err = fmt.Errorf("got token %q, want the shared cas-1", tok.AccessToken)
			}
			second <- err
		}()
		synctest.Wait() // the second caller waits for that same request
		if n := up.n.Load(); n != 1 {
			t.Fatalf("%d token requests with two callers waiting, want 1", n)
		}
		cancel()
		if err := <-first; !errors.Is(err, context.Canceled) {
			t.Fatalf("first: %v", err)
		}
		close(up.release)
		if err := <-second; err != nil {
			t.Fatalf("second: %v", err)
		}
		if n := up.n.Load(); n != 1 {
			t.Fatalf("%d token requests, want 1", n)
		}
	})
}

func TestOpenPlainRangeAndResume(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 10000)
	var n atomic.Int64
	var sawAuthOnCDN atomic.Bool
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawAuthOnCDN.Store(true)
		}
		if n.Add(1) == 1 { // first answer breaks off half-way
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 100-%d/%d", len(data)-1, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(len(data)-100))
			w.WriteHeader(206)
			w.Write(data[100:5000])
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer cdn.Close()
	_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer hf_u" {
			w.WriteHeader(401)
			return
		}
		http.Redirect(w, r, cdn.URL+"/lfs/obj?sig=x", http.StatusFound)
	})
	meta := &FileMeta{Size: int64(len(data)), PlainURL: c.BaseURL + "/m/resolve/main/f"}
	body, err := c.OpenPlain(context.Background(), "hf_u", meta, 100, int64(len(data))-100)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(body)
	body.Close()
	if err != nil || !bytes.Equal(got, data[100:]) {
		t.Fatalf("err %v, %d bytes", err, len(got))
	}
	if sawAuthOnCDN.Load() {
		t.Fatal("the Hub token followed the redirect to another host")
	}
	if n.Load() != 2 {
		t.Fatalf("%d CDN requests, want 2", n.Load())
	}
}

func TestParseLinks(t *testing.T) {
	got := parseLinks([]string{
		`<https://a.test/x?a=1,2>; rel="xet-auth", <https://b.test/y>; rel="xet-reconstruction-info"`,
		`<https://c.test/next>; rel=next`,
	})
	if got["xet-auth"] != "https://a.test/x?a=1,2" || got["xet-reconstruction-info"] != "https://b.test/y" || got["next"] != "https://c.test/next" {
		t.Fatalf("%v", got)
	}
}

func TestParseRepoType(t *testing.T) {
	for in, want := range map[string]RepoType{"": Model, "models": Model, "dataset": Dataset, "Spaces": Space} {
		if got, err := ParseRepoType(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseRepoType("bucket"); err == nil {
		t.Error("bucket accepted")
	}
}
