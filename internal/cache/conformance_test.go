package cache_test

import (
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
)

func TestConformanceMemory(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store { return newMemory(t, 64<<20) })
}

func TestConformanceDisk(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store { return newDisk(t, t.TempDir(), 64<<20) })
}

func TestConformanceDiskSync(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store {
		d, err := cache.NewDisk(cache.DiskConfig{Dir: t.TempDir(), MaxBytes: 64 << 20, Sync: true})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

func TestConformanceS3(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store {
		return newS3Store(t, newFakeS3(t).config("chunks"))
	})
}

func TestConformanceS3NoList(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Store {
		cfg := newFakeS3(t).config("")
		cfg.DisableList = true
		return newS3Store(t, cfg)
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
		shared := newS3Store(t, newFakeS3(t).config("c/"))
		return newTiered(t, newDisk(t, t.TempDir(), 64<<20), shared, cache.TieredConfig{SyncShared: true})
	})
}
