package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

var repoM = hub.Repo{Type: hub.Model, ID: "org/m"}

// fixture: one 3 MiB mixed file spread over ~512 KiB xorbs, read in 1 MiB
// blocks, so ranges can cross chunks, terms, xorbs and blocks.
type fixture struct {
	*testEnv
	data []byte
	meta *hub.FileMeta
}

func newFixture(t *testing.T, fcfg fakehub.Config, tweak ...func(*Config)) *fixture {
	t.Helper()
	if fcfg.MaxXorbBytes == 0 {
		fcfg.MaxXorbBytes = 512 << 10
	}
	e := newEnv(t, fcfg, tweak...)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(7, 3<<20+54321)
	f := e.add(t, "org/m", "model.safetensors", data)
	if !f.Xet {
		t.Fatal("fixture file not stored in Xet")
	}
	return &fixture{testEnv: e, data: data, meta: e.stat(t, "", repoM, "model.safetensors")}
}

// termEnds returns the file offsets where the terms of the whole-file
// reconstruction end (xorb and term boundaries).
func (f *fixture) termEnds(t *testing.T) []int64 {
	t.Helper()
	r, err := f.eng.cas.Reconstruct(context.Background(), f.eng.auth("", f.meta), *f.meta.XetHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ends []int64
	var pos int64
	for _, tm := range r.Terms {
		pos += int64(tm.UnpackedLength)
		ends = append(ends, pos)
	}
	if len(ends) < 3 {
		t.Fatalf("fixture has %d terms, want several", len(ends))
	}
	return ends
}

func (f *fixture) check(t *testing.T, off, n int64) {
	t.Helper()
	got, err := f.read(context.Background(), "", f.meta, off, n)
	if err != nil {
		t.Fatalf("bytes %d+%d: %v", off, n, err)
	}
	end := min(off+n, int64(len(f.data)))
	if n < 0 {
		end = int64(len(f.data))
	}
	if !bytes.Equal(got, f.data[off:end]) {
		t.Fatalf("bytes %d+%d: got %d bytes that differ from the file", off, n, len(got))
	}
}

func TestWholeFileAndRanges(t *testing.T) {
	f := newFixture(t, fakehub.Config{})
	size := int64(len(f.data))
	f.check(t, 0, -1)
	f.check(t, 0, size)

	type rg struct{ off, n int64 }
	ranges := []rg{
		{0, 1}, {size - 1, 1}, {size - 1, 100}, {size - 10, -1}, {1, size - 2},
		{1<<20 - 5, 1<<20 + 10}, // across two block edges
		{1 << 20, 1 << 20},      // exactly one block
	}
	bounds := chunking.Boundaries(f.data)
	for i, c := range bounds[:len(bounds)-1] {
		c := int64(c)
		if i%3 != 0 {
			continue
		}
		ranges = append(ranges,
			rg{c, 100},      // starts on a chunk boundary
			rg{c - 1, 1},    // last byte of a chunk
			rg{c - 1, 2},    // straddles two chunks
			rg{c + 5, 10},   // inside a chunk
			rg{c - 50, 130}, // across a boundary
		)
	}
	for _, end := range f.termEnds(t) {
		if end >= size {
			continue
		}
		ranges = append(ranges, rg{end - 1, 2}, rg{end, 1}, rg{end - 70000, 150000})
	}
	for _, r := range ranges {
		f.check(t, r.off, r.n)
	}
}

func TestPastTheEnd(t *testing.T) {
	f := newFixture(t, fakehub.Config{})
	size := int64(len(f.data))
	for _, off := range []int64{size, size + 1, 1 << 40} {
		_, err := f.eng.Open(context.Background(), "", f.meta, off, 1)
		if !errors.Is(err, ErrRangeNotSatisfiable) {
			t.Fatalf("offset %d: err = %v", off, err)
		}
	}
}

func TestEmptyFiles(t *testing.T) {
	e := newEnv(t, fakehub.Config{})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	for _, s := range []fakehub.Storage{fakehub.StorageXet, fakehub.StoragePlain} {
		path := fmt.Sprintf("empty-%d.bin", s)
		e.add(t, "org/m", path, nil, s)
		m := e.stat(t, "", repoM, path)
		if m.Size != 0 {
			t.Fatalf("%s: size %d", path, m.Size)
		}
		got, err := e.read(context.Background(), "", m, 0, -1)
		if err != nil || len(got) != 0 {
			t.Fatalf("%s: %d bytes, err %v", path, len(got), err)
		}
		if _, err := e.eng.Open(context.Background(), "", m, 1, 1); !errors.Is(err, ErrRangeNotSatisfiable) {
			t.Fatalf("%s: offset 1: %v", path, err)
		}
	}
}

func TestEveryCompressionScheme(t *testing.T) {
	for _, policy := range []string{"none", "lz4", "bg4", "auto"} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t, fakehub.Config{Compression: policy, MaxXorbBytes: 512 << 10})
			e.repo(t, fakehub.RepoSpec{ID: "org/m"})
			data := mixed(uint64(len(policy)), 1<<20+777)
			e.add(t, "org/m", "f.bin", data)
			m := e.stat(t, "", repoM, "f.bin")
			got, err := e.read(context.Background(), "", m, 0, -1)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("whole file: err %v", err)
			}
			got, err = e.read(context.Background(), "", m, 300001, 500000)
			if err != nil || !bytes.Equal(got, data[300001:800001]) {
				t.Fatalf("range: err %v", err)
			}
		})
	}
}

