package fakehub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/xettest"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

func TestLatency(t *testing.T) {
	fx := newCASFixture(t)
	u := fx.c.srv.URL + "/api/models/org/m"
	fx.h.SetLatency(ClassAPI, 150*time.Millisecond)
	start := time.Now()
	do(t, "GET", u, nil)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("API answered in %v with 150ms latency", d)
	}
	start = time.Now()
	do(t, "GET", fx.c.srv.URL+"/org/m/resolve/main/big.bin", nil)
	if d := time.Since(start); d >= 150*time.Millisecond {
		t.Fatalf("resolve delayed by the API latency: %v", d)
	}
	fx.h.SetLatency(ClassAPI, 0)
	start = time.Now()
	do(t, "GET", u, nil)
	if d := time.Since(start); d >= 150*time.Millisecond {
		t.Fatalf("latency not removed: %v", d)
	}
}

func TestFailNth(t *testing.T) {
	fx := newCASFixture(t)
	u := fx.c.srv.URL + "/api/models/org/m"
	remove := fx.h.FailNth(ClassAPI, 2, http.StatusServiceUnavailable, 3*time.Second)
	var got []int
	for range 4 {
		r := do(t, "GET", u, nil)
		got = append(got, r.status)
		if r.status == 503 && r.header.Get("Retry-After") != "3" {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
	}
	if want := []int{200, 503, 200, 200}; !equalInts(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	remove()
	fx.h.InjectFault(Fault{Class: ClassAPI, Nth: 1, Times: 2, Status: 429})
	got = got[:0]
	for range 3 {
		got = append(got, do(t, "GET", u, nil).status)
	}
	if want := []int{429, 429, 200}; !equalInts(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	fx.h.ClearFaults()
	fx.h.InjectFault(Fault{Class: ClassToken, Status: 500})
	if r := do(t, "GET", u, nil); r.status != 200 {
		t.Fatal("a token fault hit the API class")
	}
	if r := do(t, "GET", fx.c.srv.URL+"/api/models/org/m/xet-read-token/main", nil); r.status != 500 {
		t.Fatalf("token fault: %d", r.status)
	}
	st := fx.h.Stats()
	if st[ClassToken].Errors == 0 || st[ClassAPI].Errors < 3 {
		t.Fatalf("error counters %+v", st)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFailFractionIsSeeded(t *testing.T) {
	fx := newCASFixture(t)
	u := fx.c.srv.URL + "/api/models/org/m"
	run := func(seed uint64) []int {
		remove := fx.h.FailFraction(ClassAPI, 0.3, seed, 502, 0)
		defer remove()
		var failed []int
		for i := range 60 {
			if do(t, "GET", u, nil).status == 502 {
				failed = append(failed, i)
			}
		}
		return failed
	}
	a, b, c := run(1), run(1), run(2)
	if !equalInts(a, b) {
		t.Fatalf("same seed, different failures: %v %v", a, b)
	}
	if equalInts(a, c) {
		t.Fatal("different seeds, same failures")
	}
	if len(a) < 6 || len(a) > 36 {
		t.Fatalf("%d of 60 failed at 30%%", len(a))
	}
}

// firstEntry returns one v2 fetch entry of the big file.
func firstEntry(t *testing.T, fx *casFixture) (reconstruction.XorbFetch, merklehash.Hash) {
	_, rec := fx.c.reconstruct(fx.tok, fx.file.XetHash, "", "v2")
	x := rec.Terms[0].Hash
	return rec.Xorbs[x][0], x
}

func rangeHeader(e reconstruction.XorbFetch) string {
	r := e.Ranges[0].Bytes
	return "bytes=" + itoa(int64(r.Start)) + "-" + itoa(int64(r.End))
}

func TestTruncateBodies(t *testing.T) {
	fx := newCASFixture(t)
	e, _ := firstEntry(t, fx)
	fx.h.TruncateBodies(ClassXorb, 1000, 1)
	req, _ := http.NewRequest("GET", e.URL, nil)
	req.Header.Set("Range", rangeHeader(e))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) || len(b) != 1000 {
		t.Fatalf("truncated body: %d bytes, err %v", len(b), err)
	}
	// Only once.
	if r := do(t, "GET", e.URL, nil, "Range", rangeHeader(e)); int64(len(r.body)) != int64(e.Ranges[0].Bytes.Len()) {
		t.Fatalf("second fetch: %d bytes", len(r.body))
	}
	// The bridge too.
	fx.h.TruncateBodies(ClassBridge, 10, -1)
	loc := do(t, "GET", fx.c.srv.URL+"/org/m/resolve/main/big.bin", nil).header.Get("Location")
	resp, err = http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(b) != 10 {
		t.Fatalf("truncated bridge body: %d bytes, err %v", len(b), err)
	}
}

func TestCorruptXorb(t *testing.T) {
	fx := newCASFixture(t)
	e, x := firstEntry(t, fx)
	clean := do(t, "GET", e.URL, nil, "Range", rangeHeader(e)).body
	fx.h.CorruptXorb(x, int64(e.Ranges[0].Bytes.Start)+20, 4)
	bad := do(t, "GET", e.URL, nil, "Range", rangeHeader(e)).body
	if len(bad) != len(clean) || bytes.Equal(bad, clean) {
		t.Fatal("corruption did not change the body")
	}
	diff := 0
	for i := range bad {
		if bad[i] != clean[i] {
			diff++
			if i < 20 || i >= 24 || bad[i] != ^clean[i] {
				t.Fatalf("byte %d changed", i)
			}
		}
	}
	if diff != 4 {
		t.Fatalf("%d bytes changed", diff)
	}
	// A decoder notices (wrong data or a format error).
	d := xorb.NewDecoder(bytes.NewReader(bad))
	var out []byte
	var err error
	for {
		var c []byte
		if c, err = d.Next(); err != nil {
			break
		}
		out = append(out, c...)
	}
	if err == io.EOF && bytes.Equal(out, fx.data[:len(out)]) {
		t.Fatal("corrupted xorb decoded to the right bytes")
	}
	// Other xorbs and stored data are untouched.
	fx.h.ClearFaults()
	if !bytes.Equal(do(t, "GET", e.URL, nil, "Range", rangeHeader(e)).body, clean) {
		t.Fatal("corruption persisted after ClearFaults")
	}
}

func TestDisableV2(t *testing.T) {
	fx := newCASFixture(t)
	fx.h.DisableV2(true)
	if r, _ := fx.c.reconstruct(fx.tok, fx.file.XetHash, "", "v2"); r.status != 404 {
		t.Fatalf("v2 disabled: %d", r.status)
	}
	if r, rec := fx.c.reconstruct(fx.tok, fx.file.XetHash, "bytes=0-99", "v1"); rec == nil {
		t.Fatalf("v1 with v2 disabled: %d", r.status)
	}
	if r := do(t, "POST", fx.tok.CasURL+"/v2/shards", strings.NewReader("x")); r.status != 404 {
		t.Fatalf("v2 shards disabled: %d", r.status)
	}
	fx.h.DisableV2(false)
	if r, rec := fx.c.reconstruct(fx.tok, fx.file.XetHash, "", "v2"); rec == nil {
		t.Fatalf("v2 re-enabled: %d", r.status)
	}
}

func TestForbidOncePerURL(t *testing.T) {
	fx := newCASFixture(t)
	fx.h.ForbidOncePerURL(true)
	e, _ := firstEntry(t, fx)
	if r := do(t, "GET", e.URL, nil, "Range", rangeHeader(e)); r.status != 403 {
		t.Fatalf("first fetch: %d", r.status)
	}
	if r := do(t, "GET", e.URL, nil, "Range", rangeHeader(e)); r.status != 206 {
		t.Fatalf("second fetch: %d", r.status)
	}
	// The client's answer to a 403: re-query the same range, retry.
	time.Sleep(1100 * time.Millisecond) // a new expiry second makes a new URL
	e2, _ := firstEntry(t, fx)
	if e2.URL == e.URL {
		t.Fatal("re-query returned the same URL")
	}
	if r := do(t, "GET", e2.URL, nil, "Range", rangeHeader(e2)); r.status != 403 {
		t.Fatalf("new URL, first fetch: %d", r.status)
	}
}

func TestRequestLogAndStats(t *testing.T) {
	fx := newCASFixture(t)
	fx.h.ResetStats()
	c := &xetClient{t: t, srv: fx.c.srv}
	got := c.download("org/m", fx.file.XetHash, 0, int64(len(fx.data))-1)
	if !bytes.Equal(got, fx.data) {
		t.Fatal("download differs")
	}
	st := fx.h.Stats()
	if st[ClassToken].Requests != 1 || st[ClassReconstruction].Requests != 1 || st[ClassXorb].Requests < 5 {
		t.Fatalf("stats %+v", st)
	}
	var want int64
	for _, r := range fx.h.Requests() {
		if r.Class == ClassXorb {
			want += r.BytesOut
		}
		if r.Class == ClassReconstruction && r.Header.Get("Authorization") != "REDACTED" {
			t.Fatalf("log keeps the CAS token: %v", r.Header)
		}
		if strings.Contains(r.Path, "Signature=") && !strings.Contains(r.Path, "Signature=REDACTED") {
			t.Fatalf("log keeps a signature: %s", r.Path)
		}
	}
	if st[ClassXorb].BytesOut != want || want < int64(len(fx.data)) {
		t.Fatalf("xorb bytes %d, log says %d", st[ClassXorb].BytesOut, want)
	}
	if st.Total().Requests != int64(len(fx.h.Requests())) {
		t.Fatal("total requests differ from the log")
	}
	fx.h.ResetStats()
	if len(fx.h.Stats()) != 0 || len(fx.h.Requests()) != 0 {
		t.Fatal("ResetStats")
	}
}

func TestRequestLogRing(t *testing.T) {
	h, srv := testHub(t, Config{LogSize: 3})
	for i := range 5 {
		do(t, "GET", srv.URL+"/api/models/org/x"+itoa(int64(i)), nil)
	}
	log := h.Requests()
	if len(log) != 3 || !strings.HasSuffix(log[0].Path, "x2") || !strings.HasSuffix(log[2].Path, "x4") {
		t.Fatalf("ring: %v %v %v", log[0].Path, log[1].Path, log[2].Path)
	}
}

// textBytes returns n bytes of text: words of a small vocabulary, which LZ4
// compresses.
func textBytes(seed uint64, n int) []byte {
	r := xettest.SplitMix64(seed, n)
	words := strings.Fields("the of a xorb chunk hash merkle tree file proxy cache range byte stream verify decode")
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = append(b, words[int(r[i%len(r)])%len(words)]...)
		b = append(b, " \n"[r[(i+1)%len(r)]&1])
	}
	return b[:n]
}

// TestCorruptChunk: files stored with each scheme on request, their chunks
// listed where the CAS serves them, and one byte of chunk k damaged in a
// way that still decodes, then healed.
func TestCorruptChunk(t *testing.T) {
	h, srv := testHub(t, Config{MaxXorbChunks: 3})
	mustCreate(t, h, RepoSpec{ID: "org/m"})
	c := &xetClient{t: t, srv: srv}
	for _, tc := range []struct {
		policy string
		scheme xorb.Scheme
		data   []byte
	}{
		{"none", xorb.SchemeNone, randomBytes(21, 600_000)},
		{"lz4", xorb.SchemeLZ4, textBytes(22, 600_000)},
		{"bg4", xorb.SchemeBG4LZ4, weights(23, 600_000)},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			path := tc.policy + ".bin"
			if _, err := h.Commit(context.Background(), "org/m", CommitSpec{Files: []FileSpec{
				{Path: path, Content: bytes.NewReader(tc.data), Storage: StorageXet, Compression: tc.policy}}}); err != nil {
				t.Fatal(err)
			}
			var f File
			files, _ := h.Files("org/m", "main")
			for _, x := range files {
				if x.Path == path {
					f = x
				}
			}
			chunks, err := h.FileChunks(f.XetHash)
			if err != nil {
				t.Fatal(err)
			}
			if len(chunks) < 5 {
				t.Fatalf("%d chunks", len(chunks))
			}
			var off int64
			xorbs := map[merklehash.Hash]bool{}
			for i, ch := range chunks {
				if ch.Index != i || ch.FileOffset != off || ch.Header.Scheme != tc.scheme || int(ch.Header.UncompressedLen) != ch.Size ||
					ch.XorbChunks > 3 || ch.XorbIndex >= ch.XorbChunks {
					t.Fatalf("chunk %d: %+v", i, ch)
				}
				off += int64(ch.Size)
				xorbs[ch.Xorb] = true
			}
			if off != int64(len(tc.data)) || len(xorbs) < 2 {
				t.Fatalf("chunks cover %d of %d bytes, %d xorbs", off, len(tc.data), len(xorbs))
			}
			for _, k := range []int{0, len(chunks) / 2, len(chunks) - 1} {
				ch := chunks[k]
				a, b := ch.FileOffset, ch.FileOffset+int64(ch.Size)-1
				if got := c.download("org/m", f.XetHash, a, b); !bytes.Equal(got, tc.data[a:b+1]) {
					t.Fatalf("chunk %d: clean download differs", k)
				}
				corr, err := h.CorruptChunk(f.XetHash, k)
				if err != nil {
					t.Fatal(err)
				}
				if !corr.Decodes || corr.FirstWrong < a || corr.FirstWrong > b ||
					corr.Offset < ch.PayloadOffset() || corr.Offset >= ch.PayloadOffset()+int64(ch.Header.CompressedLen) {
					t.Fatalf("chunk %d: %+v", k, corr)
				}
				// The CAS serves a chunk that decodes (assemble fails on
				// errors) to wrong bytes, from FirstWrong on.
				got := c.download("org/m", f.XetHash, a, b)
				if len(got) != len(tc.data[a:b+1]) || bytes.Equal(got, tc.data[a:b+1]) {
					t.Fatalf("chunk %d: corrupted download has %d bytes, equal %v", k, len(got), bytes.Equal(got, tc.data[a:b+1]))
				}
				if i := corr.FirstWrong - a; !bytes.Equal(got[:i], tc.data[a:corr.FirstWrong]) || got[i] == tc.data[corr.FirstWrong] {
					t.Fatalf("chunk %d: first wrong byte is not at %d", k, corr.FirstWrong)
				}
				// Other chunks stay intact; Heal ends it.
				for _, o := range chunks {
					if o.Xorb == ch.Xorb && o.Index != k {
						oa, ob := o.FileOffset, o.FileOffset+int64(o.Size)-1
						if !bytes.Equal(c.download("org/m", f.XetHash, oa, ob), tc.data[oa:ob+1]) {
							t.Fatalf("chunk %d corrupted chunk %d too", k, o.Index)
						}
					}
				}
				corr.Heal()
				if !bytes.Equal(c.download("org/m", f.XetHash, a, b), tc.data[a:b+1]) {
					t.Fatalf("chunk %d: still corrupted after Heal", k)
				}
			}
		})
	}
	// Heal leaves the other corruptions in place.
	f := mustAdd(t, h, "org/m", "w.bin", randomBytes(24, 300_000), StorageXet)
	one, err := h.CorruptChunk(f.XetHash, 0)
	if err != nil {
		t.Fatal(err)
	}
	two, _ := h.CorruptChunk(f.XetHash, 1)
	one.Heal()
	if n := len(h.knobs.corruptions(two.Chunk.Xorb)); n != 1 {
		t.Fatalf("%d corruptions left after healing one of two", n)
	}
	if _, err := h.CorruptChunk(f.XetHash, 1000); err == nil {
		t.Fatal("chunk out of range accepted")
	}
	if _, err := h.Commit(context.Background(), "org/m", CommitSpec{Files: []FileSpec{
		{Path: "x.bin", Content: bytes.NewReader([]byte("x")), Storage: StorageXet, Compression: "zstd"}}}); err == nil {
		t.Fatal("unknown compression policy accepted")
	}
}
