package proxy

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// benchSize is the file size of BenchmarkEngine: $XETPROXY_BENCH_MIB MiB
// (default 128; the documented runs use 2048).
func benchSize() int {
	if v, err := strconv.Atoi(os.Getenv("XETPROXY_BENCH_MIB")); err == nil && v > 0 {
		return v << 20
	}
	return 128 << 20
}

// benchData is bf16-like weights (BG4) and text (LZ4) in 4 MiB runs.
func benchData(n int) io.Reader {
	return &benchReader{left: n}
}

type benchReader struct {
	left, i int
	buf     []byte
}

func (r *benchReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if len(r.buf) == 0 {
		n := min(r.left, 4<<20)
		if r.i%2 == 0 {
			r.buf = weights(uint64(r.i), n)
		} else {
			r.buf = text(uint64(r.i), n)
		}
		r.i++
	}
	n := copy(p[:min(len(p), r.left)], r.buf)
	r.buf, r.left = r.buf[n:], r.left-n
	return n, nil
}

// BenchmarkEngine reads a whole Xet file from fakehub (in memory, on
// loopback) to io.Discard: every chunk decoded and hashed, the file hash
// checked. Default engine configuration except the endpoints.
func BenchmarkEngine(b *testing.B) {
	size := benchSize()
	e := newEnv(b, fakehub.Config{}, func(c *Config) {
		c.BlockSize, c.Parallel, c.StreamBuffer = 0, 0, 0
	})
	e.repo(b, fakehub.RepoSpec{ID: "org/m"})
	if _, err := e.fh.AddFile(context.Background(), "org/m", "w.safetensors", benchData(size), fakehub.StorageXet); err != nil {
		b.Fatal(err)
	}
	m := e.stat(b, "", repoM, "w.safetensors")
	b.SetBytes(int64(size))
	b.ResetTimer()
	cpu := cpuTime()
	defer func() { reportCPU(b, cpu, size) }()
	for b.Loop() {
		rc, err := e.eng.Open(context.Background(), "", m, 0, -1)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != int64(size) {
			b.Fatalf("%d bytes, %v", n, err)
		}
	}
}

// BenchmarkEngineCache reads the same file with a disk cache: cold (every
// iteration on an empty cache, filling it) and warm (every chunk from the
// cache, the file hash checked from the stored chunk hashes).
func BenchmarkEngineCache(b *testing.B) {
	for _, warm := range []bool{false, true} {
		name := "cold"
		if warm {
			name = "warm"
		}
		b.Run(name, func(b *testing.B) {
			size := benchSize()
			dir := b.TempDir()
			var d cache.Store
			d, err := cache.NewDisk(cache.DiskConfig{Dir: dir, MaxBytes: 4 << 30})
			if err != nil {
				b.Fatal(err)
			}
			if os.Getenv("XETPROXY_BENCH_MEMCACHE") != "" {
				d, _ = cache.NewMemory(4 << 30)
			}
			e := newEnv(b, fakehub.Config{}, func(c *Config) {
				c.BlockSize, c.Parallel, c.StreamBuffer = 0, 0, 0
				c.Cache = d
			})
			e.repo(b, fakehub.RepoSpec{ID: "org/m"})
			if _, err := e.fh.AddFile(context.Background(), "org/m", "w.safetensors", benchData(size), fakehub.StorageXet); err != nil {
				b.Fatal(err)
			}
			m := e.stat(b, "", repoM, "w.safetensors")
			read := func() {
				rc, err := e.eng.Open(context.Background(), "", m, 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, rc)
				rc.Close()
				if err != nil || n != int64(size) {
					b.Fatalf("%d bytes, %v", n, err)
				}
				if err := e.eng.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			if warm {
				read()
				// The disk store vouches for a file this process proved
				// once the file is a little older than the file system's
				// clock tick (cache/vouch.go); a long-running server's
				// cache is.
				time.Sleep(2100 * time.Millisecond)
				read()
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			cpu := cpuTime()
			defer func() { reportCPU(b, cpu, size) }()
			for b.Loop() {
				if !warm {
					b.StopTimer()
					os.RemoveAll(filepath.Join(dir, "chunks-v2"))
					os.RemoveAll(filepath.Join(dir, "manifests-v1"))
					var d cache.Store
					d, err := cache.NewDisk(cache.DiskConfig{Dir: dir, MaxBytes: 4 << 30})
					if err != nil {
						b.Fatal(err)
					}
					if os.Getenv("XETPROXY_BENCH_MEMCACHE") != "" {
						d, _ = cache.NewMemory(4 << 30)
					}
					e.eng.cache = d
					b.StartTimer()
				}
				read()
			}
		})
	}
}

// cpuTime is the CPU time of this process so far (user and system): a
// benchmark reports CPU seconds per GB as well as throughput, since on a
// small instance CPU per byte is what bounds a server. It counts fakehub
// too, which shares the process (no work of its own on warm reads).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, since time.Duration, size int) {
	if b.N > 0 {
		b.ReportMetric((cpuTime()-since).Seconds()/(float64(b.N)*float64(size)/1e9), "cpu-s/GB")
	}
}
