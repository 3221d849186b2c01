package cache_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

func TestConformanceMemory(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store { return newMemory(t, 64<<20) })
}

func TestConformanceDisk(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store {
		dir := t.TempDir()
		return diskUnderTest{newDisk(t, dir, 64<<20), dir}
	})
}

func TestConformanceDiskSync(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store {
		dir := t.TempDir()
		d, err := cache.NewDisk(cache.DiskConfig{Dir: dir, MaxBytes: 64 << 20, Sync: true})
		if err != nil {
			t.Fatal(err)
		}
		return diskUnderTest{d, dir}
	})
}

func TestConformanceS3(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store {
		f := newFakeS3(t)
		return s3UnderTest{newS3Store(t, f.config("chunks")), f, "chunks/"}
	})
}

func TestConformanceS3NoList(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store {
		f := newFakeS3(t)
		cfg := f.config("")
		cfg.DisableList = true
		return s3UnderTest{newS3Store(t, cfg), f, ""}
	})
}

func TestConformanceTieredMemoryS3(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store {
		shared := newS3Store(t, newFakeS3(t).config("c/"))
		return newTiered(t, newMemory(t, 64<<20), shared, cache.TieredConfig{})
	})
}

func TestConformanceTieredDiskS3Sync(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store {
		dir, f := t.TempDir(), newFakeS3(t)
		local := diskUnderTest{newDisk(t, dir, 64<<20), dir}
		shared := s3UnderTest{newS3Store(t, f.config("c/")), f, "c/"}
		ts := newTiered(t, local.Disk, shared.S3, cache.TieredConfig{SyncShared: true})
		return tieredUnderTest{ts, local, shared}
	})
}

// manifestPath is the documented location of a manifest file
// (docs/cache.md).
func manifestPath(dir string, xorb merklehash.Hash) string {
	s := xorb.String()
	return filepath.Join(dir, "manifests-v1", s[:2], s)
}

// manifestObject is the documented object key of a manifest.
func manifestObject(prefix string, xorb merklehash.Hash) string {
	return prefix + "manifests/" + xorb.String()
}

// diskUnderTest is a Disk with a backdoor to its manifest files.
type diskUnderTest struct {
	*cache.Disk
	dir string
}

func (d diskUnderTest) StoredManifest(t *testing.T, xorb merklehash.Hash) []byte {
	t.Helper()
	b, err := os.ReadFile(manifestPath(d.dir, xorb))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (d diskUnderTest) SetStoredManifest(t *testing.T, xorb merklehash.Hash, b []byte) {
	t.Helper()
	p := manifestPath(d.dir, xorb)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// s3UnderTest is an S3 store with a backdoor to its bucket.
type s3UnderTest struct {
	*cache.S3
	f      *fakeS3
	prefix string // as the store uses it, with its "/"
}

func (s s3UnderTest) StoredManifest(t *testing.T, xorb merklehash.Hash) []byte {
	t.Helper()
	return s.f.object(t, manifestObject(s.prefix, xorb))
}

func (s s3UnderTest) SetStoredManifest(t *testing.T, xorb merklehash.Hash, b []byte) {
	t.Helper()
	s.f.setObject(t, manifestObject(s.prefix, xorb), b)
}

// tieredUnderTest is a Tiered store with backdoors to both tiers: the
// stored manifest is the local tier's, else the shared tier's, and a
// rewrite reaches both.
type tieredUnderTest struct {
	*cache.Tiered
	local  diskUnderTest
	shared s3UnderTest
}

func (ts tieredUnderTest) StoredManifest(t *testing.T, xorb merklehash.Hash) []byte {
	t.Helper()
	flush(t, ts.Tiered)
	if b := ts.local.StoredManifest(t, xorb); b != nil {
		return b
	}
	return ts.shared.StoredManifest(t, xorb)
}

func (ts tieredUnderTest) SetStoredManifest(t *testing.T, xorb merklehash.Hash, b []byte) {
	t.Helper()
	flush(t, ts.Tiered)
	ts.local.SetStoredManifest(t, xorb, b)
	ts.shared.SetStoredManifest(t, xorb, b)
}
