package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

var bg = context.Background()

// entryPath is the documented location of an entry file (docs/cache.md).
func entryPath(dir string, k cache.Key) string {
	name := k.Xorb.String() + "." + itoa(k.Start) + "-" + itoa(k.End)
	return filepath.Join(dir, "chunks-v2", name[:2], name)
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// storedSize is the documented size of an entry file: 64 + 40n header bytes
// plus the data.
func storedSize(e *cache.Entry) int64 { return 64 + 40*int64(e.End-e.Start) + int64(len(e.Data)) }

func mustHit(t *testing.T, s cache.Store, x merklehash.Hash, start, end uint32, maxChunk int) *cache.Entry {
	t.Helper()
	got, err := s.Get(bg, x, start, end)
	if err != nil {
		t.Fatalf("Get [%d, %d): %v", start, end, err)
	}
	if d := cachetest.Equal(got, cachetest.MakeEntry(x, start, end, maxChunk)); d != "" {
		t.Fatalf("Get [%d, %d): %s", start, end, d)
	}
	return got
}

func mustMiss(t *testing.T, s cache.Store, x merklehash.Hash, start, end uint32) {
	t.Helper()
	if _, err := s.Get(bg, x, start, end); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get [%d, %d) = %v, want ErrNotFound", start, end, err)
	}
}

