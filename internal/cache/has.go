package cache

import (
	"context"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Prober is a Store that can tell whether a Get would hit without reading
// the entry. A reader that has to charge a memory budget before it reads
// uses it to decide, at no memory cost, whether to start fetching a range
// elsewhere (it is missing) or to wait for room and read it (it is here).
type Prober interface {
	// Has reports whether Get(ctx, xorb, start, end) would find a stored
	// entry now. true is a hint (the entry can go before the Get, or a
	// tier may not know without reading: it then answers true); false
	// means the Get would miss.
	Has(ctx context.Context, xorb merklehash.Hash, start, end uint32) bool
}

// MayHave is st.Has for a Prober and true for any other store (only a
// read can tell).
func MayHave(ctx context.Context, st Store, xorb merklehash.Hash, start, end uint32) bool {
	if p, ok := st.(Prober); ok {
		return p.Has(ctx, xorb, start, end)
	}
	return true
}

// Has implements Prober.
func (m *Memory) Has(_ context.Context, xorb merklehash.Hash, start, end uint32) bool {
	if checkRange(start, end) != nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.idx.covering(xorb, start, end) != nil
}

// Has implements Prober: the index, as Get consults it.
func (d *Disk) Has(_ context.Context, xorb merklehash.Hash, start, end uint32) bool {
	if checkRange(start, end) != nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idx.covering(xorb, start, end) != nil
}

// Has implements Prober: the keys this instance knows of, after listing
// the xorb's objects as Get would. Without listing, or when the listing
// fails, only a read can tell: true.
func (s *S3) Has(ctx context.Context, xorb merklehash.Hash, start, end uint32) bool {
	if checkRange(start, end) != nil {
		return false
	}
	want := Key{Xorb: xorb, Start: start, End: end}
	if _, _, ok := s.lookup(want); ok || s.cfg.DisableList {
		return true
	}
	if !s.listedRecently(xorb) {
		if err := s.list(ctx, xorb); err != nil {
			return true
		}
		_, _, ok := s.lookup(want)
		return ok
	}
	return false
}

// Has implements Prober: either tier.
func (t *Tiered) Has(ctx context.Context, xorb merklehash.Hash, start, end uint32) bool {
	return MayHave(ctx, t.local, xorb, start, end) || MayHave(ctx, t.shared, xorb, start, end)
}
