package fakehub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/shard"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// casFixture is a Hub with a multi-xorb file, a file sharing non-adjacent
// pieces of it, and an empty file.
type casFixture struct {
	h            *Hub
	c            *xetClient
	tok          tokenAnswer
	data, shared []byte
	file, sf     File
	empty        File
}

func newCASFixture(t *testing.T) *casFixture {
	h, srv := testHub(t, Config{MaxXorbBytes: 1 << 20})
	mustCreate(t, h, RepoSpec{ID: "org/m"})
	fx := &casFixture{h: h, c: &xetClient{t: t, srv: srv}}
	fx.data = randomBytes(1, 5<<20+12345)
	fx.file = mustAdd(t, h, "org/m", "big.bin", fx.data)
	fx.shared = concat(fx.data[:300_000], randomBytes(2, 200_000), fx.data[700_000:900_000], fx.data[:300_000])
	fx.sf = mustAdd(t, h, "org/m", "shared.bin", fx.shared)
	fx.empty = mustAdd(t, h, "org/m", "empty.bin", nil)
	fx.tok = fx.c.casToken("org/m")
	return fx
}

func TestReconstructionRanges(t *testing.T) {
	fx := newCASFixture(t)
	n := int64(len(fx.data))
	for _, c := range []struct {
		name string
		rng  string
		a, b int64 // expected bytes [a, b]
	}{
		{"whole file, no Range", "", 0, n - 1},
		{"first byte", "bytes=0-0", 0, 0},
		{"last byte", fmt.Sprintf("bytes=%d-%d", n-1, n-1), n - 1, n - 1},
		{"odd middle", "bytes=70001-200002", 70001, 200002},
		{"spanning xorbs", fmt.Sprintf("bytes=%d-%d", 1<<20-5000, 3<<20+77), 1<<20 - 5000, 3<<20 + 77},
		{"end past the size is clamped", fmt.Sprintf("bytes=%d-%d", n-10, n+1000), n - 10, n - 1},
		{"open end", fmt.Sprintf("bytes=%d-", n-100), n - 100, n - 1},
	} {
		for _, v := range []string{"v1", "v2"} {
			r, rec := fx.c.reconstruct(fx.tok, fx.file.XetHash, c.rng, v)
			if rec == nil {
				t.Fatalf("%s %s: %d %s", c.name, v, r.status, r.body)
			}
			got := assemble(t, rec)
			if int64(len(got)) < c.b-c.a+1 {
				t.Fatalf("%s %s: %d bytes", c.name, v, len(got))
			}
			// The last term may overshoot by less than one chunk.
			if over := int64(len(got)) - (c.b - c.a + 1); over >= xorb.MaxChunkSize {
				t.Errorf("%s %s: overshoot %d", c.name, v, over)
			}
			if !bytes.Equal(got[:c.b-c.a+1], fx.data[c.a:c.b+1]) {
				t.Fatalf("%s %s: bytes differ", c.name, v)
			}
			// Terms start at the chunk holding a.
			if first := rec.Terms[0]; rec.OffsetIntoFirstRange >= uint64(first.UnpackedLength) {
				t.Errorf("%s: offset %d not inside the first term", c.name, rec.OffsetIntoFirstRange)
			}
			if rec.OffsetIntoFirstRange >= xorb.MaxChunkSize {
				t.Errorf("%s: offset %d spans whole chunks", c.name, rec.OffsetIntoFirstRange)
			}
		}
	}
	for _, c := range []struct {
		rng    string
		status int
	}{
		{fmt.Sprintf("bytes=%d-%d", n, n+5), 416},
		{fmt.Sprintf("bytes=%d-", n+1), 416},
		{"bytes=5-2", 400},
		{"bytes=-5", 400},
		{"items=0-1", 400},
	} {
		r, _ := fx.c.reconstruct(fx.tok, fx.file.XetHash, c.rng, "v2")
		if r.status != c.status {
			t.Errorf("Range %s: %d, want %d", c.rng, r.status, c.status)
		}
	}
	// Empty file: 200 with no terms, with or without Range bytes=0-.
	for _, rng := range []string{"", "bytes=0-0", "bytes=0-100"} {
		r, rec := fx.c.reconstruct(fx.tok, fx.empty.XetHash, rng, "v2")
		if rec == nil || len(rec.Terms) != 0 || !strings.Contains(string(r.body), `"terms":[]`) {
			t.Fatalf("empty file, Range %q: %d %s", rng, r.status, r.body)
		}
	}
	if r, _ := fx.c.reconstruct(fx.tok, merklehash.ChunkHash([]byte("nope")), "", "v2"); r.status != 404 {
		t.Fatalf("unknown file: %d", r.status)
	}
	// Unversioned path (zig-xet, old xet-core).
	r := do(t, "GET", fx.tok.CasURL+"/reconstructions/"+fx.file.XetHash.String(), nil,
		"Authorization", "Bearer "+fx.tok.AccessToken, "Range", "bytes=0-9")
	if r.status != 200 || !strings.Contains(string(r.body), `"fetch_info"`) {
		t.Fatalf("unversioned reconstruction: %d", r.status)
	}
}

