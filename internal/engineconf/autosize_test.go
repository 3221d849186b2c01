package engineconf

import (
	"path/filepath"
	"testing"
)

func TestAutoCacheSize(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "cache")
	size, why := AutoCacheSize(dir)
	free, ok := freeBytes(dir)
	if !ok {
		t.Fatalf("no free space known for %s (%s)", dir, why)
	}
	want := max(int64(minAutoCacheSize), min(int64(MaxAutoCacheSize), free/2))
	// The free space moves a little between the two looks.
	if d := size - want; d < -(64<<20) || d > 64<<20 || size > MaxAutoCacheSize || size < minAutoCacheSize {
		t.Errorf("size %d, want about %d (free %d): %s", size, want, free, why)
	}
}
