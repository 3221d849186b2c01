package xetclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// One fake Hub serves every test. Its xorbs hold at most three chunks, so a
// file of a few MiB spans a dozen xorbs: enough ranges to fetch in
// parallel and for ranged reconstructions that start and end inside xorbs.
var (
	hub     *fakehub.Hub
	hubURL  string
	content = map[string][]byte{} // key: repo + ":" + path
)

const (
	dedupRepo   = "xettest/dedup-model"
	otherRepo   = "xettest/other-model"
	privateRepo = "xettest/private-model"
	readerToken = "hf_xettest_reader"
	xorbChunks  = 3
)

// dedupFiles are the files of dedupRepo, in order: b shares its first
// 2 MiB with a, d is a behind a compressible prefix (chunk boundaries
// realign after it), c is mostly compressible text (LZ4 or BG4 chunks),
// e is chunks 0 and 2 of two of a's xorbs: its reconstruction lists two
// ranges of one xorb under one URL (a multi-range fetch for clients that
// make them).
var dedupFiles = []string{"a.bin", "b.bin", "c.txt", "d.bin", "e.bin"}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

func textBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "row %d,%d,%0.4f,label-%d\n", b.Len(), r.IntN(1000), r.Float64(), r.IntN(9))
	}
	return b.Bytes()[:n]
}

func setupHub() error {
	var err error
	// LogSize: tests index the request log from a point on; it must not wrap.
	hub, err = fakehub.New(fakehub.Config{MaxXorbChunks: xorbChunks, MaxXorbBytes: 1 << 20, LogSize: 1 << 20})
	if err != nil {
		return err
	}
	a := randomBytes(1, 3<<20)
	files := map[string][]byte{
		"a.bin": a,
		"b.bin": append(append([]byte(nil), a[:2<<20]...), randomBytes(2, 1<<20)...),
		"c.txt": append(textBytes(3, 2<<20), randomBytes(4, 100_000)...),
		"d.bin": append(textBytes(5, 256<<10), a...),
	}
	ctx := context.Background()
	for _, r := range []fakehub.RepoSpec{{ID: dedupRepo}, {ID: otherRepo}, {ID: privateRepo, Private: true, Readers: []string{readerToken}}} {
		if err := hub.CreateRepo(r); err != nil {
			return err
		}
	}
	for _, p := range dedupFiles {
		if p == "e.bin" {
			e, err := skipMiddleChunks(files["a.bin"])
			if err != nil {
				return err
			}
			files[p] = e
		}
		if _, err := hub.AddFile(ctx, dedupRepo, p, bytes.NewReader(files[p]), fakehub.StorageXet); err != nil {
			return err
		}
		content[dedupRepo+":"+p] = files[p]
	}
	other := randomBytes(9, 1<<20+12345)
	if _, err := hub.AddFile(ctx, otherRepo, "o.bin", bytes.NewReader(other), fakehub.StorageXet); err != nil {
		return err
	}
	content[otherRepo+":o.bin"] = other
	priv := randomBytes(10, 700_000)
	if _, err := hub.AddFile(ctx, privateRepo, "p.bin", bytes.NewReader(priv), fakehub.StorageXet); err != nil {
		return err
	}
	content[privateRepo+":p.bin"] = priv
	hub.AddToken(readerToken)
	return nil
}

// skipMiddleChunks returns chunks 0 and 2 of the first two three-chunk
// xorbs of dedupRepo's a.bin. Content-defined boundaries depend only on
// the bytes since the last boundary, so the result chunks the same way and
// deduplicates against those four stored chunks.
func skipMiddleChunks(a []byte) ([]byte, error) {
	files, err := hub.Files(dedupRepo, "main")
	if err != nil {
		return nil, err
	}
	var chunks []fakehub.StoredChunk
	for _, f := range files {
		if f.Path == "a.bin" {
			if chunks, err = hub.FileChunks(f.XetHash); err != nil {
				return nil, err
			}
		}
	}
	var out []byte
	xorbs := 0
	for i := 0; i+2 < len(chunks) && xorbs < 2; i++ {
		c := chunks[i]
		if c.XorbIndex != 0 || c.XorbChunks != 3 {
			continue
		}
		for _, k := range []int{i, i + 2} {
			out = append(out, a[chunks[k].FileOffset:chunks[k].FileOffset+int64(chunks[k].Size)]...)
		}
		xorbs++
	}
	if xorbs < 2 {
		return nil, fmt.Errorf("a.bin has %d three-chunk xorbs, want 2", xorbs)
	}
	return out, nil
}

