package cache_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

func mustMarshal(t testing.TB, m *cache.Manifest) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The manifests of the known-answer vectors verify: the xorb hashes of
// xet-core's aggregated-hash tests and the single-xorb data vectors, with
// chunk hashes and sizes taken from the vector file alone.
func TestManifestKnownAnswers(t *testing.T) {
	vs, err := cachetest.VectorManifests()
	if err != nil {
		t.Fatal(err)
	}
	v := xettest.MustLoad()
	if want := 4 + len(v.DataVectors); len(vs) < want {
		t.Fatalf("premise: %d vector manifests, want at least %d", len(vs), want)
	}
	for _, m := range vs {
		if err := m.Verify(); err != nil {
			t.Errorf("vector xorb %s (%d chunks): %v", m.Xorb, m.Len(), err)
		}
		// And with a chunk size changed they do not (with one chunk the
		// root is the chunk hash alone: see TestManifestSingleChunkSize).
		c := &cache.Manifest{Xorb: m.Xorb, Hashes: m.Hashes, Sizes: slices.Clone(m.Sizes)}
		c.Sizes[len(c.Sizes)-1]--
		if m.Len() > 1 && c.Verify() == nil {
			t.Errorf("vector xorb %s verifies with a chunk size changed", m.Xorb)
		}
	}
	// Our own construction (chunker, chunk hash, xorb hash) agrees with the
	// first data vector.
	want := vs[len(vs)-len(v.DataVectors)]
	got, _ := cachetest.MakeManifest(0, v.DataVectors[0].Length)
	if d := cachetest.SameManifest(got, want); d != "" {
		t.Errorf("MakeManifest of data vector 0: %s", d)
	}
}

// A xorb of one chunk is named by that chunk's hash: the Merkle root of one
// leaf is the leaf's hash, without its size. So the size of the only chunk
// is not proven by Verify; the chunk hash still proves the chunk's bytes,
// hence their length, so a wrong size can make Check refuse the real chunk
// but never accept another.
func TestManifestSingleChunkSize(t *testing.T) {
	m, data := cachetest.MakeManifest(5, 5000)
	if m.Len() != 1 || m.Xorb != m.Hashes[0] {
		t.Fatalf("premise: %d chunks, xorb %s, chunk %s", m.Len(), m.Xorb, m.Hashes[0])
	}
	lied := &cache.Manifest{Xorb: m.Xorb, Hashes: m.Hashes, Sizes: []uint32{m.Sizes[0] + 1}}
	if err := lied.Verify(); err != nil {
		t.Fatalf("one-chunk manifest with another size: %v (if this now fails, update the Manifest docs)", err)
	}
	if lied.Check(0, merklehash.ChunkHash(data), uint32(len(data))) {
		t.Error("Check accepted the real chunk against the wrong size")
	}
}

