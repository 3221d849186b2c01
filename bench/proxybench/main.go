// Command proxybench measures the xetproxy server on this machine: a cold
// single stream of a large Xet file from fakehub to curl, the same bytes
// from a static server (nginx if installed, and Go's http.ServeContent, the
// loopback ceiling), concurrent clients on different files, time to first
// byte, and the server's peak RSS (VmHWM from /proc/PID/status) in each
// scenario. It prints a Markdown report. Run it through bench/proxy.sh.
//
// Cold time to first byte is measured on its own, --ttfb-runs times, on
// files of their own (ttfbFileSize each, each cold to the process asking):
// once with a fresh process per request (its first request: new upstream
// connections, nothing learnt), once with one running process that has
// served another request of the repository before (the usual case for a
// mirror: connections open, a file it has never seen).
//
// Every proxy measurement starts a fresh `xetproxy serve` process, so each
// stream is cold (no token, no metadata, no chunk in any cache) and VmHWM
// is the peak of that scenario alone.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/bench/internal/benchkit"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/sample"
)

const benchRepo = "bench/models"

// ttfbFileSize is the size of each file of the cold TTFB measurements:
// several xorb ranges, small enough that a run is short.
const ttfbFileSize = 16 << 20

func main() {
	bin := flag.String("bin", "", "xetproxy binary to benchmark (required)")
	sizeFlag := flag.String("size", "2GiB", "size of the single-stream file")
	clients := flag.Int("clients", 16, "concurrent clients, each on its own file")
	perClient := flag.String("client-size", "128MiB", "size of each concurrent client's file")
	runs := flag.Int("runs", 3, "repetitions of each measurement (medians are reported)")
	ttfbRuns := flag.Int("ttfb-runs", 9, "repetitions of the time-to-first-byte measurements")
	coldOnly := flag.Bool("cold-only", false, "measure only the Go static baseline and the cold single stream (CPU per GB, throughput)")
	compare := flag.String("compare", "", "with --cold-only: a second xetproxy binary, measured in turn with --bin under the same load")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "proxybench: --bin is required")
		os.Exit(2)
	}
	size, err1 := server.ParseSize(*sizeFlag)
	csize, err2 := server.ParseSize(*perClient)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(2)
	}
	if *compare != "" && !*coldOnly {
		fmt.Fprintln(os.Stderr, "proxybench: --compare needs --cold-only")
		os.Exit(2)
	}
	if *coldOnly {
		*clients = 0
	}
	if err := run(*bin, *compare, size, csize, *clients, *runs, *ttfbRuns, *coldOnly); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

