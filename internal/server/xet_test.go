package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/castoken"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/xettest"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// The Xet-mode tests put a small Xet client (token route, reconstruction,
// xorb ranges decoded with internal/xorb) in front of the real server and
// engine, with fakehub upstream over loopback. Every answer the client
// gets is searched for fakehub's address: the upstream CAS (fakehub's own
// origin) must never show.

const xetTestKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// proxyKey is a proxy API key of the Xet fixture, whose server token is
// readerToken.
const proxyKey = "proxy-key-0123456789"

type xetFile struct {
	data []byte
	hash merklehash.Hash
}

type xetFixture struct {
	t      *testing.T
	fh     *fakehub.Hub
	hub    *httptest.Server
	ts     *httptest.Server
	eng    *proxy.Engine
	sealer *castoken.Sealer
	client *http.Client // checks every answer for upstream leaks
	files  map[string]xetFile
	logs   *lockedBuffer // the server's log, at debug level
}

// compressible returns n bytes that LZ4 shrinks: runs of text with random
// bytes between them.
func compressible(seed uint64, n int) []byte {
	rnd := xettest.SplitMix64(seed, n)
	out := make([]byte, 0, n)
	for i := 0; len(out) < n; i++ {
		out = append(out, fmt.Sprintf("line %d of a compressible file; ", i)...)
		out = append(out, rnd[len(out)%len(rnd)])
	}
	return out[:n]
}

// newXetFixture serves, through a Xet-mode server with a memory chunk
// cache (when withCache):
//
//	org/pub      public: big.bin (1.5 MiB, LZ4 xorbs), small.bin
//	org/other    public: other.bin
//	org/private  private, readable with readerToken: secret.bin
//	org/gated    gated, readerToken approved: gated.bin
func newXetFixture(t *testing.T, withCache bool, mod func(*Config)) *xetFixture {
	t.Helper()
	fh, err := fakehub.New(fakehub.Config{Compression: "lz4"})
	if err != nil {
		t.Fatal(err)
	}
	hubSrv := httptest.NewServer(fh)
	t.Cleanup(hubSrv.Close)
	fh.SetPublicURL(hubSrv.URL)
	fh.AddToken(userToken)
	f := &xetFixture{t: t, fh: fh, hub: hubSrv, files: map[string]xetFile{}}
	repos := []struct {
		spec fakehub.RepoSpec
		path string
		data []byte
	}{
		{fakehub.RepoSpec{ID: "org/pub"}, "big.bin", compressible(1, 3<<19+321)},
		{fakehub.RepoSpec{}, "small.bin", xettest.SplitMix64(2, 20000)},
		{fakehub.RepoSpec{ID: "org/other"}, "other.bin", xettest.SplitMix64(3, 70000)},
		{fakehub.RepoSpec{ID: "org/private", Private: true, Readers: []string{readerToken}}, "secret.bin", xettest.SplitMix64(4, 90000)},
		{fakehub.RepoSpec{ID: "org/gated", Gated: true, Readers: []string{readerToken}}, "gated.bin", xettest.SplitMix64(5, 30000)},
	}
	id := ""
	for _, r := range repos {
		if r.spec.ID != "" {
			id = r.spec.ID
			if err := fh.CreateRepo(r.spec); err != nil {
				t.Fatal(err)
			}
		}
		fs, err := fh.AddFile(context.Background(), id, r.path, bytes.NewReader(r.data), fakehub.StorageXet)
		if err != nil {
			t.Fatal(err)
		}
		f.files[id+"/"+r.path] = xetFile{data: r.data, hash: fs.XetHash}
	}
	cfg := testConfig(hubSrv.URL)
	cfg.Xet = true
	cfg.SigningKey = xetTestKey
	cfg.ServerTokenEnabled, cfg.ServerToken, cfg.APIKeys = true, readerToken, []string{proxyKey}
	if mod != nil {
		mod(&cfg)
	}
	var store cache.Store
	if withCache {
		if store, err = cache.NewMemory(256 << 20); err != nil {
			t.Fatal(err)
		}
	}
	eng, _ := testEngine(t, cfg, engineOptions{cache: store})
	f.eng = eng
	f.logs = &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(Options{Config: cfg, Engine: eng, Logger: log, Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(f.ts.Close)
	key, _ := castoken.ParseKey(xetTestKey)
	f.sealer, _ = castoken.NewSealer(key)
	f.client = &http.Client{Transport: &leakCheck{t: t, needle: strings.TrimPrefix(hubSrv.URL, "http://"), rt: http.DefaultTransport}}
	fh.ResetStats()
	return f
}

// leakCheck fails the test when an answer names the upstream (its host).
type leakCheck struct {
	t      *testing.T
	needle string
	rt     http.RoundTripper
}

func (l *leakCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			if strings.Contains(v, l.needle) {
				l.t.Errorf("%s %s: header %s names the upstream: %s", req.Method, req.URL.Path, k, v)
			}
		}
	}
	if bytes.Contains(body, []byte(l.needle)) {
		l.t.Errorf("%s %s: body names the upstream", req.Method, req.URL.Path)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

type xetAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (f *xetFixture) do(method, u string, hdr ...string) xetAnswer {
	f.t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return xetAnswer{resp.StatusCode, resp.Header, b}
}

type tokenBody struct {
	AccessToken string `json:"accessToken"`
	Exp         int64  `json:"exp"`
	CasURL      string `json:"casUrl"`
}

// token asks the token route of repo ("models/org/pub") at rev.
func (f *xetFixture) token(repo, rev string, hdr ...string) (xetAnswer, tokenBody) {
	f.t.Helper()
	a := f.do("GET", f.ts.URL+"/api/"+repo+"/xet-read-token/"+rev, hdr...)
	var tb tokenBody
	if a.status == 200 {
		if err := json.Unmarshal(a.body, &tb); err != nil {
			f.t.Fatalf("token answer %s: %v", a.body, err)
		}
	}
	return a, tb
}

func (f *xetFixture) mustToken(repo string, hdr ...string) tokenBody {
	f.t.Helper()
	a, tb := f.token(repo, "main", hdr...)
	if a.status != 200 {
		f.t.Fatalf("token for %s: %d %s", repo, a.status, a.body)
	}
	return tb
}

// reconstruct queries the proxy's CAS; the answer comes back in the v2
// shape (a v1 answer converted as xet-core does).
func (f *xetFixture) reconstruct(tb tokenBody, file merklehash.Hash, v2 bool, rng string) (xetAnswer, *reconstruction.ResponseV2) {
	f.t.Helper()
	v := "v1"
	if v2 {
		v = "v2"
	}
	hdr := []string{"Authorization", "Bearer " + tb.AccessToken}
	if rng != "" {
		hdr = append(hdr, "Range", rng)
	}
	a := f.do("GET", tb.CasURL+"/"+v+"/reconstructions/"+file.String(), hdr...)
	if a.status != 200 {
		return a, nil
	}
	if v2 {
		var r reconstruction.ResponseV2
		if err := json.Unmarshal(a.body, &r); err != nil {
			f.t.Fatal(err)
		}
		return a, &r
	}
	var r reconstruction.ResponseV1
	if err := json.Unmarshal(a.body, &r); err != nil {
		f.t.Fatal(err)
	}
	return a, r.ToV2()
}

// rebuild fetches every xorb range of an answer (Range verbatim, no
// Authorization), decodes it with internal/xorb and assembles the terms.
func (f *xetFixture) rebuild(r *reconstruction.ResponseV2) []byte {
	f.t.Helper()
	type key struct {
		url string
		rg  reconstruction.RangeV2
	}
	fetched := map[key][][]byte{}
	var out []byte
	for i, term := range r.Terms {
		var k *key
		for _, xf := range r.Xorbs[term.Hash] {
			for _, rg := range xf.Ranges {
				if rg.Chunks.Contains(term.Range) {
					k = &key{xf.URL, rg}
				}
			}
		}
		if k == nil {
			f.t.Fatalf("term %d: no fetch range holds it", i)
		}
		chunks, ok := fetched[*k]
		if !ok {
			a := f.do("GET", k.url, "Range", fmt.Sprintf("bytes=%d-%d", k.rg.Bytes.Start, k.rg.Bytes.End))
			if a.status != http.StatusPartialContent || uint64(len(a.body)) != k.rg.Bytes.Len() {
				f.t.Fatalf("xorb range: %d, %d bytes for %d: %s", a.status, len(a.body), k.rg.Bytes.Len(), a.body)
			}
			dec := xorb.NewDecoder(bytes.NewReader(a.body))
			for {
				c, err := dec.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					f.t.Fatalf("decoding a served range: %v", err)
				}
				chunks = append(chunks, bytes.Clone(c))
			}
			if uint32(len(chunks)) != k.rg.Chunks.Len() {
				f.t.Fatalf("%d chunks in a range of %d", len(chunks), k.rg.Chunks.Len())
			}
			fetched[*k] = chunks
		}
		var td []byte
		for c := term.Range.Start; c < term.Range.End; c++ {
			td = append(td, chunks[c-k.rg.Chunks.Start]...)
		}
		if uint32(len(td)) != term.UnpackedLength {
			f.t.Fatalf("term %d: %d bytes, unpacked_length %d", i, len(td), term.UnpackedLength)
		}
		if i == 0 {
			td = td[r.OffsetIntoFirstRange:]
		}
		out = append(out, td...)
	}
	return out
}

// xorbBytes is what fakehub served of xorb ranges so far, once its log
// has settled (it logs a request after the handler returns).
func (f *xetFixture) xorbBytes() int64 {
	f.t.Helper()
	last := int64(-1)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		n := f.fh.Stats()[fakehub.ClassXorb].BytesOut
		if n == last {
			return n
		}
		last = n
	}
	return last
}