func mustPut(t testing.TB, s cache.Store, e *cache.Entry) {
	t.Helper()
	if err := s.Put(bg, e); err != nil {
		t.Fatalf("Put %s: %v", e.Key(), err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// lruScenario fills a store sized for three entries, touches the first and
// adds a fourth: the second (least recently used) must go.
func lruScenario(t *testing.T, s cache.Store, sizeOf func(*cache.Entry) int64) (a, b, c, d *cache.Entry) {
	t.Helper()
	a = cachetest.MakeEntry(cachetest.Xorb(1), 0, 8, 0)
	b = cachetest.MakeEntry(cachetest.Xorb(2), 0, 8, 0)
	c = cachetest.MakeEntry(cachetest.Xorb(3), 0, 8, 0)
	d = cachetest.MakeEntry(cachetest.Xorb(4), 0, 8, 0)
	for _, e := range []*cache.Entry{a, b, c} {
		mustPut(t, s, e)
	}
	mustHit(t, s, a.Xorb, 0, 8, 0)
	mustPut(t, s, d)
	mustMiss(t, s, b.Xorb, 0, 8)
	for _, e := range []*cache.Entry{a, c, d} {
		mustHit(t, s, e.Xorb, 0, 8, 0)
	}
	st := s.(cache.StatsReporter).Stats()
	if st.Evictions != 1 || st.Entries != 3 {
		t.Errorf("evictions %d, entries %d; want 1 and 3", st.Evictions, st.Entries)
	}
	if want := sizeOf(a) + sizeOf(c) + sizeOf(d); st.Size != want || st.Size > st.Capacity {
		t.Errorf("size %d (capacity %d), want %d", st.Size, st.Capacity, want)
	}
	return a, b, c, d
}

func TestDiskLRU(t *testing.T) {
	dir := t.TempDir()
	x := cachetest.MakeEntry(cachetest.Xorb(1), 0, 8, 0)
	// Room for three entries of about this size, not four.
	s := newDisk(t, dir, 3*storedSize(x)+storedSize(x)/2)
	_, b, _, _ := lruScenario(t, s, storedSize)
	if exists(entryPath(dir, b.Key())) {
		t.Error("evicted entry's file still exists")
	}
}

func TestDiskTooLarge(t *testing.T) {
	s := newDisk(t, t.TempDir(), 1000)
	e := cachetest.MakeEntry(cachetest.Xorb(1), 0, 4, 0)
	if err := s.Put(bg, e); !errors.Is(err, cache.ErrTooLarge) {
		t.Fatalf("Put = %v, want ErrTooLarge", err)
	}
}

func TestDiskRestart(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 1<<30)
	var entries []*cache.Entry
	for i := range 5 {
		e := cachetest.MakeEntry(cachetest.Xorb(uint64(i)), uint32(i), uint32(2*i+3), 0)
		mustPut(t, s, e)
		entries = append(entries, e)
	}
	before := s.Stats()

	s2 := newDisk(t, dir, 1<<30)
	after := s2.Stats()
	if after.Entries != before.Entries || after.Size != before.Size {
		t.Fatalf("rebuilt index has %d entries / %d bytes, want %d / %d",
			after.Entries, after.Size, before.Entries, before.Size)
	}
	for _, e := range entries {
		mustHit(t, s2, e.Xorb, e.Start, e.End, 0)
		mustHit(t, s2, e.Xorb, e.End-1, e.End, 0)
	}
}

func TestDiskRestartEvictsOldestFirst(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 1<<30)
	var entries []*cache.Entry
	base := time.Now().Add(-10 * time.Hour)
	for i := range 4 {
		e := cachetest.MakeEntry(cachetest.Xorb(uint64(i)), 0, 8, 0)
		mustPut(t, s, e)
		entries = append(entries, e)
	}
	// Modification times order the rebuilt index: make entry 2 the oldest,
	// then 0, 3, 1.
	for i, age := range []time.Duration{3, 0, 4, 2} {
		mt := base.Add(-age * time.Hour)
		if err := os.Chtimes(entryPath(dir, entries[i].Key()), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for _, e := range entries {
		total += storedSize(e)
	}
	// Too small for the two oldest.
	s2 := newDisk(t, dir, total-storedSize(entries[2])-storedSize(entries[0])+1)
	if st := s2.Stats(); st.Entries != 2 || st.Evictions != 2 {
		t.Fatalf("after rebuild: %d entries, %d evictions; want 2, 2", st.Entries, st.Evictions)
	}
	mustMiss(t, s2, entries[2].Xorb, 0, 8)
	mustMiss(t, s2, entries[0].Xorb, 0, 8)
	mustHit(t, s2, entries[1].Xorb, 0, 8, 0)
	mustHit(t, s2, entries[3].Xorb, 0, 8, 0)
	if exists(entryPath(dir, entries[2].Key())) || exists(entryPath(dir, entries[0].Key())) {
		t.Error("entries evicted at startup still have files")
	}
}

func TestDiskScanIgnoresForeignFiles(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 1<<30)
	e := cachetest.MakeEntry(cachetest.Xorb(1), 0, 3, 0)
	mustPut(t, s, e)
	fan := filepath.Dir(entryPath(dir, e.Key()))
	old := time.Now().Add(-2 * time.Hour)
	write := func(name string, mtime time.Time) string {
		p := filepath.Join(fan, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	staleTmp := write(".tmp-123", old)
	freshTmp := write(".tmp-456", time.Now())
	junk := write("README", old)
	badRange := write(e.Xorb.String()+".5-3", old)
	wrongFan := filepath.Join(dir, "chunks-v2", "zz")
	if err := os.MkdirAll(wrongFan, 0o700); err != nil {
		t.Fatal(err)
	}
	misplaced := filepath.Join(wrongFan, filepath.Base(entryPath(dir, cachetest.MakeEntry(cachetest.Xorb(2), 0, 1, 0).Key())))
	if err := os.WriteFile(misplaced, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	s2 := newDisk(t, dir, 1<<30)
	if st := s2.Stats(); st.Entries != 1 || st.Size != storedSize(e) {
		t.Errorf("rebuilt index: %d entries, %d bytes; want 1, %d", st.Entries, st.Size, storedSize(e))
	}
	if exists(staleTmp) {
		t.Error("stale temporary file not removed")
	}
	for _, p := range []string{freshTmp, junk, badRange, misplaced} {
		if !exists(p) {
			t.Errorf("%s removed; only stale temporary files should be", filepath.Base(p))
		}
	}
	mustHit(t, s2, e.Xorb, 0, 3, 0)
}

// damage rewrites an entry file with f applied to its bytes.
func damage(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDiskCorruption(t *testing.T) {
	e := cachetest.MakeEntry(cachetest.Xorb(7), 0, 10, 0)
	hdr := int(storedSize(e)) - len(e.Data)
	for _, tc := range []struct {
		name string
		f    func([]byte) []byte
	}{
		{"data byte", func(b []byte) []byte { b[hdr+len(e.Data)/2] ^= 1; return b }},
		{"last data byte", func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }},
		{"offset", func(b []byte) []byte { b[60] ^= 1; return b }},
		{"hash", func(b []byte) []byte { b[100] ^= 1; return b }},
		{"magic", func(b []byte) []byte { b[0] = 'Y'; return b }},
		{"version", func(b []byte) []byte { b[7] = 1; return b }},
		{"truncated data", func(b []byte) []byte { return b[:len(b)-1] }},
		{"truncated header", func(b []byte) []byte { return b[:hdr-1] }},
		{"empty", func(b []byte) []byte { return nil }},
		{"trailing garbage", func(b []byte) []byte { return append(b, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newDisk(t, dir, 1<<30)
			mustPut(t, s, e)
			path := entryPath(dir, e.Key())
			damage(t, path, tc.f)
			mustMiss(t, s, e.Xorb, 0, 10)
			if exists(path) {
				t.Error("corrupt file not deleted")
			}
			st := s.Stats()
			if st.Corrupt != 1 || st.Entries != 0 || st.Size != 0 {
				t.Errorf("corrupt %d, entries %d, size %d; want 1, 0, 0", st.Corrupt, st.Entries, st.Size)
			}
			// The store recovers: a new Put is served again.
			mustPut(t, s, e)
			mustHit(t, s, e.Xorb, 2, 5, 0)
		})
	}
}

// A file holding another key's entry (renamed by hand, say) is corrupt.
func TestDiskWrongKeyInFile(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 1<<30)
	a := cachetest.MakeEntry(cachetest.Xorb(1), 0, 4, 0)
	b := cachetest.MakeEntry(cachetest.Xorb(1), 4, 8, 0)
	mustPut(t, s, a)
	mustPut(t, s, b)
	other, err := os.ReadFile(entryPath(dir, b.Key()))
	if err != nil {
		t.Fatal(err)
	}
	damage(t, entryPath(dir, a.Key()), func([]byte) []byte { return other })
	mustMiss(t, s, a.Xorb, 0, 4)
	mustHit(t, s, b.Xorb, 4, 8, 0)
}

// A large entry is read partially (header, then the chunks asked for): a
// damaged chunk is caught when it is read, and never served.
func TestDiskPartialReadCorruption(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 1<<30)
	e := cachetest.MakeEntry(cachetest.Xorb(9), 0, 64, 64<<10) // ~2 MiB, above the whole-read size
	mustPut(t, s, e)
	path := entryPath(dir, e.Key())
	hdr := int(storedSize(e)) - len(e.Data)
	damage(t, path, func(b []byte) []byte { b[hdr+int(e.Offsets[40])+3] ^= 4; return b })
	mustHit(t, s, e.Xorb, 10, 20, 64<<10) // chunk 40 is not read
	mustMiss(t, s, e.Xorb, 39, 41)
	if exists(path) {
		t.Error("corrupt file not deleted")
	}
}

func TestDiskVanishedFile(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 1<<30)
	e := cachetest.MakeEntry(cachetest.Xorb(3), 0, 5, 0)
	mustPut(t, s, e)
	if err := os.Remove(entryPath(dir, e.Key())); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, s, e.Xorb, 0, 5)
	if st := s.Stats(); st.Entries != 0 || st.Corrupt != 0 {
		t.Errorf("entries %d, corrupt %d; want 0, 0", st.Entries, st.Corrupt)
	}
}

// A wider Put supersedes the entries it covers, on disk too.
func TestDiskWiderPutRemovesCovered(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 1<<30)
	x := cachetest.Xorb(5)
	small := cachetest.MakeEntry(x, 3, 6, 0)
	wide := cachetest.MakeEntry(x, 0, 10, 0)
	mustPut(t, s, small)
	mustPut(t, s, wide)
	if exists(entryPath(dir, small.Key())) {
		t.Error("covered entry's file kept")
	}
	if st := s.Stats(); st.Entries != 1 || st.Size != storedSize(wide) {
		t.Errorf("entries %d, size %d; want 1, %d", st.Entries, st.Size, storedSize(wide))
	}
	mustHit(t, s, x, 3, 6, 0)
}

// Two stores on one directory (as two processes would be): each sees what
// the other wrote once it rebuilds its index, and a file deleted by one is a
// miss, not an error, for the other.
func TestDiskSharedDirectory(t *testing.T) {
	dir := t.TempDir()
	a := newDisk(t, dir, 1<<30)
	b := newDisk(t, dir, 1<<30)
	e := cachetest.MakeEntry(cachetest.Xorb(1), 0, 6, 0)
	mustPut(t, a, e)
	mustMiss(t, b, e.Xorb, 0, 6) // b's index predates the write
	mustPut(t, b, e)             // rewriting the same key is harmless
	mustHit(t, a, e.Xorb, 0, 6, 0)
	mustHit(t, b, e.Xorb, 1, 2, 0)
	c := newDisk(t, dir, 1<<30)
	mustHit(t, c, e.Xorb, 0, 6, 0)

	if err := os.Remove(entryPath(dir, e.Key())); err != nil { // "evicted by a"
		t.Fatal(err)
	}
	mustMiss(t, b, e.Xorb, 0, 6)
	mustMiss(t, c, e.Xorb, 2, 3)
}

func TestDiskConfigValidate(t *testing.T) {
	for _, cfg := range []cache.DiskConfig{{}, {Dir: t.TempDir()}, {Dir: t.TempDir(), MaxBytes: -1}} {
		if _, err := cache.NewDisk(cfg); err == nil {
			t.Errorf("NewDisk(%+v) accepted", cfg)
		}
	}
}

// Many goroutines putting and getting overlapping ranges in a store small
// enough to evict all the time: every hit must still be right.
func TestConcurrentChurn(t *testing.T) {
	for name, s := range map[string]cache.Store{
		"memory": newMemory(t, 64<<10),
		"disk":   newDisk(t, t.TempDir(), 64<<10),
	} {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Go(func() {
					for i := range 60 {
						x := cachetest.Xorb(uint64((w + i) % 5))
						start := uint32((w*7 + i) % 11)
						end := start + 1 + uint32((w+i*3)%9)
						if (w+i)%3 == 0 {
							if err := s.Put(bg, cachetest.MakeEntry(x, start, end, 2048)); err != nil {
								t.Error(err)
							}
							continue
						}
						got, err := s.Get(bg, x, start, end)
						if errors.Is(err, cache.ErrNotFound) {
							continue
						}
						if err != nil {
							t.Error(err)
							continue
						}
						if d := cachetest.Equal(got, cachetest.MakeEntry(x, start, end, 2048)); d != "" {
							t.Error(d)
						}
					}
				})
			}
			wg.Wait()
			st := s.(cache.StatsReporter).Stats()
			if st.Size > st.Capacity || st.Evictions == 0 || st.Hits == 0 {
				t.Errorf("size %d of %d, %d evictions, %d hits", st.Size, st.Capacity, st.Evictions, st.Hits)
			}
		})
	}
}