// The stored form: magic, version 1, xorb hash, count, then (hash, size)
// per chunk, little-endian.
func TestManifestStoredForm(t *testing.T) {
	m, _ := cachetest.MakeManifest(1, 300<<10)
	b := mustMarshal(t, m)
	if len(b) != 44+36*int(m.Len()) || string(b[:8]) != "XPMANIF\x01" || !bytes.Equal(b[8:40], m.Xorb[:]) {
		t.Fatalf("stored form of %d chunks: %d bytes starting %q", m.Len(), len(b), b[:8])
	}
	if n := uint32(b[40]) | uint32(b[41])<<8 | uint32(b[42])<<16 | uint32(b[43])<<24; n != m.Len() {
		t.Errorf("count %d, want %d", n, m.Len())
	}
	last := b[len(b)-36:]
	if !bytes.Equal(last[:32], m.Hashes[m.Len()-1][:]) || uint32(last[32])|uint32(last[33])<<8|uint32(last[34])<<16 != m.Sizes[m.Len()-1] {
		t.Error("last chunk record differs")
	}
	got, err := cache.ParseManifest(m.Xorb, b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cachetest.SameManifest(got, m); d != "" {
		t.Fatal(d)
	}
	if len(b) > cache.MaxManifestBytes || 44+36*cache.MaxEntryChunks != cache.MaxManifestBytes {
		t.Errorf("MaxManifestBytes %d", cache.MaxManifestBytes)
	}
}

// Every single-bit flip of a stored manifest is refused.
func TestManifestDetectsEveryBitFlip(t *testing.T) {
	m, _ := cachetest.MakeManifest(2, 200<<10)
	b := mustMarshal(t, m)
	for i := range b {
		for bit := range 8 {
			c := bytes.Clone(b)
			c[i] ^= 1 << bit
			if got, err := cache.ParseManifest(m.Xorb, c); !errors.Is(err, cache.ErrInvalidManifest) || got != nil {
				t.Fatalf("flip of bit %d at %d: %v", bit, i, err)
			}
		}
	}
}

func TestManifestCheck(t *testing.T) {
	m, _ := cachetest.MakeManifest(3, 200<<10)
	n := m.Len()
	if !m.Check(n-1, m.Hashes[n-1], m.Sizes[n-1]) {
		t.Error("the last chunk does not check")
	}
	for _, tc := range []struct {
		i    uint32
		h    merklehash.Hash
		size uint32
	}{
		{0, m.Hashes[1], m.Sizes[0]},
		{0, m.Hashes[0], m.Sizes[0] + 1},
		{n, m.Hashes[0], m.Sizes[0]},
	} {
		if m.Check(tc.i, tc.h, tc.size) {
			t.Errorf("Check(%d, %s, %d) passes", tc.i, tc.h, tc.size)
		}
	}
}

// FuzzParseManifest feeds arbitrary bytes to ParseManifest, for a fixed
// xorb or for the one the bytes name: it must never panic, and a manifest it
// accepts must verify, be of that xorb and marshal back to the same bytes.
func FuzzParseManifest(f *testing.F) {
	small, _ := cachetest.MakeManifest(4, 150<<10)
	one, _ := cachetest.MakeManifest(5, 5000)
	for _, m := range []*cache.Manifest{small, one} {
		b := mustMarshal(f, m)
		f.Add(b, true)
		f.Add(b, false)
		f.Add(b[:len(b)-1], true)
		c := bytes.Clone(b)
		c[50] ^= 1
		f.Add(c, true)
	}
	f.Add([]byte("XPMANIF\x01"), true)
	f.Add([]byte{}, false)
	fixed := small.Xorb
	f.Fuzz(func(t *testing.T, b []byte, nameFromBody bool) {
		xorb := fixed
		if nameFromBody && len(b) >= 40 {
			copy(xorb[:], b[8:40])
		}
		m, err := cache.ParseManifest(xorb, b)
		if err != nil {
			if !errors.Is(err, cache.ErrInvalidManifest) || m != nil {
				t.Fatalf("ParseManifest = %v, %v; want nil and ErrInvalidManifest", m != nil, err)
			}
			return
		}
		if m.Xorb != xorb {
			t.Fatalf("accepted a manifest of %s for %s", m.Xorb, xorb)
		}
		if err := m.Verify(); err != nil {
			t.Fatalf("accepted a manifest that fails Verify: %v", err)
		}
		if again := mustMarshal(t, m); !bytes.Equal(again, b) {
			t.Fatal("accepted bytes that are not the canonical stored form")
		}
	})
}

// Manifests count against the memory capacity and are evicted with the
// entries, least recently used first.
func TestMemoryManifestsCountAgainstCapacity(t *testing.T) {
	m, _ := cachetest.MakeManifest(6, 300<<10)
	msize := 36*int64(m.Len()) + 160
	// Entries of four one-byte chunks: all of one size.
	e := cachetest.MakeEntry(cachetest.Xorb(1), 0, 4, 1)
	s := newMemory(t, msize+memSize(e))
	if err := s.PutManifest(bg, m); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Manifests != 1 || st.Size != msize || st.Entries != 0 {
		t.Fatalf("after PutManifest: %d manifests, %d entries, size %d; want 1, 0, %d", st.Manifests, st.Entries, st.Size, msize)
	}
	mustPut(t, s, e) // fits beside it
	if _, err := s.GetManifest(bg, m.Xorb); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, cachetest.MakeEntry(cachetest.Xorb(2), 0, 4, 1)) // evicts e, the older
	mustMiss(t, s, e.Xorb, 0, 4)
	if st := s.Stats(); st.Manifests != 1 { // (GetManifest would refresh it)
		t.Fatal("recently used manifest evicted")
	}
	mustPut(t, s, cachetest.MakeEntry(cachetest.Xorb(3), 0, 4, 1)) // evicts the manifest
	if _, err := s.GetManifest(bg, m.Xorb); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("GetManifest after eviction = %v", err)
	}
	if st := s.Stats(); st.Evictions != 2 || st.Manifests != 0 {
		t.Errorf("%d evictions, %d manifests; want 2, 0", st.Evictions, st.Manifests)
	}
	if err := newMemory(t, msize-1).PutManifest(bg, m); !errors.Is(err, cache.ErrTooLarge) {
		t.Errorf("PutManifest into a smaller store = %v, want ErrTooLarge", err)
	}
}