// Files sharing content: the second file's terms point into the middle of
// the first file's xorbs, some repeatedly.
func TestDeduplicatedFiles(t *testing.T) {
	e := newEnv(t, fakehub.Config{MaxXorbBytes: 1 << 20})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	a := mixed(11, 2<<20)
	e.add(t, "org/m", "a.bin", a)
	var b []byte
	b = append(b, text(99, 100000)...)
	b = append(b, a[100000:250000]...) // the middle of a's first xorb
	b = append(b, weights(98, 50000)...)
	b = append(b, a[600000:700000]...)   // elsewhere in the same xorb
	b = append(b, a[1300000:1900000]...) // in its second xorb
	b = append(b, a[120000:240000]...)   // overlaps the first reuse
	b = append(b, a[1300000:1900000]...) // the same region again
	e.add(t, "org/m", "b.bin", b)
	for _, path := range []string{"a.bin", "b.bin"} {
		want := a
		if path == "b.bin" {
			want = b
		}
		m := e.stat(t, "", repoM, path)
		got, err := e.read(context.Background(), "", m, 0, -1)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s whole: err %v", path, err)
		}
		for _, r := range [][2]int64{{0, 1000}, {99999, 2}, {650000, 900000}, {int64(len(want)) - 300000, -1}} {
			got, err := e.read(context.Background(), "", m, r[0], r[1])
			end := int64(len(want))
			if r[1] >= 0 {
				end = r[0] + r[1]
			}
			if err != nil || !bytes.Equal(got, want[r[0]:end]) {
				t.Fatalf("%s %v: err %v", path, r, err)
			}
		}
	}
	// b reuses a's chunks: its reconstruction names a's xorbs.
	ma := e.stat(t, "", repoM, "a.bin")
	mb := e.stat(t, "", repoM, "b.bin")
	ra, _ := e.eng.cas.Reconstruct(context.Background(), e.eng.auth("", ma), *ma.XetHash, nil)
	rb, _ := e.eng.cas.Reconstruct(context.Background(), e.eng.auth("", mb), *mb.XetHash, nil)
	shared := 0
	for _, tb := range rb.Terms {
		for _, ta := range ra.Terms {
			if tb.Hash == ta.Hash && tb.Range.Start > 0 {
				shared++
			}
		}
	}
	if shared == 0 {
		t.Fatal("b.bin does not point into the middle of a.bin's xorbs")
	}

	// b's answer lists several ranges under one URL for some xorb: one
	// multi-range request brings the same bytes as one request per range.
	multi := 0
	for _, entries := range rb.Xorbs {
		for _, xf := range entries {
			if len(xf.Ranges) < 2 {
				continue
			}
			multi++
			var rs []reconstruction.ByteRange
			for _, r := range xf.Ranges {
				rs = append(rs, r.Bytes)
			}
			parts, err := e.eng.cas.FetchRanges(context.Background(), xf.URL, rs, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				r, body, err := parts.Next()
				if err == io.EOF {
					if i != len(rs) {
						t.Fatalf("%d parts of %d", i, len(rs))
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(body)
				if err != nil {
					t.Fatal(err)
				}
				one, err := e.eng.cas.FetchRange(context.Background(), xf.URL, r, nil)
				if err != nil {
					t.Fatal(err)
				}
				want, err := io.ReadAll(one)
				one.Close()
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("part %d differs from the single-range fetch (%v)", i, err)
				}
			}
			parts.Close()
		}
	}
	if multi == 0 {
		t.Fatal("no multi-range entry in the answer: the multi-range check tests nothing")
	}
}

