// Command cachebench measures xetproxy's chunk cache on this machine, in
// one run and against the same static baselines as proxybench (nginx if
// installed, and Go's http.FileServer): a 2 GiB Xet file served by
// `xetproxy serve --cache-dir` cold (filling the cache), warm (second
// download), after a restart of the server on the same directory, and from
// a shared S3 tier by a second instance with an empty disk; a new revision
// of the file with a few edits and an insertion; and many clients asking
// for the same cold file at once. fakehub runs in this process, so every
// scenario reports the xorb bytes it served. Run it through bench/cache.sh.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/xetproxy/xetproxy/bench/internal/benchkit"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/sample"
)

const benchRepo = "bench/models"

func main() {
	bin := flag.String("bin", "", "xetproxy binary to benchmark (required)")
	sizeFlag := flag.String("size", "2GiB", "size of the file")
	runs := flag.Int("runs", 3, "repetitions of the static and warm measurements (medians are reported)")
	clients := flag.Int("clients", 32, "clients asking for the same cold file at once")
	clientSize := flag.String("client-size", "256MiB", "size of the file the concurrent clients ask for")
	noS3 := flag.Bool("no-s3", false, "skip the shared S3 tier scenario (an in-process gofakes3 holding the file in memory)")
	cacheRoot := flag.String("cache-root", "", "directory to put the cache directories in (default: a temporary directory)")
	memLimit := flag.String("gomemlimit", "", "GOMEMLIMIT for the xetproxy processes (default: unset)")
	flag.Parse()
	if *memLimit != "" {
		os.Setenv("GOMEMLIMIT", *memLimit)
	}
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "cachebench: --bin is required")
		os.Exit(2)
	}
	size, err1 := server.ParseSize(*sizeFlag)
	csize, err2 := server.ParseSize(*clientSize)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(2)
	}
	if err := run(*bin, size, csize, *runs, *clients, !*noS3, *cacheRoot); err != nil {
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(1)
	}
}

type result struct {
	name      string
	speed     []float64 // bytes/s per run
	size      int64
	xorbBytes int64 // fakehub xorb bytes during the (last) run
	rss       int64
	note      string
}

