package corruption

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/servertest"
	"github.com/xetproxy/xetproxy/internal/xettest"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// One fake Hub serves every test; each test adds files of its own, in a
// repo of its own, and corrupts only their xorbs (Corruption.Heal, never
// ClearFaults), so tests do not see each other's faults and the top-level
// tests run in parallel (their subtests one after the other).
var (
	hub    *fakehub.Hub
	hubURL string
	repos  atomic.Uint64 // repos created
)

// xorbChunks cuts xorbs after this many chunks: a file of 7 to 9 chunks
// spans three xorbs of at most three chunks, and its first, middle and
// last chunks sit in different xorbs. (A last xorb of one chunk is whole
// in any range of it: a case where even a range read can be proven.)
const xorbChunks = 3

func TestMain(m *testing.M) {
	var err error
	// MaxXorbBytes: xorbs of a few chunks, without ingestion buffers sized
	// for 64 MiB ones.
	hub, err = fakehub.New(fakehub.Config{MaxXorbChunks: xorbChunks, MaxXorbBytes: 1 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ts := httptest.NewServer(hub)
	hubURL = ts.URL
	hub.SetPublicURL(ts.URL)
	code := m.Run()
	ts.Close()
	os.Exit(code)
}

// scheme is how a test file's chunks are stored, with data that the
// policy stores that way.
type scheme struct {
	name   string
	policy string
	want   xorb.Scheme
	data   func(seed uint64, n int) []byte
}

var schemes = []scheme{
	{"none", "none", xorb.SchemeNone, xettest.SplitMix64},
	{"lz4", "lz4", xorb.SchemeLZ4, text},
	{"bg4", "bg4", xorb.SchemeBG4LZ4, weights},
}

// text is words of a small vocabulary: LZ4 shrinks every chunk of it.
func text(seed uint64, n int) []byte {
	r := xettest.SplitMix64(seed, n)
	words := strings.Fields("the of a xorb chunk hash merkle tree file proxy cache range byte stream verify decode")
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = append(b, words[int(r[i%len(r)])%len(words)]...)
		b = append(b, " \n"[r[(i+1)%len(r)]&1])
	}
	return b[:n]
}

// weights is bf16-like data: random low bytes, high bytes of nearby
// values; BG4 shrinks it, plain LZ4 barely.
func weights(seed uint64, n int) []byte {
	b := xettest.SplitMix64(seed, n)
	for i := 1; i < len(b); i += 2 {
		b[i] = 0x3c + b[i]&3
	}
	return b
}

// testFile is a Xet file of its own repo.
type testFile struct {
	repo, path string
	data       []byte
	hash       merklehash.Hash
	chunks     []fakehub.StoredChunk
}

// minChunks is the fewest chunks of a test file: three xorbs, the middle
// one full.
const minChunks = 2*xorbChunks + 1

// newFile stores data of its own (seeded by the test's name: the same
// bytes in every run, no chunk shared with another test), the shortest
// of 360 KB, 400 KB... that has minChunks chunks, with scheme s, and
// checks the premise: every chunk stored with s, in at least three xorbs.
// Small files keep the race detector's cost, which follows the bytes
// copied, low.
func newFile(t *testing.T, s scheme) *testFile {
	t.Helper()
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	seed := h.Sum64()
	n := 360_000 + int(seed%1000)
	for len(chunking.Boundaries(s.data(seed, n))) < minChunks {
		n += 40_000
	}
	f := &testFile{repo: fmt.Sprintf("org/file-%d", repos.Add(1)), path: "w.bin", data: s.data(seed, n)}
	if err := hub.CreateRepo(fakehub.RepoSpec{ID: f.repo}); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.Commit(context.Background(), f.repo, fakehub.CommitSpec{Files: []fakehub.FileSpec{{
		Path: f.path, Content: bytes.NewReader(f.data), Storage: fakehub.StorageXet, Compression: s.policy}}}); err != nil {
		t.Fatal(err)
	}
	files, err := hub.Files(f.repo, "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range files {
		if x.Path == f.path {
			f.hash = x.XetHash
		}
	}
	if f.chunks, err = hub.FileChunks(f.hash); err != nil {
		t.Fatal(err)
	}
	xorbs := map[merklehash.Hash]bool{}
	for _, c := range f.chunks {
		if c.Header.Scheme != s.want {
			t.Fatalf("premise: chunk %d stored with %v, want %v", c.Index, c.Header.Scheme, s.want)
		}
		xorbs[c.Xorb] = true
	}
	if len(f.chunks) < minChunks || len(xorbs) < 3 {
		t.Fatalf("premise: %d chunks in %d xorbs, want at least %d in 3", len(f.chunks), len(xorbs), minChunks)
	}
	return f
}

func (f *testFile) downloadPath() string { return "/download/" + f.repo + "/" + f.path }

// chunkBytes is the right content of chunk k.
func (f *testFile) chunkBytes(k int) []byte {
	c := f.chunks[k]
	return f.data[c.FileOffset : c.FileOffset+int64(c.Size)]
}

// served returns chunk k as the CAS serves it right now, fetched the way
// the proxy fetches it (read token, v2 reconstruction of the chunk's
// bytes, presigned xorb range) and decoded; err is a decoding error.
func (f *testFile) served(t *testing.T, k int) (raw, decoded []byte, err error) {
	t.Helper()
	c := f.chunks[k]
	var tok struct {
		AccessToken string `json:"accessToken"`
		CasURL      string `json:"casUrl"`
	}
	getJSON(t, hubURL+"/api/models/"+f.repo+"/xet-read-token/main", nil, &tok)
	var rec reconstruction.ResponseV2
	getJSON(t, tok.CasURL+"/v2/reconstructions/"+f.hash.String(),
		http.Header{"Authorization": {"Bearer " + tok.AccessToken},
			"Range": {fmt.Sprintf("bytes=%d-%d", c.FileOffset, c.FileOffset+int64(c.Size)-1)}}, &rec)
	want := reconstruction.ChunkRange{Start: uint32(c.XorbIndex), End: uint32(c.XorbIndex + 1)}
	for _, e := range rec.Xorbs[c.Xorb] {
		for _, r := range e.Ranges {
			if !r.Chunks.Contains(want) {
				continue
			}
			req, _ := http.NewRequest(http.MethodGet, e.URL, nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", r.Bytes.Start, r.Bytes.End))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, err = io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != http.StatusPartialContent {
				t.Fatalf("xorb fetch: %d, %v", res.StatusCode, err)
			}
			d := xorb.NewDecoder(bytes.NewReader(raw))
			for i := r.Chunks.Start; i <= want.Start; i++ {
				b, err := d.Next()
				if err != nil {
					return raw, nil, err
				}
				if i == want.Start {
					return raw, append([]byte(nil), b...), nil
				}
			}
		}
	}
	t.Fatalf("the reconstruction of chunk %d names no fetch of xorb %s chunk %d", k, c.Xorb, c.XorbIndex)
	return nil, nil, nil
}

func getJSON(t *testing.T, url string, hdr http.Header, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// corrupt damages chunk k of f at the Hub and checks that it took: the
// xorb bytes the CAS serves differ from before, and the chunk still
// decodes, to other bytes.
func corrupt(t *testing.T, f *testFile, k int) *fakehub.Corruption {
	t.Helper()
	cleanRaw, clean, err := f.served(t, k)
	if err != nil || !bytes.Equal(clean, f.chunkBytes(k)) {
		t.Fatalf("premise: chunk %d served before the corruption: equal %v, err %v", k, bytes.Equal(clean, f.chunkBytes(k)), err)
	}
	corr, err := hub.CorruptChunk(f.hash, k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(corr.Heal)
	raw, bad, err := f.served(t, k)
	switch {
	case bytes.Equal(raw, cleanRaw):
		t.Fatalf("premise: the corruption did not fire: the CAS serves the same xorb bytes")
	case !corr.Decodes || err != nil:
		t.Fatalf("premise: the damaged chunk does not decode (%v): not the hard case", err)
	case len(bad) != len(clean) || bytes.Equal(bad, clean):
		t.Fatalf("premise: the damaged chunk decodes to %d bytes, equal %v", len(bad), bytes.Equal(bad, clean))
	}
	return corr
}

// heal ends the corruption and checks that the CAS serves the right chunk.
func heal(t *testing.T, f *testFile, corr *fakehub.Corruption) {
	t.Helper()
	corr.Heal()
	if _, b, err := f.served(t, corr.Chunk.Index); err != nil || !bytes.Equal(b, f.chunkBytes(corr.Chunk.Index)) {
		t.Fatalf("premise: chunk %d still served wrong after Heal (%v)", corr.Chunk.Index, err)
	}
}

// cacheMode is the chunk cache of the servers of a test.
type cacheMode string

const (
	noCache   cacheMode = "nocache"
	diskCache cacheMode = "disk"
	s3Cache   cacheMode = "disk+s3"
)

// stack is the configuration of the servers of one test (a cache
// directory of its own; for s3Cache also a bucket of its own on gofakes3),
// from which it starts them.
type stack struct {
	t      *testing.T
	mode   cacheMode
	cfg    server.Config
	bucket *s3mem.Backend
}

const bucketName = "xetproxy-cache"

func newStack(t *testing.T, mode cacheMode) *stack {
	t.Helper()
	st := &stack{t: t, mode: mode, cfg: servertest.Config(t, hubURL)}
	st.cfg.LogLevel = "info"
	if mode == noCache {
		st.cfg.CacheDir = ""
	}
	if mode == s3Cache {
		st.bucket = s3mem.New()
		if err := st.bucket.CreateBucket(bucketName); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(gofakes3.New(st.bucket).Server())
		t.Cleanup(srv.Close)
		st.cfg.S3Endpoint, st.cfg.S3Bucket, st.cfg.S3Prefix, st.cfg.S3Region, st.cfg.S3PathStyle = srv.URL, bucketName, "chunks/", "auto", true
		st.cfg.S3AccessKeyID, st.cfg.S3SecretAccessKey = "test-key", "test-secret"
	}
	if err := st.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return st
}

// start runs a proxy of the stack's configuration (mod adjusts a copy).
func (st *stack) start(mod func(*server.Config)) *instance {
	st.t.Helper()
	cfg := st.cfg
	if mod != nil {
		mod(&cfg)
	}
	return startProxy(st.t, cfg)
}

// objects counts the entries in the stack's bucket.
func (st *stack) objects() int {
	st.t.Helper()
	list, err := st.bucket.ListBucket(bucketName, nil, gofakes3.ListBucketPage{})
	if err != nil {
		st.t.Fatal(err)
	}
	return len(list.Contents)
}

// instance is one running xetproxy server with its engine.
type instance struct {
	t    *testing.T
	url  string
	eng  *proxy.Engine
	stop func()
}

func startProxy(t *testing.T, cfg server.Config) *instance {
	t.Helper()
	opts := []servertest.Option{servertest.ObserveEngine()}
	if os.Getenv("CORRUPTION_LOG") != "" {
		opts = append(opts, servertest.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	s := servertest.Start(t, cfg, opts...)
	return &instance{t: t, url: s.URL, eng: s.Engine, stop: func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}}
}

// consulted checks the premise that the server looked its cache tier up
// (disk or s3) while serving.
func (p *instance) consulted(tier string) {
	p.t.Helper()
	if p.metric(`xetproxy_cache_tier_hits_total{tier="`+tier+`"}`)+p.metric(`xetproxy_cache_tier_misses_total{tier="`+tier+`"}`) == 0 {
		p.t.Errorf("premise: the server never looked up its %s tier", tier)
	}
}

// copyDir copies the tree under dir to a new directory, as a crash at
// this moment would leave it, and returns its path. A file removed while
// it copies (a purge) is left out.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// flush waits until the queued cache writes (S3) are done.
func (p *instance) flush() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.eng.Flush(ctx); err != nil {
		p.t.Fatal(err)
	}
}

// metric returns one sample of /metrics, e.g.
// `xetproxy_download_source_bytes_total{source="cache"}`; 0 when absent.
func (p *instance) metric(sample string) float64 {
	p.t.Helper()
	res, err := http.Get(p.url + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				p.t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// client is one way of downloading.
type client string

const (
	goPlain    client = "go"          // net/http, Content-Length answers
	goTrailers client = "go+trailers" // net/http sending TE: trailers: chunked answers
	curlClient client = "curl"
)

var clients = []client{goPlain, goTrailers, curlClient}

// outcome is what a client saw.
type outcome struct {
	status int
	code   string // X-Error-Code
	body   []byte
	err    error // transport or body error, or curl's exit
	// complete: a success status and the whole body the answer announced,
	// with no error: what a client takes as a good download.
	complete bool
}

func (o outcome) String() string {
	return fmt.Sprintf("status %d, code %q, %d bytes, complete %v, err %v", o.status, o.code, len(o.body), o.complete, o.err)
}

var httpClient = &http.Client{Timeout: time.Minute}

// get downloads url, or its bytes [rng[0], rng[1]) when rng is not nil.
func (c client) get(t *testing.T, url string, rng []int64) outcome {
	t.Helper()
	if c == curlClient {
		return curlGet(t, url, rng)
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != nil {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", rng[0], rng[1]-1))
	}
	if c == goTrailers {
		req.Header.Set("TE", "trailers")
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	if res.ContentLength > 0 {
		buf.Grow(int(res.ContentLength)) // one copy: the race detector checks every byte copied
	}
	_, err = buf.ReadFrom(res.Body)
	body := buf.Bytes()
	o := outcome{status: res.StatusCode, code: res.Header.Get("X-Error-Code"), body: body, err: err}
	o.complete = err == nil && (res.StatusCode == http.StatusOK || res.StatusCode == http.StatusPartialContent) &&
		(res.ContentLength < 0 || int64(len(body)) == res.ContentLength)
	return o
}

var curlPath = sync.OnceValues(func() (string, error) { return exec.LookPath("curl") })

func curlGet(t *testing.T, url string, rng []int64) outcome {
	t.Helper()
	curl, err := curlPath()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("curl is required in CI: %v", err)
		}
		t.Skip("curl not installed")
	}
	dir := t.TempDir()
	out, hdr := filepath.Join(dir, "body"), filepath.Join(dir, "headers")
	args := []string{"-sS", "--fail", "--max-time", "60", "-o", out, "-D", hdr, "-w", "%{http_code}"}
	if rng != nil {
		args = append(args, "-r", fmt.Sprintf("%d-%d", rng[0], rng[1]-1))
	}
	cmd := exec.Command(curl, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	o := outcome{complete: runErr == nil}
	o.status, _ = strconv.Atoi(strings.TrimSpace(stdout.String()))
	o.body, _ = os.ReadFile(out)
	if runErr != nil {
		o.err = fmt.Errorf("curl: %v: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	if h, err := os.ReadFile(hdr); err == nil {
		for _, line := range strings.Split(string(h), "\n") {
			if v, ok := strings.CutPrefix(strings.ToLower(line), "x-error-code:"); ok {
				o.code = strings.TrimSpace(line[len(line)-len(v):])
			}
		}
	}
	return o
}

// firstDiff is the index of the first byte where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}