// A CAS without the v2 reconstruction API: the engine falls back to v1.
func TestV2Disabled(t *testing.T) {
	f := newFixture(t, fakehub.Config{})
	f.fh.DisableV2(true)
	f.fh.ResetStats()
	f.check(t, 0, -1)
	f.check(t, 123456, 1000000)
	v1, v2 := 0, 0
	for _, r := range f.fh.Requests() {
		if r.Class != fakehub.ClassReconstruction {
			continue
		}
		switch {
		case strings.Contains(r.Path, "/v1/reconstructions/") && r.Status == http.StatusOK:
			v1++
		case strings.Contains(r.Path, "/v2/reconstructions/") && r.Status != http.StatusNotFound:
			t.Errorf("v2 answered %d with v2 disabled: %s", r.Status, r.Path)
		case strings.Contains(r.Path, "/v2/reconstructions/"):
			v2++
		}
	}
	if v1 == 0 || v2 == 0 {
		t.Fatalf("%d v1 reconstructions served, %d v2 queries refused: want both (v2 tried, v1 used)", v1, v2)
	}
}

func TestForbiddenOncePerXorbURL(t *testing.T) {
	f := newFixture(t, fakehub.Config{})
	f.fh.ForbidOncePerURL(true)
	f.check(t, 0, -1)
	f.check(t, 2000000, 5000)
	if s := f.fh.Stats()[fakehub.ClassXorb]; s.Errors == 0 {
		t.Fatal("no 403 was served: the test tests nothing")
	}
}

func TestServerErrorBursts(t *testing.T) {
	if *withCache != "" {
		t.Skip("with a cache, the later passes never reach the faulty endpoints")
	}
	f := newFixture(t, fakehub.Config{})
	for _, fault := range []fakehub.Fault{
		{Class: fakehub.ClassXorb, Status: 503, Nth: 1, Times: 3},
		{Class: fakehub.ClassXorb, Status: 429, RetryAfter: time.Millisecond, Nth: 2, Times: 2},
		{Class: fakehub.ClassReconstruction, Status: 502, Nth: 1, Times: 2},
		{Class: fakehub.ClassReconstruction, Status: 429, Nth: 2, Times: 1},
		{Class: fakehub.ClassToken, Status: 500, Nth: 1, Times: 1},
		{Class: fakehub.ClassXorb, Status: 500, Fraction: 0.2, Seed: 5},
	} {
		f.fh.ResetStats()
		f.eng.hub.ForgetToken("", repoM, f.meta.TokenRevision(), "")
		remove := f.fh.InjectFault(fault)
		f.check(t, 0, -1)
		f.check(t, 1500000, 1000000)
		remove()
		if f.fh.Stats().Total().Errors == 0 {
			t.Fatalf("%+v: no fault served", fault)
		}
	}
}

// Xorb bodies cut short are fetched again (resuming), and the bytes come
// out right. Each case runs on a fresh fixture, so that with -cache the
// reads still go upstream and meet the cuts.
func TestTruncatedBodies(t *testing.T) {
	for _, tc := range []struct {
		after     int64
		times     int
		off, size int64
	}{
		// Cut before a first chunk is out, every cut hits the stream's
		// first fetch (the others wait for that chunk): one cut fewer
		// than the client's 5 attempts.
		{10000, 4, 0, -1},
		{100, 3, 777, 2000000},
	} {
		f := newFixture(t, fakehub.Config{})
		f.fh.ResetStats()
		f.fh.TruncateBodies(fakehub.ClassXorb, tc.after, tc.times)
		f.check(t, tc.off, tc.size)
		if cut := f.fh.Stats()[fakehub.ClassXorb].Cut; cut != int64(tc.times) {
			t.Fatalf("%d xorb bodies cut after %d bytes, want %d: the test tests nothing", cut, tc.after, tc.times)
		}
	}
}

