package cache

import (
	"bytes"
	"context"
	"runtime"
	"testing"
)

// Reads of a disk entry borrow their buffer and Release gives it back, for
// sub-ranges as for whole entries: a server sending ranges of the same
// entries over and over allocates next to nothing per read (new memory is
// cleared by the runtime and faulted in by the kernel, which costs more
// than the read). Whole reads and ranges of another size class do not take
// each other's buffers.
func TestDiskReadsReuseReleasedBuffers(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers on purpose")
	}
	ctx := context.Background()
	d, err := NewDisk(DiskConfig{Dir: t.TempDir(), MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	e := testEntry(5, 0, 64, 64<<10) // 4 MiB: ranges of it are read on their own
	if err := d.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	want := e.Data
	const reads = 40
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < reads; i++ {
		for _, r := range [][2]uint32{{0, 64}, {3, 40}, {1, 63}} {
			g, err := d.Get(ctx, e.Xorb, r[0], r[1])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(g.Data, want[e.Offsets[r[0]]:e.Offsets[r[1]]]) {
				t.Fatalf("%v: wrong bytes", r)
			}
			g.Release()
		}
	}
	runtime.ReadMemStats(&after)
	// A pool may lose its buffers to a collection now and then; a new
	// buffer per read would be reads*3 of them, about 440 MiB.
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(40<<20); got > limit {
		t.Errorf("%d reads allocated %d MiB, want < %d MiB", reads*3, got>>20, limit>>20)
	}
}
