package engineconf

import (
	"os"
	"path/filepath"
)

// MaxAutoCacheSize caps the disk cache size chosen from the free space.
const MaxAutoCacheSize = 10 << 30

// minAutoCacheSize is the floor of the chosen size, so that a nearly full
// disk still gets a cache that holds a few segments.
const minAutoCacheSize = 64 << 20

// AutoCacheSize is the disk cache size for dir when none is configured:
// min(MaxAutoCacheSize, half the free space of its file system now), at
// least 64 MiB. dir is created if needed. The second result says why
// (for the log).
func AutoCacheSize(dir string) (int64, string) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return MaxAutoCacheSize, "free space unknown: " + err.Error()
	}
	free, ok := freeBytes(filepath.Clean(dir))
	if !ok {
		return MaxAutoCacheSize, "free space unknown"
	}
	return max(minAutoCacheSize, min(MaxAutoCacheSize, free/2)), "min(10GiB, half of " + humanSize(free) + " free)"
}
