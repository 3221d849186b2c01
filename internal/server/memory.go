package server

import "github.com/xetproxy/xetproxy/internal/engineconf"

// MemoryHeadroom is what the process may use besides the data in flight
// and the in-memory stores: the Go runtime, connections and their
// buffers, the metadata caches and indexes, and the pooled chunk buffers
// between two collections.
const MemoryHeadroom = 48 << 20

// MemoryLimit is the soft memory limit for the Go runtime of a server of
// c (runtime/debug.SetMemoryLimit; $GOMEMLIMIT, when set, wins):
// --max-buffer (all decoded data in flight: read-ahead and cache fills),
// the in-memory stores of the cache (engineconf.MemoryStores: memory tier,
// staging without a disk tier, the S3 write queue) and MemoryHeadroom.
// Without a limit the collector lets the heap grow to twice what is live,
// so a full budget could take twice its size.
func (c *Config) MemoryLimit() int64 {
	return c.MaxBuffer + engineconf.MemoryStores(c.cacheConfig()) + MemoryHeadroom
}