// Corrupted xorb bytes end the stream with an error, never with wrong
// data and a clean EOF.
func TestCorruptedXorbBytes(t *testing.T) {
	for _, policy := range []string{"lz4", "none"} {
		t.Run(policy, func(t *testing.T) {
			f := newFixture(t, fakehub.Config{Compression: policy})
			// Deep inside the stored xorbs: a payload byte of a chunk.
			f.fh.CorruptXorb(merklehash.Zero, 100000, 1)
			got, err := f.read(context.Background(), "", f.meta, 0, -1)
			var ie *IntegrityError
			if !errors.As(err, &ie) {
				t.Fatalf("whole file over corrupt xorbs: %d bytes, err %v", len(got), err)
			}
			if used, _ := f.eng.budget.stats(); used != 0 {
				t.Fatalf("%d budget bytes held after a failed stream", used)
			}
			// A chunk that does not decode is caught in ranges too: here
			// the version byte of the header of chunk 0 of every xorb.
			f.fh.ClearFaults()
			f.fh.CorruptXorb(merklehash.Zero, 0, 1)
			_, err = f.read(context.Background(), "", f.meta, 10, 20)
			if !errors.As(err, &ie) {
				t.Fatalf("range over a corrupt chunk: err %v", err)
			}
		})
	}
}