// layout strips the URLs of a v2 answer.
func layout(rec *reconstruction.ResponseV2) string {
	type entry struct {
		Ranges []reconstruction.RangeV2
	}
	m := map[string][]entry{}
	for x, es := range rec.Xorbs {
		for _, e := range es {
			m[x.String()] = append(m[x.String()], entry{e.Ranges})
		}
	}
	b, _ := json.Marshal(struct {
		O uint64
		T []reconstruction.Term
		X map[string][]entry
	}{rec.OffsetIntoFirstRange, rec.Terms, m})
	return string(b)
}

func TestReconstructionV1V2AndDeterminism(t *testing.T) {
	fx := newCASFixture(t)
	for _, rng := range []string{"", "bytes=1-1", "bytes=123456-4000000", "bytes=250000-650000"} {
		for _, f := range []merklehash.Hash{fx.file.XetHash, fx.sf.XetHash} {
			_, v1 := fx.c.reconstruct(fx.tok, f, rng, "v1")
			_, v2 := fx.c.reconstruct(fx.tok, f, rng, "v2")
			_, again := fx.c.reconstruct(fx.tok, f, rng, "v2")
			if layout(v2) != layout(again) {
				t.Fatalf("range %q: two answers differ", rng)
			}
			if !reflect.DeepEqual(v1.Terms, v2.Terms) || v1.OffsetIntoFirstRange != v2.OffsetIntoFirstRange {
				t.Fatalf("range %q: v1 and v2 terms differ", rng)
			}
			// v1 fetch entries (one range each) cover exactly the v2 ranges.
			for x, es := range v2.Xorbs {
				var r2, r1 []reconstruction.RangeV2
				for _, e := range es {
					r2 = append(r2, e.Ranges...)
				}
				for _, e := range v1.Xorbs[x] {
					r1 = append(r1, e.Ranges...)
				}
				if !reflect.DeepEqual(r1, r2) {
					t.Fatalf("xorb %s: v1 %v, v2 %v", x, r1, r2)
				}
			}
			if !bytes.Equal(assemble(t, v1), assemble(t, v2)) {
				t.Fatalf("range %q: v1 and v2 bytes differ", rng)
			}
		}
	}
}