func TestXetTokenRoute(t *testing.T) {
	f := newXetFixture(t, false, nil)
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	cases := []struct {
		name   string
		repo   string
		hdr    []string
		status int
		code   string
	}{
		{"public anonymous", "models/org/pub", nil, 200, ""},
		{"public, user token", "models/org/pub", bearer(userToken), 200, ""},
		{"private anonymous", "models/org/private", nil, 401, "RepoNotFound"},
		{"private, wrong user", "models/org/private", bearer(userToken), 404, "RepoNotFound"},
		{"private, reader", "models/org/private", bearer(readerToken), 200, ""},
		{"private, unknown token", "models/org/private", bearer("hf_bogus"), 401, ""},
		{"gated anonymous", "models/org/gated", nil, 401, "GatedRepo"},
		{"gated, not approved", "models/org/gated", bearer(userToken), 403, "GatedRepo"},
		{"gated, approved", "models/org/gated", bearer(readerToken), 200, ""},
		{"private, proxy key (server token)", "models/org/private", []string{"X-Proxy-Key", proxyKey}, 200, ""},
		{"private, proxy key as bearer", "models/org/private", bearer(proxyKey), 200, ""},
		{"private, wrong proxy key", "models/org/private", []string{"X-Proxy-Key", "not-the-proxy-key-at-all"}, 401, "InvalidProxyKey"},
		{"missing repo", "models/org/nope", bearer(readerToken), 404, "RepoNotFound"},
	}
	for _, c := range cases {
		a, tb := f.token(c.repo, "main", c.hdr...)
		if a.status != c.status || a.header.Get("X-Error-Code") != c.code {
			t.Errorf("%s: %d %q, want %d %q (%s)", c.name, a.status, a.header.Get("X-Error-Code"), c.status, c.code, a.body)
			continue
		}
		if c.status != 200 {
			if a.header.Get("X-Xet-Access-Token") != "" || strings.Contains(string(a.body), "accessToken") {
				t.Errorf("%s: a refusal carries a token", c.name)
			}
			continue
		}
		if tb.AccessToken == "" || a.header.Get("X-Xet-Access-Token") != tb.AccessToken ||
			a.header.Get("X-Xet-Token-Expiration") != strconv.FormatInt(tb.Exp, 10) ||
			tb.CasURL != f.ts.URL+"/cas" || a.header.Get("X-Xet-Cas-Url") != tb.CasURL {
			t.Errorf("%s: answer %s, headers %v", c.name, a.body, a.header)
		}
		if tb.Exp <= time.Now().Unix() || tb.Exp > time.Now().Add(DefaultXetTokenTTL+time.Minute).Unix() {
			t.Errorf("%s: exp %d", c.name, tb.Exp)
		}
		if !strings.Contains(a.header.Get("Cache-Control"), "no-store") {
			t.Errorf("%s: token answer may be cached: %q", c.name, a.header.Get("Cache-Control"))
		}
	}
	// other shapes of the route
	for p, want := range map[string]int{
		"/api/models/org/pub/xet-read-token/refs%2Fpr%2F1": 404, // no such revision
		"/api/models/org/pub/xet-read-token/refs/pr/1":     404,
		"/api/datasets/org/nope/xet-read-token/main":       401, // anonymous: no such repo
		"/api/models/org/pub/xet-read-token/..":            400,
		"/api/models/org/pub/xet-read-token/a%2F..%2Fb":    400,
	} {
		if a := f.do("GET", f.ts.URL+p); a.status != want {
			t.Errorf("%s: %d %s", p, a.status, a.body)
		}
	}
	if a := f.do("GET", f.ts.URL+"/api/models/org/pub/xet-read-token/main", "Authorization", "Bearer "+readerToken); a.status != 200 {
		t.Errorf("repo-qualified route: %d", a.status)
	}
	// a revision with slashes, encoded (xet-core) or raw (huggingface_hub)
	if err := f.fh.CreateBranch("org/pub", "refs/pr/7", "main"); err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{"refs%2Fpr%2F7", "refs/pr/7"} {
		a, tb := f.token("models/org/pub", rev)
		at, err := f.sealer.OpenAccess(tb.AccessToken, time.Now())
		if a.status != 200 || err != nil || at.Revision != "refs/pr/7" || at.RepoID != "org/pub" || at.RepoType != "model" {
			t.Errorf("revision %s: %d %+v %v", rev, a.status, at, err)
		}
	}
	// writes stay refused whoever asks
	for _, hdr := range [][]string{nil, bearer(readerToken), {"X-Proxy-Key", proxyKey}} {
		a := f.do("GET", f.ts.URL+"/api/models/org/pub/xet-write-token/main", hdr...)
		if a.status != 403 || a.header.Get("X-Error-Code") != "ReadOnlyProxy" || a.header.Get("X-Xet-Access-Token") != "" {
			t.Errorf("xet-write-token with %v: %d %s", hdr, a.status, a.body)
		}
	}
	if a := f.do("POST", f.ts.URL+"/api/models/org/pub/xet-read-token/main"); a.status != 405 {
		t.Errorf("POST to the token route: %d", a.status)
	}
	// a CAS token never outlives the upstream token it carries, and a
	// xorb URL never outlives the CAS token
	f.fh.SetTokenTTL(10 * time.Minute)
	tb := f.mustToken("models/org/other", "Authorization", "Bearer "+userToken)
	at, err := f.sealer.OpenAccess(tb.AccessToken, time.Now())
	if err != nil || tb.Exp > time.Now().Add(10*time.Minute).Unix() || at.Exp.Unix() != tb.Exp || at.UpstreamExp.Before(at.Exp) {
		t.Fatalf("token under a 10-minute upstream token: exp %d, %+v, %v", tb.Exp, at, err)
	}
	_, r := f.reconstruct(tb, f.files["org/other/other.bin"].hash, true, "")
	u, _, _ := firstRange(t, r)
	pu, _ := url.Parse(u)
	tk, err := f.sealer.OpenTicket(pu.Query().Get("t"), time.Now())
	if err != nil || tk.Exp.After(at.Exp) || tk.Caller != callerDigest(userToken) {
		t.Fatalf("ticket under that token: %+v, %v", tk, err)
	}
}