func run(bin, compare string, size, csize int64, clients, runs, ttfbRuns int, coldOnly bool) error {
	curl, err := exec.LookPath("curl")
	if err != nil {
		return fmt.Errorf("curl is needed: %w", err)
	}
	dir, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// the fake Hub, in this process
	fh, hubURL, stopHub, err := benchkit.StartHub(fakehub.Config{})
	if err != nil {
		return err
	}
	defer stopHub()
	if err := fh.CreateRepo(fakehub.RepoSpec{ID: benchRepo}); err != nil {
		return err
	}
	logf("ingesting %s + %d × %s into fakehub...", benchkit.Human(size), clients, benchkit.Human(csize))
	start := time.Now()
	big := sample.NewSafetensors(size, 1)
	if _, err := fh.AddFile(context.Background(), benchRepo, "big.safetensors", big); err != nil {
		return err
	}
	for i := 0; i < clients; i++ {
		if _, err := fh.AddFile(context.Background(), benchRepo, fmt.Sprintf("shard-%02d.safetensors", i), sample.NewSafetensors(csize, uint64(100+i))); err != nil {
			return err
		}
	}
	for i := 0; i < ttfbRuns; i++ {
		if _, err := fh.AddFile(context.Background(), benchRepo, ttfbFile(i), sample.NewSafetensors(ttfbFileSize, uint64(1000+i))); err != nil {
			return err
		}
	}
	logf("ingested in %.1fs", time.Since(start).Seconds())
	bigSize := sample.NewSafetensors(size, 1).Size()

	// the same bytes on disk for the static baselines
	www := filepath.Join(dir, "www")
	os.MkdirAll(www, 0o755)
	bigPath := filepath.Join(www, "big.safetensors")
	f, err := os.Create(bigPath)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), sample.NewSafetensors(size, 1)); err != nil {
		return err
	}
	f.Close()
	wantSHA := hex.EncodeToString(h.Sum(nil))

	rep := &report{size: bigSize}
	other := &report{size: bigSize} // --compare

	// Go static server (in this process; idle otherwise during the run)
	sln, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(sln, http.FileServer(http.Dir(www)))
	goURL := "http://" + sln.Addr().String() + "/big.safetensors"
	benchkit.Curl(curl, goURL) // warm the page cache
	for i := 0; i < runs; i++ {
		r, err := benchkit.Curl(curl, goURL)
		if err != nil {
			return err
		}
		rep.goStatic = append(rep.goStatic, r.Speed)
	}
	logf("go static: %s", benchkit.MBps(benchkit.Median(rep.goStatic)))

	// nginx, if installed (not a baseline of the cold-only measurement)
	ng, ngErr := exec.LookPath("nginx")
	switch {
	case coldOnly:
	case ngErr == nil:
		url, stop, err := benchkit.StartNginx(ng, dir, www, "big.safetensors")
		if err != nil {
			logf("nginx: %v (skipped)", err)
		} else {
			for i := 0; i < runs; i++ {
				r, err := benchkit.Curl(curl, url+"/big.safetensors")
				if err != nil {
					stop()
					return err
				}
				rep.nginx = append(rep.nginx, r.Speed)
			}
			stop()
			logf("nginx: %s", benchkit.MBps(benchkit.Median(rep.nginx)))
		}
	default:
		logf("nginx not installed: apt-get install nginx for that baseline")
	}

	// proxy, cold single stream (in turn with --compare)
	cold := func(bin string, rep *report, i int) error {
		p, err := benchkit.StartProxy(bin, hubURL, "--cache-dir", "")
		if err != nil {
			return err
		}
		u0 := p.Usage()
		r, err := benchkit.Curl(curl, p.URL+"/download/"+benchRepo+"/big.safetensors")
		u := p.Usage().Sub(u0)
		cpu := u.User + u.System
		hwm := p.Stop()
		if err != nil {
			return err
		}
		if r.Size != bigSize {
			return fmt.Errorf("proxy served %d of %d bytes", r.Size, bigSize)
		}
		rep.proxy = append(rep.proxy, r.Speed)
		rep.proxyTTFB = append(rep.proxyTTFB, r.TTFB)
		rep.proxyCPU = append(rep.proxyCPU, cpu/(float64(r.Size)/1e9))
		rep.rssSingle = append(rep.rssSingle, hwm)
		gb := float64(r.Size) / 1e9
		logf("%s cold run %d: %s, %.2f server CPU-s/GB (user %.2f, system %.2f; %.0f reads, %.0f writes per GB), TTFB %.1f ms, peak RSS %s",
			bin, i+1, benchkit.MBps(r.Speed), cpu/gb, u.User/gb, u.System/gb, float64(u.Reads)/gb, float64(u.Writes)/gb, r.TTFB*1000, benchkit.Human(hwm))
		return nil
	}
	for i := 0; i < runs; i++ {
		if err := cold(bin, rep, i); err != nil {
			return err
		}
		if compare != "" {
			if err := cold(compare, other, i); err != nil {
				return err
			}
		}
	}
	for _, b := range []struct {
		bin string
		rep *report
	}{{bin, rep}, {compare, other}} {
		if b.bin == "" {
			continue
		}
		if err := coldTTFB(curl, b.bin, hubURL, ttfbRuns, b.rep); err != nil {
			return err
		}
	}
	if coldOnly {
		rep.printCold(os.Stdout, bin)
		if compare != "" {
			other.goStatic = rep.goStatic
			other.printCold(os.Stdout, compare)
		}
		return nil
	}

	// content check once: the proxy's bytes are the file
	{
		p, err := benchkit.StartProxy(bin, hubURL, "--cache-dir", "")
		if err != nil {
			return err
		}
		got, err := benchkit.SHA256Of(p.URL + "/download/" + benchRepo + "/big.safetensors")
		p.Stop()
		if err != nil {
			return err
		}
		if got != wantSHA {
			return fmt.Errorf("proxy bytes differ: sha256 %s, want %s", got, wantSHA)
		}
		rep.verified = true
	}

	// concurrent clients on different files
	for i := 0; i < runs; i++ {
		p, err := benchkit.StartProxy(bin, hubURL, "--cache-dir", "")
		if err != nil {
			return err
		}
		var wg sync.WaitGroup
		results := make([]benchkit.CurlResult, clients)
		errs := make([]error, clients)
		t0 := time.Now()
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				results[c], errs[c] = benchkit.Curl(curl, fmt.Sprintf("%s/download/%s/shard-%02d.safetensors", p.URL, benchRepo, c))
			}(c)
		}
		wg.Wait()
		wall := time.Since(t0).Seconds()
		hwm := p.Stop()
		var total int64
		for c := range results {
			if errs[c] != nil {
				return errs[c]
			}
			total += results[c].Size
		}
		rep.concurrent = append(rep.concurrent, float64(total)/wall)
		rep.rssConcurrent = append(rep.rssConcurrent, hwm)
		logf("proxy %d clients run %d: aggregate %s, peak RSS %s", clients, i+1, benchkit.MBps(float64(total)/wall), benchkit.Human(hwm))
	}
	rep.clients, rep.csize = clients, csize

	// time to first byte on a warm server (token and metadata cached) and
	// cold, for a small plain file and the first byte of the large file
	{
		p, err := benchkit.StartProxy(bin, hubURL, "--cache-dir", "")
		if err != nil {
			return err
		}
		for i := 0; i < ttfbRuns; i++ {
			r, err := benchkit.Curl(curl, p.URL+"/download/"+benchRepo+"/big.safetensors", "-r", "0-0")
			if err != nil {
				p.Stop()
				return err
			}
			rep.ttfbWarmRange = append(rep.ttfbWarmRange, r.TTFB)
			r, err = benchkit.Curl(curl, p.URL+"/download/"+benchRepo+"/.gitattributes")
			if err != nil {
				p.Stop()
				return err
			}
			rep.ttfbWarmSmall = append(rep.ttfbWarmSmall, r.TTFB)
		}
		p.Stop()
	}
	rep.print(os.Stdout)
	return nil
}