// Fetch ranges of one xorb are sorted and merged when they overlap or
// touch; shared.bin uses non-adjacent pieces of big.bin's first xorb.
func TestFetchRangesMerged(t *testing.T) {
	fx := newCASFixture(t)
	_, rec := fx.c.reconstruct(fx.tok, fx.sf.XetHash, "", "v2")
	multi := false
	for x, es := range rec.Xorbs {
		if len(es) != 1 {
			t.Fatalf("xorb %s: %d entries without a per-URL limit", x, len(es))
		}
		rs := es[0].Ranges
		for i := 1; i < len(rs); i++ {
			if rs[i].Chunks.Start <= rs[i-1].Chunks.End || rs[i].Bytes.Start <= rs[i-1].Bytes.End+1 {
				t.Fatalf("xorb %s: ranges %v and %v should have been merged", x, rs[i-1], rs[i])
			}
		}
		if len(rs) > 1 {
			multi = true
		}
	}
	if !multi {
		t.Fatal("shared.bin produced no xorb with several ranges")
	}
	if got := assemble(t, rec); !bytes.Equal(got, fx.shared) {
		t.Fatal("shared.bin differs")
	}
	// The file ends with its own beginning: a later term overlaps the first
	// one in the same xorb, and both are served by one merged range.
	first := rec.Terms[0]
	overlap := false
	for _, term := range rec.Terms[1:] {
		if term.Hash == first.Hash && term.Range.Start < first.Range.End {
			overlap = true
			r := rec.Xorbs[first.Hash][0].Ranges[0].Chunks
			if !r.Contains(first.Range) || !r.Contains(term.Range) {
				t.Fatalf("terms %v and %v are not in one range %v", first.Range, term.Range, r)
			}
		}
	}
	if !overlap {
		t.Fatalf("no term overlaps the first: %+v", rec.Terms)
	}
	fx.h.SetMaxRangesPerURL(1)
	_, rec = fx.c.reconstruct(fx.tok, fx.sf.XetHash, "", "v2")
	for x, es := range rec.Xorbs {
		for _, e := range es {
			if len(e.Ranges) != 1 {
				t.Fatalf("xorb %s: %d ranges on one URL with a limit of 1", x, len(e.Ranges))
			}
		}
	}
	if got := assemble(t, rec); !bytes.Equal(got, fx.shared) {
		t.Fatal("shared.bin differs with one range per URL")
	}
}