// The memory store keeps its own copy: changing the caller's manifest
// afterwards does not change what it serves.
func TestMemoryManifestCopied(t *testing.T) {
	m, _ := cachetest.MakeManifest(7, 200<<10)
	want := &cache.Manifest{Xorb: m.Xorb, Hashes: slices.Clone(m.Hashes), Sizes: slices.Clone(m.Sizes)}
	s := newMemory(t, 1<<20)
	if err := s.PutManifest(bg, m); err != nil {
		t.Fatal(err)
	}
	m.Sizes[0]++
	m.Hashes[1][0] ^= 1
	got, err := s.GetManifest(bg, want.Xorb)
	if err != nil {
		t.Fatal(err)
	}
	if d := cachetest.SameManifest(got, want); d != "" {
		t.Fatal(d)
	}
}

// Disk manifests are files counted in MaxBytes, indexed again at startup,
// evicted with the entries, and found when another process wrote them.
func TestDiskManifests(t *testing.T) {
	dir := t.TempDir()
	m, _ := cachetest.MakeManifest(8, 300<<10)
	msize := int64(len(mustMarshal(t, m)))
	e := cachetest.MakeEntry(cachetest.Xorb(1), 0, 4, 1) // all such entries have one size
	s := newDisk(t, dir, msize+storedSize(e))
	if err := s.PutManifest(bg, m); err != nil {
		t.Fatal(err)
	}
	path := manifestPath(dir, m.Xorb)
	if info, err := os.Stat(path); err != nil || info.Size() != msize || info.Mode().Perm() != 0o600 {
		t.Fatalf("manifest file: %v, %v", info, err)
	}
	mustPut(t, s, e)
	if st := s.Stats(); st.Manifests != 1 || st.Entries != 1 || st.Size != msize+storedSize(e) {
		t.Fatalf("%d manifests, %d entries, size %d", st.Manifests, st.Entries, st.Size)
	}

	// A restart indexes the manifest again.
	s2 := newDisk(t, dir, msize+storedSize(e))
	if st := s2.Stats(); st.Manifests != 1 || st.Entries != 1 || st.Size != msize+storedSize(e) {
		t.Fatalf("after restart: %d manifests, %d entries, size %d", st.Manifests, st.Entries, st.Size)
	}
	if _, err := s2.GetManifest(bg, m.Xorb); err != nil {
		t.Fatal(err)
	}
	// Eviction: the entry is older than the manifest just read.
	mustPut(t, s2, cachetest.MakeEntry(cachetest.Xorb(2), 0, 4, 1))
	mustMiss(t, s2, e.Xorb, 0, 4)
	if !exists(path) {
		t.Fatal("recently used manifest evicted")
	}
	mustPut(t, s2, cachetest.MakeEntry(cachetest.Xorb(3), 0, 4, 1))
	if exists(path) {
		t.Error("evicted manifest still has its file")
	}
	if _, err := s2.GetManifest(bg, m.Xorb); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("GetManifest after eviction = %v", err)
	}

	// A manifest another process writes is found at once.
	other := newDisk(t, dir, 1<<30)
	m2, _ := cachetest.MakeManifest(9, 100<<10)
	if err := other.PutManifest(bg, m2); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.GetManifest(bg, m2.Xorb); err != nil {
		t.Fatalf("manifest written by another process: %v", err)
	}
	if st := s2.Stats(); st.Manifests != 1 {
		t.Errorf("%d manifests indexed, want 1", st.Manifests)
	}
}

