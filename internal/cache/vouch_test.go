package cache

import (
	"context"
	"os"
	"testing"
	"time"
)

// The disk store vouches for a file only after a whole-entry MarkProven
// on a file old enough, only while the file is unchanged, never for
// entries it did not read from a file, and forgets on any change.
func TestDiskVouchesOnlyForUnchangedProvenFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := NewDisk(DiskConfig{Dir: dir, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	e := testEntry(7, 0, 8, 4096)
	if err := d.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	get := func(start, end uint32) *Entry {
		t.Helper()
		g, err := d.Get(ctx, e.Xorb, start, end)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if e.Proven() || get(0, 8).Proven() {
		t.Fatal("vouched before any proof")
	}
	// A file just written is too young to be remembered (coarse file
	// system clocks): with the default age, a proof now does nothing.
	get(0, 8).MarkProven()
	if get(0, 8).Proven() {
		t.Fatal("vouched for a file younger than vouchMinAge")
	}
	defer func(a time.Duration) { vouchMinAge = a }(vouchMinAge)
	vouchMinAge = 50 * time.Millisecond
	for deadline := time.Now().Add(10 * time.Second); ; {
		get(0, 8).MarkProven()
		if get(0, 8).Proven() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never vouched")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !get(2, 5).Proven() {
		t.Fatal("a sub-range of a proven file is not vouched for")
	}

	// A proof of a sub-range is not a proof of the file.
	e2 := testEntry(8, 0, 8, 4096)
	if err := d.Put(ctx, e2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * vouchMinAge) // old enough, so only the range can refuse
	sub, err := d.Get(ctx, e2.Xorb, 1, 8)
	if err != nil {
		t.Fatal(err)
	}
	sub.MarkProven()
	if g, _ := d.Get(ctx, e2.Xorb, 0, 8); g.Proven() {
		t.Fatal("vouched for a file after a proof of part of it")
	}

	// Touching the file (same bytes, same modification time) changes its
	// status-change time: the store forgets.
	p := d.path(e.Key())
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	if get(0, 8).Proven() {
		t.Fatal("still vouched after the file's status changed")
	}
}
