package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
)

// realXorb is a xorb made of real content: random bytes cut by the Xet
// chunker, chunk hashes and the xorb hash computed from them, so that its
// manifest proves it.
type realXorb struct {
	m    *cache.Manifest
	data []byte
	offs []uint32 // offset of each chunk in data, and len(data)
}

func newRealXorb(t testing.TB, seed uint64) *realXorb {
	t.Helper()
	m, data := cachetest.MakeManifest(seed, 640<<10)
	if m.Len() < 4 {
		t.Fatalf("premise: xorb of %d chunks, want at least 4", m.Len())
	}
	x := &realXorb{m: m, data: data, offs: []uint32{0}}
	for _, s := range m.Sizes {
		x.offs = append(x.offs, x.offs[len(x.offs)-1]+s)
	}
	return x
}

func (x *realXorb) n() uint32 { return x.m.Len() }

// entry returns the valid entry of chunks [start, end), in fresh memory.
func (x *realXorb) entry(start, end uint32) *cache.Entry {
	base := x.offs[start]
	e := &cache.Entry{
		Xorb:   x.m.Xorb,
		Start:  start,
		End:    end,
		Hashes: slices.Clone(x.m.Hashes[start:end]),
		Data:   slices.Clone(x.data[base:x.offs[end]]),
	}
	for i := start; i <= end; i++ {
		e.Offsets = append(e.Offsets, x.offs[i]-base)
	}
	return e
}

func (x *realXorb) key(start, end uint32) cache.Key {
	return cache.Key{Xorb: x.m.Xorb, Start: start, End: end}
}

// encodeEntry returns the stored form of e as the package writes it: put
// into a scratch disk store (Put checks the structure, not the content).
func encodeEntry(t testing.TB, e *cache.Entry) []byte {
	t.Helper()
	dir := t.TempDir()
	d := newDisk(t, dir, 1<<30)
	if err := d.Put(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return readFile(t, entryPath(dir, e.Key()))
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func put(t testing.TB, d *cache.Disk, e *cache.Entry) {
	t.Helper()
	if err := d.Put(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func putManifest(t testing.TB, d *cache.Disk, m *cache.Manifest) {
	t.Helper()
	if err := d.PutManifest(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

func setMtime(t testing.TB, path string, mt time.Time) {
	t.Helper()
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

// makeStaging creates a staging folder as a server does (folder, lock
// file); with hold, the lock is held (by an open file description of this
// process, which conflicts with any other) until the test ends.
func makeStaging(t testing.TB, dir, name string, hold bool) string {
	t.Helper()
	p := filepath.Join(dir, cache.StagingDirName, name)
	if err := os.MkdirAll(filepath.Join(p, "chunks-v2", "ab"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(p, "chunks-v2", "ab", "staged"), make([]byte, 1000))
	f, err := os.OpenFile(filepath.Join(p, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if hold {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
	} else {
		f.Close()
	}
	return p
}

func TestScanDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := newDisk(t, dir, 1<<30)
	a, b := newRealXorb(t, 1), newRealXorb(t, 2)
	ents := []*cache.Entry{a.entry(0, 2), a.entry(2, a.n()), b.entry(1, 3)}
	for _, e := range ents {
		put(t, d, e)
	}
	putManifest(t, d, a.m)
	live := makeStaging(t, dir, "4242-live", true)
	dead := makeStaging(t, dir, "4343-dead", false)
	young := makeStaging(t, dir, "4444-young", false)
	for _, p := range []string{live, dead} {
		setMtime(t, p, time.Now().Add(-time.Hour))
	}
	writeFile(t, filepath.Join(filepath.Dir(entryPath(dir, ents[0].Key())), ".tmp-123"), []byte("partial"))
	old := filepath.Join(dir, "chunks-v1", "ab")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(old, "x"), make([]byte, 300))

	s, err := cache.ScanDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Entries) != len(ents) || len(s.Manifests) != 1 {
		t.Fatalf("%d entries, %d manifests; want %d, 1", len(s.Entries), len(s.Manifests), len(ents))
	}
	for i, f := range s.Entries {
		if i > 0 && f.Key.Xorb.String()+"/" < s.Entries[i-1].Key.Xorb.String()+"/" {
			t.Errorf("entries not sorted by xorb: %s after %s", f.Key, s.Entries[i-1].Key)
		}
		var e *cache.Entry
		for _, c := range ents {
			if c.Key() == f.Key {
				e = c
			}
		}
		if e == nil {
			t.Fatalf("listed %s, never put", f.Key)
		}
		if f.Kind != cache.KindEntry || f.Path != entryPath(dir, f.Key) || f.DecodedBytes() != int64(len(e.Data)) {
			t.Errorf("%s: kind %v, path %s, decoded %d; want entry, %s, %d", f.Key, f.Kind, f.Path, f.DecodedBytes(), entryPath(dir, f.Key), len(e.Data))
		}
	}
	if m := s.Manifests[0]; m.Kind != cache.KindManifest || m.Key.Xorb != a.m.Xorb || m.Path != manifestPath(dir, a.m.Xorb) {
		t.Errorf("manifest listed as %+v", m)
	}
	if got, want := s.Bytes(), d.Stats().Size; got != want {
		t.Errorf("Bytes() = %d, the store counts %d", got, want)
	}
	if len(s.Temp) != 1 || s.Temp[0].Size != int64(len("partial")) {
		t.Errorf("temp files %+v, want the one", s.Temp)
	}
	if len(s.Staging) != 3 {
		t.Fatalf("staging folders %+v, want 3", s.Staging)
	}
	for _, f := range s.Staging {
		switch f.Path {
		case live:
			if !f.Live || !f.Locked || f.Recent || f.PID != 4242 {
				t.Errorf("live folder: %+v", f)
			}
		case dead:
			if f.Live || !f.Locked || f.Recent || f.PID != 4343 {
				t.Errorf("dead folder: %+v", f)
			}
		case young:
			// Not probed: presumed live.
			if !f.Live || !f.Locked || !f.Recent || f.PID != 4444 {
				t.Errorf("young folder: %+v", f)
			}
		default:
			t.Errorf("unexpected folder %s", f.Path)
		}
		if f.Files != 2 || f.Bytes != 1000 {
			t.Errorf("%s: %d files, %d bytes; want 2 (lock included), 1000", f.Path, f.Files, f.Bytes)
		}
	}
	if len(s.OldLayouts) != 1 || s.OldLayouts[0].Bytes != 300 {
		t.Errorf("old layouts %+v", s.OldLayouts)
	}
	// Listing changed nothing: the temporary file and the dead folder are
	// there, the dead folder's lock is free again (a server could take
	// it), the live one's still held.
	if _, err := os.Stat(dead); err != nil {
		t.Error("the scan removed a staging folder")
	}
	lf, err := os.Open(filepath.Join(dead, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Errorf("the dead folder's lock after the scan: %v", err)
	}
	syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	s2, err := cache.ScanDir(ctx, dir)
	if err != nil || len(s2.Temp) != 1 || len(s2.Staging) != 3 {
		t.Errorf("a second scan sees another directory: %v", err)
	}
	for _, f := range s2.Staging {
		if f.Path == live && !f.Live {
			t.Error("the live folder's lock is no longer held")
		}
	}

	if _, err := cache.ScanDir(ctx, filepath.Join(dir, "missing")); err == nil {
		t.Error("ScanDir of a missing directory: no error")
	}
}