func run(bin string, size, csize int64, runs, clients int, withS3 bool, cacheRoot string) error {
	curl, err := exec.LookPath("curl")
	if err != nil {
		return fmt.Errorf("curl is needed: %w", err)
	}
	dir, err := os.MkdirTemp("", "cachebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fh, err := fakehub.New(fakehub.Config{})
	if err != nil {
		return err
	}
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hubURL := "http://" + hln.Addr().String()
	fh.SetPublicURL(hubURL)
	go (&http.Server{Handler: fh}).Serve(hln)
	if err := fh.CreateRepo(fakehub.RepoSpec{ID: benchRepo}); err != nil {
		return err
	}
	logf("ingesting %s (+ an edited copy, + %s) into fakehub...", benchkit.Human(size), benchkit.Human(csize))
	start := time.Now()
	if _, err := fh.AddFile(context.Background(), benchRepo, "big.safetensors", sample.NewSafetensors(size, 1)); err != nil {
		return err
	}
	if _, err := fh.AddFile(context.Background(), benchRepo, "big-v2.safetensors", edited(sample.NewSafetensors(size, 1), size)); err != nil {
		return err
	}
	if _, err := fh.AddFile(context.Background(), benchRepo, "hot.safetensors", sample.NewSafetensors(csize, 2)); err != nil {
		return err
	}
	logf("ingested in %.1fs", time.Since(start).Seconds())
	bigSize := sample.NewSafetensors(size, 1).Size()
	v2Size, _ := io.Copy(io.Discard, edited(sample.NewSafetensors(size, 1), size))

	// the same bytes on disk for the static baselines
	www := filepath.Join(dir, "www")
	os.MkdirAll(www, 0o755)
	f, err := os.Create(filepath.Join(www, "big.safetensors"))
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), sample.NewSafetensors(size, 1)); err != nil {
		return err
	}
	f.Close()
	wantSHA := hex.EncodeToString(h.Sum(nil))

	var results []result
	sln, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(sln, http.FileServer(http.Dir(www)))
	goURL := "http://" + sln.Addr().String() + "/big.safetensors"
	curlOnce(curl, goURL) // warm the page cache
	goStatic := result{name: "Go static server (http.FileServer)", size: bigSize}
	for i := 0; i < runs; i++ {
		r, err := curlOnce(curl, goURL)
		if err != nil {
			return err
		}
		goStatic.speed = append(goStatic.speed, r.speed)
	}
	logf("go static: %s", benchkit.MBps(benchkit.Median(goStatic.speed)))
	var nginx *result
	if ng, err := exec.LookPath("nginx"); err == nil {
		url, stop, err := startNginx(ng, dir, www)
		if err != nil {
			logf("nginx: %v (skipped)", err)
		} else {
			nginx = &result{name: "nginx static (sendfile)", size: bigSize}
			for i := 0; i < runs; i++ {
				r, err := curlOnce(curl, url+"/big.safetensors")
				if err != nil {
					stop()
					return err
				}
				nginx.speed = append(nginx.speed, r.speed)
			}
			stop()
			logf("nginx: %s", benchkit.MBps(benchkit.Median(nginx.speed)))
		}
	}
	base := goStatic
	if nginx != nil {
		base = *nginx
		results = append(results, *nginx)
	}
	results = append(results, goStatic)

	if cacheRoot == "" {
		cacheRoot = dir
	} else {
		if cacheRoot, err = os.MkdirTemp(cacheRoot, "cachebench-"); err != nil {
			return err
		}
		defer os.RemoveAll(cacheRoot)
	}

	// cold without any cache, for comparison (what bench/proxy.sh measures)
	p, err := startProxy(bin, hubURL, "--cache-dir", "")
	if err != nil {
		return err
	}
	fh.ResetStats()
	r, err := curlOnce(curl, p.url+"/download/"+benchRepo+"/big.safetensors")
	if err != nil {
		p.stop()
		return err
	}
	results = append(results, result{name: "xetproxy cold, no cache", speed: []float64{r.speed}, size: r.size,
		xorbBytes: xorbBytes(fh), rss: p.hwm()})
	p.stop()
	logf("cold without cache: %s", benchkit.MBps(r.speed))

	cacheDir := filepath.Join(cacheRoot, "cache")
	cacheArgs := []string{"--cache-dir", cacheDir, "--cache-size", strconv.FormatInt(3*size+(1<<30), 10)}
	bigURL := "/download/" + benchRepo + "/big.safetensors"

	// cold: a fresh server and an empty cache directory
	p, err = startProxy(bin, hubURL, cacheArgs...)
	if err != nil {
		return err
	}
	fh.ResetStats()
	r, err = curlOnce(curl, p.url+bigURL)
	if err != nil {
		p.stop()
		return err
	}
	results = append(results, result{name: "xetproxy cold, filling an empty disk cache", speed: []float64{r.speed}, size: r.size,
		xorbBytes: xorbBytes(fh), rss: p.hwm()})
	logf("cold: %s, %s of xorbs", benchkit.MBps(r.speed), benchkit.Human(xorbBytes(fh)))

	// warm: the same server again
	warm := result{name: "xetproxy warm (second download, same server)", size: bigSize}
	fh.ResetStats()
	for i := 0; i < runs; i++ {
		r, err := curlOnce(curl, p.url+bigURL)
		if err != nil {
			p.stop()
			return err
		}
		warm.speed = append(warm.speed, r.speed)
		logf("warm run %d: %s", i+1, benchkit.MBps(r.speed))
	}
	warm.xorbBytes, warm.rss = xorbBytes(fh), p.hwm()
	got, err := benchkit.SHA256Of(p.url + bigURL)
	if err != nil {
		p.stop()
		return err
	}
	if got != wantSHA {
		p.stop()
		return fmt.Errorf("warm bytes differ: sha256 %s, want %s", got, wantSHA)
	}
	warm.note = "sha256 verified"
	results = append(results, warm)

	// a new revision: a few edits and an insertion
	fh.ResetStats()
	r, err = curlOnce(curl, p.url+"/download/"+benchRepo+"/big-v2.safetensors")
	if err != nil {
		p.stop()
		return err
	}
	results = append(results, result{name: "xetproxy, edited copy of the cached file (3 edits + 1 MiB inserted)", speed: []float64{r.speed},
		size: v2Size, xorbBytes: xorbBytes(fh),
		note: fmt.Sprintf("upstream xorb bytes = %.2f%% of the file", 100*float64(xorbBytes(fh))/float64(v2Size))})
	p.stop()

	// restart: a new process on the same directory
	restart := result{name: "xetproxy warm after a restart (new process, same --cache-dir)", size: bigSize}
	p, err = startProxy(bin, hubURL, cacheArgs...)
	if err != nil {
		return err
	}
	fh.ResetStats()
	for i := 0; i < runs; i++ {
		r, err := curlOnce(curl, p.url+bigURL)
		if err != nil {
			p.stop()
			return err
		}
		restart.speed = append(restart.speed, r.speed)
	}
	restart.xorbBytes, restart.rss = xorbBytes(fh), p.hwm()
	p.stop()
	results = append(results, restart)
	logf("restart: %s", benchkit.MBps(benchkit.Median(restart.speed)))

	// shared S3 tier: instance A fills it, instance B (empty disk) reads it
	if withS3 {
		backend := s3mem.New()
		if err := backend.CreateBucket("xetproxy-cache"); err != nil {
			return err
		}
		s3srv := httptest.NewServer(gofakes3.New(backend).Server())
		s3args := func(d string) []string {
			return []string{"--cache-dir", d, "--cache-size", strconv.FormatInt(3*size, 10),
				"--s3-endpoint", s3srv.URL, "--s3-bucket", "xetproxy-cache", "--s3-prefix", "chunks/",
				"--s3-region", "auto", "--s3-path-style", "--s3-queue", strconv.FormatInt(2*size, 10)}
		}
		os.Setenv("AWS_ACCESS_KEY_ID", "bench")
		os.Setenv("AWS_SECRET_ACCESS_KEY", "bench")
		a, err := startProxy(bin, hubURL, s3args(filepath.Join(cacheRoot, "s3-a"))...)
		if err != nil {
			return err
		}
		if _, err := curlOnce(curl, a.url+bigURL); err != nil {
			a.stop()
			return err
		}
		a.stop() // drains the queued bucket writes
		b, err := startProxy(bin, hubURL, s3args(filepath.Join(cacheRoot, "s3-b"))...)
		if err != nil {
			return err
		}
		fh.ResetStats()
		r, err := curlOnce(curl, b.url+bigURL)
		if err != nil {
			b.stop()
			return err
		}
		results = append(results, result{name: "xetproxy instance B, empty disk, from the S3 tier instance A filled (gofakes3, --s3-queue 2×size)",
			speed: []float64{r.speed}, size: r.size, xorbBytes: xorbBytes(fh), rss: b.hwm()})
		b.stop()
		s3srv.Close()
	}

	// many clients, one cold file, one fresh server
	p, err = startProxy(bin, hubURL, "--cache-dir", filepath.Join(cacheRoot, "hot"), "--cache-size", strconv.FormatInt(2*csize, 10))
	if err != nil {
		return err
	}
	fh.ResetStats()
	var wg sync.WaitGroup
	errs := make([]error, clients)
	t0 := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			_, errs[c] = curlOnce(curl, p.url+"/download/"+benchRepo+"/hot.safetensors")
		}(c)
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	if err := errors.Join(errs...); err != nil {
		p.stop()
		return err
	}
	ranges, maxPer := map[string]int{}, 0
	for _, req := range fh.Requests() {
		if req.Class == fakehub.ClassXorb {
			path, _, _ := strings.Cut(req.Path, "?")
			k := path + " " + req.Header.Get("Range")
			ranges[k]++
			maxPer = max(maxPer, ranges[k])
		}
	}
	results = append(results, result{name: fmt.Sprintf("xetproxy, %d clients at once on one cold %s file (aggregate)", clients, benchkit.Human(csize)),
		speed: []float64{float64(int64(clients)*csize) / wall}, size: csize, xorbBytes: xorbBytes(fh), rss: p.hwm(),
		note: fmt.Sprintf("%d xorb ranges, each fetched at most %d time(s)", len(ranges), maxPer)})
	p.stop()

	printReport(os.Stdout, results, base, bigSize)
	return nil
}

