// Command floorbench measures, on this machine, the least server CPU per
// byte that each of xetproxy's paths can cost while keeping its
// guarantees: the work a path cannot skip, done by a minimal HTTP server
// with nothing else in it. Run it through bench/floor.sh.
//
// Each path is a child process of this binary (re-executed with -serve),
// asked for the same bytes by curl, its CPU read from /proc/PID/stat as the
// other benchmarks read xetproxy's:
//
//   - static: Go's http.FileServer (sendfile), the baseline of every other
//     benchmark;
//   - hit: a disk cache hit as xetproxy sends it: every 4 MiB piece of the
//     file read (pread) and checked with CRC-32C, 64 KiB at a time, then
//     sent from the file with sendfile;
//   - nocache: the bytes fetched as xorb chunk records from an upstream
//     server over loopback, each chunk decoded (LZ4, BG4) and hashed
//     (keyed BLAKE3, as every chunk must be to prove it), and written to the
//     client;
//   - fill: nocache, and every 64 chunks written to a file of their own
//     (as a disk cache keeps them).
//
// The upstream for nocache and fill is a Go http.FileServer in this
// process serving the xorbs of the file, built with the project's chunker
// and xorb writer (the compression fakehub chooses by default).
//
// Writing new files costs more or less depending on the memory the kernel
// gives their page cache: on a virtual machine whose freed memory goes
// back to the host (free page reporting), the first touch of a page
// costs a host fault. The last two rows measure that, in this process:
// the file's size written as 4 MiB files after an idle pause (memory given
// back), then again at once (the pages just freed are reused).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xetproxy/xetproxy/bench/internal/benchkit"
	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/sample"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

var modes = []string{"static", "hit", "nocache", "fill"}

func main() {
	serve := flag.String("serve", "", "internal: run one path's server (static, hit, nocache, fill)")
	dir := flag.String("dir", "", "internal: the directory of the file and its xorbs")
	upstream := flag.String("upstream", "", "internal: the upstream serving the xorbs")
	listen := flag.String("listen", "", "internal: the address to serve on")
	sizeFlag := flag.String("size", "1GiB", "size of the file (a bf16 safetensors sample, as the other benchmarks use)")
	runs := flag.Int("runs", 5, "downloads per path (medians are reported)")
	flag.Parse()
	if *serve != "" {
		if err := serveMode(*serve, *dir, *upstream, *listen); err != nil {
			fmt.Fprintln(os.Stderr, "floorbench:", err)
			os.Exit(1)
		}
		return
	}
	size, err := server.ParseSize(*sizeFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floorbench:", err)
		os.Exit(2)
	}
	if err := run(size, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "floorbench:", err)
		os.Exit(1)
	}
}

