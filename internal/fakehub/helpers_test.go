package fakehub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/xettest"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// testHub starts a Hub on a loopback listener.
func testHub(t testing.TB, cfg Config) (*Hub, *httptest.Server) {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	h.SetPublicURL(srv.URL)
	return h, srv
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	return xettest.SplitMix64(seed, n)
}

// weights returns bf16-like data: the high bytes of nearby floats repeat,
// which BG4 compresses.
func weights(seed uint64, n int) []byte {
	r := xettest.SplitMix64(seed, n)
	for i := 1; i < len(r); i += 2 {
		r[i] = 0x3c + r[i]&0x3
	}
	return r
}

func mustCreate(t testing.TB, h *Hub, spec RepoSpec) {
	t.Helper()
	if err := h.CreateRepo(spec); err != nil {
		t.Fatal(err)
	}
}

func mustAdd(t testing.TB, h *Hub, repo, path string, data []byte, s ...Storage) File {
	t.Helper()
	f, err := h.AddFile(context.Background(), repo, path, bytes.NewReader(data), s...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request and reads the whole answer.
func do(t testing.TB, method, url string, body io.Reader, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func decodeJSON(t testing.TB, r response, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
}

// xetClient is a minimal Xet download client for tests: token, v2
// reconstruction, xorb ranges (multi-range aware), decoding, assembly.
type xetClient struct {
	t     testing.TB
	srv   *httptest.Server
	token string // Hub token
}

type tokenAnswer struct {
	AccessToken string `json:"accessToken"`
	Exp         int64  `json:"exp"`
	CasURL      string `json:"casUrl"`
}

func (c *xetClient) casToken(repo string) tokenAnswer {
	c.t.Helper()
	t, name, _ := parseRepoID(repo)
	hdr := []string{}
	if c.token != "" {
		hdr = append(hdr, "Authorization", "Bearer "+c.token)
	}
	r := do(c.t, "GET", fmt.Sprintf("%s/api/%ss/%s/xet-read-token/main", c.srv.URL, t, name), nil, hdr...)
	if r.status != 200 {
		c.t.Fatalf("read token: %d %s", r.status, r.body)
	}
	var tok tokenAnswer
	decodeJSON(c.t, r, &tok)
	return tok
}

func (c *xetClient) reconstruct(tok tokenAnswer, file merklehash.Hash, rangeHdr string, version string) (response, *reconstruction.ResponseV2) {
	c.t.Helper()
	hdr := []string{"Authorization", "Bearer " + tok.AccessToken}
	if rangeHdr != "" {
		hdr = append(hdr, "Range", rangeHdr)
	}
	r := do(c.t, "GET", tok.CasURL+"/"+version+"/reconstructions/"+file.String(), nil, hdr...)
	if r.status != 200 {
		return r, nil
	}
	if version == "v1" {
		var v1 reconstruction.ResponseV1
		decodeJSON(c.t, r, &v1)
		return r, v1.ToV2()
	}
	var v2 reconstruction.ResponseV2
	decodeJSON(c.t, r, &v2)
	return r, &v2
}

// fetch downloads the ranges of one v2 entry and returns the body of each.
func fetchEntry(t testing.TB, e reconstruction.XorbFetch) [][]byte {
	t.Helper()
	var parts []string
	for _, r := range e.Ranges {
		parts = append(parts, fmt.Sprintf("%d-%d", r.Bytes.Start, r.Bytes.End))
	}
	r := do(t, "GET", e.URL, nil, "Range", "bytes="+strings.Join(parts, ","))
	if r.status != http.StatusPartialContent {
		t.Fatalf("xorb fetch: %d %s", r.status, r.body)
	}
	if len(e.Ranges) == 1 {
		return [][]byte{r.body}
	}
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("multi-range answer has Content-Type %q", r.header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	var out [][]byte
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("bytes %d-%d/", e.Ranges[i].Bytes.Start, e.Ranges[i].Bytes.End)
		if cr := p.Header.Get("Content-Range"); !strings.HasPrefix(cr, want) {
			t.Fatalf("part %d: Content-Range %q, want %s...", i, cr, want)
		}
		b, _ := io.ReadAll(p)
		out = append(out, b)
	}
	if len(out) != len(e.Ranges) {
		t.Fatalf("%d parts for %d ranges", len(out), len(e.Ranges))
	}
	return out
}

// assemble fetches and decodes a reconstruction and returns the bytes it
// describes (head skip applied, tail overshoot kept).
func assemble(t testing.TB, rec *reconstruction.ResponseV2) []byte {
	t.Helper()
	type key struct {
		x     merklehash.Hash
		start uint32
	}
	decoded := map[key][][]byte{} // per range: decoded chunks
	for x, entries := range rec.Xorbs {
		for _, e := range entries {
			bodies := fetchEntry(t, e)
			for i, r := range e.Ranges {
				d := xorb.NewDecoder(bytes.NewReader(bodies[i]))
				var chunks [][]byte
				for {
					c, err := d.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("decoding xorb %s range %v: %v", x, r.Chunks, err)
					}
					chunks = append(chunks, append([]byte(nil), c...))
				}
				if len(chunks) != int(r.Chunks.Len()) {
					t.Fatalf("range %v decoded %d chunks", r.Chunks, len(chunks))
				}
				decoded[key{x, r.Chunks.Start}] = chunks
			}
		}
	}
	var out []byte
	for _, term := range rec.Terms {
		found := false
		for _, e := range rec.Xorbs[term.Hash] {
			for _, r := range e.Ranges {
				if r.Chunks.Contains(term.Range) {
					chunks := decoded[key{term.Hash, r.Chunks.Start}]
					var n int
					for _, c := range chunks[term.Range.Start-r.Chunks.Start : term.Range.End-r.Chunks.Start] {
						out = append(out, c...)
						n += len(c)
					}
					if n != int(term.UnpackedLength) {
						t.Fatalf("term %v: %d bytes, unpacked_length %d", term.Range, n, term.UnpackedLength)
					}
					found = true
				}
				if found {
					break
				}
			}
			if found {
				break
			}
		}
		if !found {
			t.Fatalf("no fetch entry holds term %s %v", term.Hash, term.Range)
		}
	}
	return out[rec.OffsetIntoFirstRange:]
}

// download reads bytes [a, b] (inclusive) of a Xet file through the CAS.
func (c *xetClient) download(repo string, file merklehash.Hash, a, b int64) []byte {
	c.t.Helper()
	tok := c.casToken(repo)
	r, rec := c.reconstruct(tok, file, fmt.Sprintf("bytes=%d-%d", a, b), "v2")
	if rec == nil {
		c.t.Fatalf("reconstruction: %d %s", r.status, r.body)
	}
	out := assemble(c.t, rec)
	if n := b - a + 1; int64(len(out)) > n {
		out = out[:n]
	}
	return out
}