// The startup scan of the manifest directory removes stale temporary files
// and ignores names that are not canonical xorb hashes.
func TestDiskManifestScanIgnoresForeignFiles(t *testing.T) {
	dir := t.TempDir()
	m, _ := cachetest.MakeManifest(10, 100<<10)
	if err := newDisk(t, dir, 1<<30).PutManifest(bg, m); err != nil {
		t.Fatal(err)
	}
	fan := filepath.Dir(manifestPath(dir, m.Xorb))
	old := time.Now().Add(-2 * time.Hour)
	write := func(name string) string {
		p := filepath.Join(fan, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := write(".tmp-9")
	junk := write("README")
	entryName := write(m.Xorb.String() + ".0-1")
	s := newDisk(t, dir, 1<<30)
	if st := s.Stats(); st.Manifests != 1 || st.Entries != 0 || st.Size != int64(len(mustMarshal(t, m))) {
		t.Errorf("rebuilt index: %d manifests, %d entries, %d bytes", st.Manifests, st.Entries, st.Size)
	}
	if exists(stale) {
		t.Error("stale temporary file not removed")
	}
	if !exists(junk) || !exists(entryName) {
		t.Error("foreign file removed")
	}
}

// S3 writes a manifest once, and another instance finds it with one GET;
// entry listings do not see manifests.
func TestS3Manifests(t *testing.T) {
	f := newFakeS3(t)
	a := newS3Store(t, f.config("p"))
	m, _ := cachetest.MakeManifest(11, 300<<10)
	for range 3 {
		if err := a.PutManifest(bg, m); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.Count("PUT"); n != 1 {
		t.Errorf("%d PUTs for one manifest", n)
	}
	if b := f.object(t, "p/manifests/"+m.Xorb.String()); !bytes.Equal(b, mustMarshal(t, m)) {
		t.Fatalf("manifest object is %d bytes; bucket has %v", len(b), f.keys(t))
	}
	mustMiss(t, a, m.Xorb, 0, 1) // lists the xorb's entries: none

	b := newS3Store(t, f.config("p"))
	f.reset()
	got, err := b.GetManifest(bg, m.Xorb)
	if err != nil {
		t.Fatal(err)
	}
	if d := cachetest.SameManifest(got, m); d != "" {
		t.Fatal(d)
	}
	if n := f.Count("GET"); n != 1 {
		t.Errorf("%d GETs", n)
	}
	if st := b.Stats(); st.Manifests != 1 || st.Entries != 0 {
		t.Errorf("%d manifests, %d entries known", st.Manifests, st.Entries)
	}
}

// A Tiered store puts manifests through its queue to the shared tier; a
// second instance reads them from there and copies them into its local
// tier. A forged object in the bucket is a miss there too, and deleted.
func TestTieredManifests(t *testing.T) {
	f := newFakeS3(t)
	one := newTiered(t, newMemory(t, 1<<20), newS3Store(t, f.config("s")), cache.TieredConfig{})
	twoLocal := newMemory(t, 1<<20)
	two := newTiered(t, twoLocal, newS3Store(t, f.config("s")), cache.TieredConfig{})

	m, _ := cachetest.MakeManifest(12, 300<<10)
	if err := one.PutManifest(bg, m); err != nil {
		t.Fatal(err)
	}
	flush(t, one)
	key := "s/manifests/" + m.Xorb.String()
	if f.object(t, key) == nil {
		t.Fatalf("manifest did not reach the bucket: %v", f.keys(t))
	}
	if _, err := two.GetManifest(bg, m.Xorb); err != nil {
		t.Fatal(err)
	}
	if st := twoLocal.Stats(); st.Manifests != 1 {
		t.Fatalf("shared hit not copied into the local tier: %d manifests", st.Manifests)
	}
	f.reset()
	if _, err := two.GetManifest(bg, m.Xorb); err != nil || f.Count("GET") != 0 {
		t.Errorf("second read: %v, %d GETs", err, f.Count("GET"))
	}

	// A forgery in the bucket: consistent header, another xorb's chunks.
	m2, _ := cachetest.MakeManifest(13, 300<<10)
	m3, _ := cachetest.MakeManifest(14, 300<<10)
	forged := mustMarshal(t, m3)
	copy(forged[8:40], m2.Xorb[:])
	f.setObject(t, "s/manifests/"+m2.Xorb.String(), forged)
	if _, err := two.GetManifest(bg, m2.Xorb); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("GetManifest of a forged object = %v", err)
	}
	if f.object(t, "s/manifests/"+m2.Xorb.String()) != nil {
		t.Error("forged object not deleted")
	}
	if st := twoLocal.Stats(); st.Manifests != 1 {
		t.Errorf("local tier holds %d manifests, want 1", st.Manifests)
	}
}

// After Close a Tiered store refuses manifests as it refuses entries, and
// still serves them.
func TestTieredManifestAfterClose(t *testing.T) {
	ts := newTiered(t, newMemory(t, 1<<20), newS3Store(t, newFakeS3(t).config("")), cache.TieredConfig{})
	m, _ := cachetest.MakeManifest(15, 100<<10)
	if err := ts.PutManifest(bg, m); err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	m2, _ := cachetest.MakeManifest(16, 100<<10)
	if err := ts.PutManifest(bg, m2); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("PutManifest after Close = %v, want ErrClosed", err)
	}
	if _, err := ts.GetManifest(bg, m.Xorb); err != nil {
		t.Errorf("GetManifest after Close: %v", err)
	}
}

// Verify costs one Merkle tree over the chunk leaves; every store pays it
// on each PutManifest and each read from disk or a bucket.
func BenchmarkManifestVerify(b *testing.B) {
	for _, n := range []int{64, 1024, cache.MaxEntryChunks} {
		m := cachetest.MakeLargeManifest(1, n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(36 * n))
			for b.Loop() {
				if err := m.Verify(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