func run(size int64, runs int) error {
	curl, err := exec.LookPath("curl")
	if err != nil {
		return fmt.Errorf("curl is needed: %w", err)
	}
	dir, err := os.MkdirTemp("", "floorbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logf("writing %s and its xorbs...", benchkit.Human(size))
	stored, err := prepare(dir, size)
	if err != nil {
		return err
	}
	info, err := os.Stat(filepath.Join(dir, "data.bin"))
	if err != nil {
		return err
	}
	size = info.Size()
	logf("xorbs: %s stored for %s (%.0f%%)", benchkit.Human(stored), benchkit.Human(size), 100*float64(stored)/float64(size))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(ln, http.FileServer(http.Dir(dir)))
	upURL := "http://" + ln.Addr().String() + "/xorbs.bin"
	benchkit.Curl(curl, upURL) // page cache

	type row struct {
		speed, cpu []float64
	}
	rows := map[string]*row{}
	for i := 0; i < runs; i++ {
		for _, m := range modes {
			speed, cpu, err := once(curl, m, dir, upURL, size)
			if err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
			r := rows[m]
			if r == nil {
				r = &row{}
				rows[m] = r
			}
			r.speed, r.cpu = append(r.speed, speed), append(r.cpu, cpu)
			logf("run %d %s: %s, %.2f server CPU-s/GB", i+1, m, benchkit.MBps(speed), cpu)
		}
	}
	idle, again, err := writeCost(dir, size)
	if err != nil {
		return err
	}
	what := map[string]string{
		"static":  "Go static server (http.FileServer, sendfile)",
		"hit":     "disk hit floor: pread + CRC-32C of every byte, then sendfile",
		"nocache": "no-cache floor: receive xorbs, decode, BLAKE3 every chunk, write",
		"fill":    "cold-fill floor: no-cache floor + write every chunk to a cache file",
	}
	fmt.Printf("\n## Cost floors (%s, %s file, %d runs, medians)\n\n", time.Now().UTC().Format("2006-01-02"), benchkit.Human(size), runs)
	fmt.Printf("| path | throughput | server CPU-s/GB | raw CPU-s/GB |\n|---|---|---|---|\n")
	for _, m := range modes {
		r := rows[m]
		var raw []string
		for _, c := range r.cpu {
			raw = append(raw, fmt.Sprintf("%.2f", c))
		}
		fmt.Printf("| %s | %s | %.2f | %s |\n", what[m], benchkit.MBps(benchkit.Median(r.speed)), benchkit.Median(r.cpu), strings.Join(raw, ", "))
	}
	fmt.Printf("| writing new 4 MiB files, after %s idle | | %.2f | |\n", writeIdle, idle)
	fmt.Printf("| writing new 4 MiB files, again at once | | %.2f | |\n", again)
	return nil
}

// writeIdle is the pause before the first write pass: long enough for
// freed memory to go back to the host where the machine does that.
const writeIdle = 15 * time.Second

// writeCost returns this process's CPU-seconds per GB for writing size
// bytes as new 4 MiB files, after writeIdle of idling and then again at
// once (each pass's files removed after it).
func writeCost(dir string, size int64) (idle, again float64, err error) {
	buf := bytes.Repeat([]byte{0x5a}, 4<<20)
	pass := func(name string) (float64, error) {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return 0, err
		}
		defer os.RemoveAll(d)
		c0 := selfCPU()
		for i := int64(0); i*int64(len(buf)) < size; i++ {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprint(i)), buf, 0o600); err != nil {
				return 0, err
			}
		}
		return (selfCPU() - c0) / (float64(size) / 1e9), nil
	}
	time.Sleep(writeIdle)
	if idle, err = pass("w1"); err != nil {
		return 0, 0, err
	}
	again, err = pass("w2")
	return idle, again, err
}

func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// once starts mode's server, downloads the file through it with curl and
// returns the throughput and the server's CPU-seconds per GB.
func once(curl, mode, dir, upURL string, size int64) (float64, float64, error) {
	addr, err := benchkit.FreeAddr()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.Command(os.Args[0], "-serve", mode, "-dir", dir, "-upstream", upURL, "-listen", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	base := "http://" + addr
	for t0 := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if res, err := http.Get(base + "/ready"); err == nil {
			res.Body.Close()
			break
		}
		if time.Since(t0) > 10*time.Second {
			return 0, 0, errors.New("server did not start")
		}
	}
	c0 := benchkit.CPUSeconds(cmd.Process.Pid)
	r, err := benchkit.Curl(curl, base+"/data.bin")
	if err != nil {
		return 0, 0, err
	}
	if r.Size != size {
		return 0, 0, fmt.Errorf("served %d bytes of %d", r.Size, size)
	}
	cpu := benchkit.CPUSeconds(cmd.Process.Pid) - c0
	return r.Speed, cpu / (float64(size) / 1e9), nil
}

