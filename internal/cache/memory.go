package cache

import (
	"context"
	"fmt"
	"sync"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// memoryOverhead approximates the bookkeeping of one memory entry (list
// element, item, map slots) so that many tiny entries still count.
const memoryOverhead = 160

// Memory is a Store that keeps entries in process memory, bounded by bytes
// and evicting the least recently used entry first. It stores the caller's
// slices as they are (Put does not copy) and returns slices of them.
//
// It is also a ManifestStore. Manifests count against the same capacity as
// entries (36 bytes a chunk plus the per-item overhead) and take part in the
// same least-recently-used eviction, so one bound covers all the memory.
type Memory struct {
	max int64

	mu  sync.Mutex
	idx *index[memItem]

	c counters
}

// memItem is what an index item of a Memory holds: an entry or a manifest.
type memItem struct {
	e *Entry
	m *Manifest
}

var (
	_ Store         = (*Memory)(nil)
	_ ManifestStore = (*Memory)(nil)
	_ StatsReporter = (*Memory)(nil)
)

// NewMemory returns an empty memory store holding at most maxBytes, counted
// as data plus offsets, hashes and a fixed per-entry overhead.
func NewMemory(maxBytes int64) (*Memory, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("cache: memory size %d, want > 0", maxBytes)
	}
	return &Memory{max: maxBytes, idx: newIndex[memItem]()}, nil
}

func memorySize(e *Entry) int64 {
	return int64(len(e.Data)) + 4*int64(len(e.Offsets)) + merklehash.Size*int64(len(e.Hashes)) + memoryOverhead
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, xorb merklehash.Hash, start, end uint32) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkRange(start, end); err != nil {
		return nil, err
	}
	m.mu.Lock()
	it := m.idx.covering(xorb, start, end)
	if it == nil {
		m.mu.Unlock()
		m.c.misses.Add(1)
		return nil, fmt.Errorf("%w: %s", ErrNotFound, Key{Xorb: xorb, Start: start, End: end})
	}
	m.idx.touch(it)
	e := it.val.e
	m.mu.Unlock()
	out, err := e.Slice(start, end)
	if err != nil {
		return nil, err
	}
	m.c.hit(len(out.Data))
	return out, nil
}

// Put implements Store.
func (m *Memory) Put(ctx context.Context, e *Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.Validate(); err != nil {
		return err
	}
	size := memorySize(e)
	if size > m.max {
		return fmt.Errorf("%w: %s is %d bytes, capacity %d", ErrTooLarge, e.Key(), size, m.max)
	}
	stored := *e
	m.mu.Lock()
	defer m.mu.Unlock()
	if it := m.idx.covering(e.Xorb, e.Start, e.End); it != nil {
		m.idx.touch(it)
		return nil
	}
	for _, it := range m.idx.covered(e.Key()) {
		m.idx.remove(it) // superseded by the new, wider entry
	}
	m.idx.add(e.Key(), size, memItem{e: &stored})
	m.c.put(len(e.Data))
	m.evictLocked()
	return nil
}

// evictLocked drops least recently used items until the store is within its
// capacity. The caller holds m.mu.
func (m *Memory) evictLocked() {
	for m.idx.size > m.max {
		m.idx.remove(m.idx.oldest())
		m.c.evictions.Add(1)
	}
}

// manifestMemorySize is what a manifest of n chunks counts against the
// capacity.
func manifestMemorySize(n int) int64 { return manifestPer*int64(n) + memoryOverhead }

// PutManifest implements ManifestStore. It stores a copy of mf, verified
// after copying, so later changes to mf's slices do not reach the store. A
// manifest larger than the whole capacity fails with ErrTooLarge.
func (m *Memory) PutManifest(ctx context.Context, mf *Manifest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stored := cloneManifest(mf)
	if err := stored.Verify(); err != nil {
		return err
	}
	size := manifestMemorySize(len(stored.Hashes))
	if size > m.max {
		return fmt.Errorf("%w: manifest of %s is %d bytes, capacity %d", ErrTooLarge, mf.Xorb, size, m.max)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if it := m.idx.manifest(stored.Xorb); it != nil {
		m.idx.touch(it)
		return nil
	}
	m.idx.addManifest(stored.Xorb, size, memItem{m: stored})
	m.evictLocked()
	return nil
}

// GetManifest implements ManifestStore. The manifest returned is the
// store's own copy: the caller must not modify it.
func (m *Memory) GetManifest(ctx context.Context, xorb merklehash.Hash) (*Manifest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	it := m.idx.manifest(xorb)
	if it == nil {
		return nil, fmt.Errorf("%w: manifest of %s", ErrNotFound, xorb)
	}
	m.idx.touch(it)
	return it.val.m, nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, xorb merklehash.Hash, start, end uint32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkRange(start, end); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, it := range m.idx.overlapping(Key{Xorb: xorb, Start: start, End: end}) {
		m.idx.remove(it)
	}
	return nil
}

// Stats implements StatsReporter.
func (m *Memory) Stats() Stats {
	s := m.c.snapshot()
	m.mu.Lock()
	s.Entries, s.Manifests, s.Size = int64(m.idx.len()), int64(m.idx.manifestCount()), m.idx.size
	m.mu.Unlock()
	s.Capacity = m.max
	return s
}
