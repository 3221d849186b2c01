package server_test

// End-to-end proofs of the chunk cache: fakehub and xetproxy servers (the
// real engine) on loopback sockets, counting what reaches fakehub's CAS.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/xetproxy/xetproxy/internal/engineconf"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/servertest"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// cacheHub is a fakehub on loopback with 8 MiB xorbs (or xorbBytes).
type cacheHub struct {
	*fakehub.Hub
	url string
}

func newCacheHub(t *testing.T, xorbBytes ...int) *cacheHub {
	t.Helper()
	xb := 8 << 20
	if len(xorbBytes) > 0 {
		xb = xorbBytes[0]
	}
	fh, err := fakehub.New(fakehub.Config{MaxXorbBytes: xb})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fh)
	t.Cleanup(ts.Close)
	fh.SetPublicURL(ts.URL)
	return &cacheHub{Hub: fh, url: ts.URL}
}

func (h *cacheHub) add(t *testing.T, repo, path string, data []byte) fakehub.File {
	t.Helper()
	f, err := h.AddFile(context.Background(), repo, path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Xet {
		t.Fatalf("%s not stored in Xet", path)
	}
	return f
}

func (h *cacheHub) xorbBytes() int64 { return h.Stats()[fakehub.ClassXorb].BytesOut }

// cacheProxy is one xetproxy server with its engine.
type cacheProxy struct {
	t       *testing.T
	url     string
	eng     *proxy.Engine
	srv     *server.Server
	metrics *server.Metrics
	stop    func()
}

// startCacheProxy runs a server whose cache is a disk directory of its own
// unless mod changes the configuration.
func startCacheProxy(t *testing.T, hubURL string, mod func(*server.Config)) *cacheProxy {
	t.Helper()
	cfg := servertest.Config(t, hubURL)
	cfg.LogLevel, cfg.MaxDownloads, cfg.MaxBuffer = "info", 64, 512<<20
	if mod != nil {
		mod(&cfg)
	}
	return newCacheProxy(t, servertest.Start(t, cfg, servertest.ObserveEngine()))
}

// newCacheProxy wraps a started server.
func newCacheProxy(t *testing.T, s *servertest.Server) *cacheProxy {
	p := &cacheProxy{t: t, url: s.URL, eng: s.Engine, srv: s.Srv, metrics: s.Metrics}
	p.stop = func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	return p
}

type got struct {
	status  int
	header  http.Header
	trailer http.Header
	body    []byte
}

// get fetches path; hdr is key, value pairs.
func (p *cacheProxy) get(path string, hdr ...string) got {
	p.t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.url+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		p.t.Fatalf("GET %s: body: %v", path, err)
	}
	return got{status: res.StatusCode, header: res.Header, trailer: res.Trailer, body: body}
}

func (p *cacheProxy) flush() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.eng.Flush(ctx); err != nil {
		p.t.Fatal(err)
	}
}

