package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// cacheEnv is a fakehub and an engine with cache c, reading in blocks large
// enough that whole xorb ranges are fetched (as with the 256 MiB default).
func cacheEnv(t *testing.T, c cache.Store, tweak ...func(*Config)) *testEnv {
	t.Helper()
	return newEnv(t, fakehub.Config{MaxXorbBytes: 4 << 20}, append([]func(*Config){func(cfg *Config) {
		cfg.Cache = c
		cfg.BlockSize = 64 << 20
		cfg.StreamBuffer = 2 << 20
	}}, tweak...)...)
}

func memCache(t *testing.T, n int64) *cache.Memory {
	t.Helper()
	m, err := cache.NewMemory(n)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diskCache(t *testing.T, dir string, n int64) *cache.Disk {
	t.Helper()
	d, err := cache.NewDisk(cache.DiskConfig{Dir: dir, MaxBytes: n})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func flush(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func xorbBytes(fh *fakehub.Hub) int64 { return fh.Stats()[fakehub.ClassXorb].BytesOut }

// readAll opens [off, off+n) and reads it, returning the stream's sources.
func readAll(t *testing.T, e *Engine, token string, m *hub.FileMeta, off, n int64) ([]byte, Sources) {
	t.Helper()
	rc, err := e.Open(context.Background(), token, m, off, n)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %d+%d: %v", off, n, err)
	}
	return got, rc.(SourceReporter).Sources()
}

func TestCacheSecondReadIsLocal(t *testing.T) {
	for _, kind := range []string{"memory", "disk"} {
		t.Run(kind, func(t *testing.T) {
			var c cache.Store = memCache(t, 1<<30)
			if kind == "disk" {
				c = diskCache(t, t.TempDir(), 1<<30)
			}
			e := cacheEnv(t, c)
			e.repo(t, fakehub.RepoSpec{ID: "org/m"})
			data := mixed(21, 12<<20+12345)
			e.add(t, "org/m", "big.bin", data)
			m := e.stat(t, "", repoM, "big.bin")

			got, src := readAll(t, e.eng, "", m, 0, -1)
			if !bytes.Equal(got, data) {
				t.Fatal("first read differs")
			}
			if src.Upstream != int64(len(data)) || src.Cache != 0 {
				t.Fatalf("cold read sources %+v", src)
			}
			flush(t, e.eng)
			e.fh.ResetStats()
			got, src = readAll(t, e.eng, "", m, 0, -1)
			if !bytes.Equal(got, data) {
				t.Fatal("second read differs")
			}
			if n := xorbBytes(e.fh); n != 0 {
				t.Fatalf("second read fetched %d xorb bytes upstream", n)
			}
			if src.Cache != int64(len(data)) {
				t.Fatalf("warm read sources %+v", src)
			}
			// Authorisation still happened upstream for it.
			if e.fh.Stats()[fakehub.ClassReconstruction].Requests == 0 {
				t.Fatal("warm read asked no reconstruction: access was not checked")
			}
			// Ranges are served from the cache too, cut anywhere.
			for _, r := range [][2]int64{{0, 1}, {5 << 20, 3 << 20}, {int64(len(data)) - 70000, -1}, {4<<20 - 3, 9}, {8<<20 + 5, 1 << 20}} {
				got, _ := readAll(t, e.eng, "", m, r[0], r[1])
				end := int64(len(data))
				if r[1] >= 0 {
					end = r[0] + r[1]
				}
				if !bytes.Equal(got, data[r[0]:end]) {
					t.Fatalf("range %v differs", r)
				}
			}
			if n := xorbBytes(e.fh); n != 0 {
				t.Fatalf("ranged reads fetched %d xorb bytes upstream", n)
			}
			st := e.eng.CacheStats()
			if st.Hits == 0 || st.Puts == 0 || st.PutErrors != 0 || st.GetErrors != 0 || st.Fallbacks != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// Ranged reads cannot prove what they fetch, so they leave no chunks in
// the cache (only the manifest of a xorb they happened to read from its
// first chunk to its last); a whole read proves and caches everything, and
// ranged reads then come from the cache, checked against the manifests.
func TestCacheRangedReadsCacheOnlyProvenChunks(t *testing.T) {
	e := cacheEnv(t, memCache(t, 1<<30))
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(22, 12<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	ranges := [][2]int64{{1 << 20, 1000}, {6 << 20, 2 << 20}, {11 << 20, -1}}
	read := func() {
		t.Helper()
		for _, r := range ranges {
			got, _ := readAll(t, e.eng, "", m, r[0], r[1])
			end := int64(len(data))
			if r[1] >= 0 {
				end = r[0] + r[1]
			}
			if !bytes.Equal(got, data[r[0]:end]) {
				t.Fatalf("range %v differs", r)
			}
		}
		flush(t, e.eng)
	}
	read()
	st := e.eng.CacheStats()
	if st.Puts != 0 || st.StagedBytes != 0 || st.ServedUnverified == 0 {
		t.Fatalf("ranged reads without proofs: stats %+v, want no puts, nothing staged, unverified bytes counted", st)
	}
	got, src := readAll(t, e.eng, "", m, 0, -1)
	if !bytes.Equal(got, data) {
		t.Fatal("whole read differs")
	}
	flush(t, e.eng)
	if src.Upstream != int64(len(data)) {
		t.Fatalf("whole read after ranges: sources %+v, want all from upstream", src)
	}
	unverified := e.eng.CacheStats().ServedUnverified
	e.fh.ResetStats()
	read()
	st = e.eng.CacheStats()
	if n := xorbBytes(e.fh); n != 0 {
		t.Fatalf("ranged reads after a whole read fetched %d xorb bytes", n)
	}
	if st.ServedUnverified != unverified || st.XorbProofs == 0 {
		t.Fatalf("ranged reads from proven xorbs: stats %+v, want no new unverified bytes (had %d)", st, unverified)
	}
}

// A file that shares most chunks with a cached one fetches little more
// than its new chunks.
func TestCacheEditedFileFetchesOnlyChanges(t *testing.T) {
	e := cacheEnv(t, memCache(t, 1<<30))
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	a := mixed(23, 20<<20)
	b := editedCopy(a)
	e.add(t, "org/m", "a.bin", a)
	e.add(t, "org/m", "b.bin", b)
	ma, mb := e.stat(t, "", repoM, "a.bin"), e.stat(t, "", repoM, "b.bin")
	if got, _ := readAll(t, e.eng, "", ma, 0, -1); !bytes.Equal(got, a) {
		t.Fatal("a differs")
	}
	flush(t, e.eng)
	e.fh.ResetStats()
	got, src := readAll(t, e.eng, "", mb, 0, -1)
	if !bytes.Equal(got, b) {
		t.Fatal("b differs")
	}
	up := xorbBytes(e.fh)
	t.Logf("b: %d bytes, %d xorb bytes fetched upstream (%.1f%%), sources %+v", len(b), up, 100*float64(up)/float64(len(b)), src)
	if up == 0 {
		t.Fatal("b's new chunks were not fetched: the test tests nothing")
	}
	if up > int64(len(b))*15/100 {
		t.Fatalf("fetched %d bytes upstream for a %d-byte file sharing most of its chunks", up, len(b))
	}
}

// editedCopy returns a with a few bytes changed in three places and 100 KB
// inserted in a fourth: well over 90% of its chunks stay the same.
func editedCopy(a []byte) []byte {
	b := bytes.Clone(a)
	for _, off := range []int{len(b) / 7, len(b) / 2, len(b) - len(b)/5} {
		copy(b[off:], "edited!")
	}
	at := len(b) / 3
	ins := text(77, 100000)
	return append(b[:at:at], append(ins, b[at:]...)...)
}

// Concurrent requests for the same cold file fetch each xorb range once.
// Readers that drift apart still fetch each range once: a reader that
// arrives after a fill completed finds its chunks in the staging store (not
// proven yet, so not in the cache) instead of starting the fill again. Disk
// stores and small blocks, so that there are many short fills.
func TestCacheDriftingReadersFetchOnceFromStaging(t *testing.T) {
	dir := t.TempDir()
	st, err := cache.OpenStaging(dir, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, fakehub.Config{MaxXorbBytes: 64 << 20}, func(c *Config) {
		c.Cache = diskCache(t, dir, 1<<30)
		c.Staging = st
	})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(24, 24<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	e.fh.ResetStats()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 20 * time.Millisecond) // drifting apart
			got, _ := readAll(t, e.eng, "", m, 0, -1)
			if !bytes.Equal(got, data) {
				t.Error("bytes differ")
			}
		})
	}
	wg.Wait()
	flush(t, e.eng)
	seen := map[string]int{}
	for _, r := range e.fh.Requests() {
		if r.Class == fakehub.ClassXorb {
			seen[r.Path[:len("/cas/transfer/")+64]+" "+r.Header.Get("Range")]++
		}
	}
	if len(seen) < 10 {
		t.Fatalf("%d distinct xorb ranges: the test wants many short fills", len(seen))
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s fetched %d times", k, c)
		}
	}
	if st := e.eng.CacheStats(); st.StagedBytes == 0 || st.PromotedBytes == 0 {
		t.Fatalf("stats %+v: want staged chunks promoted", st)
	}
}

func TestCacheConcurrentColdReadsFetchOnce(t *testing.T) {
	e := cacheEnv(t, memCache(t, 1<<30))
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(24, 8<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	e.fh.ResetStats()
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			rc, err := e.eng.Open(context.Background(), "", m, 0, -1)
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err == nil && !bytes.Equal(got, data) {
				err = errors.New("bytes differ")
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	for _, r := range e.fh.Requests() {
		if r.Class == fakehub.ClassXorb {
			seen[r.Path[:len("/cas/transfer/")+64]+" "+r.Header.Get("Range")]++
		}
	}
	if len(seen) < 3 {
		t.Fatalf("%d distinct xorb ranges: the file should span several xorbs", len(seen))
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s fetched %d times", k, c)
		}
	}
	st := e.eng.CacheStats()
	t.Logf("stats %+v", st)
	if st.FillJoins == 0 {
		t.Error("no stream joined another's fill")
	}
}

// A fill finishes without the client that started it: neither a client
// that stops reading nor one that goes away holds it up.
func TestCacheFillIsDetachedFromItsClient(t *testing.T) {
	for _, how := range []string{"stalled", "gone"} {
		t.Run(how, func(t *testing.T) {
			// One big xorb: the first fetch is the whole file.
			e := newEnv(t, fakehub.Config{MaxXorbBytes: 64 << 20}, func(c *Config) {
				c.Cache = memCache(t, 1<<30)
				c.BlockSize = 64 << 20
				c.StreamBuffer = 256 << 10
			})
			e.repo(t, fakehub.RepoSpec{ID: "org/m"})
			data := mixed(25, 12<<20)
			e.add(t, "org/m", "f.bin", data)
			m := e.stat(t, "", repoM, "f.bin")
			e.fh.SetLatency(fakehub.ClassXorb, 20*time.Millisecond)
			ctx, cancel := context.WithCancel(context.Background())
			rc, err := e.eng.Open(ctx, "", m, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			p := make([]byte, 1000)
			if _, err := io.ReadFull(rc, p); err != nil {
				t.Fatal(err)
			}
			if how == "gone" {
				cancel()
				rc.Close()
			}
			// The reader holds at most 256 KiB; the fill still completes.
			flush(t, e.eng)
			full := xorbBytes(e.fh)
			if how == "stalled" {
				rc.Close()
			}
			cancel()
			e.fh.ResetStats()
			got, src := readAll(t, e.eng, "", m, 0, -1)
			if !bytes.Equal(got, data) {
				t.Fatal("bytes differ")
			}
			if n := xorbBytes(e.fh); n != 0 || src.Cache != int64(len(data)) {
				t.Fatalf("after the fill (%d bytes): %d bytes fetched again, sources %+v", full, n, src)
			}
		})
	}
}

// A reader too slow for a cache too small to hold what the fill wrote
// finds the segments the fill let go of in neither: it reads them from
// the staging store when the fill staged them (not yet proven), else it
// falls back to fetching for itself; which of the two depends on how far
// the fill got before its xorb was proven. Either way it gets the right
// bytes.
func TestCacheFallbackWhenTheCacheLosesTheFill(t *testing.T) {
	// Xorb ranges of several segments, a cache smaller than one entry
	// (every Put fails), and a fill buffer of one segment (the fill keeps
	// none in memory for its reader once it needs room for the next).
	e := newEnv(t, fakehub.Config{MaxXorbBytes: 16 << 20}, func(c *Config) {
		c.Cache = memCache(t, 1<<20)
		c.FillBuffer = segmentChunks * maxChunk
		c.BlockSize = 64 << 20
		c.StreamBuffer = 1 << 20
	})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(26, 10<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	// The reader stops after its first byte until the fill has ended.
	rc, got := openPaused(t, e, m, false)
	p := make([]byte, 256<<10)
	for {
		n, err := rc.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	st := e.eng.CacheStats()
	if st.PutErrors == 0 || (st.Fallbacks == 0 && st.StagedBytes == 0) {
		t.Fatalf("stats %+v: want failed puts, and fallbacks or staged chunks", st)
	}
}

// brokenStore fails every call.
type brokenStore struct{ gets, puts atomic.Int64 }

func (b *brokenStore) Get(context.Context, merklehash.Hash, uint32, uint32) (*cache.Entry, error) {
	b.gets.Add(1)
	return nil, errors.New("disk on fire")
}
func (b *brokenStore) Put(context.Context, *cache.Entry) error {
	b.puts.Add(1)
	return errors.New("disk on fire")
}
func (b *brokenStore) Delete(context.Context, merklehash.Hash, uint32, uint32) error {
	return errors.New("disk on fire")
}

func TestCacheFailuresAreSoft(t *testing.T) {
	b := &brokenStore{}
	e := cacheEnv(t, b)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(27, 6<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	for range 2 {
		if got, _ := readAll(t, e.eng, "", m, 0, -1); !bytes.Equal(got, data) {
			t.Fatal("bytes differ")
		}
		if got, _ := readAll(t, e.eng, "", m, 100, 3<<20); !bytes.Equal(got, data[100:100+3<<20]) {
			t.Fatal("range differs")
		}
	}
	flush(t, e.eng)
	st := e.eng.CacheStats()
	if b.gets.Load() == 0 || b.puts.Load() == 0 || st.GetErrors == 0 || st.PutErrors == 0 || st.Hits != 0 {
		t.Fatalf("store calls %d/%d, stats %+v", b.gets.Load(), b.puts.Load(), st)
	}
}

// A damaged disk entry is dropped by its checksum and fetched again.
func TestCacheCorruptDiskEntryIsRefetched(t *testing.T) {
	dir := t.TempDir()
	d := diskCache(t, dir, 1<<30)
	e := cacheEnv(t, d)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(28, 8<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	readAll(t, e.eng, "", m, 0, -1)
	flush(t, e.eng)
	files, _ := filepath.Glob(filepath.Join(dir, "chunks-v2", "*", "*"))
	if len(files) < 2 {
		t.Fatalf("%d entry files", len(files))
	}
	victim := files[len(files)/2]
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1000] ^= 0x40 // a data byte
	if err := os.WriteFile(victim, b, 0o600); err != nil {
		t.Fatal(err)
	}
	e.fh.ResetStats()
	got, src := readAll(t, e.eng, "", m, 0, -1)
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ after corrupting an entry")
	}
	// fakehub counts a transfer once its handler returned, which can be
	// just after the client read the last byte.
	for deadline := time.Now().Add(5 * time.Second); xorbBytes(e.fh) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if d.Stats().Corrupt != 1 || xorbBytes(e.fh) == 0 || src.Upstream == 0 {
		t.Fatalf("corrupt %d, refetched %d bytes, sources %+v", d.Stats().Corrupt, xorbBytes(e.fh), src)
	}
}

// hideManifests is a store that keeps no manifests: with it an engine can
// prove a cached xorb only through a whole-file hash.
type hideManifests struct{ cache.Store }

// forge replaces the cached first segment of the first xorb of m by one
// with a byte flipped and consistent hashes, as a writer with access to
// the store could; it returns the key.
func forge(t *testing.T, e *testEnv, mc cache.Store, m *hub.FileMeta) cache.Key {
	t.Helper()
	r, err := e.eng.cas.Reconstruct(context.Background(), e.eng.auth("", m), *m.XetHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	x, seg := r.Terms[0].Hash, r.Terms[0].Range
	seg.End = min(seg.End, segmentChunks) // the first segment of the first xorb
	if seg.Start != 0 {
		t.Fatalf("first term %v", seg)
	}
	ent, err := mc.Get(context.Background(), x, seg.Start, seg.End)
	if err != nil {
		t.Fatalf("segment not cached: %v", err)
	}
	forged := &cache.Entry{Xorb: x, Start: ent.Start, End: ent.End, Offsets: ent.Offsets, Data: bytes.Clone(ent.Data)}
	forged.Data[len(forged.Data)/2] ^= 1
	for i := forged.Start; i < forged.End; i++ {
		forged.Hashes = append(forged.Hashes, merklehash.ChunkHash(forged.Chunk(i)))
	}
	if err := mc.Delete(context.Background(), x, seg.Start, seg.End); err != nil {
		t.Fatal(err)
	}
	if err := mc.Put(context.Background(), forged); err != nil {
		t.Fatal(err)
	}
	return forged.Key()
}

// An entry that passes the store's own checks but holds other bytes (a
// forged or buggy writer, consistent hashes included) is caught against
// the xorb's manifest before a byte of it is served, purged, and fetched
// again from upstream within the same read: whole or ranged.
func TestCacheForgedEntryIsCaughtByTheManifest(t *testing.T) {
	for _, whole := range []bool{true, false} {
		t.Run(fmt.Sprintf("whole=%v", whole), func(t *testing.T) {
			mc := memCache(t, 1<<30)
			e := cacheEnv(t, mc)
			e.repo(t, fakehub.RepoSpec{ID: "org/m"})
			data := mixed(29, 6<<20)
			e.add(t, "org/m", "f.bin", data)
			m := e.stat(t, "", repoM, "f.bin")
			readAll(t, e.eng, "", m, 0, -1)
			flush(t, e.eng)
			k := forge(t, e, mc, m)
			var off, n int64 = 0, -1
			if !whole {
				n = 4 << 20 // over the forged byte, short of the end
			}
			got, _ := readAll(t, e.eng, "", m, off, n)
			if !bytes.Equal(got, data[:len(got)]) || (whole && len(got) != len(data)) {
				t.Fatal("bytes differ")
			}
			st := e.eng.CacheStats()
			if st.ProofFailures != 1 || st.Fallbacks == 0 {
				t.Fatalf("stats %+v, want one proof failure and a fetch from upstream", st)
			}
			ent, err := mc.Get(context.Background(), k.Xorb, k.Start, k.End)
			if err == nil && ent.Verify() == nil && bytes.Equal(ent.Data, data[:len(ent.Data)]) {
				return // the purge happened and a later write put the truth back
			}
			if !errors.Is(err, cache.ErrNotFound) {
				t.Fatalf("forged entry still cached: %v", err)
			}
		})
	}
}

// Without a manifest, a forged entry is caught by the whole-file hash: the
// read fails before its last byte, the entry is purged, and the next read
// fetches the truth.
func TestCacheForgedEntryIsCaughtByTheFileHash(t *testing.T) {
	mc := memCache(t, 1<<30)
	e := cacheEnv(t, hideManifests{mc})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(29, 6<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	readAll(t, e.eng, "", m, 0, -1)
	flush(t, e.eng)
	k := forge(t, e, mc, m)
	// A fresh engine: no manifest in memory either.
	eng2, err := New(Config{Hub: e.hc, CAS: e.eng.cas, BlockSize: 64 << 20, Cache: hideManifests{mc}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close(context.Background())
	rc, err := eng2.Open(context.Background(), "", m, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	var ie *IntegrityError
	if !errors.As(err, &ie) {
		t.Fatalf("whole read over a forged entry: %v, want an integrity error", err)
	}
	if len(got) >= len(data) {
		t.Fatalf("the failed read gave %d of %d bytes: its tail was not held back", len(got), len(data))
	}
	if _, err := mc.Get(context.Background(), k.Xorb, k.Start, k.End); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("forged entry still cached: %v", err)
	}
	if st := eng2.CacheStats(); st.FileMismatches != 1 {
		t.Fatalf("stats %+v, want one file mismatch", st)
	}
	got, _ = readAll(t, eng2, "", m, 0, -1)
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ after the purge")
	}
}

// A restarted engine on the same directory finds the entries.
func TestCacheSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e := cacheEnv(t, diskCache(t, dir, 1<<30))
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(30, 10<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	readAll(t, e.eng, "", m, 0, -1)
	if err := e.eng.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	eng2, err := New(Config{Hub: e.hc, CAS: e.eng.cas, BlockSize: 64 << 20, Cache: diskCache(t, dir, 1<<30)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close(context.Background())
	e.fh.ResetStats()
	got, src := readAll(t, eng2, "", m, 0, -1)
	if !bytes.Equal(got, data) || xorbBytes(e.fh) != 0 || src.Cache != int64(len(data)) {
		t.Fatalf("after restart: equal %v, %d xorb bytes upstream, sources %+v", bytes.Equal(got, data), xorbBytes(e.fh), src)
	}
}

// The cache never answers for a file the caller cannot read: every route
// to the bytes asks upstream with the caller's own token first.
func TestCacheKeepsAccessPerUser(t *testing.T) {
	e := cacheEnv(t, memCache(t, 1<<30), func(c *Config) { c.AuthTTL = time.Minute })
	e.repo(t, fakehub.RepoSpec{ID: "org/private", Private: true, Readers: []string{"hf_reader"}})
	e.repo(t, fakehub.RepoSpec{ID: "org/other", Private: true, Readers: []string{"hf_other"}})
	e.add(t, "org/other", "x.bin", weights(1, 100000))
	data := mixed(31, 6<<20)
	e.add(t, "org/private", "w.bin", data)
	priv := hub.Repo{Type: hub.Model, ID: "org/private"}
	other := hub.Repo{Type: hub.Model, ID: "org/other"}
	m := e.stat(t, "hf_reader", priv, "w.bin")
	if got, _ := readAll(t, e.eng, "hf_reader", m, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("reader: bytes differ")
	}
	flush(t, e.eng)
	hits := e.eng.CacheStats().Hits
	e.fh.AddToken("hf_wrong_but_valid")
	for _, tok := range []string{"", "hf_invalid", "hf_wrong_but_valid", "hf_other"} {
		t.Run(fmt.Sprintf("token %q", tok), func(t *testing.T) {
			var he *hub.Error
			if _, err := e.eng.Stat(context.Background(), tok, priv, "main", "w.bin"); !errors.As(err, &he) {
				t.Fatalf("stat: %v", err)
			}
			// Even holding the reader's metadata (hash, size), Open asks
			// for a read token with the caller's credentials and fails.
			for _, r := range [][2]int64{{0, -1}, {1000, 5000}} {
				if rc, err := e.eng.Open(context.Background(), tok, m, r[0], r[1]); err == nil {
					rc.Close()
					t.Fatalf("open %v succeeded", r)
				}
			}
			if _, err := e.eng.StatHash(context.Background(), tok, priv, "main", *m.XetHash); err == nil {
				t.Fatal("stat by hash through the private repo succeeded")
			}
		})
	}
	if got := e.eng.CacheStats().Hits; got != hits {
		t.Fatalf("%d cache lookups hit for callers without access", got-hits)
	}
	// The reader's memoised answers are not anyone else's: a token that
	// works (it reads its own repo) asks upstream for its own answers for
	// the private file, and is refused there.
	mo := e.stat(t, "hf_other", other, "x.bin")
	if got, _ := readAll(t, e.eng, "hf_other", mo, 0, -1); !bytes.Equal(got, weights(1, 100000)) {
		t.Fatal("hf_other: its own file differs")
	}
	e.fh.ResetStats()
	if _, err := e.eng.Open(context.Background(), "hf_other", &hub.FileMeta{Repo: priv, Revision: "main", Size: m.Size, XetHash: m.XetHash}, 0, -1); err == nil {
		t.Fatal("another repo's reader opened the private file")
	}
	if st := e.fh.Stats()[fakehub.ClassToken]; st.Requests == 0 || st.Errors != st.Requests {
		t.Fatalf("token requests for hf_other's open: %+v, want refusals from upstream", st)
	}
}

func TestAuthMemo(t *testing.T) {
	e := cacheEnv(t, nil, func(c *Config) { c.AuthTTL = time.Minute })
	e.repo(t, fakehub.RepoSpec{ID: "org/p", Private: true, Readers: []string{"hf_a"}})
	data := mixed(32, 3<<20)
	e.add(t, "org/p", "f.bin", data)
	repo := hub.Repo{Type: hub.Model, ID: "org/p"}
	m := e.stat(t, "hf_a", repo, "f.bin")
	readAll(t, e.eng, "hf_a", m, 0, -1)
	e.fh.ResetStats()
	m2 := e.stat(t, "hf_a", repo, "f.bin")
	if got, _ := readAll(t, e.eng, "hf_a", m2, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	st := e.fh.Stats()
	if st[fakehub.ClassResolve].Requests != 0 || st[fakehub.ClassReconstruction].Requests != 0 {
		t.Fatalf("memoised answers asked again: %+v", st)
	}
	// Another user (valid, without access) gets nothing from the memo.
	e.fh.AddToken("hf_b")
	var he *hub.Error
	if _, err := e.eng.Stat(context.Background(), "hf_b", repo, "main", "f.bin"); !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Fatalf("other user: %v", err)
	}
	if _, err := e.eng.Open(context.Background(), "hf_b", m, 0, -1); err == nil {
		t.Fatal("other user opened the file through the memo")
	}
}

// Reconstruction blocks cut a xorb's range anywhere; the two parts of the
// segment a cut falls in are joined into one entry, so that a later read
// with other cuts (another block size, another file) finds whole segments.
func TestCacheJoinsSegmentsCutByBlocks(t *testing.T) {
	mc := memCache(t, 1<<30)
	e := newEnv(t, fakehub.Config{MaxXorbBytes: 16 << 20}, func(c *Config) {
		c.Cache = mc
		c.BlockSize = 1 << 20 // a cut every MiB, inside segments
	})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(33, 12<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	if got, _ := readAll(t, e.eng, "", m, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	flush(t, e.eng)
	// Every whole segment of the file's xorb is one entry now.
	r, err := e.eng.cas.Reconstruct(context.Background(), e.eng.auth("", m), *m.XetHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	segs := 0
	for _, tm := range r.Terms {
		for lo := tm.Range.Start - tm.Range.Start%segmentChunks; lo+segmentChunks <= tm.Range.End; lo += segmentChunks {
			if _, err := mc.Get(context.Background(), tm.Hash, lo, lo+segmentChunks); err != nil {
				t.Errorf("segment %d-%d of %s: %v", lo, lo+segmentChunks, tm.Hash, err)
			}
			segs++
		}
	}
	if segs < 2 {
		t.Fatalf("%d whole segments: the test tests nothing", segs)
	}
	// A reader cutting elsewhere fetches nothing.
	eng2, err := New(Config{Hub: e.hc, CAS: e.eng.cas, BlockSize: 64 << 20, Cache: mc})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close(context.Background())
	e.fh.ResetStats()
	if got, _ := readAll(t, eng2, "", m, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	if n := xorbBytes(e.fh); n != 0 {
		t.Fatalf("%d xorb bytes fetched again", n)
	}
}
