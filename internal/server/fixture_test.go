package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/xettest"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// The handler tests run the real download engine (internal/proxy with the
// hub and casclient clients) against fakehub on loopback: nothing of ours
// is mocked. Upstream faults, slowness and hangs come from fakehub's knobs;
// what the engine did upstream is read from fakehub's request log.

// Hub tokens of the fixture.
const (
	readerToken = "hf_reader" // may read org/private and org/gated
	userToken   = "hf_wrong"  // a valid Hub user who may read neither
)

// engineOptions tune the engine of a test server.
type engineOptions struct {
	// blockSize is proxy.Config.BlockSize; 0 = the default, under which
	// every test file is one reconstruction block.
	blockSize int64
	// hubHeaderTimeout is the ResponseHeaderTimeout of the Hub client's
	// transport; 0 = none.
	hubHeaderTimeout time.Duration
	// cache is the engine's chunk cache; nil = none.
	cache cache.Store
}

// testEngine returns the real engine for a server of cfg: a Hub client for
// cfg.HubURL and a CAS client, with retry backoffs of milliseconds so that
// fault tests stay fast (the CAS one honours a Retry-After of up to a
// minute), on transports of their own. closeIdle drops their idle
// connections (for goroutine leak checks).
func testEngine(t testing.TB, cfg Config, o engineOptions) (eng *proxy.Engine, closeIdle func()) {
	t.Helper()
	hubTr := &http.Transport{ResponseHeaderTimeout: o.hubHeaderTimeout}
	casTr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	hc := hub.NewClient(cfg.HubURL)
	hc.HTTP = &http.Client{Transport: hubTr}
	hc.RetryBase, hc.RetryMax = time.Millisecond, 100*time.Millisecond
	cas, err := casclient.New(casclient.Config{
		API:          &http.Client{Transport: casTr},
		Fetch:        &http.Client{Transport: casTr},
		Backoff:      casclient.Backoff{Attempts: 5, Base: time.Millisecond, Max: time.Minute},
		StallTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	eng, err = proxy.New(proxy.Config{
		Hub:          hc,
		CAS:          cas,
		BlockSize:    o.blockSize,
		StreamBuffer: cfg.ReadAhead,
		MaxBuffer:    cfg.MaxBuffer,
		Cache:        o.cache,
	})
	if err != nil {
		t.Fatal(err)
	}
	closeIdle = func() {
		hubTr.CloseIdleConnections()
		casTr.CloseIdleConnections()
	}
	t.Cleanup(closeIdle)
	return eng, closeIdle
}

// testFile is a file of the fixture as the Hub describes it.
type testFile struct {
	data    []byte
	etag    string           // sha256 of a Xet file, git blob sha1 of a plain one
	xetHash *merklehash.Hash // nil for a plain file
}

// fixture is a fakehub with the repos below and a server in front of it.
//
//	org/m            main: model.safetensors (3 MiB, Xet), config.json, empty.txt (plain)
//	                 refs/pr/1: + sub/dir/w.bin (the first 1000 bytes, Xet)
//	datasets/org/d   main: data/train.csv (plain)
//	org/private      private, readable with readerToken: w.bin (Xet)
//	org/gated        gated, readerToken approved: w.bin (Xet)
//
// Xorbs are stored uncompressed, so chunk headers sit where chunkHeaders
// says.
type fixture struct {
	t         *testing.T
	fh        *fakehub.Hub
	hub       *httptest.Server // fakehub
	srv       *Server
	ts        *httptest.Server // the server under test
	closeIdle func()
	commit    string // main of org/m
	big       testFile
	small     testFile
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	return newFixtureWith(t, mod, engineOptions{})
}

func newFixtureWith(t *testing.T, mod func(*Config), o engineOptions) *fixture {
	t.Helper()
	fh, err := fakehub.New(fakehub.Config{Compression: "none"})
	if err != nil {
		t.Fatal(err)
	}
	hubSrv := httptest.NewServer(fh)
	t.Cleanup(hubSrv.Close)
	fh.SetPublicURL(hubSrv.URL)

	ctx := context.Background()
	data := xettest.SplitMix64(1, 3<<20+17)
	file := func(path string, b []byte, s fakehub.Storage) fakehub.FileSpec {
		return fakehub.FileSpec{Path: path, Content: bytes.NewReader(b), Storage: s}
	}
	repos := []struct {
		spec   fakehub.RepoSpec // zero: one more commit to the repo above
		branch string
		files  []fakehub.FileSpec
	}{
		{fakehub.RepoSpec{ID: "org/m"}, "main", []fakehub.FileSpec{
			file("model.safetensors", data, fakehub.StorageXet),
			file("config.json", []byte(`{"a":1}`), fakehub.StoragePlain),
			file("empty.txt", nil, fakehub.StoragePlain),
		}},
		{fakehub.RepoSpec{}, "refs/pr/1", []fakehub.FileSpec{file("sub/dir/w.bin", data[:1000], fakehub.StorageXet)}},
		{fakehub.RepoSpec{ID: "datasets/org/d"}, "main", []fakehub.FileSpec{file("data/train.csv", []byte("a,b\n1,2\n"), fakehub.StoragePlain)}},
		{fakehub.RepoSpec{ID: "org/private", Private: true, Readers: []string{readerToken}}, "main",
			[]fakehub.FileSpec{file("w.bin", data[:5000], fakehub.StorageXet)}},
		{fakehub.RepoSpec{ID: "org/gated", Gated: true, Readers: []string{readerToken}}, "main",
			[]fakehub.FileSpec{file("w.bin", data[:3000], fakehub.StorageXet)}},
	}
	id := ""
	for _, r := range repos {
		if r.spec.ID != "" {
			id = r.spec.ID
			if err := fh.CreateRepo(r.spec); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := fh.Commit(ctx, id, fakehub.CommitSpec{Branch: r.branch, Title: "add files", Files: r.files}); err != nil {
			t.Fatal(err)
		}
	}
	fh.AddToken(userToken)

	f := &fixture{t: t, fh: fh, hub: hubSrv}
	files, err := fh.Files("org/m", "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, hf := range files {
		switch hf.Path {
		case "model.safetensors":
			h := hf.XetHash
			f.big = testFile{data: data, etag: hf.SHA256, xetHash: &h}
			f.commit = hf.Commit
		case "config.json":
			f.small = testFile{data: []byte(`{"a":1}`), etag: hf.GitOID}
		}
	}
	if f.big.xetHash == nil || f.small.etag == "" || f.commit == "" {
		t.Fatalf("fixture files: %+v", files)
	}
	// the fixture's own requests are not the server's
	fh.ResetStats()

	cfg := testConfig(hubSrv.URL)
	if mod != nil {
		mod(&cfg)
	}
	eng, closeIdle := testEngine(t, cfg, o)
	s, err := New(Options{Config: cfg, Engine: eng, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	f.srv, f.closeIdle = s, closeIdle
	f.ts = httptest.NewServer(s.Handler())
	t.Cleanup(f.ts.Close)
	return f
}

// opens counts the downloads the engine started upstream: reconstruction
// queries (Xet files, one per download of a one-block file) and GETs of
// resolve URLs (plain files; Stat uses HEAD).
func (f *fixture) opens() int {
	n := 0
	for _, r := range f.fh.Requests() {
		if r.Class == fakehub.ClassReconstruction || (r.Class == fakehub.ClassResolve && r.Method == http.MethodGet) {
			n++
		}
	}
	return n
}

// holdXorbs makes every xorb fetch wait upstream (a minute, far past any
// test) until releaseXorbs.
func (f *fixture) holdXorbs() { f.fh.SetLatency(fakehub.ClassXorb, time.Minute) }

// releaseXorbs ends the wait: the held fetches lose their connections and
// the CAS client's retries go through at once.
func (f *fixture) releaseXorbs() {
	f.fh.SetLatency(fakehub.ClassXorb, 0)
	f.hub.CloseClientConnections()
}

// closeAll closes both servers and every idle connection, so that only
// goroutines that should not exist remain.
func (f *fixture) closeAll() {
	f.ts.Close()
	f.hub.Close()
	f.closeIdle()
	http.DefaultClient.CloseIdleConnections()
}

// chunkHeaders returns the offsets of the chunk headers in the
// (uncompressed) xorb that stores data alone.
func chunkHeaders(data []byte) []int64 {
	var offs []int64
	start := 0
	for i, end := range chunking.Boundaries(data) {
		offs = append(offs, int64(i*xorb.HeaderSize+start))
		start = end
	}
	return offs
}