// metric returns the value of one sample of /metrics, e.g.
// `xetproxy_download_source_bytes_total{source="cache"}`.
func (p *cacheProxy) metric(sample string) float64 {
	p.t.Helper()
	g := p.get("/metrics")
	for _, line := range strings.Split(string(g.body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				p.t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	p.t.Fatalf("no sample %s in /metrics", sample)
	return 0
}

func cacheTestData(seed uint64, n int) []byte {
	b := xettest.SplitMix64(seed, n)
	for i := 1; i < len(b); i += 2 { // bf16-like: compressible high bytes
		b[i] = 0x3c + b[i]&3
	}
	return b
}

func TestCacheSecondDownloadFetchesNothing(t *testing.T) {
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := cacheTestData(1, 40<<20+4321)
	h.add(t, "org/m", "model.safetensors", data)
	p := startCacheProxy(t, h.url, nil)
	const path = "/download/org/m/model.safetensors"

	first := p.get(path, "TE", "trailers")
	if first.status != 200 || !bytes.Equal(first.body, data) {
		t.Fatalf("first download: %d, %d bytes", first.status, len(first.body))
	}
	if first.trailer.Get("X-Xetproxy-Cache-Bytes") != "0" {
		t.Fatalf("first download trailers %v", first.trailer)
	}
	p.flush()
	h.ResetStats()
	second := p.get(path, "TE", "trailers")
	if second.status != 200 || !bytes.Equal(second.body, data) {
		t.Fatalf("second download: %d, %d bytes", second.status, len(second.body))
	}
	if n := h.xorbBytes(); n != 0 {
		t.Fatalf("second download fetched %d xorb bytes upstream", n)
	}
	if v := second.trailer.Get("X-Xetproxy-Cache-Bytes"); v != strconv.Itoa(len(data)) {
		t.Fatalf("X-Xetproxy-Cache-Bytes %q, want %d", v, len(data))
	}
	// Access is still checked upstream on every download.
	if h.Stats()[fakehub.ClassReconstruction].Requests == 0 || h.Stats()[fakehub.ClassResolve].Requests == 0 {
		t.Fatalf("second download did not ask the Hub: %+v", h.Stats())
	}
	// Without TE: trailers, the answer has Content-Length and no trailer.
	plain := p.get(path, "Range", "bytes=1000-1999999")
	if plain.status != 206 || !bytes.Equal(plain.body, data[1000:2000000]) ||
		plain.header.Get("Content-Length") != "1999000" || plain.header.Get("Trailer") != "" || len(plain.trailer) != 0 {
		t.Fatalf("ranged download: %d, %v, trailers %v", plain.status, plain.header, plain.trailer)
	}
	if n := h.xorbBytes(); n != 0 {
		t.Fatalf("ranged download fetched %d xorb bytes upstream", n)
	}
	if v := p.metric(`xetproxy_download_source_bytes_total{source="cache"}`); v < float64(len(data)) {
		t.Errorf("metric: %v bytes from cache", v)
	}
	if v := p.metric(`xetproxy_cache_tier_hits_total{tier="disk"}`); v == 0 {
		t.Error("metric: no disk hits")
	}
	if v := p.metric(`xetproxy_cache_tier_entries{tier="disk"}`); v == 0 {
		t.Error("metric: no disk entries")
	}
}

// 32 clients ask for the same cold file at once: every xorb range is
// fetched from upstream once.
func TestCacheConcurrentColdDownloadsFetchEachRangeOnce(t *testing.T) {
	h := newCacheHub(t, 2<<20)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := cacheTestData(2, 8<<20)
	h.add(t, "org/m", "w.bin", data)
	p := startCacheProxy(t, h.url, nil)
	h.ResetStats()
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			res, err := http.Get(p.url + "/download/org/m/w.bin")
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err == nil && (res.StatusCode != 200 || !bytes.Equal(b, data)) {
				err = fmt.Errorf("status %d, %d bytes", res.StatusCode, len(b))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ranges := map[string]int{}
	for _, r := range h.Requests() {
		if r.Class == fakehub.ClassXorb {
			path, _, _ := strings.Cut(r.Path, "?")
			ranges[path+" "+r.Header.Get("Range")]++
		}
	}
	if len(ranges) < 3 {
		t.Fatalf("%d xorb ranges fetched: the file should span several xorbs", len(ranges))
	}
	for k, c := range ranges {
		if c != 1 {
			t.Errorf("%s fetched %d times", k, c)
		}
	}
	if b := h.xorbBytes(); b > int64(len(data)) {
		t.Errorf("%d xorb bytes upstream for one %d-byte file", b, len(data))
	}
}

// A new server on the same cache directory serves from it.
func TestCacheSurvivesServerRestart(t *testing.T) {
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := cacheTestData(3, 12<<20)
	h.add(t, "org/m", "w.bin", data)
	dir := t.TempDir()
	a := startCacheProxy(t, h.url, func(c *server.Config) { c.CacheDir = dir })
	if g := a.get("/download/org/m/w.bin"); !bytes.Equal(g.body, data) {
		t.Fatal("first server: bytes differ")
	}
	a.stop()
	h.ResetStats()
	b := startCacheProxy(t, h.url, func(c *server.Config) { c.CacheDir = dir })
	g := b.get("/download/org/m/w.bin", "TE", "trailers")
	if !bytes.Equal(g.body, data) {
		t.Fatal("restarted server: bytes differ")
	}
	if n := h.xorbBytes(); n != 0 || g.trailer.Get("X-Xetproxy-Cache-Bytes") != strconv.Itoa(len(data)) {
		t.Fatalf("restarted server fetched %d xorb bytes; trailers %v", n, g.trailer)
	}
}

// Two servers with their own disks share one bucket: what the first
// cached, the second serves without asking upstream for xorb bytes.
func TestCacheSharedBucketAcrossInstances(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("xetproxy-cache"); err != nil {
		t.Fatal(err)
	}
	s3srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(s3srv.Close)
	shared := func(c *server.Config) {
		c.S3Endpoint, c.S3Bucket, c.S3Prefix, c.S3Region, c.S3PathStyle = s3srv.URL, "xetproxy-cache", "chunks/", "auto", true
		c.S3AccessKeyID, c.S3SecretAccessKey = "test-key", "test-secret"
	}
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := cacheTestData(4, 12<<20)
	h.add(t, "org/m", "w.bin", data)

	a := startCacheProxy(t, h.url, shared)
	if g := a.get("/download/org/m/w.bin"); !bytes.Equal(g.body, data) {
		t.Fatal("instance a: bytes differ")
	}
	a.flush() // queued shared writes are in the bucket
	objects := 0
	if list, err := backend.ListBucket("xetproxy-cache", nil, gofakes3.ListBucketPage{}); err == nil {
		objects = len(list.Contents)
	}
	if objects == 0 {
		t.Fatal("nothing written to the bucket")
	}
	h.ResetStats()
	b := startCacheProxy(t, h.url, shared) // a disk of its own, empty
	g := b.get("/download/org/m/w.bin", "TE", "trailers")
	if !bytes.Equal(g.body, data) {
		t.Fatal("instance b: bytes differ")
	}
	if n := h.xorbBytes(); n != 0 {
		t.Fatalf("instance b fetched %d xorb bytes upstream", n)
	}
	if g.trailer.Get("X-Xetproxy-Cache-Bytes") != strconv.Itoa(len(data)) {
		t.Fatalf("trailers %v", g.trailer)
	}
	if v := b.metric(`xetproxy_cache_tier_hits_total{tier="s3"}`); v == 0 {
		t.Error("metric: no s3 hits on instance b")
	}
}

// A damaged disk entry is detected, dropped and fetched again: the client
// gets the right bytes.
func TestCacheCorruptDiskEntryServedCorrectly(t *testing.T) {
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := cacheTestData(5, 12<<20)
	h.add(t, "org/m", "w.bin", data)
	dir := t.TempDir()
	p := startCacheProxy(t, h.url, func(c *server.Config) { c.CacheDir = dir })
	p.get("/download/org/m/w.bin")
	p.flush()
	files, _ := filepath.Glob(filepath.Join(dir, "chunks-v2", "*", "*"))
	if len(files) == 0 {
		t.Fatal("no cache files")
	}
	for _, f := range files[:min(3, len(files))] {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-4096] ^= 0x80
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.ResetStats()
	g := p.get("/download/org/m/w.bin")
	if g.status != 200 || sha256.Sum256(g.body) != sha256.Sum256(data) {
		t.Fatalf("after corruption: %d, %d bytes, content differs", g.status, len(g.body))
	}
	if h.xorbBytes() == 0 {
		t.Fatal("corrupt entries were not fetched again")
	}
	if v := p.metric(`xetproxy_cache_tier_corrupt_total{tier="disk"}`); v == 0 {
		t.Error("metric: no corrupt entries counted")
	}
}

// A new revision sharing most chunks with a cached file fetches little.
func TestCacheEditedFileFetchesLittle(t *testing.T) {
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	a := cacheTestData(6, 20<<20)
	b := bytes.Clone(a)
	for _, off := range []int{3 << 20, 13 << 20, 18 << 20} {
		copy(b[off:], "a few edited bytes")
	}
	at := 7 << 20
	b = append(b[:at:at], append(cacheTestData(7, 200<<10), b[at:]...)...)
	h.add(t, "org/m", "v1.bin", a)
	h.add(t, "org/m", "v2.bin", b)
	p := startCacheProxy(t, h.url, nil)
	if g := p.get("/download/org/m/v1.bin"); !bytes.Equal(g.body, a) {
		t.Fatal("v1 differs")
	}
	p.flush()
	h.ResetStats()
	g := p.get("/download/org/m/v2.bin", "TE", "trailers")
	if !bytes.Equal(g.body, b) {
		t.Fatal("v2 differs")
	}
	up := h.xorbBytes()
	t.Logf("v2: %d bytes, %d fetched upstream (%.2f%%), trailers %v", len(b), up, 100*float64(up)/float64(len(b)), g.trailer)
	if up == 0 || up > int64(len(b))*15/100 {
		t.Fatalf("v2 fetched %d xorb bytes upstream for %d bytes", up, len(b))
	}
}

// The cache gives nothing to a caller the Hub did not authorise for the
// repo and revision, whatever the route, even right after an authorised
// caller warmed it.
func TestCacheNeverServesWithoutAccess(t *testing.T) {
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/private", Private: true, Readers: []string{"hf_reader"}})
	h.CreateRepo(fakehub.RepoSpec{ID: "org/other", Private: true, Readers: []string{"hf_other"}})
	h.CreateRepo(fakehub.RepoSpec{ID: "org/public"})
	data := cacheTestData(8, 12<<20)
	f := h.add(t, "org/private", "w.bin", data)
	h.add(t, "org/other", "x.bin", cacheTestData(9, 1<<20))
	h.add(t, "org/public", "y.bin", cacheTestData(10, 1<<20))
	h.AddToken("hf_valid_no_access")
	hash := f.XetHash.String()
	// A minute of memo: a warm memo must not help anyone else either.
	p := startCacheProxy(t, h.url, func(c *server.Config) { c.AuthTTL = time.Minute })

	routes := []string{
		"/download/org/private/w.bin",
		"/org/private/resolve/main/w.bin",
		"/download-hash/" + hash + "?repo=org/private",
	}
	for _, r := range routes {
		g := p.get(r, "Authorization", "Bearer hf_reader")
		if g.status != 200 || !bytes.Equal(g.body, data) {
			t.Fatalf("reader %s: %d", r, g.status)
		}
	}
	p.flush()
	h.ResetStats()
	hits := p.eng.CacheStats().Hits
	for _, who := range []struct{ name, auth string }{
		{"anonymous", ""},
		{"invalid token", "Bearer hf_nobody"},
		{"valid token without access", "Bearer hf_valid_no_access"},
		{"token for another repo", "Bearer hf_other"},
	} {
		for _, r := range routes {
			for _, rng := range []string{"", "bytes=0-1048575"} {
				var hdr []string
				if who.auth != "" {
					hdr = append(hdr, "Authorization", who.auth)
				}
				if rng != "" {
					hdr = append(hdr, "Range", rng)
				}
				g := p.get(r, hdr...)
				if g.status != 401 && g.status != 403 && g.status != 404 {
					t.Errorf("%s %s %s: status %d", who.name, r, rng, g.status)
				}
				if len(g.body) > 0 && bytes.Contains(data, g.body[:min(len(g.body), 64)]) {
					t.Errorf("%s %s: body holds file bytes", who.name, r)
				}
			}
		}
	}
	if n := h.xorbBytes(); n != 0 {
		t.Errorf("%d xorb bytes fetched for callers without access", n)
	}
	if d := p.eng.CacheStats().Hits - hits; d != 0 {
		t.Errorf("%d cache lookups made for callers without access", d)
	}

	// The hash route checks access to the repo it names, and that the hash
	// names a file of that repo: the CAS does not bind file hashes to repos,
	// so a caller who can read some repo and knows the hash of a file
	// elsewhere must get 404, whether or not the cache holds the bytes.
	bare := startCacheProxy(t, h.url, func(c *server.Config) { c.CacheDir, c.CacheSize = "", 0 })
	route := "/download-hash/" + hash + "?repo=org/public"
	before := h.xorbBytes()
	warm := p.get(route, "Authorization", "Bearer hf_other")
	cold := bare.get(route, "Authorization", "Bearer hf_other")
	if warm.status != http.StatusNotFound || cold.status != http.StatusNotFound {
		t.Errorf("by hash through another repo: cached proxy %d (%d bytes), proxy without cache %d (%d bytes), want 404",
			warm.status, len(warm.body), cold.status, len(cold.body))
	}
	if bytes.Contains(warm.body, data[:64]) || bytes.Contains(cold.body, data[:64]) {
		t.Error("by hash through another repo: body holds file bytes")
	}
	if n := h.xorbBytes() - before; n != 0 {
		t.Errorf("by hash through another repo: %d xorb bytes fetched", n)
	}
}

func TestCacheConfig(t *testing.T) {
	parse := func(env map[string]string, args ...string) (*server.Config, error) {
		var c server.Config
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.RegisterFlags(fs, func(k string) string { return env[k] })
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return &c, c.Validate()
	}
	c, err := parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.CacheDir != "" || c.CacheMemory != 0 || c.AuthTTL != server.DefaultAuthTTL || c.S3Queue != 256<<20 {
		t.Errorf("defaults: %+v", c)
	}
	if store, desc, err := engineconf.NewCache(c.Engine(nil, nil).Cache, nil); err != nil || store != nil || desc != "none" {
		t.Errorf("no cache configured: %v %q %v", store, desc, err)
	}

	dir := t.TempDir()
	env := map[string]string{
		"XETPROXY_CACHE_DIR": dir, "XETPROXY_CACHE_SIZE": "2GiB", "XETPROXY_CACHE_MEMORY": "64MiB",
		"XETPROXY_S3_ENDPOINT": "https://user:pw@acct.r2.cloudflarestorage.com", "XETPROXY_S3_BUCKET": "b",
		"XETPROXY_S3_PREFIX": "chunks/", "XETPROXY_S3_REGION": "auto", "XETPROXY_S3_PATH_STYLE": "true",
		"XETPROXY_S3_QUEUE": "1GiB", "XETPROXY_AUTH_CACHE_TTL": "5s",
		"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "very-secret-value",
	}
	c, err = parse(env)
	if err != nil {
		t.Fatal(err)
	}
	if c.CacheDir != dir || c.CacheSize != 2<<30 || c.CacheMemory != 64<<20 || !c.S3PathStyle || c.S3Queue != 1<<30 ||
		c.AuthTTL != 5*time.Second || c.S3AccessKeyID != "AKIDEXAMPLE" || c.S3SecretAccessKey != "very-secret-value" {
		t.Errorf("from env: %+v", c)
	}
	store, desc, err := engineconf.NewCache(c.Engine(nil, nil).Cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.(io.Closer).Close()
	for _, want := range []string{"memory 64MiB", "disk " + dir, "s3 b/chunks", "acct.r2.cloudflarestorage.com"} {
		if !strings.Contains(desc, want) {
			t.Errorf("description %q lacks %q", desc, want)
		}
	}
	logged := fmt.Sprint(desc, c.Redacted())
	for _, secret := range []string{"very-secret-value", "AKIDEXAMPLE", "pw@"} {
		if strings.Contains(logged, secret) {
			t.Errorf("the cache description or the start-up line shows %q: %s", secret, logged)
		}
	}

	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--cache-dir", dir, "--cache-size", "-1"}, "cache-size"},
		{nil, []string{"--cache-memory", "-1"}, "cache-memory"},
		{nil, []string{"--auth-cache-ttl", "-1s"}, "auth-cache-ttl"},
		{nil, []string{"--s3-path-style"}, "s3-bucket"},
		{nil, []string{"--s3-bucket", "b", "--s3-endpoint", "ftp://x"}, "endpoint"},
		{nil, []string{"--s3-bucket", "b", "--s3-prefix", "/abs"}, "prefix"},
		{map[string]string{"AWS_ACCESS_KEY_ID": "id"}, []string{"--s3-bucket", "b"}, "together"},
		{map[string]string{"XETPROXY_CACHE_MEMORY": "lots"}, nil, "XETPROXY_CACHE_MEMORY"},
	} {
		if _, err := parse(tc.env, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v args %v: %v, want mention of %q", tc.env, tc.args, err, tc.want)
		}
	}
}