func TestMain(m *testing.M) {
	if err := setupHub(); err != nil {
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

// target is a server the client is pointed at with HF_ENDPOINT.
type target struct {
	name     string
	endpoint string
	// viaProxy: the target is the proxy, so every URL the client
	// fetches must be on its origin, and upstream costs are counted at
	// the fake Hub behind it.
	viaProxy bool
	// xorbPart is a string every xorb range URL of the target contains.
	xorbPart string
}

// fakehubTarget is the fake Hub itself: the reference shape of the flow.
func fakehubTarget() target {
	return target{name: "fakehub", endpoint: hubURL, xorbPart: "/cas/transfer/"}
}

// recorder counts requests in flight through a transport and can hold
// xorb fetches until enough of them run at once.
type recorder struct {
	next http.RoundTripper

	mu       sync.Mutex
	inFlight int
	maxXorb  int
	xorb     int // xorb fetches in flight
	gate     chan struct{}
	gateAt   int
	// rewrite, when set, may change a request before it is sent.
	rewrite func(*http.Request)
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.rewrite != nil {
		req = req.Clone(req.Context())
		r.rewrite(req)
	}
	isXorb := req.Header.Get("Range") != "" && req.Header.Get("Authorization") == "" && req.Method == http.MethodGet
	if isXorb {
		r.mu.Lock()
		r.xorb++
		if r.xorb > r.maxXorb {
			r.maxXorb = r.xorb
		}
		gate := r.gate
		if gate != nil && r.xorb >= r.gateAt {
			close(gate)
			r.gate = nil
		}
		r.mu.Unlock()
		if gate != nil {
			// Hold until gateAt fetches are in flight together; the
			// deadline only turns a client that fetches one at a time
			// into a failed assertion instead of a hang.
			select {
			case <-gate:
			case <-time.After(20 * time.Second):
			}
		}
		defer func() {
			r.mu.Lock()
			r.xorb--
			r.mu.Unlock()
		}()
	}
	return r.next.RoundTrip(req)
}

// newClient is a fresh client (empty token and chunk caches) for tg.
func newClient(tg target, token string) (*Client, *recorder) {
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
	return &Client{
		Endpoint: tg.endpoint,
		Token:    token,
		HTTP: &http.Client{
			Transport:     rec,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Parallel: 8,
	}, rec
}

// treeXetHashes lists repo's tree at rev as huggingface_hub does and maps
// path to xetHash.
func treeXetHashes(t *testing.T, c *Client, repo, rev string) map[string]string {
	t.Helper()
	u := fmt.Sprintf("%s/api/models/%s/tree/%s?recursive=true", c.Endpoint, repo, rev)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("tree: status %d", res.StatusCode)
	}
	var entries []struct {
		Path    string `json:"path"`
		XetHash string `json:"xetHash"`
	}
	if err := json.NewDecoder(res.Body).Decode(&entries); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if e.XetHash != "" {
			out[e.Path] = e.XetHash
		}
	}
	return out
}

// assertOrigin checks that every URL the client fetched is on origin.
func assertOrigin(t *testing.T, c *Client, origin string) {
	t.Helper()
	urls := c.URLs()
	if len(urls) == 0 {
		t.Fatal("the client fetched nothing")
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, origin+"/") {
			t.Errorf("fetched %s, off the origin %s", redact(u), origin)
		}
	}
}

// countURLs counts the fetched URLs whose path contains part.
func countURLs(c *Client, part string) int {
	n := 0
	for _, u := range c.URLs() {
		if strings.Contains(u, part) {
			n++
		}
	}
	return n
}
