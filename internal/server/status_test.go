package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/xetproxy/xetproxy/internal/engineconf"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// The status page tests run the real server with the real engine and a
// disk cache against fakehub on loopback. The sources other components
// own (upstream health, bytes per repo, warm jobs) are set to fixed
// values: they are the page's inputs, and the page's job is to render
// them, and to hide what an anonymous caller must not see.

const statusKey = "status-key-0123456789"

// statusStack is a fakehub with org/m/model.safetensors (a Xet file) and a
// server with a disk cache and one proxy API key in front of it.
type statusStack struct {
	t    *testing.T
	url  string
	srv  *Server
	eng  *proxy.Engine
	data []byte
}

func newStatusStack(t *testing.T, src statusSources) *statusStack {
	t.Helper()
	fh, err := fakehub.New(fakehub.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hubSrv := httptest.NewServer(fh)
	t.Cleanup(hubSrv.Close)
	fh.SetPublicURL(hubSrv.URL)
	if err := fh.CreateRepo(fakehub.RepoSpec{ID: "org/m"}); err != nil {
		t.Fatal(err)
	}
	data := xettest.SplitMix64(7, 2<<20+123)
	f, err := fh.AddFile(context.Background(), "org/m", "model.safetensors", bytes.NewReader(data))
	if err != nil || !f.Xet {
		t.Fatalf("add file: %v (xet %v)", err, f.Xet)
	}

	cfg := testConfig(hubSrv.URL)
	cfg.CacheDir, cfg.CacheSize = t.TempDir(), 1<<30
	cfg.APIKeys = []string{statusKey}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	tr := engineconf.NewTransport()
	eng, closeEng, err := engineconf.New(cfg.Engine(tr, log))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: cfg, Engine: eng, Logger: log, Version: "v9.8.7-status"})
	if err != nil {
		t.Fatal(err)
	}
	s.status = src
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, nil) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := closeEng(); err != nil {
				t.Errorf("engine close: %v", err)
			}
			tr.CloseIdleConnections()
		})
	})
	return &statusStack{t: t, url: "http://" + ln.Addr().String(), srv: s, eng: eng, data: data}
}

type statusAnswer struct {
	status int
	header http.Header
	body   []byte
}