// prepare writes the file (data.bin) and its chunks packed into xorbs, one
// after the other without footers (xorbs.bin: a stream of chunk records),
// and returns the stored size.
func prepare(dir string, size int64) (int64, error) {
	data, err := os.Create(filepath.Join(dir, "data.bin"))
	if err != nil {
		return 0, err
	}
	defer data.Close()
	xs, err := os.Create(filepath.Join(dir, "xorbs.bin"))
	if err != nil {
		return 0, err
	}
	defer xs.Close()
	var stored int64
	b := xorb.NewBuilder(xorb.PolicyAuto)
	flush := func() error {
		if x := b.Finish(); x != nil {
			n, err := xs.Write(x.Bytes(false))
			stored += int64(n)
			return err
		}
		return nil
	}
	ch := chunking.New(io.TeeReader(sample.NewSafetensors(size, 1), data))
	for {
		c, err := ch.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		if !b.Add(c) {
			if err := flush(); err != nil {
				return 0, err
			}
			b.Add(c)
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return stored, nil
}

func serveMode(mode, dir, upstream, listen string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {})
	path := filepath.Join(dir, "data.bin")
	switch mode {
	case "static":
		mux.Handle("/", http.FileServer(http.Dir(dir)))
	case "hit":
		mux.HandleFunc("/data.bin", func(w http.ResponseWriter, r *http.Request) {
			if err := sendChecked(w, path); err != nil {
				panic(http.ErrAbortHandler)
			}
		})
	case "nocache", "fill":
		keep := ""
		if mode == "fill" {
			keep = filepath.Join(dir, "cache-"+fmt.Sprint(os.Getpid()))
			if err := os.MkdirAll(keep, 0o700); err != nil {
				return err
			}
			defer os.RemoveAll(keep)
		}
		mux.HandleFunc("/data.bin", func(w http.ResponseWriter, r *http.Request) {
			info, err := os.Stat(path)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(info.Size()))
			if err := relay(r.Context(), w, upstream, keep); err != nil {
				panic(http.ErrAbortHandler)
			}
		})
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	return http.ListenAndServe(listen, mux)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sendChecked sends the file at path in 4 MiB pieces, each read and
// checked (CRC-32C of every 64 KiB) before it is sent from the file.
func sendChecked(w http.ResponseWriter, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", fmt.Sprint(info.Size()))
	rf := w.(io.ReaderFrom)
	buf := make([]byte, 4<<20)
	var sum uint32
	for off := int64(0); off < info.Size(); off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return err
		}
		for c := 0; c < n; c += 64 << 10 {
			sum ^= crc32.Checksum(buf[c:min(c+64<<10, n)], castagnoli)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return err
		}
		if _, err := rf.ReadFrom(io.LimitReader(f, int64(n))); err != nil {
			return err
		}
	}
	_ = sum
	return nil
}

// relay fetches the xorb chunk records from upstream, decodes and hashes
// every chunk and writes it to w; with keep, every 64 chunks also go to a
// file of their own under keep.
func relay(ctx context.Context, w io.Writer, upstream, keep string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, upstream, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	back := make([]byte, 4<<20)
	buf := back[:0] // unread bytes, somewhere in back
	out := make([]byte, 0, xorb.MaxChunkSize)
	var seg bytes.Buffer
	segChunks, segN := 0, 0
	var hashes merklehash.Hash
	for eof := false; ; {
		for len(buf) >= xorb.HeaderSize {
			h, err := xorb.ParseHeader(buf)
			if err != nil {
				return err
			}
			end := xorb.HeaderSize + int(h.CompressedLen)
			if len(buf) < end {
				break
			}
			if out, err = xorb.DecodePayload(out[:0], h, buf[xorb.HeaderSize:end]); err != nil {
				return err
			}
			hashes = merklehash.ChunkHash(out)
			if _, err := w.Write(out); err != nil {
				return err
			}
			if keep != "" {
				seg.Write(out)
				if segChunks++; segChunks == 64 {
					if err := os.WriteFile(filepath.Join(keep, fmt.Sprint(segN)), seg.Bytes(), 0o600); err != nil {
						return err
					}
					seg.Reset()
					segChunks, segN = 0, segN+1
				}
			}
			buf = buf[end:]
		}
		if eof {
			if len(buf) != 0 {
				return io.ErrUnexpectedEOF
			}
			if keep != "" && seg.Len() > 0 {
				return os.WriteFile(filepath.Join(keep, fmt.Sprint(segN)), seg.Bytes(), 0o600)
			}
			_ = hashes
			return nil
		}
		// move the partial record to the front, then read more behind it
		n := copy(back, buf)
		m, err := io.ReadAtLeast(res.Body, back[n:], 1)
		buf = back[:n+m]
		if err == io.EOF {
			eof = true
		} else if err != nil {
			return err
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "floorbench: "+format+"\n", args...)
}