func ttfbFile(i int) string { return fmt.Sprintf("ttfb-%02d.safetensors", i) }

// coldTTFB measures the time to first byte of whole-file GETs of files the
// process asking has never seen: each with a fresh process, then each with
// one running process (which first serves the repository's .gitattributes,
// a plain file: the Hub connection is open, nothing of the Xet files is
// known). No cache directory: every byte comes from upstream.
func coldTTFB(curl, bin, hubURL string, n int, rep *report) error {
	for i := 0; i < n; i++ {
		p, err := benchkit.StartProxy(bin, hubURL, "--cache-dir", "")
		if err != nil {
			return err
		}
		r, err := benchkit.Curl(curl, p.URL+"/download/"+benchRepo+"/"+ttfbFile(i))
		p.Stop()
		if err != nil {
			return err
		}
		rep.ttfbFresh = append(rep.ttfbFresh, r.TTFB)
	}
	p, err := benchkit.StartProxy(bin, hubURL, "--cache-dir", "")
	if err != nil {
		return err
	}
	defer p.Stop()
	if _, err := benchkit.Curl(curl, p.URL+"/download/"+benchRepo+"/.gitattributes"); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		r, err := benchkit.Curl(curl, p.URL+"/download/"+benchRepo+"/"+ttfbFile(i))
		if err != nil {
			return err
		}
		rep.ttfbRunning = append(rep.ttfbRunning, r.TTFB)
	}
	logf("%s cold TTFB: fresh process %s ms; running process %s ms", bin, list(rep.ttfbFresh, ms), list(rep.ttfbRunning, ms))
	return nil
}

func ms(x float64) string { return fmt.Sprintf("%.1f", x*1000) }

// printTTFB writes the cold TTFB rows of the report.
func (r *report) printTTFB(w io.Writer, cols int) {
	pad := strings.Repeat(" |", cols-2)
	fmt.Fprintf(w, "| TTFB, cold file, fresh process (its first request), median of %d (min–max) | %s ms (%s–%s) |%s\n", len(r.ttfbFresh), ms(benchkit.Median(r.ttfbFresh)), ms(slices.Min(r.ttfbFresh)), ms(slices.Max(r.ttfbFresh)), pad)
	fmt.Fprintf(w, "| TTFB, cold file, running process, median of %d (min–max) | %s ms (%s–%s) |%s\n", len(r.ttfbRunning), ms(benchkit.Median(r.ttfbRunning)), ms(slices.Min(r.ttfbRunning)), ms(slices.Max(r.ttfbRunning)), pad)
}

type report struct {
	size, csize                  int64
	clients                      int
	goStatic, nginx, proxy       []float64
	proxyTTFB                    []float64
	proxyCPU                     []float64 // server CPU-seconds per GB
	concurrent                   []float64
	rssSingle, rssConcurrent     []int64
	ttfbWarmRange, ttfbWarmSmall []float64
	ttfbFresh, ttfbRunning       []float64 // cold files, seconds (coldTTFB)
	verified                     bool
}

