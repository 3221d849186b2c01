// Command cachebench measures xetproxy's chunk cache on this machine, in
// one run and against the same static baselines as proxybench (nginx if
// installed, and Go's http.FileServer): a 2 GiB Xet file served by
// `xetproxy serve --cache-dir` cold (filling the cache), warm (second
// download), after a restart of the server on the same directory, and from
// a shared S3 tier by a second instance with an empty disk; a new revision
// of the file with a few edits and an insertion; and many clients asking
// for the same cold file at once. fakehub runs in this process, so every
// scenario reports the xorb bytes it served, and each measured download
// the server CPU-seconds per GB it cost (from /proc/PID/stat; for the Go
// static server, this process). --s3-only runs the shared S3 tier scenario
// alone; --cold-only runs the baselines and the two cold scenarios, --runs
// times each, counting the fill's CPU until the server is idle. Run it through bench/cache.sh.
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
	noS3 := flag.Bool("no-s3", false, "skip the shared S3 tier scenario")
	s3Only := flag.Bool("s3-only", false, "run only the shared S3 tier scenario (no baselines, no other scenario)")
	coldOnly := flag.Bool("cold-only", false, "run only the baselines and the two cold scenarios (no cache, filling an empty disk cache), each --runs times")
	cacheRoot := flag.String("cache-root", "", "directory to put the cache directories in (default: a temporary directory)")
	memLimit := flag.String("gomemlimit", "", "GOMEMLIMIT for the xetproxy processes (default: unset)")
	flag.BoolVar(&hitOnly, "hit-only", false, "run only the Go static baseline, the cold fill and the warm (disk hit) runs")
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
	if err := run(*bin, size, csize, *runs, *clients, !*noS3, *s3Only, *coldOnly, *cacheRoot); err != nil {
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
	cpu       []float64 // server CPU-seconds per GB per run (nil: not measured)
}

// curlCPU downloads url once with curl and returns the CPU-seconds per GB
// that the process pid spent meanwhile (from /proc/PID/stat).
func curlCPU(curl, url string, pid int) (benchkit.CurlResult, float64, error) {
	c0 := benchkit.CPUSeconds(pid)
	r, err := benchkit.Curl(curl, url)
	c := benchkit.CPUSeconds(pid) - c0
	if err != nil || r.Size == 0 {
		return r, 0, err
	}
	return r, c / (float64(r.Size) / 1e9), nil
}

// hitOnly: see the --hit-only flag.
var hitOnly bool

