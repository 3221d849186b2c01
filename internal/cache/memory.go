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
type Memory struct {
	max int64

	mu  sync.Mutex
	idx *index[*Entry]

	c counters
}

var (
	_ Store         = (*Memory)(nil)
	_ StatsReporter = (*Memory)(nil)
)

// NewMemory returns an empty memory store holding at most maxBytes, counted
// as data plus offsets, hashes and a fixed per-entry overhead.
func NewMemory(maxBytes int64) (*Memory, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("cache: memory size %d, want > 0", maxBytes)
	}
	return &Memory{max: maxBytes, idx: newIndex[*Entry]()}, nil
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
	e := it.val
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
	m.idx.add(e.Key(), size, &stored)
	m.c.put(len(e.Data))
	for m.idx.size > m.max {
		m.idx.remove(m.idx.oldest())
		m.c.evictions.Add(1)
	}
	return nil
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
	s.Entries, s.Size = int64(m.idx.len()), m.idx.size
	m.mu.Unlock()
	s.Capacity = m.max
	return s
}