func (r *report) print(w io.Writer) {
	base := benchkit.Median(r.goStatic)
	baseName := "Go static server"
	if len(r.nginx) > 0 {
		base, baseName = benchkit.Median(r.nginx), "nginx"
	}
	fmt.Fprintf(w, "\n## Results (%s, %d runs each, medians)\n\n", time.Now().UTC().Format("2006-01-02"), len(r.proxy))
	fmt.Fprintf(w, "| measurement | median | ratio / target |\n|---|---|---|\n")
	if len(r.nginx) > 0 {
		fmt.Fprintf(w, "| nginx static, %s, one curl | %s | baseline |\n", benchkit.Human(r.size), benchkit.MBps(benchkit.Median(r.nginx)))
	}
	fmt.Fprintf(w, "| Go static server (http.FileServer), %s, one curl | %s | %.2f× nginx |\n", benchkit.Human(r.size), benchkit.MBps(benchkit.Median(r.goStatic)), ratio(benchkit.Median(r.goStatic), benchkit.Median(r.nginx)))
	fmt.Fprintf(w, "| xetproxy cold, %s from fakehub, one curl | %s | %.2f× %s (target ≥ 0.25×) |\n", benchkit.Human(r.size), benchkit.MBps(benchkit.Median(r.proxy)), benchkit.Median(r.proxy)/base, baseName)
	fmt.Fprintf(w, "| xetproxy cold, %d curls on %d different %s files, aggregate | %s | %.2f× %s |\n", r.clients, r.clients, benchkit.Human(r.csize), benchkit.MBps(benchkit.Median(r.concurrent)), benchkit.Median(r.concurrent)/base, baseName)
	fmt.Fprintf(w, "| server CPU-seconds per GB, xetproxy cold, one curl (from /proc/PID/stat) | %.2f | |\n", benchkit.Median(r.proxyCPU))
	fmt.Fprintf(w, "| server peak RSS (VmHWM), one %s stream | %s | target ≤ 150 MiB |\n", benchkit.Human(r.size), benchkit.Human(medianInt(r.rssSingle)))
	fmt.Fprintf(w, "| server peak RSS (VmHWM), %d concurrent streams | %s | target ≤ 600 MiB |\n", r.clients, benchkit.Human(medianInt(r.rssConcurrent)))
	fmt.Fprintf(w, "| TTFB, cold server, %s file (resolve + token + reconstruction + first xorb range) | %.1f ms | target ≤ 50 ms |\n", benchkit.Human(r.size), benchkit.Median(r.proxyTTFB)*1000)
	r.printTTFB(w, 3)
	fmt.Fprintf(w, "| TTFB, warm server, Range: bytes=0-0 of the %s file | %.1f ms | target ≤ 50 ms |\n", benchkit.Human(r.size), benchkit.Median(r.ttfbWarmRange)*1000)
	fmt.Fprintf(w, "| TTFB, warm server, small plain git file | %.1f ms | target ≤ 50 ms |\n", benchkit.Median(r.ttfbWarmSmall)*1000)
	fmt.Fprintf(w, "\nContent verified (sha256 of the proxy's bytes = the file's): %v.\n", r.verified)
	fmt.Fprintf(w, "Raw runs: proxy %s; concurrent %s; RSS single %s; RSS concurrent %s.\n",
		list(r.proxy, benchkit.MBps), list(r.concurrent, benchkit.MBps), listInt(r.rssSingle), listInt(r.rssConcurrent))
}

// printCold reports the --cold-only measurements.
func (r *report) printCold(w io.Writer, bin string) {
	fmt.Fprintf(w, "\n## Cold single stream, %s (%s, %d runs, medians)\n\n", bin, time.Now().UTC().Format("2006-01-02"), len(r.proxy))
	fmt.Fprintf(w, "| measurement | median |\n|---|---|\n")
	fmt.Fprintf(w, "| Go static server (http.FileServer), %s, one curl | %s |\n", benchkit.Human(r.size), benchkit.MBps(benchkit.Median(r.goStatic)))
	fmt.Fprintf(w, "| xetproxy cold, %s from fakehub, one curl | %s |\n", benchkit.Human(r.size), benchkit.MBps(benchkit.Median(r.proxy)))
	fmt.Fprintf(w, "| server CPU-seconds per GB, xetproxy cold, one curl (from /proc/PID/stat) | %.2f |\n", benchkit.Median(r.proxyCPU))
	fmt.Fprintf(w, "| server peak RSS (VmHWM), one %s stream | %s |\n", benchkit.Human(r.size), benchkit.Human(medianInt(r.rssSingle)))
	r.printTTFB(w, 2)
	fmt.Fprintf(w, "\nRaw runs: proxy %s; CPU-s/GB %s.\n", list(r.proxy, benchkit.MBps), list(r.proxyCPU, func(x float64) string { return fmt.Sprintf("%.2f", x) }))
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func medianInt(v []int64) int64 {
	f := make([]float64, len(v))
	for i, x := range v {
		f[i] = float64(x)
	}
	return int64(benchkit.Median(f))
}

func list(v []float64, f func(float64) string) string {
	var s []string
	for _, x := range v {
		s = append(s, f(x))
	}
	return strings.Join(s, ", ")
}

func listInt(v []int64) string {
	var s []string
	for _, x := range v {
		s = append(s, benchkit.Human(x))
	}
	return strings.Join(s, ", ")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "proxybench: "+format+"\n", args...)
}