// do sends method path with hdr (key, value pairs).
func (st *statusStack) do(method, path string, hdr ...string) statusAnswer {
	st.t.Helper()
	req, err := http.NewRequest(method, st.url+path, nil)
	if err != nil {
		st.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		st.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		st.t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return statusAnswer{status: res.StatusCode, header: res.Header, body: body}
}

// download fetches the model file and checks it arrived whole.
func (st *statusStack) download() {
	st.t.Helper()
	a := st.do("GET", "/download/org/m/model.safetensors")
	if a.status != 200 || !bytes.Equal(a.body, st.data) {
		st.t.Fatalf("download: %d, %d bytes", a.status, len(a.body))
	}
}

// snapshot fetches the JSON form of the page.
func (st *statusStack) snapshot(hdr ...string) statusSnapshot {
	st.t.Helper()
	a := st.do("GET", "/?format=json", hdr...)
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
		st.t.Fatalf("status JSON: %d %s %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	var snap statusSnapshot
	if err := json.Unmarshal(a.body, &snap); err != nil {
		st.t.Fatalf("status JSON: %v: %s", err, a.body)
	}
	return snap
}

// fixedSources are realistic inputs: an offline upstream whose last error
// names a private repo, top repos with a private one among them, and warm
// jobs one of which warms the private repo.
func fixedSources() statusSources {
	since := time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)
	return statusSources{
		upstream: func() statusUpstream {
			return statusUpstream{Known: true, Offline: true, Since: since, LastOK: since.Add(-time.Second),
				LastError: "resolve acme/secret-model: <b>503</b> Service Unavailable"}
		},
		topRepos: func(n int, includePrivate bool) []statusRepo {
			all := []statusRepo{
				{Type: "model", Repo: "meta-llama/Llama-3.1-8B", Bytes: 16 << 30},
				{Type: "model", Repo: "acme/secret-model", Bytes: 9 << 30, Private: true},
				{Type: "dataset", Repo: "HuggingFaceFW/fineweb", Bytes: 3 << 30},
				{Type: "model", Repo: "org/m", Bytes: 2 << 20},
			}
			var out []statusRepo
			for _, r := range all {
				if (includePrivate || !r.Private) && len(out) < n {
					out = append(out, r)
				}
			}
			return out
		},
		warmJobs: func() []statusJob {
			return []statusJob{
				{ID: "w-2", Type: "model", Repo: "acme/secret-model", Revision: "main", State: "running", FilesDone: 3, FilesTotal: 7, Bytes: 5 << 30},
				{ID: "w-1", Type: "dataset", Repo: "HuggingFaceFW/fineweb", Revision: "v1.2", State: "done", FilesDone: 4, FilesTotal: 4, Bytes: 3 << 30},
			}
		},
	}
}

func TestStatusFormatNegotiation(t *testing.T) {
	for _, c := range []struct {
		query, accept, want string
	}{
		{"", "", statusText}, // Go's client, curl -H 'Accept:'
		{"", "*/*", statusText},
		{"", "text/plain", statusText},
		{"", "text/*", statusText},
		{"", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", statusHTML}, // a browser
		{"", "application/json", statusJSON},
		{"", "application/json, text/plain;q=0.5", statusJSON},
		{"", "text/plain;q=0.2, text/html;q=0.9", statusHTML},
		{"", "text/html;q=0, */*", statusText},
		{"", "bogus, application/json", statusJSON},
		{"format=json", "text/html", statusJSON},
		{"format=html", "", statusHTML},
		{"format=text", "application/json", statusText},
	} {
		r := httptest.NewRequest("GET", "/?"+c.query, nil)
		if c.accept != "" {
			r.Header.Set("Accept", c.accept)
		}
		got, err := statusFormat(r)
		if err != nil || got != c.want {
			t.Errorf("?%s Accept %q: %q %v, want %q", c.query, c.accept, got, err, c.want)
		}
	}
	if _, err := statusFormat(httptest.NewRequest("GET", "/?format=xml", nil)); err == nil || err.Status != 400 {
		t.Errorf("?format=xml: %v, want 400", err)
	}
}

// The cache numbers on the page are the engine's: a cold download counts
// as upstream bytes, the same download again as cache bytes, and the disk
// tier holds what was written.
func TestStatusShowsRealCacheNumbers(t *testing.T) {
	st := newStatusStack(t, statusSources{})
	n := int64(len(st.data))

	snap := st.snapshot()
	if snap.Cache == nil || len(snap.Cache.Tiers) != 1 || snap.Cache.Tiers[0].Name != "disk" {
		t.Fatalf("cache before any download: %+v", snap.Cache)
	}
	if c := snap.Cache; c.ServedUpstream != 0 || c.ServedCache != 0 || c.ByteHitRatio != nil || c.HitRatio != nil || c.Tiers[0].Size != 0 {
		t.Fatalf("cache before any download: %+v", c)
	}

	st.download()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.eng.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	snap = st.snapshot()
	if c := snap.Cache; c.ServedUpstream != n || c.ServedCache != 0 || c.Tiers[0].Size <= 0 || c.Tiers[0].Entries <= 0 {
		t.Fatalf("after a cold download of %d bytes: %+v", n, c)
	}
	if r := snap.Cache.ByteHitRatio; r == nil || *r != 0 {
		t.Fatalf("byte hit ratio after a cold download: %v", r)
	}

	st.download()
	snap = st.snapshot()
	c := snap.Cache
	if c.ServedUpstream != n || c.ServedCache != n || c.Hits == 0 {
		t.Fatalf("after the same download again: %+v", c)
	}
	if r := c.ByteHitRatio; r == nil || *r != 0.5 {
		t.Fatalf("byte hit ratio after one cold and one warm download: %v", r)
	}
	if c.Tiers[0].Capacity != 1<<30 {
		t.Errorf("disk capacity %d, want %d", c.Tiers[0].Capacity, 1<<30)
	}
	// what the engine itself says (the page adds nothing of its own)
	es := st.eng.CacheStats()
	if uint64(c.Hits) != es.Hits || c.Misses != es.Misses {
		t.Errorf("lookups %d/%d, engine %d/%d", c.Hits, c.Misses, es.Hits, es.Misses)
	}

	// The HTML shows the same numbers.
	doc := st.page()
	for id, want := range map[string]int64{"served-upstream": n, "served-cache": n} {
		if got := attr(byID(t, doc, id), "data-bytes"); got != strconv.FormatInt(n, 10) {
			t.Errorf("#%s data-bytes %q, want %d", id, got, want)
		}
	}
	if got := text(byID(t, doc, "cache-byte-hit-ratio")); got != "50.0%" {
		t.Errorf("#cache-byte-hit-ratio %q", got)
	}
	tiers := findAll(doc, func(n *html.Node) bool { return hasClass(n, "tier") })
	if len(tiers) != 1 || attr(tiers[0], "data-tier") != "disk" {
		t.Fatalf("tier rows: %d", len(tiers))
	}
	if size := findAll(tiers[0], func(n *html.Node) bool { return hasClass(n, "size") }); len(size) != 1 ||
		attr(size[0], "data-bytes") != strconv.FormatInt(c.Tiers[0].Size, 10) {
		t.Errorf("disk size cell: %v", size)
	}
	// No source of upstream health, repos or warm jobs: said so.
	if snap.Upstream.State != "unknown" || snap.TopReposKnown || snap.WarmJobsKnown {
		t.Errorf("unwired sources: %+v", snap)
	}
	for _, id := range []string{"repos-unknown", "warm-unknown"} {
		byID(t, doc, id)
	}
	if got := text(byID(t, doc, "upstream-state")); got != "unknown" {
		t.Errorf("#upstream-state %q", got)
	}
}

// page fetches the HTML form anonymously and parses it.
func (st *statusStack) page(hdr ...string) *html.Node {
	st.t.Helper()
	a := st.do("GET", "/", append([]string{"Accept", "text/html"}, hdr...)...)
	if a.status != 200 || a.header.Get("Content-Type") != "text/html; charset=utf-8" {
		st.t.Fatalf("status page: %d %s", a.status, a.header.Get("Content-Type"))
	}
	doc, err := html.Parse(bytes.NewReader(a.body))
	if err != nil {
		st.t.Fatal(err)
	}
	return doc
}

// Anonymous callers see private repos counted, never named, on either
// form; holders of a proxy API key see the names.
func TestStatusPrivateNamesNeedAKey(t *testing.T) {
	st := newStatusStack(t, fixedSources())
	const secret = "secret-model"
	// premise: the sources do name the private repo
	if !strings.Contains(statusJSONOf(t, fixedSources()), secret) {
		t.Fatal("the fixture names no private repo")
	}
	anonymous := [][]string{
		nil,
		{"Authorization", "Bearer hf_someusertoken"}, // a Hub token is not a proxy key
	}
	for _, hdr := range anonymous {
		for _, form := range []string{"json", "html"} {
			a := st.do("GET", "/?format="+form, hdr...)
			if a.status != 200 || bytes.Contains(a.body, []byte(secret)) {
				t.Errorf("%s with %v: %d, names the private repo:\n%s", form, hdr, a.status, a.body)
			}
		}
		snap := st.snapshot(hdr...)
		if snap.PrivateNames || snap.PrivateReposHidden != 1 || len(snap.TopRepos) != 4 || snap.TopRepos[1].Repo != "" ||
			!snap.TopRepos[1].Private || snap.TopRepos[1].Bytes != 9<<30 {
			t.Errorf("anonymous top repos: %+v", snap)
		}
		if snap.TopRepos[0].Repo != "meta-llama/Llama-3.1-8B" {
			t.Errorf("public repo hidden: %+v", snap.TopRepos[0])
		}
		if len(snap.WarmJobs) != 2 || snap.WarmJobs[0].Repo != "" || snap.WarmJobs[0].State != "running" || snap.WarmJobs[0].FilesDone != 3 {
			t.Errorf("anonymous warm jobs: %+v", snap.WarmJobs)
		}
		if snap.Upstream.State != "offline" || snap.Upstream.LastError != "" || snap.Upstream.Since.IsZero() {
			t.Errorf("anonymous upstream: %+v", snap.Upstream)
		}
	}
	keyed := [][]string{
		{"Authorization", "Bearer " + statusKey},
		{"X-Proxy-Key", statusKey},
	}
	for _, hdr := range keyed {
		for _, form := range []string{"json", "html"} {
			a := st.do("GET", "/?format="+form, hdr...)
			if a.status != 200 || !bytes.Contains(a.body, []byte(secret)) {
				t.Errorf("%s with a key in %s: %d, no private name", form, hdr[0], a.status)
			}
			if cc := a.header.Get("Cache-Control"); !strings.Contains(cc, "private") || !strings.Contains(cc, "no-store") {
				t.Errorf("%s with a key: Cache-Control %q", form, cc)
			}
		}
		snap := st.snapshot(hdr...)
		if !snap.PrivateNames || snap.PrivateReposHidden != 0 || snap.TopRepos[1].Repo != "acme/secret-model" ||
			snap.WarmJobs[0].Repo != "acme/secret-model" || !strings.Contains(snap.Upstream.LastError, "503") {
			t.Errorf("keyed view: %+v", snap)
		}
	}
	for _, form := range []string{"json", "html"} {
		if a := st.do("GET", "/?format="+form, "X-Proxy-Key", "wrong"); a.status != 401 || bytes.Contains(a.body, []byte(secret)) {
			t.Errorf("%s with a wrong proxy key: %d %s", form, a.status, a.body)
		}
	}
}

func statusJSONOf(t *testing.T, src statusSources) string {
	t.Helper()
	b, err := json.Marshal([]any{src.upstream(), src.topRepos(10, true), src.warmJobs()})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The HTML is self-contained (no script, no outside resource), its one
// style sheet is the one the CSP allows, and what it shows is escaped.
func TestStatusHTMLStructure(t *testing.T) {
	st := newStatusStack(t, fixedSources())
	a := st.do("GET", "/", "Accept", "text/html", "Authorization", "Bearer "+statusKey)
	if a.status != 200 {
		t.Fatalf("status page: %d", a.status)
	}
	doc, err := html.Parse(bytes.NewReader(a.body))
	if err != nil {
		t.Fatal(err)
	}
	if got := text(findAll(doc, isElem("title"))[0]); got != "xetproxy v9.8.7-status status" {
		t.Errorf("title %q", got)
	}
	if got := text(byID(t, doc, "version")); got != "v9.8.7-status" {
		t.Errorf("#version %q", got)
	}
	if el := byID(t, doc, "upstream-state"); text(el) != "offline" || !hasClass(el, "state-offline") {
		t.Errorf("#upstream-state %q class %q", text(el), attr(el, "class"))
	}
	// the error text is shown as text: no <b> element came from it
	if got := text(byID(t, doc, "upstream-last-error")); got != "resolve acme/secret-model: <b>503</b> Service Unavailable" {
		t.Errorf("#upstream-last-error %q", got)
	}
	if n := len(findAll(byID(t, doc, "upstream"), isElem("b"))); n != 0 {
		t.Errorf("%d <b> elements in the upstream section", n)
	}
	rows := findAll(byID(t, doc, "top-repos"), func(n *html.Node) bool { return hasClass(n, "repo") })
	if len(rows) != 4 {
		t.Fatalf("%d repo rows, want 4", len(rows))
	}
	wantNames := []string{"meta-llama/Llama-3.1-8B", "acme/secret-model (private)", "HuggingFaceFW/fineweb", "org/m"}
	for i, row := range rows {
		name := findAll(row, func(n *html.Node) bool { return hasClass(n, "name") })
		if len(name) != 1 || text(name[0]) != wantNames[i] {
			t.Errorf("repo row %d: %q, want %q", i, text(row), wantNames[i])
		}
	}
	if got := text(rows[0]); !strings.Contains(got, "16.0 GiB") {
		t.Errorf("first repo row %q: want 16.0 GiB", got)
	}
	jobs := findAll(byID(t, doc, "warm-jobs"), func(n *html.Node) bool { return hasClass(n, "job") })
	if len(jobs) != 2 || attr(jobs[0], "data-state") != "running" || !strings.Contains(text(jobs[0]), "3 / 7") ||
		!strings.Contains(text(jobs[1]), "datasets/HuggingFaceFW/fineweb") {
		t.Errorf("warm job rows: %d", len(jobs))
	}

	// nothing that could load or run anything
	for _, n := range findAll(doc, func(*html.Node) bool { return true }) {
		if n.Type != html.ElementNode {
			continue
		}
		switch n.Data {
		case "script", "img", "link", "iframe", "object", "embed", "form", "base":
			t.Errorf("element <%s> on the page", n.Data)
		}
		for _, at := range n.Attr {
			if at.Key == "src" || at.Key == "href" || at.Key == "style" || strings.HasPrefix(at.Key, "on") {
				t.Errorf("<%s %s=%q> on the page", n.Data, at.Key, at.Val)
			}
		}
	}
	styles := findAll(doc, isElem("style"))
	if len(styles) != 1 {
		t.Fatalf("%d style elements", len(styles))
	}
	if styles[0].FirstChild == nil {
		t.Fatal("empty style element")
	}
	sum := sha256.Sum256([]byte(styles[0].FirstChild.Data))
	csp := a.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q does not allow exactly the page's style sheet", csp)
	}
}

func TestStatusMethodsAndForms(t *testing.T) {
	st := newStatusStack(t, fixedSources())
	get := st.do("GET", "/index.html", "Accept", "text/html")
	head := st.do("HEAD", "/index.html", "Accept", "text/html")
	if get.status != 200 || head.status != 200 || len(head.body) != 0 ||
		head.header.Get("Content-Length") == "" || head.header.Get("Content-Type") != get.header.Get("Content-Type") {
		t.Errorf("HEAD: %d, %d body bytes, Content-Length %q", head.status, len(head.body), head.header.Get("Content-Length"))
	}
	if get.header.Get("Content-Length") != strconv.Itoa(len(get.body)) {
		t.Errorf("GET Content-Length %q, body %d", get.header.Get("Content-Length"), len(get.body))
	}
	if !strings.Contains(strings.Join(get.header.Values("Vary"), ","), "Accept") || get.header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET headers: %v", get.header)
	}
	for _, accept := range []string{"text/html", "application/json", "text/plain"} {
		a := st.do("GET", "/", "Accept", accept)
		if a.header.Get("Cache-Control") != "no-store" || !strings.Contains(strings.Join(a.header.Values("Vary"), ","), "Accept") {
			t.Errorf("Accept %s: Cache-Control %q, Vary %q", accept, a.header.Get("Cache-Control"), a.header.Values("Vary"))
		}
	}
	if a := st.do("HEAD", "/?format=json"); a.status != 200 || len(a.body) != 0 || a.header.Get("Content-Type") != "application/json" {
		t.Errorf("HEAD json: %d %v", a.status, a.header)
	}
	a := st.do("POST", "/", "Accept", "text/html")
	if a.status != 405 || a.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d Allow %q", a.status, a.header.Get("Allow"))
	}
	if a := st.do("GET", "/?format=xml"); a.status != 400 {
		t.Errorf("?format=xml: %d", a.status)
	}
	// curl's */* keeps the usage text, and it points at the other forms
	a = st.do("GET", "/", "Accept", "*/*")
	if a.status != 200 || a.header.Get("Content-Type") != "text/plain; charset=utf-8" ||
		!strings.Contains(string(a.body), "HF_ENDPOINT="+st.url) || !strings.Contains(string(a.body), st.url+"/?format=json") {
		t.Errorf("usage text: %d %s\n%s", a.status, a.header.Get("Content-Type"), a.body)
	}
	a = st.do("GET", "/", "Accept", "application/json")
	var snap statusSnapshot
	if err := json.Unmarshal(a.body, &snap); err != nil || snap.Version != "v9.8.7-status" || snap.HubURL == "" ||
		snap.Downloads.Max != 4 || !snap.Downloads.Ready || snap.Upstream.State != "offline" ||
		snap.Listen != strings.TrimPrefix(st.url, "http://") {
		t.Errorf("Accept: application/json: %v %s", err, a.body)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://huggingface.co":                  "https://huggingface.co",
		"https://user:pass@hub.example/x?tok=1#f": "https://hub.example/x",
		"http://[::1]:8080/":                      "http://[::1]:8080/",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStatusFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 2<<20 + 123: "2.00 MiB", 16 << 30: "16.0 GiB", 300 << 40: "300 TiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{0: "0s", 59 * time.Second: "59s", 61 * time.Second: "1m 1s",
		3*time.Hour + 5*time.Minute: "3h 5m", 50 * time.Hour: "2d 2h", -time.Second: "0s"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	half := 0.5
	if formatPercent(nil) != "n/a" || formatPercent(&half) != "50.0%" {
		t.Error("formatPercent")
	}
}

// HTML helpers.

func isElem(tag string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Type == html.ElementNode && n.Data == tag }
}