func TestXetReconstructAndRebuild(t *testing.T) {
	f := newXetFixture(t, false, nil)
	for _, v2 := range []bool{true, false} {
		for _, name := range []string{"org/pub/big.bin", "org/pub/small.bin"} {
			file := f.files[name]
			tb := f.mustToken("models/org/pub")
			a, r := f.reconstruct(tb, file.hash, v2, "")
			if r == nil {
				t.Fatalf("v2=%v %s: %d %s", v2, name, a.status, a.body)
			}
			for _, xfs := range r.Xorbs {
				for _, xf := range xfs {
					if !strings.HasPrefix(xf.URL, f.ts.URL+"/cas/xorbs/") {
						t.Fatalf("xorb URL not on the proxy: %s", xf.URL)
					}
				}
			}
			if got := f.rebuild(r); !bytes.Equal(got, file.data) {
				t.Fatalf("v2=%v %s: rebuilt %d bytes, differ from the file (%d)", v2, name, len(got), len(file.data))
			}
		}
		// a slice, not on a chunk boundary
		file := f.files["org/pub/big.bin"]
		tb := f.mustToken("models/org/pub")
		_, r := f.reconstruct(tb, file.hash, v2, "bytes=100000-700000")
		if r == nil {
			t.Fatal("ranged reconstruction refused")
		}
		if got := f.rebuild(r); !bytes.HasPrefix(got, file.data[100000:700001]) {
			t.Fatalf("v2=%v: ranged rebuild differs", v2)
		}
		if a, _ := f.reconstruct(tb, file.hash, v2, fmt.Sprintf("bytes=%d-%d", len(file.data), len(file.data)+5)); a.status != 416 {
			t.Errorf("range past the end: %d", a.status)
		}
	}
	// private files with the reader's token, through the server token too
	var secrets []string
	for _, hdr := range [][]string{{"Authorization", "Bearer " + readerToken}, {"X-Proxy-Key", proxyKey}} {
		tb := f.mustToken("models/org/private", hdr...)
		_, r := f.reconstruct(tb, f.files["org/private/secret.bin"].hash, true, "")
		if r == nil || !bytes.Equal(f.rebuild(r), f.files["org/private/secret.bin"].data) {
			t.Fatalf("private file with %v", hdr)
		}
		at, _ := f.sealer.OpenAccess(tb.AccessToken, time.Now())
		u, _, _ := firstRange(t, r)
		pu, _ := url.Parse(u)
		secrets = append(secrets, tb.AccessToken, pu.Query().Get("t"), at.UpstreamToken, readerToken, proxyKey)
	}
	// the log tells what happened, and nothing secret
	logs := f.logs.String()
	if !strings.Contains(logs, `"route":"cas_xorb"`) || !strings.Contains(logs, `"route":"xet_token"`) {
		t.Fatalf("premise: the requests are logged: %.500s", logs)
	}
	for _, sec := range secrets {
		if strings.Contains(logs, sec) {
			t.Errorf("the log holds a secret (%.12s...)", sec)
		}
	}
}

