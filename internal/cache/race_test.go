//go:build race

package cache

// The race detector makes sync.Pool drop items on purpose, so allocation
// counts that rely on pooled buffers are only checked without it.
const raceEnabled = true
