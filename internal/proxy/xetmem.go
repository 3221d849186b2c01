package proxy

import (
	"context"

	"github.com/xetproxy/xetproxy/internal/xorb"
)

// The memory of a xorb range served to a Xet client (xetcas.go) is
// charged to the engine's budget, as a stream's is: the cache entry it
// hands out records from, charged before it is read and given back once
// its last record is out, and the upstream decoder's buffers, charged
// before the range is fetched and given back at the end. A xorbReader
// waits for room (bounded by its context) holding nothing, so waiting
// never stops what would make the room: the readers holding the budget
// need only their clients to read. With the budget full, it reads one
// chunk of an entry at a time; an empty budget grants it one whatever the
// limit, so every request makes progress. The fill segment its upstream
// chunks go to comes from the fill budget, without waiting (xorbFill).

// tapCap bounds the stored record a LayoutUpstream reader keeps.
const tapCap = xorb.HeaderSize + xorb.MaxCompressedSize

// acquireSome takes as many whole units of n bytes (a multiple of unit)
// as fit in the budget, at least one: it waits until one does. An empty
// budget grants a unit larger than the limit, so that it cannot wait for
// ever. It returns what it took.
func (b *budget) acquireSome(ctx context.Context, n, unit int64) (int64, error) {
	return b.take(ctx, func(used, limit int64) (int64, bool) {
		free := limit - used
		if used == 0 {
			free = max(free, unit)
		}
		return min(n, free/unit*unit), free >= unit
	}, nil)
}

// nextEntry lets go of the current entry and reads the next chunks of
// the range from the cache (nil on a miss), charging them before the
// read: as many as fit of the segment, at maxChunk each (no chunk is
// larger, so the read never overdraws), then what the entry really
// holds.
func (xr *xorbReader) nextEntry() error {
	xr.dropEntry()
	hi := min(segmentEnd(xr.c), xr.src.Range.Chunks.End)
	took, err := xr.e.budget.acquireSome(xr.ctx, int64(hi-xr.c)*maxChunk, maxChunk)
	if err != nil {
		return err
	}
	hi = xr.c + uint32(took/maxChunk)
	xr.entHeld = took
	xr.ent = xr.e.cacheGet(xr.ctx, xr.src.Xorb, xr.c, hi, took)
	if xr.ent == nil {
		xr.dropEntry()
		return nil
	}
	if n := int64(len(xr.ent.Data)); n < took {
		xr.e.budget.release(took - n)
		xr.entHeld = n
	}
	return nil
}

// dropEntry gives the current entry back to its store, and its charge to
// the budget; no record handed out refers to it any more.
func (xr *xorbReader) dropEntry() {
	if xr.ent != nil {
		xr.ent.Release()
		xr.ent = nil
	}
	if xr.entHeld > 0 {
		xr.e.budget.release(xr.entHeld)
		xr.entHeld = 0
	}
}

// chargeDecoder charges the decoder's buffers (the chunk it decodes into,
// the compressed payload, and for LayoutUpstream the stored record),
// waiting for room.
func (xr *xorbReader) chargeDecoder() error {
	if xr.decHeld > 0 {
		return nil
	}
	n := bufCost(maxChunk) + xorb.MaxCompressedSize
	if xr.src.Layout == LayoutUpstream {
		n += tapCap
	}
	took, err := xr.e.budget.acquireSome(xr.ctx, n, n)
	if err != nil {
		return err
	}
	xr.decHeld = took
	return nil
}

func (xr *xorbReader) releaseDecoder() {
	if xr.decHeld > 0 {
		xr.e.budget.release(xr.decHeld)
		xr.decHeld = 0
	}
}