func findAll(root *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for n := range root.Descendants() {
		if match(n) {
			out = append(out, n)
		}
	}
	return out
}

func byID(t *testing.T, root *html.Node, id string) *html.Node {
	t.Helper()
	found := findAll(root, func(n *html.Node) bool { return n.Type == html.ElementNode && attr(n, "id") == id })
	if len(found) != 1 {
		t.Fatalf("%d elements with id %q", len(found), id)
	}
	return found[0]
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	return n.Type == html.ElementNode && strings.Contains(" "+attr(n, "class")+" ", " "+class+" ")
}

// text is the text content of n, spaces collapsed.
func text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// What the snapshot makes of its sources and of the server's own state.
func TestStatusSnapshotSources(t *testing.T) {
	s := newTestServer(t, testConfig("http://127.0.0.1:9"))
	lastOK := time.Now().Add(-time.Minute)
	var repos []statusRepo
	for i := range 15 {
		repos = append(repos, statusRepo{Type: "model", Repo: "org/r" + strconv.Itoa(i), Bytes: int64(100 - i)})
	}
	var asked []bool
	s.status = statusSources{
		upstream: func() statusUpstream { return statusUpstream{Known: true, Since: lastOK, LastOK: lastOK} },
		topRepos: func(n int, includePrivate bool) []statusRepo {
			asked = append(asked, includePrivate)
			return repos[:min(n+5, len(repos))] // a source that returns too many
		},
		warmJobs: func() []statusJob { return nil },
	}
	snap := s.statusSnapshot(false)
	if snap.Upstream.State != "online" || !snap.Upstream.LastOK.Equal(lastOK.UTC()) {
		t.Errorf("upstream: %+v", snap.Upstream)
	}
	if len(snap.TopRepos) != statusTopRepos || snap.TopRepos[9].Repo != "org/r9" {
		t.Errorf("%d top repos, want %d", len(snap.TopRepos), statusTopRepos)
	}
	// private repos are always asked for: the page hides their names itself
	if len(asked) != 1 || !asked[0] {
		t.Errorf("topRepos asked with includePrivate %v", asked)
	}
	if !snap.WarmJobsKnown || len(snap.WarmJobs) != 0 || !snap.Downloads.Ready {
		t.Errorf("warm jobs / downloads: %+v", snap)
	}
	s.adm.setDraining()
	if snap := s.statusSnapshot(false); snap.Downloads.Ready {
		t.Error("draining server shown ready")
	}
	// the JSON field names the documentation gives
	var m map[string]any
	if err := json.Unmarshal([]byte(mustJSON(t, snap)), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "go_version", "started_at", "uptime_seconds", "listen", "hub_url", "private_names",
		"upstream", "downloads", "cache", "top_repos", "top_repos_known", "private_repos_hidden", "warm_jobs", "warm_jobs_known"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in the JSON", k)
		}
	}
	cache := m["cache"].(map[string]any)
	if tiers, ok := cache["tiers"].([]any); !ok || len(tiers) != 0 {
		t.Errorf("tiers of an engine without a chunk cache: %v", cache["tiers"])
	}
	for _, k := range []string{"tiers", "lookup_hits", "lookup_misses", "lookup_hit_ratio", "served_cache_bytes",
		"served_shared_bytes", "served_upstream_bytes", "byte_hit_ratio"} {
		if _, ok := cache[k]; !ok {
			t.Errorf("no cache.%q in the JSON", k)
		}
	}
	up := m["upstream"].(map[string]any)
	for _, k := range []string{"state", "since", "last_ok"} {
		if _, ok := up[k]; !ok {
			t.Errorf("no upstream.%q in the JSON", k)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