// The hardest case of a corrupted download: a flipped byte in the last
// chunk of the file, stored uncompressed, so it decodes fine and has the
// right length. Only the file hash can tell; the stream must fail before
// handing out its last bytes, and a range over the same chunk must not
// read it from a cache either once upstream is healthy again.
func TestCorruptedLastChunkNeverCompletes(t *testing.T) {
	f := newFixture(t, fakehub.Config{Compression: "none"})
	r, err := f.eng.cas.Reconstruct(context.Background(), f.eng.auth("", f.meta), *f.meta.XetHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := r.Terms[len(r.Terms)-1]
	var end int64 = -1
	for _, xf := range r.Xorbs[last.Hash] {
		for _, rg := range xf.Ranges {
			if rg.Chunks.End == last.Range.End {
				end = int64(rg.Bytes.End)
			}
		}
	}
	if end < 0 {
		t.Fatal("no fetch range ends with the last term")
	}
	f.fh.CorruptXorb(last.Hash, end-3, 1) // a payload byte of the file's last chunk
	got, err := f.read(context.Background(), "", f.meta, 0, -1)
	var ie *IntegrityError
	if !errors.As(err, &ie) {
		t.Fatalf("whole file with a corrupt last chunk: %d bytes, err %v", len(got), err)
	}
	if len(got) >= len(f.data) {
		t.Fatalf("the stream gave all %d bytes before failing", len(got))
	}
	if !bytes.Equal(got, f.data[:len(got)]) {
		t.Fatal("the bytes given before the failure are not the file's")
	}
	if used, _ := f.eng.budget.stats(); used != 0 {
		t.Fatalf("%d budget bytes held after a failed stream", used)
	}
	// Healthy again: whole and ranged reads are exact (nothing bad cached).
	f.fh.ClearFaults()
	if f.eng.cache != nil {
		flush(t, f.eng)
	}
	f.check(t, 0, -1)
	f.check(t, int64(len(f.data))-1000, -1)
}

func TestExpiredTokens(t *testing.T) {
	f := newFixture(t, fakehub.Config{})
	// Tokens that expire quickly are refreshed ahead of time.
	f.fh.SetTokenTTL(2 * time.Second)
	f.eng.hub.ForgetToken("", repoM, f.meta.TokenRevision(), "")
	f.check(t, 0, 1000)
	time.Sleep(1100 * time.Millisecond)
	f.fh.ResetStats()
	f.check(t, 0, -1)
	if n := f.fh.Stats()[fakehub.ClassToken].Requests; n == 0 {
		t.Fatal("a token past half its life was not refreshed")
	}
	// A cached token the CAS refuses (here: expired, and the cache told
	// to keep it) is dropped and fetched again on the 401.
	f.eng.hub.RefreshMargin = -time.Hour
	f.fh.SetTokenTTL(-time.Second)
	f.eng.hub.ForgetToken("", repoM, f.meta.TokenRevision(), "")
	if _, err := f.eng.hub.ReadToken(context.Background(), "", repoM, f.meta.TokenRevision()); err != nil {
		t.Fatal(err) // caches an already expired token
	}
	f.fh.SetTokenTTL(time.Hour)
	f.fh.ResetStats()
	f.check(t, 0, -1)
	st := f.fh.Stats()
	if st[fakehub.ClassReconstruction].Errors == 0 || st[fakehub.ClassToken].Requests == 0 {
		t.Fatalf("expired token not refused then replaced: %+v", st)
	}
}

func TestPrivateRepoNeedsToken(t *testing.T) {
	e := newEnv(t, fakehub.Config{})
	e.repo(t, fakehub.RepoSpec{ID: "org/private", Private: true, Readers: []string{"hf_reader"}})
	data := weights(3, 200000)
	e.add(t, "org/private", "w.bin", data, fakehub.StorageXet)
	repo := hub.Repo{Type: hub.Model, ID: "org/private"}
	_, err := e.eng.Stat(context.Background(), "", repo, "main", "w.bin")
	var he *hub.Error
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous stat: %v", err)
	}
	m := e.stat(t, "hf_reader", repo, "w.bin")
	got, err := e.read(context.Background(), "hf_reader", m, 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reader: %v", err)
	}
	// Another user gets no read token, hence no bytes, even knowing the hash.
	e.fh.AddToken("hf_other")
	if _, err := e.eng.Open(context.Background(), "hf_other", m, 0, -1); !errors.As(err, &he) {
		t.Fatalf("other user: %v", err)
	}
	if _, err := e.eng.StatHash(context.Background(), "hf_other", repo, "main", *m.XetHash); !errors.As(err, &he) {
		t.Fatalf("other user, by hash: %v", err)
	}
	hm, err := e.eng.StatHash(context.Background(), "hf_reader", repo, "main", *m.XetHash)
	if err != nil || hm.Size != int64(len(data)) {
		t.Fatalf("by hash: %+v %v", hm, err)
	}
	got, err = e.read(context.Background(), "hf_reader", hm, 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("by hash: %v", err)
	}
	if _, err := e.eng.StatHash(context.Background(), "hf_reader", repo, "main", merklehash.Hash{1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown hash: %v", err)
	}
}

func TestPlainFiles(t *testing.T) {
	e := newEnv(t, fakehub.Config{})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := text(5, 300000)
	e.add(t, "org/m", "README.md", data, fakehub.StoragePlain)
	m := e.stat(t, "", repoM, "README.md")
	if m.XetHash != nil {
		t.Fatal("plain file reported as Xet")
	}
	got, err := e.read(context.Background(), "", m, 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole: %v", err)
	}
	got, err = e.read(context.Background(), "", m, 1000, 5000)
	if err != nil || !bytes.Equal(got, data[1000:6000]) {
		t.Fatalf("range: %v", err)
	}
	e.fh.TruncateBodies(fakehub.ClassResolve, 1000, 2)
	got, err = e.read(context.Background(), "", m, 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after truncation: %v", err)
	}
	bad := *m
	bad.ETag = "0000000000000000000000000000000000000000"
	got, err = e.read(context.Background(), "", &bad, 0, -1)
	var ie *IntegrityError
	if !errors.As(err, &ie) {
		t.Fatalf("wrong etag: %v", err)
	}
	if len(got) > len(data)-plainTail {
		t.Fatalf("a file failing its hash gave %d of %d bytes: its tail was not held back", len(got), len(data))
	}
}

func TestManyConcurrentDownloads(t *testing.T) {
	f := newFixture(t, fakehub.Config{}, func(c *Config) {
		c.MaxBuffer = 2 << 20 // far less than the streams would like
		c.StreamBuffer = 1 << 20
	})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			off := int64(i * 150000)
			n := int64(len(f.data)) - off
			if i%2 == 1 {
				n = 700000
			}
			got, err := f.read(context.Background(), "", f.meta, off, n)
			if err == nil && !bytes.Equal(got, f.data[off:off+n]) {
				err = fmt.Errorf("stream %d: bytes differ", i)
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
	if used, _ := f.eng.budget.stats(); used != 0 {
		t.Fatalf("%d budget bytes still held after every stream ended", used)
	}
}

// The read-ahead stays within its budget even when the consumer is slow.
func TestMemoryBoundedWithSlowReader(t *testing.T) {
	const buf = 512 << 10
	f := newFixture(t, fakehub.Config{MaxXorbBytes: 4 << 20}, func(c *Config) {
		c.StreamBuffer = buf
		c.Parallel = 8
	})
	rc, err := f.eng.Open(context.Background(), "", f.meta, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	s := rc.(*stream)
	var got []byte
	p := make([]byte, 32<<10)
	for {
		n, err := rc.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Microsecond)
	}
	if !bytes.Equal(got, f.data) {
		t.Fatal("bytes differ")
	}
	_, peak := s.budget.stats()
	// Over the budget by at most the chunks the reader waits for.
	if peak > buf+(waitBatch+1)*maxChunk {
		t.Fatalf("read-ahead peaked at %d bytes, budget %d", peak, buf)
	}
	if peak < buf/2 {
		t.Fatalf("read-ahead peaked at %d bytes: the budget was never used, the test tests nothing", peak)
	}
}

func TestWriteToAndSmallReads(t *testing.T) {
	f := newFixture(t, fakehub.Config{})
	rc, err := f.eng.Open(context.Background(), "", f.meta, 5, 1000000)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	one := make([]byte, 7)
	n, _ := io.ReadFull(rc, one) // a few small reads first
	buf.Write(one[:n])
	if _, err := io.Copy(&buf, rc); err != nil { // then WriteTo
		t.Fatal(err)
	}
	rc.Close()
	if !bytes.Equal(buf.Bytes(), f.data[5:1000005]) {
		t.Fatal("bytes differ")
	}
	// Closed half-way, a stream never reports a clean end.
	rc, err = f.eng.Open(context.Background(), "", f.meta, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(rc, one)
	rc.Close()
	if _, err := io.ReadAll(rc); err == nil {
		t.Fatal("read after close: clean EOF")
	}
}

func TestOpenErrorsComeFromOpen(t *testing.T) {
	f := newFixture(t, fakehub.Config{})
	// A reconstruction that keeps failing fails Open itself.
	remove := f.fh.InjectFault(fakehub.Fault{Class: fakehub.ClassReconstruction, Status: 500})
	_, err := f.eng.Open(context.Background(), "", f.meta, 0, -1)
	remove()
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Timeout {
		t.Fatalf("err = %v", err)
	}
	// An unknown hash.
	m := *f.meta
	h := merklehash.Hash{9, 9}
	m.XetHash = &h
	if _, err := f.eng.Open(context.Background(), "", &m, 0, -1); !errors.As(err, &ue) {
		t.Fatalf("unknown hash: %v", err)
	}
}

func TestStalledTransferIsATimeout(t *testing.T) {
	f := newFixture(t, fakehub.Config{}, func(c *Config) {
		cas, _ := casclient.New(casclient.Config{
			Backoff:      casclient.Backoff{Attempts: 2, Base: time.Millisecond, Max: time.Millisecond},
			StallTimeout: 100 * time.Millisecond,
		})
		c.CAS = cas
	})
	f.fh.SetLatency(fakehub.ClassXorb, time.Second)
	_, err := f.read(context.Background(), "", f.meta, 0, -1)
	var ue *UpstreamError
	if !errors.As(err, &ue) || !ue.Timeout {
		t.Fatalf("err = %v", err)
	}
}

// A chunk whose LZ4 frame is broken (a few chunks into a xorb) fails the
// stream through the decoder, and the buffers of the failed fetch are
// given back.
func TestUndecodableChunkFailsStream(t *testing.T) {
	f := newFixture(t, fakehub.Config{Compression: "lz4"})
	r, err := f.eng.cas.Reconstruct(context.Background(), f.eng.auth("", f.meta), *f.meta.XetHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := r.Terms[0].Hash
	fe := r.Xorbs[x][0]
	body, err := f.eng.cas.FetchRange(context.Background(), fe.URL, fe.Ranges[0].Bytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(body)
	body.Close()
	var at int64 = -1
	for off, i := 0, 0; off+8 <= len(stored); i++ {
		h, err := xorb.ParseHeader(stored[off:])
		if err != nil {
			t.Fatal(err)
		}
		if i >= 3 && h.Scheme == xorb.SchemeLZ4 {
			at = int64(fe.Ranges[0].Bytes.Start) + int64(off) + xorb.HeaderSize
			break
		}
		off += xorb.HeaderSize + int(h.CompressedLen)
	}
	if at < 0 {
		t.Fatal("no LZ4 chunk in the first xorb")
	}
	f.fh.CorruptXorb(x, at, 4) // the LZ4 frame magic
	_, err = f.read(context.Background(), "", f.meta, 0, -1)
	var ie *IntegrityError
	var fe2 *xorb.FormatError
	if !errors.As(err, &ie) || !errors.As(err, &fe2) {
		t.Fatalf("err = %v", err)
	}
	if used, _ := f.eng.budget.stats(); used != 0 {
		t.Fatalf("%d budget bytes held after a failed stream", used)
	}
}