func TestPresignedURLs(t *testing.T) {
	fx := newCASFixture(t)
	_, rec := fx.c.reconstruct(fx.tok, fx.sf.XetHash, "", "v2")
	var e reconstruction.XorbFetch
	for _, es := range rec.Xorbs {
		if len(es[0].Ranges) > 1 {
			e = es[0]
		}
	}
	r0, r1 := e.Ranges[0].Bytes, e.Ranges[1].Bytes
	x, _ := fx.h.store.xorb(rec.Terms[0].Hash)
	whole := x.data
	rng := func(rs ...reconstruction.ByteRange) string {
		var parts []string
		for _, r := range rs {
			parts = append(parts, fmt.Sprintf("%d-%d", r.Start, r.End))
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	// No Range: 200 with the signed ranges.
	r := do(t, "GET", e.URL, nil)
	if r.status != 200 || !bytes.Equal(r.body, concat(whole[r0.Start:r0.End+1], whole[r1.Start:r1.End+1])) {
		t.Fatalf("no Range: %d", r.status)
	}
	// Single range: 206 with Content-Range over the stored object.
	r = do(t, "GET", e.URL, nil, "Range", rng(r1))
	if r.status != 206 || !bytes.Equal(r.body, whole[r1.Start:r1.End+1]) ||
		r.header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", r1.Start, r1.End, x.size) {
		t.Fatalf("single range: %d %q", r.status, r.header.Get("Content-Range"))
	}
	// A sub-range of a signed range is allowed.
	sub := reconstruction.ByteRange{Start: r0.Start + 1, End: r0.Start + 10}
	if r = do(t, "GET", e.URL, nil, "Range", rng(sub)); r.status != 206 || !bytes.Equal(r.body, whole[sub.Start:sub.End+1]) {
		t.Fatalf("sub-range: %d", r.status)
	}
	// Multi-range: parts in request order (here reversed).
	parts := fetchEntry(t, reconstruction.XorbFetch{URL: e.URL, Ranges: []reconstruction.RangeV2{e.Ranges[1], e.Ranges[0]}})
	if !bytes.Equal(parts[0], whole[r1.Start:r1.End+1]) || !bytes.Equal(parts[1], whole[r0.Start:r0.End+1]) {
		t.Fatal("multi-range parts differ")
	}
	// Outside the signed set, tampered, expired, with Authorization.
	outside := reconstruction.ByteRange{Start: r0.End + 1, End: r1.Start - 1}
	for _, c := range []struct {
		name, url string
		hdr       []string
		status    int
	}{
		{"bytes between the signed ranges", e.URL, []string{"Range", rng(outside)}, 403},
		{"signed range extended by one byte", e.URL, []string{"Range", rng(reconstruction.ByteRange{Start: r0.Start, End: r0.End + 1})}, 403},
		{"whole object", e.URL, []string{"Range", "bytes=0-"}, 403},
		{"tampered signed range", strings.Replace(e.URL, "Signed-Range=bytes%3D", "Signed-Range=bytes%3D0-99999999,", 1), nil, 403},
		{"tampered expiry", strings.Replace(e.URL, "Expires=", "Expires=9", 1), nil, 403},
		{"Authorization header", e.URL, []string{"Authorization", "Bearer " + fx.tok.AccessToken}, 400},
		{"past the end", e.URL, []string{"Range", fmt.Sprintf("bytes=%d-%d", x.size, x.size+9)}, 416},
	} {
		if r := do(t, "GET", c.url, nil, c.hdr...); r.status != c.status {
			t.Errorf("%s: %d, want %d (%s)", c.name, r.status, c.status, r.body)
		}
	}
	fx.h.SetURLTTL(-time.Second)
	_, rec = fx.c.reconstruct(fx.tok, fx.sf.XetHash, "", "v2")
	for _, es := range rec.Xorbs {
		if r := do(t, "GET", es[0].URL, nil); r.status != 403 {
			t.Fatalf("expired URL: %d", r.status)
		}
	}
	// No Authorization needed, but the counters saw the attempt with one.
	leaks := 0
	for _, req := range fx.h.Requests() {
		if req.Class == ClassXorb && req.HasAuth {
			leaks++
			if req.Header.Get("Authorization") != "REDACTED" {
				t.Fatal("the request log keeps the token")
			}
		}
	}
	if leaks != 1 {
		t.Fatalf("%d xorb requests with Authorization in the log", leaks)
	}
}

func TestCASAuth(t *testing.T) {
	fx := newCASFixture(t)
	u := fx.tok.CasURL + "/v2/reconstructions/" + fx.file.XetHash.String()
	for _, c := range []struct {
		name   string
		hdr    []string
		status int
	}{
		{"no token", nil, 401},
		{"garbage token", []string{"Authorization", "Bearer nope"}, 401},
		{"hub token", []string{"Authorization", "Bearer hf_x"}, 401},
		{"read token", []string{"Authorization", "Bearer " + fx.tok.AccessToken}, 200},
	} {
		if r := do(t, "GET", u, nil, c.hdr...); r.status != c.status {
			t.Errorf("%s: %d, want %d", c.name, r.status, c.status)
		}
	}
	// A read token cannot upload.
	body := xorb.NewBuilder(xorb.PolicyNone)
	body.Add([]byte("hello"))
	x := body.Finish()
	r := do(t, "POST", fx.tok.CasURL+"/v1/xorbs/default/"+x.Hash.String(), bytes.NewReader(x.Bytes(false)),
		"Authorization", "Bearer "+fx.tok.AccessToken)
	if r.status != 403 {
		t.Fatalf("upload with a read token: %d", r.status)
	}
	// Expired tokens get 401.
	fx.h.SetTokenTTL(0)
	old := fx.c.casToken("org/m")
	if r := do(t, "GET", u, nil, "Authorization", "Bearer "+old.AccessToken); r.status != 401 {
		t.Fatalf("expired token: %d", r.status)
	}
}

// uploadSession is a Go-side writer: xorbs, then a shard.
func writeToken(t *testing.T, srv string, repo, token string) tokenAnswer {
	t.Helper()
	r := do(t, "GET", srv+"/api/models/"+repo+"/xet-write-token/main", nil, "Authorization", "Bearer "+token)
	if r.status != 200 {
		t.Fatalf("write token: %d %s", r.status, r.body)
	}
	var tok tokenAnswer
	decodeJSON(t, r, &tok)
	return tok
}

func TestUploads(t *testing.T) {
	h, srv := testHub(t, Config{})
	const writer = "hf_writer"
	mustCreate(t, h, RepoSpec{ID: "org/up", Writers: []string{writer}})
	tok := writeToken(t, srv.URL, "org/up", writer)
	auth := []string{"Authorization", "Bearer " + tok.AccessToken}

	// A file of two xorbs built with the format core.
	data := randomBytes(21, 600_000)
	var chunks [][]byte
	prev := 0
	for _, end := range chunking.Boundaries(data) {
		chunks = append(chunks, data[prev:end])
		prev = end
	}
	b1, b2 := xorb.NewBuilder(xorb.PolicyLZ4), xorb.NewBuilder(xorb.PolicyBG4)
	half := len(chunks) / 2
	for _, c := range chunks[:half] {
		b1.Add(c)
	}
	for _, c := range chunks[half:] {
		b2.Add(c)
	}
	x1, x2 := b1.Finish(), b2.Finish()
	post := func(x *xorb.Xorb, body []byte, hash merklehash.Hash) response {
		return do(t, "POST", tok.CasURL+"/v1/xorbs/default/"+hash.String(), bytes.NewReader(body), auth...)
	}
	if r := post(x1, x1.Bytes(false), x1.Hash); r.status != 200 || string(r.body) != `{"was_inserted":true}` {
		t.Fatalf("xorb upload: %d %s", r.status, r.body)
	}
	if r := post(x1, x1.Bytes(true), x1.Hash); r.status != 200 || string(r.body) != `{"was_inserted":false}` {
		t.Fatalf("xorb re-upload with footer: %d %s", r.status, r.body)
	}
	if r := post(x2, x2.Bytes(false), x1.Hash); r.status != 400 {
		t.Fatalf("xorb under the wrong hash: %d", r.status)
	}
	if r := post(x2, []byte("not a xorb at all"), x2.Hash); r.status != 400 {
		t.Fatalf("garbage xorb: %d", r.status)
	}
	if r := do(t, "HEAD", tok.CasURL+"/v1/xorbs/default/"+x1.Hash.String(), nil, auth...); r.status != 200 ||
		r.header.Get("Content-Length") != fmt.Sprint(len(x1.Bytes(true))) {
		t.Fatalf("HEAD xorb: %d %v", r.status, r.header)
	}
	if r := do(t, "HEAD", tok.CasURL+"/v1/xorbs/default/"+x2.Hash.String(), nil, auth...); r.status != 404 {
		t.Fatalf("HEAD missing xorb: %d", r.status)
	}

	file := shardFile(data, []*xorb.Xorb{x1, x2})
	sh := &shard.Shard{Files: []shard.File{file}, Xorbs: []shard.Xorb{shardXorb(x1), shardXorb(x2)}}
	body, err := sh.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if r := do(t, "POST", tok.CasURL+"/v1/shards", bytes.NewReader(body), auth...); r.status != 400 {
		t.Fatalf("shard naming a xorb not uploaded: %d %s", r.status, r.body)
	}
	post(x2, x2.Bytes(false), x2.Hash)

	bad := *sh
	bad.Files = []shard.File{file}
	bad.Files[0].Verification = append([]merklehash.Hash(nil), file.Verification...)
	bad.Files[0].Verification[1][0] ^= 1
	badBody, _ := bad.MarshalBinary()
	if r := do(t, "POST", tok.CasURL+"/v1/shards", bytes.NewReader(badBody), auth...); r.status != 400 ||
		!strings.Contains(string(r.body), "verification") {
		t.Fatalf("bad verification hash: %d %s", r.status, r.body)
	}
	r := do(t, "POST", tok.CasURL+"/v2/shards", bytes.NewReader(body), auth...)
	if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" ||
		!strings.HasSuffix(strings.TrimSpace(string(r.body)), `{"result":1,"type":"result"}`) {
		t.Fatalf("v2 shard: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", tok.CasURL+"/v1/shards", bytes.NewReader(body), auth...); r.status != 200 || string(r.body) != `{"result":0}` {
		t.Fatalf("v1 shard again: %d %s", r.status, r.body)
	}

	// The uploaded file downloads, and HEAD /v1/files gives its size.
	c := &xetClient{t: t, srv: srv, token: writer}
	if got := c.download("org/up", file.Hash, 0, int64(len(data))-1); !bytes.Equal(got, data) {
		t.Fatal("uploaded file differs")
	}
	if r := do(t, "HEAD", tok.CasURL+"/v1/files/"+file.Hash.String(), nil, auth...); r.status != 200 ||
		r.header.Get("Content-Length") != fmt.Sprint(len(data)) {
		t.Fatalf("HEAD file: %d", r.status)
	}

	// Global dedup: the first chunk of the file is eligible.
	first := merklehash.ChunkHash(chunks[0])
	r = do(t, "GET", tok.CasURL+"/v1/chunks/default-merkledb/"+first.String(), nil, auth...)
	if r.status != 200 {
		t.Fatalf("dedup query: %d", r.status)
	}
	ds, err := shard.Parse(r.body)
	if err != nil || ds.Footer == nil || len(ds.Files) != 0 || len(ds.Xorbs) != 1 || ds.Xorbs[0].Hash != x1.Hash {
		t.Fatalf("dedup shard: %v %+v", err, ds)
	}
	if ds.Footer.HMACKey.IsZero() || ds.Footer.Expiry <= uint64(time.Now().Unix()) {
		t.Fatalf("dedup footer %+v", ds.Footer)
	}
	if ds.Xorbs[0].Chunks[0].Hash != merklehash.KeyedChunkHash(ds.Footer.HMACKey, first) ||
		ds.Xorbs[0].Chunks[0].Flags&shard.ChunkFlagGlobalDedup == 0 {
		t.Fatal("dedup shard chunk 0 is not the keyed first chunk with the dedup flag")
	}
	if r := do(t, "GET", tok.CasURL+"/v1/chunks/default/"+merklehash.ChunkHash(chunks[1]).String(), nil, auth...); r.status != 404 &&
		!merklehash.GlobalDedupEligible(merklehash.ChunkHash(chunks[1]), false) {
		t.Fatalf("dedup query of a non-eligible chunk: %d", r.status)
	}
}

// shardFile describes data stored as the chunks of xs, in order.
func shardFile(data []byte, xs []*xorb.Xorb) shard.File {
	f := shard.File{}
	var leaves []merklehash.Leaf
	for _, x := range xs {
		var hashes []merklehash.Hash
		for _, c := range x.Chunks {
			leaves = append(leaves, merklehash.Leaf{Hash: c.Hash, Size: uint64(c.Size)})
			hashes = append(hashes, c.Hash)
		}
		f.Terms = append(f.Terms, shard.Term{XorbHash: x.Hash, UnpackedBytes: uint32(x.UnpackedLen()),
			ChunkStart: 0, ChunkEnd: uint32(len(x.Chunks))})
		f.Verification = append(f.Verification, merklehash.VerificationHash(hashes))
	}
	f.Hash = merklehash.FileHash(leaves)
	return f
}

func shardXorb(x *xorb.Xorb) shard.Xorb {
	sx := shard.Xorb{Hash: x.Hash, BytesInXorb: uint32(x.UnpackedLen())}
	var off uint32
	for _, c := range x.Chunks {
		sx.Chunks = append(sx.Chunks, shard.XorbChunk{Hash: c.Hash, Offset: off, Size: c.Size})
		off += c.Size
	}
	return sx
}

func TestHTTPMethods(t *testing.T) {
	fx := newCASFixture(t)
	for _, c := range []struct{ method, path string }{
		{"POST", "/org/m/resolve/main/big.bin"},
		{"DELETE", "/api/models/org/m/tree/main"},
		{"GET", "/api/models/org/m/paths-info/main"},
	} {
		if r := do(t, c.method, fx.c.srv.URL+c.path, nil); r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d", c.method, c.path, r.status)
		}
	}
	if r := do(t, "GET", fx.c.srv.URL+"/cas/v3/anything", nil); r.status != 404 {
		t.Errorf("unknown CAS path: %d", r.status)
	}
}

// With SetCASURL the CAS (tokens' casUrl, reconstruction links, presigned
// URLs) lives on another host, as cas-server.xethub.hf.co does.
func TestSeparateCASHost(t *testing.T) {
	h, srv := testHub(t, Config{})
	cas := httptest.NewServer(h)
	defer cas.Close()
	h.SetCASURL(cas.URL)
	mustCreate(t, h, RepoSpec{ID: "org/m"})
	data := randomBytes(4, 200_000)
	f := mustAdd(t, h, "org/m", "w.bin", data)
	r := do(t, "HEAD", srv.URL+"/org/m/resolve/main/w.bin", nil)
	if l := parseLinks(r.header.Get("Link")); !strings.HasPrefix(l["xet-reconstruction-info"], cas.URL+"/cas/v1/") ||
		!strings.HasPrefix(l["xet-auth"], srv.URL+"/api/") || !strings.HasPrefix(r.header.Get("Location"), cas.URL+"/cas/bridge/") {
		t.Fatalf("links %v, Location %s", l, r.header.Get("Location"))
	}
	c := &xetClient{t: t, srv: srv}
	if tok := c.casToken("org/m"); tok.CasURL != cas.URL+"/cas" {
		t.Fatalf("casUrl %s", tok.CasURL)
	}
	if got := c.download("org/m", f.XetHash, 0, int64(len(data))-1); !bytes.Equal(got, data) {
		t.Fatal("download through the CAS host differs")
	}
}

func TestBatchReconstruction(t *testing.T) {
	fx := newCASFixture(t)
	auth := []string{"Authorization", "Bearer " + fx.tok.AccessToken}
	check := func(r response) {
		t.Helper()
		var out struct {
			Files     map[string][]reconstruction.Term               `json:"files"`
			FetchInfo map[merklehash.Hash][]reconstruction.FetchInfo `json:"fetch_info"`
		}
		decodeJSON(t, r, &out)
		if r.status != 200 || len(out.Files) != 3 || len(out.Files[fx.empty.XetHash.String()]) != 0 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
		for _, id := range []File{fx.file, fx.sf} {
			v1 := reconstruction.ResponseV1{Terms: out.Files[id.XetHash.String()], FetchInfo: out.FetchInfo}
			got := assemble(t, v1.ToV2())
			want := fx.data
			if id.Path == "shared.bin" {
				want = fx.shared
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs", id.Path)
			}
		}
	}
	q := "?file_id=" + fx.file.XetHash.String() + "&file_id=" + fx.sf.XetHash.String() + "&file_id=" + fx.empty.XetHash.String()
	check(do(t, "GET", fx.tok.CasURL+"/v1/reconstructions"+q, nil, auth...))
	body, _ := json.Marshal([]map[string]string{{"prefix": "default", "hash": fx.file.XetHash.String()},
		{"prefix": "default", "hash": fx.sf.XetHash.String()}, {"prefix": "default", "hash": fx.empty.XetHash.String()}})
	check(do(t, "POST", fx.tok.CasURL+"/v1/reconstructions", bytes.NewReader(body), auth...))
	if r := do(t, "GET", fx.tok.CasURL+"/v1/reconstructions"+q, nil); r.status != 401 {
		t.Fatalf("batch without token: %d", r.status)
	}
}

// TestCASTokensRepoScoped: a CAS token reconstructs the files of its own
// repo only (any commit of it); other repos' files are 404, in the single
// and the batch forms.
func TestCASTokensRepoScoped(t *testing.T) {
	h, srv := testHub(t, Config{})
	mustCreate(t, h, RepoSpec{ID: "org/a"})
	mustCreate(t, h, RepoSpec{ID: "org/b", Private: true, Readers: []string{"hf_b"}})
	fa := mustAdd(t, h, "org/a", "a.bin", randomBytes(1, 20000), StorageXet)
	fb := mustAdd(t, h, "org/b", "b.bin", randomBytes(2, 20000), StorageXet)
	c := &xetClient{t: t, srv: srv, token: "hf_b"}
	ta, tb := c.casToken("org/a"), c.casToken("org/b")
	for _, tc := range []struct {
		tok    tokenAnswer
		file   merklehash.Hash
		status int
	}{{ta, fa.XetHash, 200}, {tb, fb.XetHash, 200}, {ta, fb.XetHash, 404}, {tb, fa.XetHash, 404}} {
		for _, v := range []string{"v1", "v2"} {
			if r, _ := c.reconstruct(tc.tok, tc.file, "", v); r.status != tc.status {
				t.Errorf("%s: %d, want %d", v, r.status, tc.status)
			}
		}
		r := do(t, "GET", tc.tok.CasURL+"/v1/reconstructions?file_id="+tc.file.String(), nil, "Authorization", "Bearer "+tc.tok.AccessToken)
		if r.status != tc.status {
			t.Errorf("batch: %d, want %d", r.status, tc.status)
		}
	}
}
