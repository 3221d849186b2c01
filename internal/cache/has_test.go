package cache_test

import (
	"context"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
)

// Has answers from what a store knows without reading an entry: false
// before a Put and after a Delete, true for a stored range and the ranges
// it covers. (The conformance tests check that Has never denies a hit.)
func TestHas(t *testing.T) {
	stores := map[string]func(t *testing.T) cache.Store{
		"memory": func(t *testing.T) cache.Store { return newMemory(t, 64<<20) },
		"disk":   func(t *testing.T) cache.Store { return newDisk(t, t.TempDir(), 64<<20) },
		"s3":     func(t *testing.T) cache.Store { return newS3Store(t, newFakeS3(t).config("c/")) },
		"tiered": func(t *testing.T) cache.Store {
			return newTiered(t, newMemory(t, 64<<20), newS3Store(t, newFakeS3(t).config("c/")), cache.TieredConfig{SyncShared: true})
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			p, ok := s.(cache.Prober)
			if !ok {
				t.Fatalf("%T is not a Prober", s)
			}
			x := cachetest.Xorb(7)
			if p.Has(ctx, x, 0, 64) {
				t.Fatal("Has on an empty store")
			}
			if err := s.Put(ctx, cachetest.MakeEntry(x, 0, 64, 1024)); err != nil {
				t.Fatal(err)
			}
			for _, r := range [][2]uint32{{0, 64}, {3, 10}, {63, 64}} {
				if !p.Has(ctx, x, r[0], r[1]) {
					t.Errorf("Has [%d, %d) = false after the Put of [0, 64)", r[0], r[1])
				}
			}
			for _, r := range [][2]uint32{{0, 65}, {64, 70}, {5, 5}} {
				if p.Has(ctx, x, r[0], r[1]) {
					t.Errorf("Has [%d, %d) = true, [0, 64) stored", r[0], r[1])
				}
			}
			if err := s.Delete(ctx, x, 0, 64); err != nil {
				t.Fatal(err)
			}
			if p.Has(ctx, x, 0, 64) {
				t.Error("Has after Delete")
			}
		})
	}
}