func TestXetCASTokenRefusals(t *testing.T) {
	f := newXetFixture(t, false, nil)
	pub := f.mustToken("models/org/pub")
	secret := f.files["org/private/secret.bin"].hash
	other := f.files["org/other/other.bin"].hash
	big := f.files["org/pub/big.bin"].hash
	status := func(tb tokenBody, h merklehash.Hash) int {
		a, _ := f.reconstruct(tb, h, true, "")
		return a.status
	}
	// upstream decides: the caller's token for org/pub reaches neither a
	// private repo's file nor another repo's
	if s := status(pub, secret); s != 404 {
		t.Errorf("org/pub token for a file of org/private: %d", s)
	}
	if s := status(pub, other); s != 404 {
		t.Errorf("org/pub token for a file of org/other: %d", s)
	}
	reader := f.mustToken("models/org/private", "Authorization", "Bearer "+readerToken)
	if s := status(reader, big); s != 404 {
		t.Errorf("org/private token for a file of org/pub: %d", s)
	}
	if s := status(reader, secret); s != 200 {
		t.Fatalf("premise: the reader's token reads the private file: %d", s)
	}
	// what the proxy checks itself
	at, err := f.sealer.OpenAccess(pub.AccessToken, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	expired := *at
	expired.Exp = time.Now().Add(-time.Second)
	tampered := []byte(pub.AccessToken)
	tampered[len(tampered)/2] ^= 1
	if tampered[len(tampered)/2] == '_'^1 || tampered[len(tampered)/2] == '-'^1 {
		tampered[len(tampered)/2] = 'A'
	}
	ticket := f.sealer.SealTicket(&castoken.Ticket{Exp: time.Now().Add(time.Hour), Xorb: big,
		UpstreamURL: at.UpstreamURL, Ranges: []castoken.Range{{Chunks: reconstruction.ChunkRange{Start: 0, End: 1}}}})
	foreign, _ := castoken.NewSealer(bytes.Repeat([]byte{7}, 32))
	for name, tok := range map[string]string{
		"expired":        f.sealer.SealAccess(&expired),
		"tampered":       string(tampered),
		"xorb ticket":    ticket,
		"another key":    foreign.SealAccess(at),
		"upstream token": at.UpstreamToken,
		"hub token":      readerToken,
		"empty":          "",
	} {
		a := f.do("GET", f.ts.URL+"/cas/v2/reconstructions/"+big.String(), "Authorization", "Bearer "+tok)
		if a.status != 401 || a.header.Get("X-Error-Code") != "InvalidCASToken" {
			t.Errorf("%s: %d %s", name, a.status, a.body)
		}
	}
	if a := f.do("GET", f.ts.URL+"/cas/v2/reconstructions/"+big.String()); a.status != 401 {
		t.Errorf("no Authorization: %d", a.status)
	}
	if a := f.do("GET", f.ts.URL+"/cas/v2/reconstructions/xyz", "Authorization", "Bearer "+pub.AccessToken); a.status != 400 {
		t.Errorf("bad hash: %d", a.status)
	}
	if a := f.do("GET", f.ts.URL+"/cas/v1/xorbs/default/"+big.String(), "Authorization", "Bearer "+pub.AccessToken); a.status != 404 {
		t.Errorf("an upload route: %d", a.status)
	}
}

// xorbURL returns the first xorb URL and range of a v2 answer.
func firstRange(t *testing.T, r *reconstruction.ResponseV2) (string, merklehash.Hash, reconstruction.RangeV2) {
	t.Helper()
	for x, xfs := range r.Xorbs {
		return xfs[0].URL, x, xfs[0].Ranges[0]
	}
	t.Fatal("no xorb in the answer")
	return "", merklehash.Hash{}, reconstruction.RangeV2{}
}

func TestXetXorbTickets(t *testing.T) {
	f := newXetFixture(t, false, nil)
	tb := f.mustToken("models/org/pub")
	file := f.files["org/pub/big.bin"]
	_, r := f.reconstruct(tb, file.hash, true, "")
	u, x, rg := firstRange(t, r)
	span := func(a, b uint64) string { return fmt.Sprintf("bytes=%d-%d", a, b) }
	if a := f.do("GET", u, "Range", span(rg.Bytes.Start, rg.Bytes.End)); a.status != 206 ||
		uint64(len(a.body)) != rg.Bytes.Len() || a.header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/*", rg.Bytes.Start, rg.Bytes.End) {
		t.Fatalf("premise: the granted range: %d %v", a.status, a.header)
	}
	// inside the granted range is fine, outside is not
	if a := f.do("GET", u, "Range", span(rg.Bytes.Start+1, rg.Bytes.End-1)); a.status != 206 || uint64(len(a.body)) != rg.Bytes.Len()-2 {
		t.Errorf("a range inside the grant: %d", a.status)
	}
	for _, h := range []string{span(rg.Bytes.Start, rg.Bytes.End+1), span(rg.Bytes.End+1, rg.Bytes.End+10), "", "bytes=-100", "bytes=0-"} {
		if a := f.do("GET", u, "Range", h); a.status != 403 {
			t.Errorf("Range %q: %d", h, a.status)
		}
	}
	pu, _ := url.Parse(u)
	ticket := pu.Query().Get("t")
	tk, err := f.sealer.OpenTicket(ticket, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if tk.Caller != callerDigest("") || tk.Xorb != x || tk.Exp.After(time.Now().Add(DefaultXetURLTTL)) {
		t.Errorf("ticket: %+v", tk)
	}
	expired := *tk
	expired.Exp = time.Now().Add(-time.Second)
	access := f.sealer.SealAccess(&castoken.AccessToken{Exp: time.Now().Add(time.Hour)})
	otherXorb := f.files["org/pub/small.bin"].hash // a file hash: no xorb of big.bin
	for name, u2 := range map[string]string{
		"expired":         f.ts.URL + "/cas/xorbs/" + x.String() + "?t=" + f.sealer.SealTicket(&expired),
		"access token":    f.ts.URL + "/cas/xorbs/" + x.String() + "?t=" + access,
		"tampered":        f.ts.URL + "/cas/xorbs/" + x.String() + "?t=" + ticket[:len(ticket)-4] + "AAAA",
		"another xorb":    f.ts.URL + "/cas/xorbs/" + otherXorb.String() + "?t=" + ticket,
		"no ticket":       f.ts.URL + "/cas/xorbs/" + x.String(),
		"two tickets":     u + "&t=" + ticket,
		"another key":     f.ts.URL + "/cas/xorbs/" + x.String() + "?t=" + mustSealer(t).SealTicket(tk),
		"ticket as query": f.ts.URL + "/cas/xorbs/" + x.String() + "?x=" + ticket,
	} {
		if a := f.do("GET", u2, "Range", span(rg.Bytes.Start, rg.Bytes.End)); a.status != 403 {
			t.Errorf("%s: %d %s", name, a.status, a.body)
		}
	}
	// a ticket whose served range promises more than its chunks hold (only
	// a bug could seal one) ends in a cut connection, never a short answer
	long := *tk
	long.Ranges = append([]castoken.Range(nil), tk.Ranges...)
	long.Ranges[0].Served.End += 100
	req, _ := http.NewRequest("GET", f.ts.URL+"/cas/xorbs/"+x.String()+"?t="+f.sealer.SealTicket(&long), nil)
	req.Header.Set("Range", span(long.Ranges[0].Served.Start, long.Ranges[0].Served.End))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil && resp.StatusCode == 206 && uint64(len(b)) == long.Ranges[0].Served.Len() {
			t.Error("a range longer than its chunks was answered whole")
		} else if resp.StatusCode != 206 {
			t.Errorf("long range: %d", resp.StatusCode)
		}
	}
	// the URL never carries an Authorization and needs none; a CAS token
	// does not stand in for the ticket
	if a := f.do("GET", f.ts.URL+"/cas/xorbs/"+x.String(), "Range", span(rg.Bytes.Start, rg.Bytes.End), "Authorization", "Bearer "+tb.AccessToken); a.status != 403 {
		t.Errorf("CAS token instead of a ticket: %d", a.status)
	}
}

func mustSealer(t *testing.T) *castoken.Sealer {
	s, err := castoken.NewSealer(castoken.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestXetXorbMultiRange(t *testing.T) {
	f := newXetFixture(t, false, nil)
	f.fh.SetMaxRangesPerURL(0)
	tb := f.mustToken("models/org/pub")
	file := f.files["org/pub/big.bin"]
	_, r := f.reconstruct(tb, file.hash, true, "")
	u, _, rg := firstRange(t, r)
	whole := f.do("GET", u, "Range", fmt.Sprintf("bytes=%d-%d", rg.Bytes.Start, rg.Bytes.End))
	if whole.status != 206 {
		t.Fatalf("premise: %d", whole.status)
	}
	// two pieces of the granted range in one request
	a := rg.Bytes.Start + rg.Bytes.Len()/3
	want := []reconstruction.ByteRange{{Start: rg.Bytes.Start, End: a}, {Start: a + 10, End: rg.Bytes.End}}
	var specs []string
	for _, w := range want {
		specs = append(specs, fmt.Sprintf("%d-%d", w.Start, w.End))
	}
	ans := f.do("GET", u, "Range", "bytes="+strings.Join(specs, ","))
	mt, params, err := mime.ParseMediaType(ans.header.Get("Content-Type"))
	if ans.status != 206 || err != nil || mt != "multipart/byteranges" {
		t.Fatalf("multi-range: %d %q", ans.status, ans.header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(ans.body), params["boundary"])
	for i, w := range want {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		got, _ := io.ReadAll(p)
		off := w.Start - rg.Bytes.Start
		if p.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/*", w.Start, w.End) || !bytes.Equal(got, whole.body[off:off+w.Len()]) {
			t.Fatalf("part %d: %q, %d bytes", i, p.Header.Get("Content-Range"), len(got))
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("after the parts: %v", err)
	}
	// what would multiply upstream transfers is refused
	for _, h := range []string{
		fmt.Sprintf("bytes=%d-%d,%d-%d,%d-%d", rg.Bytes.Start, rg.Bytes.Start, rg.Bytes.Start+2, rg.Bytes.Start+2, rg.Bytes.Start+4, rg.Bytes.Start+4),
		fmt.Sprintf("bytes=%d-%d,%d-%d", rg.Bytes.Start, rg.Bytes.End, rg.Bytes.Start, rg.Bytes.End),
		fmt.Sprintf("bytes=%d-%d,%d-%d", rg.Bytes.Start+10, rg.Bytes.End, rg.Bytes.Start, rg.Bytes.Start+5),
	} {
		if a := f.do("GET", u, "Range", h); a.status != 403 {
			t.Errorf("Range %s: %d", h, a.status)
		}
	}
}

func TestXetResolveHeaders(t *testing.T) {
	f := newXetFixture(t, false, nil)
	file := f.files["org/pub/big.bin"]
	commit, err := f.fh.Resolve("org/pub", "main")
	if err != nil {
		t.Fatal(err)
	}
	refresh := f.ts.URL + "/api/models/org/pub/xet-read-token/" + commit
	recon := f.ts.URL + "/cas/v1/reconstructions/" + file.hash.String()
	for _, p := range []string{"/org/pub/resolve/main/big.bin", "/download/org/pub/big.bin"} {
		for _, method := range []string{"HEAD", "GET"} {
			a := f.do(method, f.ts.URL+p)
			if a.status != 200 || a.header.Get("X-Xet-Hash") != file.hash.String() || a.header.Get("X-Xet-Refresh-Route") != refresh ||
				a.header.Get("Link") != `<`+refresh+`>; rel="xet-auth", <`+recon+`>; rel="xet-reconstruction-info"` {
				t.Errorf("%s %s: %d %v", method, p, a.status, a.header)
			}
			if method == "GET" && !bytes.Equal(a.body, file.data) {
				t.Errorf("GET %s: the bytes differ", p)
			}
		}
	}
	// plain files carry nothing of Xet
	small := f.do("HEAD", f.ts.URL+"/org/pub/resolve/main/.gitattributes")
	if small.status != 200 || small.header.Get("X-Xet-Hash") != "" || small.header.Get("Link") != "" {
		t.Errorf("plain file: %d %v", small.status, small.header)
	}
	// what @huggingface/hub asks first
	a := f.do("GET", f.ts.URL+"/org/pub/resolve/main/big.bin", "Range", "bytes=0-0", "Accept", "application/vnd.xet-fileinfo+json, */*")
	var info struct {
		Hash, Etag, RefreshURL, ReconstructionURL string
		Size                                      int64
	}
	if err := json.Unmarshal(a.body, &info); err != nil || a.status != 200 ||
		a.header.Get("Content-Type") != "application/vnd.xet-fileinfo+json" || a.header.Get("X-Linked-Size") != strconv.Itoa(len(file.data)) ||
		a.header.Get("X-Xet-Hash") != file.hash.String() || !strings.Contains(a.header.Get("Link"), `rel="xet-auth"`) ||
		info.Hash != file.hash.String() || info.Etag != a.header.Get("X-Linked-Etag")[1:65] || info.Size != int64(len(file.data)) || info.RefreshURL != refresh || info.ReconstructionURL != recon {
		t.Errorf("fileinfo: %d %v %s", a.status, a.header, a.body)
	}
	// the Link leads to a working token and reconstruction
	tokA := f.do("GET", refresh)
	var tb tokenBody
	if json.Unmarshal(tokA.body, &tb) != nil || tokA.status != 200 {
		t.Fatalf("refresh route: %d %s", tokA.status, tokA.body)
	}
	rec := f.do("GET", recon, "Authorization", "Bearer "+tb.AccessToken)
	var r1 reconstruction.ResponseV1
	if rec.status != 200 || json.Unmarshal(rec.body, &r1) != nil || !bytes.Equal(f.rebuild(r1.ToV2()), file.data) {
		t.Errorf("reconstruction link: %d", rec.status)
	}
	// listings keep the Xet fields
	tree := f.do("GET", f.ts.URL+"/api/models/org/pub/tree/main")
	if !strings.Contains(string(tree.body), `"xetHash":"`+file.hash.String()) {
		t.Errorf("tree without xetHash: %s", tree.body)
	}
	info2 := f.do("GET", f.ts.URL+"/api/models/org/pub")
	if !strings.Contains(string(info2.body), `"xetEnabled"`) {
		t.Errorf("repo info without xetEnabled: %s", info2.body)
	}
	pi := f.do("POST", f.ts.URL+"/api/models/org/pub/paths-info/main")
	_ = pi
}

// TestXetOff: with Xet mode off, nothing of Xet reaches a client.
func TestXetOff(t *testing.T) {
	f := newXetFixture(t, false, func(c *Config) { c.Xet = false })
	file := f.files["org/pub/big.bin"]
	a := f.do("HEAD", f.ts.URL+"/org/pub/resolve/main/big.bin")
	for k := range a.header {
		if strings.HasPrefix(k, "X-Xet-") || k == "Link" {
			t.Errorf("resolve answer has %s", k)
		}
	}
	fi := f.do("GET", f.ts.URL+"/org/pub/resolve/main/big.bin", "Range", "bytes=0-0", "Accept", "application/vnd.xet-fileinfo+json, */*")
	if fi.status != 206 || fi.header.Get("Content-Range") != fmt.Sprintf("bytes 0-0/%d", len(file.data)) {
		t.Errorf("fileinfo request: %d %v", fi.status, fi.header)
	}
	if tree := f.do("GET", f.ts.URL+"/api/models/org/pub/tree/main"); tree.status != 200 || strings.Contains(string(tree.body), "xetHash") {
		t.Errorf("tree: %d %s", tree.status, tree.body)
	}
	if info := f.do("GET", f.ts.URL+"/api/models/org/pub"); strings.Contains(string(info.body), "xetEnabled") {
		t.Errorf("repo info: %s", info.body)
	}
	if tok := f.do("GET", f.ts.URL+"/api/models/org/pub/xet-read-token/main"); tok.status != 403 || tok.header.Get("X-Error-Code") != "ReadOnlyProxy" {
		t.Errorf("token route: %d", tok.status)
	}
	if c := f.do("GET", f.ts.URL+"/cas/v2/reconstructions/"+file.hash.String()); c.status != 404 {
		t.Errorf("/cas: %d", c.status)
	}
}

// TestXetWarmCache: the second Xet download of a file costs no upstream
// xorb bytes; the first filled the cache as its bytes went through.
func TestXetWarmCache(t *testing.T) {
	f := newXetFixture(t, true, nil)
	file := f.files["org/pub/big.bin"]
	for i, v2 := range []bool{true, true, false} {
		before := f.xorbBytes()
		tb := f.mustToken("models/org/pub")
		_, r := f.reconstruct(tb, file.hash, v2, "")
		if r == nil {
			t.Fatal("reconstruction refused")
		}
		if got := f.rebuild(r); !bytes.Equal(got, file.data) {
			t.Fatalf("download %d differs", i)
		}
		// the cold answer passes upstream's LZ4 records through, the
		// warm ones serve uncompressed records from the cache
		u, _, rg := firstRange(t, r)
		a := f.do("GET", u, "Range", fmt.Sprintf("bytes=%d-%d", rg.Bytes.Start, rg.Bytes.Start+7))
		if h, err := xorb.ParseHeader(a.body); err != nil || (h.Scheme == xorb.SchemeNone) != (i > 0) {
			t.Fatalf("download %d: first record %+v, %v", i, h, err)
		}
		spent := f.xorbBytes() - before
		switch {
		case i == 0 && spent == 0:
			t.Fatal("premise: the cold download fetched nothing upstream")
		case i > 0 && spent != 0:
			t.Fatalf("download %d fetched %d xorb bytes upstream", i, spent)
		}
	}
	st := f.eng.CacheStats()
	if st.XorbFromCache == 0 || st.XorbFromUpstream == 0 {
		t.Errorf("stats: %+v", st)
	}
	// the handler counts its bytes after the last one went out: poll
	var served float64
	for deadline := time.Now().Add(5 * time.Second); int64(served) != st.XorbServed && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		m := f.do("GET", f.ts.URL+"/metrics")
		for _, line := range strings.Split(string(m.body), "\n") {
			if v, ok := strings.CutPrefix(line, `xetproxy_served_bytes_total{route="cas_xorb"} `); ok {
				served, _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	if int64(served) != st.XorbServed {
		t.Errorf("cas_xorb served bytes in the metrics: %v, want %d", served, st.XorbServed)
	}
	// the engine's split of those chunk bytes by source, as exported
	m := NewMetrics("test")
	m.ObserveEngine(f.eng)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	st = f.eng.CacheStats()
	for src, want := range map[string]int64{"cache": st.XorbFromCache, "upstream": st.XorbFromUpstream} {
		prefix := fmt.Sprintf(`xetproxy_cas_chunk_bytes_total{source=%q} `, src)
		var got float64 = -1
		for _, line := range strings.Split(rec.Body.String(), "\n") {
			if v, ok := strings.CutPrefix(line, prefix); ok {
				got, _ = strconv.ParseFloat(v, 64)
			}
		}
		if int64(got) != want || want == 0 {
			t.Errorf("%s: %v, want %d (> 0)", prefix, got, want)
		}
	}
}

func TestXetConfig(t *testing.T) {
	c, err := parseConfig(t, nil)
	if err != nil || !c.Xet || c.SigningKey != "" || c.XetTokenTTL != DefaultXetTokenTTL || c.XetURLTTL != DefaultXetURLTTL {
		t.Fatalf("defaults: xet %v, ttls %v %v, %v", c.Xet, c.XetTokenTTL, c.XetURLTTL, err)
	}
	if c, err := parseConfig(t, map[string]string{"XETPROXY_XET": "false"}); err != nil || c.Xet {
		t.Errorf("XETPROXY_XET=false: %v %v", c.Xet, err)
	}
	if c, err := parseConfig(t, nil, "--xet=false", "--xet-url-ttl=5m"); err != nil || c.Xet || c.XetURLTTL != 5*time.Minute {
		t.Errorf("--xet=false: %v %v", c.Xet, err)
	}
	if c, err := parseConfig(t, map[string]string{"XETPROXY_SIGNING_KEY": xetTestKey}); err != nil || c.SigningKey != xetTestKey {
		t.Errorf("hex key: %v", err)
	}
	for _, bad := range []string{"00112233", "this is not a key, not even close"} {
		_, err := parseConfig(t, map[string]string{"XETPROXY_SIGNING_KEY": bad})
		if err == nil || !strings.Contains(err.Error(), "XETPROXY_SIGNING_KEY") || strings.Contains(err.Error(), bad) {
			t.Errorf("key %q: %v", bad, err)
		}
	}
	if _, err := parseConfig(t, nil, "--xet-token-ttl=-1s"); err == nil {
		t.Error("negative token ttl accepted")
	}
}

// TestXetSigningKeyShared: a token sealed by one instance opens on another
// with the same key, and fails (401) on one with its own key.
func TestXetSigningKeyShared(t *testing.T) {
	f := newXetFixture(t, false, nil)
	tb := f.mustToken("models/org/pub")
	file := f.files["org/pub/big.bin"]
	for _, key := range []string{xetTestKey, ""} {
		cfg := testConfig(f.hub.URL)
		cfg.Xet, cfg.SigningKey = true, key
		eng, _ := testEngine(t, cfg, engineOptions{})
		var logs lockedBuffer
		s, err := New(Options{Config: cfg, Engine: eng, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Version: "v"})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(s.Handler())
		a := f.do("GET", ts.URL+"/cas/v2/reconstructions/"+file.hash.String(), "Authorization", "Bearer "+tb.AccessToken)
		if want := map[string]int{xetTestKey: 200, "": 401}[key]; a.status != want {
			t.Errorf("second instance with key %q: %d, want %d", key, a.status, want)
		}
		if warned := strings.Contains(logs.String(), "XETPROXY_SIGNING_KEY is not set"); warned != (key == "") {
			t.Errorf("key %q: warning logged %v", key, warned)
		}
		ts.Close()
	}
}

// TestXetCorruptUpstream: with the xorb's manifest known, a chunk from
// upstream that does not match it never reaches the client whole: the
// answer fails or the connection is cut.
func TestXetCorruptUpstream(t *testing.T) {
	f := newXetFixture(t, true, nil)
	file := f.files["org/pub/big.bin"]
	tb := f.mustToken("models/org/pub")
	_, r := f.reconstruct(tb, file.hash, true, "")
	if !bytes.Equal(f.rebuild(r), file.data) {
		t.Fatal("premise: the first download")
	}
	_, x, rg := firstRange(t, r)
	// the chunks leave the cache, upstream turns bad
	if err := f.eng.Cache().Delete(context.Background(), x, 0, 8192); err != nil {
		t.Fatal(err)
	}
	f.fh.CorruptXorb(x, int64(rg.Bytes.Len()/2), 64)
	_, r = f.reconstruct(tb, file.hash, true, "")
	u, _, rg := firstRange(t, r)
	served := f.eng.CacheStats().XorbServed
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", rg.Bytes.Start, rg.Bytes.End))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == 206 && rerr == nil && uint64(len(body)) == rg.Bytes.Len():
		t.Fatal("a range with a corrupt chunk was served whole")
	case resp.StatusCode == 206: // cut after the status line
	case resp.StatusCode == 502 && resp.Header.Get("X-Error-Code") == "IntegrityError": // before it
	default:
		t.Fatalf("unexpected answer %d %v", resp.StatusCode, resp.Header)
	}
	if n := f.eng.CacheStats().XorbServed - served; n >= int64(rg.Bytes.Len()) {
		t.Errorf("the engine handed out %d of the %d bytes", n, rg.Bytes.Len())
	}
}

// TestXetPartialCache: a range whose first segment is cached and the rest
// not is served from both: the cache's chunks as records, then upstream's
// (the range fetched and its cached chunks skipped), re-serialised.
func TestXetPartialCache(t *testing.T) {
	f := newXetFixture(t, true, nil)
	data := compressible(9, 6<<20)
	fs, err := f.fh.AddFile(context.Background(), "org/pub", "huge.bin", bytes.NewReader(data), fakehub.StorageXet)
	if err != nil {
		t.Fatal(err)
	}
	tb := f.mustToken("models/org/pub")
	_, r := f.reconstruct(tb, fs.XetHash, true, "")
	if !bytes.Equal(f.rebuild(r), data) {
		t.Fatal("cold download differs")
	}
	_, x, rg := firstRange(t, r)
	if len(r.Xorbs) != 1 || rg.Chunks.Start != 0 || rg.Chunks.End <= 64 {
		t.Fatalf("premise: one xorb of more than one segment, got %d xorbs, chunks %v", len(r.Xorbs), rg.Chunks)
	}
	if err := f.eng.Cache().Delete(context.Background(), x, 64, rg.Chunks.End); err != nil {
		t.Fatal(err)
	}
	before, stats := f.xorbBytes(), f.eng.CacheStats()
	_, r = f.reconstruct(tb, fs.XetHash, true, "")
	if !bytes.Equal(f.rebuild(r), data) {
		t.Fatal("download from cache and upstream differs")
	}
	after := f.eng.CacheStats()
	if f.xorbBytes() == before || after.XorbFromCache == stats.XorbFromCache || after.XorbFromUpstream == stats.XorbFromUpstream {
		t.Fatalf("want chunks from both: cache %d→%d, upstream %d→%d",
			stats.XorbFromCache, after.XorbFromCache, stats.XorbFromUpstream, after.XorbFromUpstream)
	}
	// and the chunks it fetched went back to the cache
	before = f.xorbBytes()
	_, r = f.reconstruct(tb, fs.XetHash, true, "")
	if !bytes.Equal(f.rebuild(r), data) || f.xorbBytes() != before {
		t.Fatal("third download: not all from the cache")
	}
}

// FuzzXetParsers: the Range parsers of the CAS routes and the token route
// matcher never panic, and what they accept is well formed.
func FuzzXetParsers(f *testing.F) {
	for _, s := range []string{"bytes=0-10", "bytes=5-", "bytes=1-2,4-9", "bytes=-5", "bytes=9-1", "models/org/m/xet-read-token/main",
		"datasets/a/xet-read-token/refs%2Fpr%2F1", "spaces/a/b/xet-read-token/x/y", "models/xet-read-token/xet-read-token/a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if rs, ok := parseByteRanges(s); ok {
			if len(rs) == 0 || len(rs) > castoken.MaxRanges {
				t.Fatalf("%q: %d ranges", s, len(rs))
			}
			for _, r := range rs {
				if r.End < r.Start {
					t.Fatalf("%q: reversed range %v", s, r)
				}
			}
		}
		if r, ok := parseCASRange(s); ok && r.End < r.Start {
			t.Fatalf("%q: reversed range %v", s, r)
		}
		if typ, repo, rev, ok, err := parseXetTokenPath(s); ok && err == nil {
			if typ != "model" && typ != "dataset" && typ != "space" || checkRevision(rev) != nil || repo == "" || strings.Count(repo, "/") > 1 {
				t.Fatalf("%q: accepted %q %q %q", s, typ, repo, rev)
			}
		}
	})
}