func run(bin string, size, csize int64, runs, clients int, withS3, s3Only, coldOnly bool, cacheRoot string) error {
	curl, err := exec.LookPath("curl")
	if err != nil {
		return fmt.Errorf("curl is needed: %w", err)
	}
	dir, err := os.MkdirTemp("", "cachebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fh, hubURL, stopHub, err := benchkit.StartHub(fakehub.Config{})
	if err != nil {
		return err
	}
	defer stopHub()
	if err := fh.CreateRepo(fakehub.RepoSpec{ID: benchRepo}); err != nil {
		return err
	}
	if s3Only || coldOnly {
		logf("ingesting %s into fakehub...", benchkit.Human(size))
	} else {
		logf("ingesting %s (+ an edited copy, + %s) into fakehub...", benchkit.Human(size), benchkit.Human(csize))
	}
	start := time.Now()
	if _, err := fh.AddFile(context.Background(), benchRepo, "big.safetensors", sample.NewSafetensors(size, 1)); err != nil {
		return err
	}
	if s3Only || coldOnly {
		// the other files are not needed
	} else if _, err := fh.AddFile(context.Background(), benchRepo, "big-v2.safetensors", edited(sample.NewSafetensors(size, 1), size)); err != nil {
		return err
	}
	if s3Only || coldOnly {
	} else if _, err := fh.AddFile(context.Background(), benchRepo, "hot.safetensors", sample.NewSafetensors(csize, 2)); err != nil {
		return err
	}
	logf("ingested in %.1fs", time.Since(start).Seconds())
	bigSize := sample.NewSafetensors(size, 1).Size()
	if s3Only {
		root, err := os.MkdirTemp(cacheRootOr(cacheRoot), "cachebench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(root)
		r, err := s3Scenario(curl, bin, hubURL, fh, root, size, "/download/"+benchRepo+"/big.safetensors")
		if err != nil {
			return err
		}
		fmt.Printf("\n## Shared S3 tier, default settings (%s, %s file)\n\n%s: %s, %d xorb bytes from upstream; %s\n",
			time.Now().UTC().Format("2006-01-02"), benchkit.Human(bigSize), r.name, benchkit.MBps(benchkit.Median(r.speed)), r.xorbBytes, r.note)
		return nil
	}
	var v2Size int64
	if !coldOnly {
		v2Size, _ = io.Copy(io.Discard, edited(sample.NewSafetensors(size, 1), size))
	}

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
	benchkit.Curl(curl, goURL) // warm the page cache
	goStatic := result{name: "Go static server (http.FileServer)", size: bigSize}
	for i := 0; i < runs; i++ {
		r, cpu, err := curlCPU(curl, goURL, os.Getpid())
		if err != nil {
			return err
		}
		goStatic.speed, goStatic.cpu = append(goStatic.speed, r.Speed), append(goStatic.cpu, cpu)
	}
	logf("go static: %s", benchkit.MBps(benchkit.Median(goStatic.speed)))
	var nginx *result
	if ng, err := exec.LookPath("nginx"); err == nil && !hitOnly {
		url, stop, err := benchkit.StartNginx(ng, dir, www, "big.safetensors")
		if err != nil {
			logf("nginx: %v (skipped)", err)
		} else {
			nginx = &result{name: "nginx static (sendfile)", size: bigSize}
			for i := 0; i < runs; i++ {
				r, err := benchkit.Curl(curl, url+"/big.safetensors")
				if err != nil {
					stop()
					return err
				}
				nginx.speed = append(nginx.speed, r.Speed)
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

	if coldOnly {
		cold, err := coldRuns(curl, bin, hubURL, fh, cacheRoot, size, runs)
		if err != nil {
			return err
		}
		printReport(os.Stdout, append(results, cold...), base, bigSize)
		return nil
	}

	// cold without any cache, for comparison (what bench/proxy.sh measures)
	if !hitOnly {
		p, err := benchkit.StartProxy(bin, hubURL, "--cache-dir", "")
		if err != nil {
			return err
		}
		fh.ResetStats()
		r, cpu, err := curlCPU(curl, p.URL+"/download/"+benchRepo+"/big.safetensors", p.PID())
		if err != nil {
			p.Stop()
			return err
		}
		results = append(results, result{name: "xetproxy cold, no cache", speed: []float64{r.Speed}, size: r.Size,
			xorbBytes: xorbBytes(fh), rss: p.Peak(), cpu: []float64{cpu}})
		p.Stop()
		logf("cold without cache: %s", benchkit.MBps(r.Speed))
	}

	cacheDir := filepath.Join(cacheRoot, "cache")
	cacheArgs := []string{"--cache-dir", cacheDir, "--cache-size", strconv.FormatInt(3*size+(1<<30), 10)}
	bigURL := "/download/" + benchRepo + "/big.safetensors"

	// cold: a fresh server and an empty cache directory
	p, err := benchkit.StartProxy(bin, hubURL, cacheArgs...)
	if err != nil {
		return err
	}
	fh.ResetStats()
	c0 := benchkit.CPUSeconds(p.PID())
	r, cpu, err := curlCPU(curl, p.URL+bigURL, p.PID())
	if err != nil {
		p.Stop()
		return err
	}
	// Promotions of staged chunks run on after the last byte: count
	// them too, until the server is idle.
	settle(p.URL)
	idle := (benchkit.CPUSeconds(p.PID()) - c0) / (float64(r.Size) / 1e9)
	results = append(results, result{name: "xetproxy cold, filling an empty disk cache", speed: []float64{r.Speed}, size: r.Size,
		xorbBytes: xorbBytes(fh), rss: p.Peak(), cpu: []float64{cpu},
		note: fmt.Sprintf("%.2f CPU-s/GB counting the cache writes that end after the download", idle)})
	logf("cold: %s, %s of xorbs", benchkit.MBps(r.Speed), benchkit.Human(xorbBytes(fh)))

	// warm: the same server again
	warm := result{name: "xetproxy warm (second download, same server)", size: bigSize}
	fh.ResetStats()
	for i := 0; i < runs; i++ {
		r, cpu, err := curlCPU(curl, p.URL+bigURL, p.PID())
		if err != nil {
			p.Stop()
			return err
		}
		warm.speed, warm.cpu = append(warm.speed, r.Speed), append(warm.cpu, cpu)
		logf("warm run %d: %s", i+1, benchkit.MBps(r.Speed))
	}
	warm.xorbBytes, warm.rss = xorbBytes(fh), p.Peak()
	got, err := benchkit.SHA256Of(p.URL + bigURL)
	if err != nil {
		p.Stop()
		return err
	}
	if got != wantSHA {
		p.Stop()
		return fmt.Errorf("warm bytes differ: sha256 %s, want %s", got, wantSHA)
	}
	warm.note = "sha256 verified"
	results = append(results, warm)
	if hitOnly {
		p.Stop()
		printReport(os.Stdout, results, base, bigSize)
		return nil
	}

	// a new revision: a few edits and an insertion
	fh.ResetStats()
	r, err = benchkit.Curl(curl, p.URL+"/download/"+benchRepo+"/big-v2.safetensors")
	if err != nil {
		p.Stop()
		return err
	}
	results = append(results, result{name: "xetproxy, edited copy of the cached file (3 edits + 1 MiB inserted)", speed: []float64{r.Speed},
		size: v2Size, xorbBytes: xorbBytes(fh),
		note: fmt.Sprintf("upstream xorb bytes = %.2f%% of the file", 100*float64(xorbBytes(fh))/float64(v2Size))})
	p.Stop()

	// restart: a new process on the same directory
	restart := result{name: "xetproxy warm after a restart (new process, same --cache-dir)", size: bigSize}
	p, err = benchkit.StartProxy(bin, hubURL, cacheArgs...)
	if err != nil {
		return err
	}
	fh.ResetStats()
	for i := 0; i < runs; i++ {
		r, cpu, err := curlCPU(curl, p.URL+bigURL, p.PID())
		if err != nil {
			p.Stop()
			return err
		}
		restart.speed, restart.cpu = append(restart.speed, r.Speed), append(restart.cpu, cpu)
	}
	restart.xorbBytes, restart.rss = xorbBytes(fh), p.Peak()
	p.Stop()
	results = append(results, restart)
	logf("restart: %s", benchkit.MBps(benchkit.Median(restart.speed)))

	// shared S3 tier: instance A fills it, instance B (empty disk) reads it
	if withS3 {
		r, err := s3Scenario(curl, bin, hubURL, fh, cacheRoot, size, bigURL)
		if err != nil {
			return err
		}
		results = append(results, r)
	}

	// many clients, one cold file, one fresh server
	p, err = benchkit.StartProxy(bin, hubURL, "--cache-dir", filepath.Join(cacheRoot, "hot"), "--cache-size", strconv.FormatInt(2*csize, 10))
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
			_, errs[c] = benchkit.Curl(curl, p.URL+"/download/"+benchRepo+"/hot.safetensors")
		}(c)
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	if err := errors.Join(errs...); err != nil {
		p.Stop()
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
		speed: []float64{float64(int64(clients)*csize) / wall}, size: csize, xorbBytes: xorbBytes(fh), rss: p.Peak(),
		note: fmt.Sprintf("%d xorb ranges, each fetched at most %d time(s)", len(ranges), maxPer)})
	p.Stop()

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
	fmt.Fprintf(w, "| scenario | throughput | server CPU-s/GB | vs %s | xorb bytes from upstream | server peak RSS | notes |\n|---|---|---|---|---|---|---|\n", base.name)
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
		cpu := "—"
		if len(r.cpu) > 0 {
			cpu = fmt.Sprintf("%.2f", benchkit.Median(r.cpu))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.2f× | %s | %s | %s |\n", r.name, benchkit.MBps(benchkit.Median(r.speed)), cpu, benchkit.Median(r.speed)/b, xb, rss, r.note)
	}
	fmt.Fprintf(w, "\nRaw runs:")
	for _, r := range rs {
		fmt.Fprintf(w, " %s: %s", r.name, list(r.speed))
		if len(r.cpu) > 0 {
			fmt.Fprintf(w, " (CPU-s/GB %s)", fmt.Sprint(r.cpu))
		}
		fmt.Fprint(w, ";")
	}
	fmt.Fprintln(w)
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

func cacheRootOr(dir string) string {
	if dir == "" {
		return os.TempDir()
	}
	return dir
}

// s3Scenario runs instance A (an empty disk of its own and a bucket, the
// S3 settings at their defaults: no --s3-queue) on the file at url, stops
// it (SIGTERM: it drains its queued bucket writes), then instance B (an
// empty disk, the same bucket) on the same file, and reports B. The bucket
// is versitygw (a real S3 server on a folder) when installed, else an
// in-process gofakes3 holding the file in memory.
func s3Scenario(curl, bin, hubURL string, fh *fakehub.Hub, root string, size int64, url string) (result, error) {
	endpoint, kind, stop, err := startBucket(root)
	if err != nil {
		return result{}, err
	}
	defer stop()
	s3args := func(d string) []string {
		return []string{"--cache-dir", d, "--cache-size", strconv.FormatInt(3*size, 10),
			"--s3-endpoint", endpoint, "--s3-bucket", "xetproxy-cache", "--s3-prefix", "chunks/",
			"--s3-region", "us-east-1", "--s3-path-style"}
	}
	os.Setenv("AWS_ACCESS_KEY_ID", "bench-key")
	os.Setenv("AWS_SECRET_ACCESS_KEY", "bench-secret-0123456789")
	a, err := benchkit.StartProxy(bin, hubURL, s3args(filepath.Join(root, "s3-a"))...)
	if err != nil {
		return result{}, err
	}
	fh.ResetStats()
	ra, err := benchkit.Curl(curl, a.URL+url)
	if err != nil {
		a.Stop()
		return result{}, err
	}
	aBytes := xorbBytes(fh)
	queued := metric(a.URL, `xetproxy_cache_tier_queue_bytes{tier="s3"}`)
	// wait for the bucket writes (and the promotions feeding them) to end,
	// then read A's counters; SIGTERM would drain the same way, but A's
	// metrics end with it
	t0 := time.Now()
	for calm := 0; calm < 5 && time.Since(t0) < 5*time.Minute; {
		time.Sleep(200 * time.Millisecond)
		if metric(a.URL, `xetproxy_cache_tier_queue_bytes{tier="s3"}`) == 0 && metric(a.URL, "xetproxy_cache_fills_in_flight") == 0 {
			calm++
		} else {
			calm = 0
		}
	}
	drain := time.Since(t0) - time.Second
	aDropped := metric(a.URL, `xetproxy_cache_tier_dropped_total{tier="s3"}`)
	aWaits := metric(a.URL, `xetproxy_cache_tier_queue_waits_total{tier="s3"}`)
	a.Stop()
	logf("instance A: %s, %s of xorbs, %s queued at the end of its download, drained in about %.1fs; %.0f bucket writes dropped, %.0f waits for room",
		benchkit.MBps(ra.Speed), benchkit.Human(aBytes), benchkit.Human(int64(queued)), drain.Seconds(), aDropped, aWaits)
	b, err := benchkit.StartProxy(bin, hubURL, s3args(filepath.Join(root, "s3-b"))...)
	if err != nil {
		return result{}, err
	}
	fh.ResetStats()
	r, cpu, err := curlCPU(curl, b.URL+url, b.PID())
	if err != nil {
		b.Stop()
		return result{}, err
	}
	res := result{cpu: []float64{cpu}, name: "xetproxy instance B, empty disk, from the S3 tier instance A filled (" + kind + ", default --s3-queue)",
		speed: []float64{r.Speed}, size: r.Size, xorbBytes: xorbBytes(fh), rss: b.Peak(),
		note: fmt.Sprintf("instance A: %s cold, %s queued when its download ended, drained in about %.1fs, %.0f bucket writes dropped, %.0f waits for room",
			benchkit.MBps(ra.Speed), benchkit.Human(int64(queued)), drain.Seconds(), aDropped, aWaits)}
	b.Stop()
	return res, nil
}

// coldRuns runs the two cold scenarios runs times, alternating, each
// time with a fresh server (and an empty cache directory): without cache,
// and filling the disk cache. The fill's CPU is counted until the server
// is idle (settle), since promotions end after the download.
func coldRuns(curl, bin, hubURL string, fh *fakehub.Hub, root string, size int64, runs int) ([]result, error) {
	bigURL := "/download/" + benchRepo + "/big.safetensors"
	none := result{name: "xetproxy cold, no cache"}
	fill := result{name: "xetproxy cold, filling an empty disk cache (CPU until idle)"}
	for i := 0; i < runs; i++ {
		p, err := benchkit.StartProxy(bin, hubURL, "--cache-dir", "")
		if err != nil {
			return nil, err
		}
		fh.ResetStats()
		r, cpu, err := curlCPU(curl, p.URL+bigURL, p.PID())
		none.rss = max(none.rss, p.Peak())
		p.Stop()
		if err != nil {
			return nil, err
		}
		none.speed, none.cpu, none.size, none.xorbBytes = append(none.speed, r.Speed), append(none.cpu, cpu), r.Size, xorbBytes(fh)

		dir := filepath.Join(root, fmt.Sprintf("cold-%d", i))
		p, err = benchkit.StartProxy(bin, hubURL, "--cache-dir", dir, "--cache-size", strconv.FormatInt(3*size+(1<<30), 10))
		if err != nil {
			return nil, err
		}
		fh.ResetStats()
		c0 := benchkit.CPUSeconds(p.PID())
		r, err = benchkit.Curl(curl, p.URL+bigURL)
		if err != nil {
			p.Stop()
			return nil, err
		}
		settle(p.URL)
		cpu = (benchkit.CPUSeconds(p.PID()) - c0) / (float64(r.Size) / 1e9)
		logf("cold run %d: no cache %.2f CPU-s/GB, fill %.2f CPU-s/GB (%s fill bytes, %s staged, %s promoted, %.0f fallbacks)", i+1, none.cpu[i], cpu,
			benchkit.Human(int64(metric(p.URL, "xetproxy_cache_fill_bytes_total"))),
			benchkit.Human(int64(metric(p.URL, "xetproxy_cache_staged_bytes_total"))),
			benchkit.Human(int64(metric(p.URL, "xetproxy_cache_promoted_bytes_total"))),
			metric(p.URL, "xetproxy_cache_fallbacks_total"))
		fill.rss = max(fill.rss, p.Peak())
		p.Stop()
		os.RemoveAll(dir)
		fill.speed, fill.cpu, fill.size, fill.xorbBytes = append(fill.speed, r.Speed), append(fill.cpu, cpu), r.Size, xorbBytes(fh)
	}
	return []result{none, fill}, nil
}

// settle waits until the server's cache work has ended: no fill in
// flight, and the bytes promoted from staging unchanged for a second (at
// most a minute).
func settle(base string) {
	last, calm := -2.0, 0
	for t0 := time.Now(); calm < 5 && time.Since(t0) < time.Minute; {
		time.Sleep(200 * time.Millisecond)
		v := metric(base, "xetproxy_cache_promoted_bytes_total")
		if v == last && metric(base, "xetproxy_cache_fills_in_flight") == 0 {
			calm++
		} else {
			calm = 0
		}
		last = v
	}
}

// metric returns one sample of the server's /metrics, -1 when missing.
func metric(base, sample string) float64 {
	res, err := http.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// startBucket starts versitygw on a folder under root when it is installed
// (PATH or GOPATH/bin), else an in-process gofakes3; the bucket is
// xetproxy-cache, the credentials those s3Scenario sets.
func startBucket(root string) (endpoint, kind string, stop func(), err error) {
	bin, lerr := exec.LookPath("versitygw")
	if lerr != nil {
		gopath := os.Getenv("GOPATH")
		if gopath == "" {
			home, _ := os.UserHomeDir()
			gopath = filepath.Join(home, "go")
		}
		bin = filepath.Join(gopath, "bin", "versitygw")
		if _, serr := os.Stat(bin); serr != nil {
			bin = ""
		}
	}
	if bin == "" {
		backend := s3mem.New()
		if err := backend.CreateBucket("xetproxy-cache"); err != nil {
			return "", "", nil, err
		}
		srv := httptest.NewServer(gofakes3.New(backend).Server())
		return srv.URL, "gofakes3 in memory", srv.Close, nil
	}
	dir := filepath.Join(root, "bucket")
	if err := os.MkdirAll(filepath.Join(dir, "xetproxy-cache"), 0o755); err != nil {
		return "", "", nil, err
	}
	addr, err := benchkit.FreeAddr()
	if err != nil {
		return "", "", nil, err
	}
	cmd := exec.Command(bin, "--access", "bench-key", "--secret", "bench-secret-0123456789", "--port", addr, "--quiet", "posix", dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", "", nil, err
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return "", "", nil, fmt.Errorf("versitygw does not listen: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + addr, "versitygw on a local folder", stop, nil
}
