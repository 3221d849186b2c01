package server_test

// Offline mode and the metadata cache, end to end: fakehub on a loopback
// socket that the tests close to cut the Hub off, and xetproxy servers
// (the real engine) in front of it.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/servertest"
)

// offlineHub is a fakehub whose listener the test can close.
type offlineHub struct {
	*cacheHub
	ts *httptest.Server
}

func newOfflineHub(t *testing.T) *offlineHub {
	t.Helper()
	fh, err := fakehub.New(fakehub.Config{MaxXorbBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fh)
	t.Cleanup(ts.Close)
	fh.SetPublicURL(ts.URL)
	return &offlineHub{cacheHub: &cacheHub{Hub: fh, url: ts.URL}, ts: ts}
}

// requests is the number of requests fakehub answered, all classes.
func (h *offlineHub) requests() int64 {
	var n int64
	for _, c := range h.Stats() {
		n += c.Requests
	}
	return n
}

// errorCode is the "code" of a JSON error body.
func errorCode(t *testing.T, g got) string {
	t.Helper()
	var b struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(g.body, &b); err != nil {
		t.Fatalf("error body %q: %v", g.body, err)
	}
	return b.Code
}

// offlineRepos sets up a public repo with three files and a private one
// readable with token "hf_reader"; "hf_other" is a valid token of another
// repo. It returns the contents and the Xet hashes by URL path.
func offlineRepos(t *testing.T, h *offlineHub) (map[string][]byte, map[string]string) {
	t.Helper()
	for _, spec := range []fakehub.RepoSpec{
		{ID: "org/pub"},
		{ID: "org/priv", Private: true, Readers: []string{"hf_reader"}},
		{ID: "org/elsewhere", Private: true, Readers: []string{"hf_other"}},
	} {
		if err := h.CreateRepo(spec); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{
		"/download/org/pub/a.safetensors":  cacheTestData(21, 3<<20+77),
		"/download/org/pub/b.safetensors":  cacheTestData(22, 1<<20+5),
		"/download/org/pub/c.safetensors":  cacheTestData(23, 2<<20+9),
		"/download/org/priv/p.safetensors": cacheTestData(24, 1<<20+11),
	}
	hashes := map[string]string{}
	for p, data := range files {
		rest := strings.TrimPrefix(p, "/download/")
		i := strings.LastIndexByte(rest, '/')
		f := h.add(t, rest[:i], rest[i+1:], data)
		hashes[p] = f.XetHash.String()
	}
	return files, hashes
}

func TestOfflineAfterTheHubStops(t *testing.T) {
	h := newOfflineHub(t)
	files, _ := offlineRepos(t, h)
	dir := t.TempDir()
	mod := func(c *server.Config) {
		c.CacheDir = dir
		c.UpstreamGrace = time.Nanosecond // offline at the first failure
		c.AuthTTL = time.Hour
	}
	p := startCacheProxy(t, h.url, mod)
	const a, b, c, priv = "/download/org/pub/a.safetensors", "/download/org/pub/b.safetensors",
		"/download/org/pub/c.safetensors", "/download/org/priv/p.safetensors"
	if g := p.get(a); g.status != 200 || !bytes.Equal(g.body, files[a]) {
		t.Fatalf("online download: %d, %d bytes", g.status, len(g.body))
	}
	if g := p.get(priv, "Authorization", "Bearer hf_reader"); g.status != 200 || !bytes.Equal(g.body, files[priv]) {
		t.Fatalf("online private download: %d", g.status)
	}
	commit := p.get(a).header.Get("X-Repo-Commit")
	// c is resolved (its metadata is stored) but none of its bytes read.
	if res, err := http.Head(p.url + c); err != nil || res.StatusCode != 200 {
		t.Fatalf("HEAD c: %v %v", res, err)
	}
	p.flush()
	if st := p.srv.UpstreamState(); st.Offline || st.LastOK.IsZero() {
		t.Fatalf("online state: %+v", st)
	}

	h.ts.Close() // the Hub is gone: connections are refused from now on

	// The first request after the outage finds the Hub gone (a file never
	// resolved); from then on the server is offline.
	for _, tc := range []struct {
		name, path string
		hdr        []string
		want       int
	}{
		{"never resolved", b, nil, 503},
		{"resolved, bytes not cached", c, nil, 503},
		{"private, anonymous", priv, nil, 503},
		{"private, another token", priv, []string{"Authorization", "Bearer hf_other"}, 503},
	} {
		g := p.get(tc.path, tc.hdr...)
		if g.status != tc.want || errorCode(t, g) != "NotCachedOffline" || bytes.Contains(g.body, files[tc.path][:64]) {
			t.Errorf("%s: %d %s", tc.name, g.status, g.body)
		}
	}
	// Clients HEAD before they GET: the HEAD says what the GET would.
	for path, want := range map[string]int{a: 200, c: 503} {
		res, err := http.Head(p.url + path)
		if err != nil || res.StatusCode != want || res.Header.Get("X-Xetproxy-Offline") != "1" {
			t.Errorf("offline HEAD %s: %v %v, want %d", path, res, err, want)
		}
	}
	g := p.get(a)
	if g.status != 200 || !bytes.Equal(g.body, files[a]) {
		t.Fatalf("offline download: %d, %d bytes: %s", g.status, len(g.body), g.body[:min(len(g.body), 300)])
	}
	if g.header.Get("X-Xetproxy-Offline") != "1" || g.header.Get("X-Repo-Commit") != commit || commit == "" {
		t.Errorf("offline headers: %v (commit %q)", g.header, commit)
	}
	if g := p.get(a, "Range", "bytes=1000-200000"); g.status != 206 || !bytes.Equal(g.body, files[a][1000:200001]) {
		t.Errorf("offline range: %d, %d bytes", g.status, len(g.body))
	}
	if g := p.get(priv, "Authorization", "Bearer hf_reader"); g.status != 200 || !bytes.Equal(g.body, files[priv]) {
		t.Errorf("private with the token that read it within auth-cache-ttl: %d %s", g.status, g.body[:min(len(g.body), 300)])
	}

	st := p.srv.UpstreamState()
	if !st.Offline || st.Forced || st.Since.IsZero() || st.LastError == "" || strings.Contains(st.LastError, "hf_") {
		t.Errorf("offline state: %+v", st)
	}
	rz := p.get("/readyz")
	if rz.status != 200 || !bytes.Contains(rz.body, []byte(`"status":"degraded"`)) || !bytes.Contains(rz.body, []byte("unreachable")) {
		t.Errorf("/readyz offline: %d %s", rz.status, rz.body)
	}

	// A new process on the same directory, the Hub still gone: the
	// metadata and the terms come from the disk.
	p.stop()
	p2 := startCacheProxy(t, h.url, mod)
	if g := p2.get(a); g.status != 200 || !bytes.Equal(g.body, files[a]) || g.header.Get("X-Xetproxy-Offline") != "1" {
		t.Fatalf("offline after a restart: %d, %d bytes", g.status, len(g.body))
	}
	if g := p2.get(priv, "Authorization", "Bearer hf_reader"); g.status != 503 {
		t.Errorf("private after a restart (no grant is kept on disk): %d", g.status)
	}
}

// TestOfflineFlagAsksNothing: with --offline the server serves from its
// caches with the Hub up, and sends it nothing.
func TestOfflineFlagAsksNothing(t *testing.T) {
	h := newOfflineHub(t)
	files, xetHashes := offlineRepos(t, h)
	dir := t.TempDir()
	const a, b = "/download/org/pub/a.safetensors", "/download/org/pub/b.safetensors"
	p := startCacheProxy(t, h.url, func(c *server.Config) { c.CacheDir = dir })
	if g := p.get(a); g.status != 200 {
		t.Fatalf("online download: %d", g.status)
	}
	p.flush()
	p.stop()

	p2 := startCacheProxy(t, h.url, func(c *server.Config) { c.CacheDir = dir; c.Offline = true })
	h.ResetStats()
	if g := p2.get(a); g.status != 200 || !bytes.Equal(g.body, files[a]) || g.header.Get("X-Xetproxy-Offline") != "1" {
		t.Fatalf("--offline download: %d, %d bytes, %v", g.status, len(g.body), g.header)
	}
	if g := p2.get(a, "Range", "bytes=5-5000"); g.status != 206 || !bytes.Equal(g.body, files[a][5:5001]) {
		t.Errorf("--offline range: %d", g.status)
	}
	if g := p2.get(b); g.status != 503 || errorCode(t, g) != "NotCachedOffline" {
		t.Errorf("--offline, not cached: %d %s", g.status, g.body)
	}
	// Lookups by Xet hash need the Hub's listing.
	if g := p2.get("/download-hash/" + xetHashes[a] + "?repo=org/pub"); g.status != 503 || errorCode(t, g) != "NotCachedOffline" {
		t.Errorf("--offline lookup by hash: %d %s", g.status, g.body)
	}
	rz := p2.get("/readyz")
	if rz.status != 200 || !bytes.Contains(rz.body, []byte(`"status":"degraded"`)) || !bytes.Contains(rz.body, []byte("--offline")) {
		t.Errorf("/readyz with --offline: %d %s", rz.status, rz.body)
	}
	if st := p2.srv.UpstreamState(); !st.Offline || !st.Forced {
		t.Errorf("state: %+v", st)
	}
	if n := h.requests(); n != 0 {
		t.Errorf("--offline sent %d requests to the Hub: %+v", n, h.Stats())
	}
}

// TestRevalidate: a branch moved upstream shows after --revalidate and not
// before; a commit id is never asked again.
func TestRevalidate(t *testing.T) {
	h := newOfflineHub(t)
	if err := h.CreateRepo(fakehub.RepoSpec{ID: "org/m"}); err != nil {
		t.Fatal(err)
	}
	v1, v2 := cacheTestData(31, 1<<20+3), cacheTestData(32, 1<<20+4)
	f1 := h.add(t, "org/m", "w.safetensors", v1)
	const reval = time.Second
	p := startCacheProxy(t, h.url, func(c *server.Config) { c.Revalidate = reval; c.AuthTTL = 0 })
	const path = "/download/org/m/w.safetensors"
	g := p.get(path)
	asked := time.Now()
	if g.status != 200 || !bytes.Equal(g.body, v1) || g.header.Get("X-Repo-Commit") != f1.Commit {
		t.Fatalf("first: %d %v", g.status, g.header)
	}
	f2 := h.add(t, "org/m", "w.safetensors", v2)
	g = p.get(path)
	if time.Since(asked) < reval {
		if !bytes.Equal(g.body, v1) || g.header.Get("X-Repo-Commit") != f1.Commit {
			t.Fatalf("within --revalidate the stored answer changed: commit %s", g.header.Get("X-Repo-Commit"))
		}
	} else {
		t.Log("the second request came after --revalidate; not checking that it was stale")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		g = p.get(path)
		if g.header.Get("X-Repo-Commit") == f2.Commit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the moved branch never showed: commit %s", g.header.Get("X-Repo-Commit"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !bytes.Equal(g.body, v2) {
		t.Fatal("new commit, old bytes")
	}

	// A commit id: resolved once, never again, even after --revalidate.
	pinned := path + "?revision=" + f1.Commit
	if g := p.get(pinned); g.status != 200 || !bytes.Equal(g.body, v1) {
		t.Fatalf("pinned: %d", g.status)
	}
	waitResolves := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for h.Stats()[fakehub.ClassResolve].Requests < want {
			if time.Now().After(deadline) {
				t.Fatalf("resolves %d, want %d", h.Stats()[fakehub.ClassResolve].Requests, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitResolves(1)
	h.ResetStats()
	time.Sleep(reval + 100*time.Millisecond)
	for range 3 {
		if g := p.get(pinned); g.status != 200 || !bytes.Equal(g.body, v1) {
			t.Fatalf("pinned again: %d", g.status)
		}
	}
	// The branch is asked again after --revalidate: a resolve that proves
	// the counter works, counted after the pinned ones.
	if g := p.get(path); g.header.Get("X-Repo-Commit") != f2.Commit {
		t.Fatalf("branch: %v", g.header)
	}
	waitResolves(1)
	if n := h.Stats()[fakehub.ClassResolve].Requests; n != 1 {
		t.Errorf("%d resolves after 3 downloads of a commit id and one of a branch, want 1", n)
	}
}

// TestDefaultCacheDir: without --cache-dir the server keeps its caches in
// $XDG_CACHE_HOME/xetproxy.
func TestDefaultCacheDir(t *testing.T) {
	home := t.TempDir()
	getenv := func(k string) string {
		return map[string]string{"XDG_CACHE_HOME": filepath.Join(home, "cache"), "HOME": home}[k]
	}
	var cfg server.Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.RegisterFlags(fs, getenv)
	h := newOfflineHub(t)
	if err := h.CreateRepo(fakehub.RepoSpec{ID: "org/m"}); err != nil {
		t.Fatal(err)
	}
	data := cacheTestData(41, 2<<20+1)
	h.add(t, "org/m", "w.safetensors", data)
	if err := fs.Parse([]string{"--listen", "127.0.0.1:0", "--hub-url", h.url}); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(home, "cache", "xetproxy")
	if cfg.CacheDir != want || cfg.CacheSize != 0 {
		t.Fatalf("cache dir %q size %d, want %q and the automatic size", cfg.CacheDir, cfg.CacheSize, want)
	}
	s := servertest.Start(t, cfg, servertest.Log("text", slog.LevelInfo), servertest.EngineLog())
	if logs := s.Log.String(); !strings.Contains(logs, "cache size chosen") || !strings.Contains(logs, "free") {
		t.Errorf("the chosen size is not logged: %s", logs)
	}
	res, err := http.Get(s.URL + "/download/org/m/w.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download: %d", res.StatusCode)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer fcancel()
	if err := s.Engine.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	var chunks, meta int
	filepath.Walk(want, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			if strings.Contains(p, string(filepath.Separator)+"meta"+string(filepath.Separator)) {
				meta++
			} else {
				chunks++
			}
		}
		return nil
	})
	if chunks == 0 || meta == 0 {
		t.Errorf("under %s: %d chunk cache files, %d metadata files", want, chunks, meta)
	}
}

// do sends method path with body and headers (key, value pairs).
func (p *cacheProxy) do(method, path, body string, hdr ...string) got {
	p.t.Helper()
	req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return got{status: res.StatusCode, header: res.Header, body: b}
}

// TestAPICache: repo info, tree and paths-info answers are kept,
// revalidated with If-None-Match after --revalidate, and served while the
// Hub is gone to whoever may see them: public repos to anyone, others only
// to a token the Hub answered within --auth-cache-ttl. A gated repo, whose
// metadata anyone may list, is not public.
func TestAPICache(t *testing.T) {
	h := newOfflineHub(t)
	offlineRepos(t, h)
	if err := h.CreateRepo(fakehub.RepoSpec{ID: "org/gated", Gated: true, Readers: []string{"hf_reader"}}); err != nil {
		t.Fatal(err)
	}
	h.add(t, "org/gated", "g.safetensors", cacheTestData(51, 1<<20))
	const reval = 2 * time.Second
	p := startCacheProxy(t, h.url, func(c *server.Config) {
		c.UpstreamGrace = time.Nanosecond
		c.AuthTTL = time.Hour
		c.Revalidate = reval
	})
	const info, tree, paths = "/api/models/org/pub", "/api/models/org/pub/tree/main", "/api/models/org/pub/paths-info/main"
	const pathsBody = `{"paths":["a.safetensors"],"expand":false}`
	const privTree, gatedTree = "/api/models/org/priv/tree/main", "/api/models/org/gated/tree/main"
	reader := []string{"Authorization", "Bearer hf_reader"}
	online := map[string]got{}
	for _, rq := range []struct {
		method, path, body string
		hdr                []string
	}{
		{"GET", info, "", nil}, {"GET", tree, "", nil}, {"POST", paths, pathsBody, nil},
		{"GET", privTree, "", reader}, {"GET", "/api/models/org/gated", "", nil}, {"GET", gatedTree, "", nil},
	} {
		g := p.do(rq.method, rq.path, rq.body, rq.hdr...)
		if g.status != 200 || bytes.Contains(g.body, []byte("xetHash")) || g.header.Get("X-Xetproxy-Offline") != "" {
			t.Fatalf("online %s %s: %d %s", rq.method, rq.path, g.status, g.body)
		}
		online[rq.path] = g
	}
	stored := time.Now()
	apiRequests := func() int64 { return h.Stats()[fakehub.ClassAPI].Requests }
	waitAPI := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for apiRequests() < want {
			if time.Now().After(deadline) {
				t.Fatalf("api requests %d, want %d", apiRequests(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitAPI(6)
	h.ResetStats()
	g := p.get(tree)
	if time.Since(stored) < reval {
		time.Sleep(50 * time.Millisecond) // let a request fakehub might have had get counted
		if n := apiRequests(); n != 0 || !bytes.Equal(g.body, online[tree].body) {
			t.Errorf("within --revalidate: %d requests upstream", n)
		}
	}
	// After --revalidate: one conditional request, answered 304 (no body).
	time.Sleep(time.Until(stored.Add(reval + 50*time.Millisecond)))
	h.ResetStats()
	if g := p.get(tree); g.status != 200 || !bytes.Equal(g.body, online[tree].body) {
		t.Fatalf("revalidated tree: %d", g.status)
	}
	waitAPI(1)
	if st := h.Stats()[fakehub.ClassAPI]; st.Requests != 1 || st.BytesOut != 0 {
		t.Errorf("revalidation: %+v, want one request answered without a body (304)", st)
	}

	h.ts.Close()
	if g := p.get("/api/models/org/pub/tree/main/sub"); g.status != 503 || errorCode(t, g) != "NotCachedOffline" {
		t.Errorf("uncached listing offline: %d %s", g.status, g.body)
	}
	for _, rq := range []struct {
		method, path, body string
		hdr                []string
		want               int
	}{
		{"GET", info, "", nil, 200},
		{"GET", tree, "", nil, 200},
		{"POST", paths, pathsBody, nil, 200},
		{"GET", privTree, "", reader, 200},
		{"GET", privTree, "", nil, 503},
		{"GET", privTree, "", []string{"Authorization", "Bearer hf_other"}, 503},
		{"GET", gatedTree, "", nil, 503},
		{"GET", "/api/models/org/pub/refs", "", nil, 503}, // not a stored read
	} {
		g := p.do(rq.method, rq.path, rq.body, rq.hdr...)
		if g.status != rq.want {
			t.Errorf("offline %s %s %v: %d %s", rq.method, rq.path, rq.hdr, g.status, g.body)
			continue
		}
		if rq.want == 200 && (!bytes.Equal(g.body, online[rq.path].body) || g.header.Get("X-Xetproxy-Offline") != "1") {
			t.Errorf("offline %s %s: %s %v", rq.method, rq.path, g.body, g.header)
		}
	}
}

// TestOfflinePublicFromProbe: a repo read only with a token is known to be
// public from one request without credentials, so its files serve anyone
// offline.
func TestOfflinePublicFromProbe(t *testing.T) {
	h := newOfflineHub(t)
	files, _ := offlineRepos(t, h)
	const a = "/download/org/pub/a.safetensors"
	p := startCacheProxy(t, h.url, func(c *server.Config) {
		c.UpstreamGrace = time.Nanosecond
		c.Revalidate = time.Hour
	})
	if g := p.get(a, "Authorization", "Bearer hf_other"); g.status != 200 {
		t.Fatalf("download with a token: %d", g.status)
	}
	p.flush()
	h.ts.Close()
	if g := p.get("/download/org/pub/b.safetensors"); g.status != 503 {
		t.Fatalf("uncached file offline: %d", g.status) // and the server is offline now
	}
	if g := p.get(a); g.status != 200 || !bytes.Equal(g.body, files[a]) || g.header.Get("X-Xetproxy-Offline") != "1" {
		t.Errorf("anonymous, offline, a public file read with a token: %d %s", g.status, g.body[:min(len(g.body), 200)])
	}
}

// TestOfflineWholeFileStillVerified: offline, a whole-file read is still
// held back until its Xet hash checks. The disk cache is rewritten the way
// someone with write access could (a byte flipped, hashes and checksums
// recomputed) and the manifests deleted, so that only the file hash can
// catch it: the download must never end cleanly.
func TestOfflineWholeFileStillVerified(t *testing.T) {
	h := newOfflineHub(t)
	files, _ := offlineRepos(t, h)
	const a = "/download/org/pub/a.safetensors"
	dir := t.TempDir()
	p := startCacheProxy(t, h.url, func(c *server.Config) { c.CacheDir = dir })
	if g := p.get(a); g.status != 200 {
		t.Fatalf("online download: %d", g.status)
	}
	p.flush()
	p.stop()

	ctx := context.Background()
	scan, err := cache.ScanDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range scan.Manifests {
		if err := os.Remove(m.Path); err != nil {
			t.Fatal(err)
		}
	}
	d, err := cache.NewDisk(cache.DiskConfig{Dir: dir, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	forged := 0
	for _, f := range scan.Entries {
		ent, err := d.Get(ctx, f.Key.Xorb, f.Key.Start, f.Key.End)
		if err != nil {
			t.Fatal(err)
		}
		fe := &cache.Entry{Xorb: ent.Xorb, Start: ent.Start, End: ent.End, Offsets: ent.Offsets, Data: bytes.Clone(ent.Data)}
		fe.Data[len(fe.Data)/2] ^= 0x40
		for i := fe.Start; i < fe.End; i++ {
			fe.Hashes = append(fe.Hashes, merklehash.ChunkHash(fe.Chunk(i)))
		}
		if err := d.Delete(ctx, f.Key.Xorb, f.Key.Start, f.Key.End); err != nil {
			t.Fatal(err)
		}
		if err := d.Put(ctx, fe); err != nil {
			t.Fatal(err)
		}
		forged++
	}
	if forged == 0 || len(scan.Manifests) == 0 {
		t.Fatalf("premise: %d entries rewritten, %d manifests deleted", forged, len(scan.Manifests))
	}

	p2 := startCacheProxy(t, h.url, func(c *server.Config) { c.CacheDir = dir; c.Offline = true })
	res, err := http.Get(p2.url + a)
	if err != nil {
		t.Fatal(err)
	}
	body, rerr := io.ReadAll(res.Body)
	res.Body.Close()
	t.Logf("offline read of the rewritten file: %d, %d bytes, %v, %s", res.StatusCode, len(body), rerr, res.Header.Get("X-Error-Code"))
	if res.StatusCode == 200 && rerr == nil {
		t.Fatalf("a rewritten file ended cleanly offline (%d bytes, right: %v)", len(body), bytes.Equal(body, files[a]))
	}
	if bytes.Equal(body, files[a]) {
		t.Fatal("premise: the rewritten cache served the right bytes")
	}
}