// TestXetMultiRangeEntry: a file that reuses two separate parts of another
// file's xorb gets a v2 entry listing several ranges under one URL, which
// a client fetches in one multi-range request (as @huggingface/hub does).
func TestXetMultiRangeEntry(t *testing.T) {
	f := newXetFixture(t, false, nil)
	base := f.files["org/pub/big.bin"].data
	mixed := append(append(append([]byte{}, base[:400000]...), xettest.SplitMix64(77, 300000)...), base[1000000:]...)
	fs, err := f.fh.AddFile(context.Background(), "org/pub", "mixed.bin", bytes.NewReader(mixed), fakehub.StorageXet)
	if err != nil {
		t.Fatal(err)
	}
	tb := f.mustToken("models/org/pub")
	_, r := f.reconstruct(tb, fs.XetHash, true, "")
	if !bytes.Equal(f.rebuild(r), mixed) {
		t.Fatal("rebuilt file differs")
	}
	var entry *reconstruction.XorbFetch
	for _, xfs := range r.Xorbs {
		for i := range xfs {
			if len(xfs[i].Ranges) > 1 {
				entry = &xfs[i]
			}
		}
	}
	if entry == nil {
		t.Fatalf("premise: no entry with several ranges in %+v", r.Xorbs)
	}
	var specs []string
	for _, rg := range entry.Ranges {
		specs = append(specs, fmt.Sprintf("%d-%d", rg.Bytes.Start, rg.Bytes.End))
	}
	a := f.do("GET", entry.URL, "Range", "bytes="+strings.Join(specs, ","))
	_, params, err := mime.ParseMediaType(a.header.Get("Content-Type"))
	if a.status != 206 || err != nil {
		t.Fatalf("multi-range: %d %v", a.status, a.header)
	}
	mr := multipart.NewReader(bytes.NewReader(a.body), params["boundary"])
	for i, rg := range entry.Ranges {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		got, _ := io.ReadAll(p)
		one := f.do("GET", entry.URL, "Range", fmt.Sprintf("bytes=%d-%d", rg.Bytes.Start, rg.Bytes.End))
		if !bytes.Equal(got, one.body) || uint64(len(got)) != rg.Bytes.Len() {
			t.Fatalf("part %d differs from the single-range answer", i)
		}
	}
}

