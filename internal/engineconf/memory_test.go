package engineconf

import "testing"

// The fills and the streams share the budget for data in flight.
func TestSplitBuffer(t *testing.T) {
	for _, total := range []int64{64 << 20, 256 << 20, 1 << 30, 1<<30 + 3} {
		f, s := SplitBuffer(total)
		if f+s != total || f != total/4 {
			t.Errorf("SplitBuffer(%d) = %d, %d", total, f, s)
		}
	}
}

// MemoryStores counts every store kept in memory.
func TestMemoryStores(t *testing.T) {
	for _, tc := range []struct {
		cfg  CacheConfig
		want int64
	}{
		{CacheConfig{Dir: "/c"}, 0},
		{CacheConfig{Dir: "/c", Memory: 100}, 100},
		{CacheConfig{Memory: 100}, 200},                                          // memory tier and memory staging
		{CacheConfig{Dir: "/c", S3Bucket: "b", S3Queue: 50}, spooledQueueMemory}, // spooled to the disk tier
		{CacheConfig{S3Bucket: "b", S3Queue: 50}, 2*DefaultS3Staging + 50},
		{CacheConfig{}, 0},
	} {
		if got := MemoryStores(tc.cfg); got != tc.want {
			t.Errorf("%+v: %d, want %d", tc.cfg, got, tc.want)
		}
	}
}
