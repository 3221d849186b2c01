package cache

import (
	"bytes"
	"context"
	"testing"
)

// A disk store lends an entry's open file only to callers that ask
// (WithLentFiles): each chunk's bytes lie at the offset ChunkFile names,
// for whole entries and sub-ranges, and Release gives the file back.
func TestDiskLendsFilesOnlyWhenAsked(t *testing.T) {
	ctx := context.Background()
	d, err := NewDisk(DiskConfig{Dir: t.TempDir(), MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	e := testEntry(3, 64, 128, 8192)
	if err := d.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	base := LentFiles()

	plain, err := d.Get(ctx, e.Xorb, 64, 128)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := plain.ChunkFile(64); f != nil || LentFiles() != base {
		t.Fatal("a file lent to a caller that did not ask")
	}
	plain.Release()

	for _, r := range [][2]uint32{{64, 128}, {70, 91}} {
		g, err := d.Get(WithLentFiles(ctx), e.Xorb, r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		if got := LentFiles(); got != base+1 {
			t.Fatalf("%v: %d files lent, want %d", r, got, base+1)
		}
		if f, _ := g.ChunkFile(r[1]); f != nil {
			t.Fatalf("%v: a file for a chunk outside the entry", r)
		}
		for c := r[0]; c < r[1]; c++ {
			f, off := g.ChunkFile(c)
			if f == nil {
				t.Fatalf("%v: no file for chunk %d", r, c)
			}
			want := e.Data[e.Offsets[c-64]:e.Offsets[c-63]]
			buf := make([]byte, len(want))
			if _, err := f.ReadAt(buf, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, want) || !bytes.Equal(g.Chunk(c), want) {
				t.Fatalf("%v: chunk %d: the file at offset %d, or the entry, holds other bytes", r, c, off)
			}
		}
		g.Release()
		if got := LentFiles(); got != base {
			t.Fatalf("%v: %d files lent after Release, want %d", r, got, base)
		}
		if f, _ := g.ChunkFile(r[0]); f != nil {
			t.Fatal("a file still named after Release")
		}
	}
}