// TestXetRepoPolicy: the token route and the reconstructions of a refused
// repo are 403 RepoNotAllowed and ask nothing upstream, even with a CAS
// token another instance (same key, no policy) issued for that repo.
func TestXetRepoPolicy(t *testing.T) {
	f := newXetFixture(t, false, nil)
	tb := f.mustToken("models/org/pub")
	file := f.files["org/pub/big.bin"]
	cfg := testConfig(f.hub.URL)
	cfg.Xet, cfg.SigningKey = true, xetTestKey
	cfg.Deny = []string{"model/org/pub"}
	eng, _ := testEngine(t, cfg, engineOptions{})
	s, err := New(Options{Config: cfg, Engine: eng, Version: "v"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	f.fh.ResetStats()
	for _, c := range []struct{ what, path string }{
		{"token route", "/api/models/org/pub/xet-read-token/main"},
		{"v2 reconstruction", "/cas/v2/reconstructions/" + file.hash.String()},
		{"v1 reconstruction", "/cas/v1/reconstructions/" + file.hash.String()},
	} {
		a := f.do("GET", ts.URL+c.path, "Authorization", "Bearer "+tb.AccessToken)
		if a.status != http.StatusForbidden || a.header.Get("X-Error-Code") != "RepoNotAllowed" {
			t.Errorf("%s of a denied repo: %d %q, want 403 RepoNotAllowed", c.what, a.status, a.header.Get("X-Error-Code"))
		}
	}
	// the same token still works where the repo is allowed
	if a := f.do("GET", f.ts.URL+"/cas/v2/reconstructions/"+file.hash.String(), "Authorization", "Bearer "+tb.AccessToken); a.status != 200 {
		t.Errorf("reconstruction where allowed: %d", a.status)
	}
	// fakehub logs a request after it answered: wait for the allowed one,
	// which came after every refused one
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(f.fh.Requests(), func(r fakehub.Request) bool { return strings.Contains(r.Path, "reconstructions") }) {
		if time.Now().After(deadline) {
			t.Fatal("fakehub never logged the allowed reconstruction")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, r := range f.fh.Requests() {
		if !strings.Contains(r.Path, "reconstructions") {
			t.Errorf("a refused request reached upstream: %s %s", r.Method, r.Path)
		}
	}
}