func xorbBytes(fh *fakehub.Hub) int64 { return fh.Stats()[fakehub.ClassXorb].BytesOut }

// edited is the file with three 32-byte edits and 1 MiB inserted at a
// third of it: a new revision sharing almost every chunk.
func edited(r io.Reader, size int64) io.Reader {
	at := size / 3
	var parts []io.Reader
	parts = append(parts, io.LimitReader(r, at))
	parts = append(parts, bytes.NewReader(bytes.Repeat([]byte("inserted tensor data "), (1<<20)/21)))
	parts = append(parts, &patcher{r: r, off: at, at: []int64{size / 2, 2 * size / 3, size - size/10}})
	return io.MultiReader(parts...)
}

// patcher overwrites 32 bytes at each of the offsets in at (offsets of the
// original file) as they pass.
type patcher struct {
	r   io.Reader
	off int64
	at  []int64
}

func (p *patcher) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	for _, a := range p.at {
		for i := max(a, p.off); i < a+32 && i < p.off+int64(n); i++ {
			b[i-p.off] ^= 0x5a
		}
	}
	p.off += int64(n)
	return n, err
}

func printReport(w io.Writer, rs []result, base result, size int64) {
	fmt.Fprintf(w, "\n## Results (%s, medians of the runs)\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "| scenario | throughput | vs %s | xorb bytes from upstream | server peak RSS | notes |\n|---|---|---|---|---|---|\n", base.name)
	b := benchkit.Median(base.speed)
	for _, r := range rs {
		rss := "—"
		if r.rss > 0 {
			rss = benchkit.Human(r.rss)
		}
		xb := "—"
		if !strings.Contains(r.name, "static") {
			xb = benchkit.Human(r.xorbBytes)
			if r.xorbBytes == 0 {
				xb = "0"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %.2f× | %s | %s | %s |\n", r.name, benchkit.MBps(benchkit.Median(r.speed)), benchkit.Median(r.speed)/b, xb, rss, r.note)
	}
	fmt.Fprintf(w, "\nRaw runs:")
	for _, r := range rs {
		fmt.Fprintf(w, " %s: %s;", r.name, list(r.speed))
	}
	fmt.Fprintln(w)
}

type curlResult struct {
	ttfb, total, speed float64
	size               int64
}

func curlOnce(curl, url string, extra ...string) (curlResult, error) {
	args := append([]string{"-sS", "-f", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total} %{speed_download} %{size_download}"}, extra...)
	out, err := exec.Command(curl, append(args, url)...).Output()
	if err != nil {
		return curlResult{}, fmt.Errorf("curl %s: %w", url, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 {
		return curlResult{}, fmt.Errorf("curl output %q", out)
	}
	var r curlResult
	r.ttfb, _ = strconv.ParseFloat(f[0], 64)
	r.total, _ = strconv.ParseFloat(f[1], 64)
	r.speed, _ = strconv.ParseFloat(f[2], 64)
	r.size, _ = strconv.ParseInt(f[3], 10, 64)
	return r, nil
}

type proxyProc struct {
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	peak int64
	done chan struct{}
}

// startProxy runs `xetproxy serve` with args and samples its VmHWM.
func startProxy(bin, hubURL string, args ...string) (*proxyProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", addr, "--hub-url", hubURL, "--log-level", "warn"}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proxyProc{cmd: cmd, url: "http://" + addr, done: make(chan struct{})}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(p.url + "/health")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, fmt.Errorf("proxy did not start: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				p.sample()
			}
		}
	}()
	return p, nil
}

func (p *proxyProc) sample() {
	v := benchkit.VmHWM(p.cmd.Process.Pid)
	p.mu.Lock()
	p.peak = max(p.peak, v)
	p.mu.Unlock()
}

func (p *proxyProc) hwm() int64 {
	p.sample()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

// stop ends the proxy with SIGTERM (it drains and closes its cache).
func (p *proxyProc) stop() {
	close(p.done)
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

func startNginx(ng, dir, www string) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`user root;
worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path %[1]s/tmp;
  proxy_temp_path %[1]s/tmp;
  fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp;
  scgi_temp_path %[1]s/tmp;
  server { listen %[2]s; root %[3]s; }
}
`, dir, addr, www)), 0o644)
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o755)
	cmd := exec.Command(ng, "-c", conf, "-p", dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	url = "http://" + addr
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := http.Head(url + "/big.safetensors")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return "", nil, fmt.Errorf("nginx did not start: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return url, func() { cmd.Process.Signal(syscall.SIGQUIT); cmd.Wait() }, nil
}

func list(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, benchkit.MBps(x))
	}
	return strings.Join(s, ", ")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cachebench: "+format+"\n", args...)
}