// bigEntry is a 64 MiB xorb: 1024 chunks of 64 KiB.
func bigEntry() *cache.Entry {
	const n, size = 1024, 64 << 10
	e := &cache.Entry{Xorb: cachetest.Xorb(1), Start: 0, End: n, Data: xettest.SplitMix64(1, n*size)}
	for i := range n + 1 {
		e.Offsets = append(e.Offsets, uint32(i*size))
	}
	for i := range n {
		e.Hashes = append(e.Hashes, merklehash.ChunkHash(e.Data[i*size:(i+1)*size]))
	}
	return e
}

func BenchmarkDisk(b *testing.B) {
	e := bigEntry()
	b.Run("Put64MiB", func(b *testing.B) {
		// Room for four entries: steady state evicts one per Put.
		s := newDisk(b, b.TempDir(), 4*storedSize(e)+1)
		b.SetBytes(int64(len(e.Data)))
		for i := uint64(0); b.Loop(); i++ {
			e := *e
			e.Xorb = cachetest.Xorb(i)
			mustPut(b, s, &e)
		}
	})
	s := newDisk(b, b.TempDir(), 1<<30)
	mustPut(b, s, e)
	b.Run("Get64MiB", func(b *testing.B) {
		b.SetBytes(int64(len(e.Data)))
		for b.Loop() {
			if _, err := s.Get(bg, e.Xorb, 0, 1024); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetOneChunkOf64MiB", func(b *testing.B) {
		b.SetBytes(int64(len(e.Chunk(500))))
		for b.Loop() {
			if _, err := s.Get(bg, e.Xorb, 500, 501); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMemoryGet64MiB(b *testing.B) {
	e := bigEntry()
	s := newMemory(b, 1<<30)
	mustPut(b, s, e)
	b.SetBytes(int64(len(e.Data)))
	for b.Loop() {
		if _, err := s.Get(bg, e.Xorb, 0, 1024); err != nil {
			b.Fatal(err)
		}
	}
}

// Delete also removes overlapping files that another process sharing the
// directory wrote (not in this store's index).
func TestDiskDeleteSharedDirectory(t *testing.T) {
	dir := t.TempDir()
	a := newDisk(t, dir, 1<<30)
	b := newDisk(t, dir, 1<<30)
	x := cachetest.Xorb(1)
	gone := cachetest.MakeEntry(x, 0, 5, 0)
	kept := cachetest.MakeEntry(x, 5, 9, 0)
	mustPut(t, a, gone)
	mustPut(t, a, kept)
	if err := b.Delete(bg, x, 2, 3); err != nil {
		t.Fatal(err)
	}
	if exists(entryPath(dir, gone.Key())) || !exists(entryPath(dir, kept.Key())) {
		t.Error("Delete did not remove exactly the overlapping file")
	}
	mustMiss(t, a, x, 0, 5) // a's index still lists it: a miss, not an error
	mustHit(t, a, x, 5, 9, 0)
}

// A cache directory of an earlier release keeps its entries under
// chunks-v1: they are never served, and the old directory is removed in the
// background.
func TestDiskOldLayoutRemoved(t *testing.T) {
	dir := t.TempDir()
	e := cachetest.MakeEntry(cachetest.Xorb(1), 0, 3, 0)
	mustPut(t, newDisk(t, dir, 1<<30), e)
	name := filepath.Base(entryPath(dir, e.Key()))
	old := filepath.Join(dir, "chunks-v1", name[:2], name)
	if err := os.MkdirAll(filepath.Dir(old), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(entryPath(dir, e.Key()), old); err != nil {
		t.Fatal(err)
	}

	s := newDisk(t, dir, 1<<30)
	mustMiss(t, s, e.Xorb, 0, 3)
	if st := s.Stats(); st.Entries != 0 || st.Size != 0 {
		t.Errorf("old layout indexed: %d entries, %d bytes", st.Entries, st.Size)
	}
	deadline := time.Now().Add(10 * time.Second)
	for exists(filepath.Join(dir, "chunks-v1")) {
		if time.Now().After(deadline) {
			t.Fatal("chunks-v1 still there after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !exists(filepath.Join(dir, "chunks-v2")) {
		t.Error("no chunks-v2 directory")
	}
}
