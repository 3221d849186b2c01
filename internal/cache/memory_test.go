package cache_test

import (
	"errors"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
)

// memSize mirrors the documented accounting of the memory store: data,
// offsets, hashes and 160 bytes per entry.
func memSize(e *cache.Entry) int64 {
	return int64(len(e.Data)) + 4*int64(len(e.Offsets)) + 32*int64(len(e.Hashes)) + 160
}

func TestMemoryLRU(t *testing.T) {
	x := cachetest.MakeEntry(cachetest.Xorb(1), 0, 8, 0)
	lruScenario(t, newMemory(t, 3*memSize(x)+memSize(x)/2), memSize)
}

// Eviction keeps the byte bound however the entries are sized, and always
// drops the least recently used first.
func TestMemoryByteBound(t *testing.T) {
	const capacity = 100 << 10
	s := newMemory(t, capacity)
	var order []*cache.Entry // most recent last
	for i := range 200 {
		e := cachetest.MakeEntry(cachetest.Xorb(uint64(i)), 0, uint32(1+i%7), 4096)
		mustPut(t, s, e)
		order = append(order, e)
		st := s.Stats()
		if st.Size > capacity {
			t.Fatalf("after %d puts: size %d over capacity %d", i+1, st.Size, capacity)
		}
	}
	// The survivors are exactly the newest entries that fit.
	var room int64 = capacity
	kept := 0
	for i := len(order) - 1; i >= 0; i-- {
		if room < memSize(order[i]) {
			break
		}
		room -= memSize(order[i])
		kept++
	}
	for i, e := range order {
		_, err := s.Get(bg, e.Xorb, e.Start, e.End)
		if want := i >= len(order)-kept; want != (err == nil) {
			t.Fatalf("entry %d of %d (newest %d kept): Get = %v", i, len(order), kept, err)
		}
	}
	if st := s.Stats(); st.Entries != int64(kept) || st.Evictions != uint64(len(order)-kept) {
		t.Errorf("entries %d, evictions %d; want %d, %d", st.Entries, st.Evictions, kept, len(order)-kept)
	}
}

func TestMemoryTooLarge(t *testing.T) {
	e := cachetest.MakeEntry(cachetest.Xorb(1), 0, 4, 0)
	s := newMemory(t, memSize(e)-1)
	if err := s.Put(bg, e); !errors.Is(err, cache.ErrTooLarge) {
		t.Fatalf("Put = %v, want ErrTooLarge", err)
	}
	if _, err := cache.NewMemory(0); err == nil {
		t.Error("NewMemory(0) accepted")
	}
}

func TestMemoryWiderPutSupersedes(t *testing.T) {
	s := newMemory(t, 1<<20)
	x := cachetest.Xorb(2)
	mustPut(t, s, cachetest.MakeEntry(x, 2, 4, 0))
	mustPut(t, s, cachetest.MakeEntry(x, 5, 7, 0))
	wide := cachetest.MakeEntry(x, 0, 10, 0)
	mustPut(t, s, wide)
	if st := s.Stats(); st.Entries != 1 || st.Size != memSize(wide) {
		t.Errorf("entries %d, size %d; want 1, %d", st.Entries, st.Size, memSize(wide))
	}
	mustHit(t, s, x, 2, 4, 0)
	mustHit(t, s, x, 5, 7, 0)
}

// Of two overlapping entries, the one with fewer chunks serves a lookup in
// the overlap, so only that one is refreshed.
func TestMemorySmallestCoveringServes(t *testing.T) {
	x := cachetest.Xorb(3)
	wide := cachetest.MakeEntry(x, 0, 20, 0)
	narrow := cachetest.MakeEntry(x, 15, 25, 0)
	other := cachetest.MakeEntry(cachetest.Xorb(4), 0, 20, 0)
	s := newMemory(t, memSize(wide)+memSize(narrow)+memSize(other)-1)
	mustPut(t, s, narrow)
	mustPut(t, s, wide)
	mustHit(t, s, x, 16, 18, 0) // inside both: served by (and refreshes) narrow
	mustPut(t, s, other)        // so wide is now the least recently used
	mustMiss(t, s, x, 0, 20)
	mustHit(t, s, x, 15, 25, 0)
}
