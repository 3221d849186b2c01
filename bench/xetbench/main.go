// Command xetbench measures the xetproxy server as the CAS of Xet clients
// against its plain route, on this machine: one file per --sizes, a warm
// disk cache, and for each client a fresh `xetproxy serve` process on that
// cache, so that its peak RSS (VmHWM from /proc/PID/status) and its
// CPU-seconds (utime + stime from /proc/PID/stat) belong to that download
// alone. It prints a Markdown report. Run it through bench/xet.sh.
//
// Clients, each checked against the file's sha256:
//   - plain: curl of /download/{repo}/{file} (the plain route);
//   - xet-go-N: tests/xetclient's hf_xet-flow client, N parallel range
//     fetches, in ranged segments of --segment;
//   - xet-js: @huggingface/hub downloadFile on its Xet path (skipped when
//     tests/js/node_modules is missing).
//
// The clients run on the same machine as the server and compete with it
// for CPU; throughput is bytes over wall time of the client.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/bench/internal/benchkit"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/sample"
	"github.com/xetproxy/xetproxy/tests/xetclient"
)

const benchRepo = "bench/xet-models"

func main() {
	bin := flag.String("bin", "", "xetproxy binary (required)")
	sizes := flag.String("sizes", "2GiB,8GiB", "comma-separated file sizes")
	parallel := flag.String("parallel", "8,16", "comma-separated parallel fetch counts of the Go Xet client")
	segment := flag.String("segment", "256MiB", "the Go Xet client's segment (one ranged reconstruction each)")
	runs := flag.Int("runs", 1, "repetitions of each measurement (medians are reported)")
	jsDir := flag.String("js", "tests/js", "directory holding node_modules/@huggingface/hub")
	jsScript := flag.String("js-script", "bench/xet-js.mjs", "the JS download script")
	flag.Parse()
	if *bin == "" {
		fail(errors.New("--bin is required"))
	}
	var sz []int64
	for _, s := range strings.Split(*sizes, ",") {
		n, err := server.ParseSize(strings.TrimSpace(s))
		if err != nil {
			fail(err)
		}
		sz = append(sz, n)
	}
	var par []int
	for _, s := range strings.Split(*parallel, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fail(fmt.Errorf("--parallel %q: want positive counts", *parallel))
		}
		par = append(par, n)
	}
	seg, err := server.ParseSize(*segment)
	if err != nil || seg <= 0 {
		fail(fmt.Errorf("--segment %q: want a positive size", *segment))
	}
	b := &bench{bin: *bin, par: par, segment: uint64(seg), runs: *runs}
	if m, err := filepath.Abs(filepath.Join(*jsDir, "node_modules", "@huggingface", "hub", "dist", "index.mjs")); err == nil {
		if _, err := os.Stat(m); err == nil {
			if node, err := exec.LookPath("node"); err == nil {
				b.node, b.jsModule = node, m
				b.jsScript, _ = filepath.Abs(*jsScript)
			}
		}
	}
	if b.node == "" {
		logf("node or %s/node_modules missing: the JS client is skipped", *jsDir)
	}
	if err := b.run(sz); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "xetbench:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "xetbench: "+format+"\n", args...)
}

type bench struct {
	bin                      string
	par                      []int
	segment                  uint64
	runs                     int
	node, jsModule, jsScript string
	curl, hubURL, key, dir   string
	results                  []result
}

type result struct {
	size    int64
	client  string
	bps     float64 // bytes per second of the client
	cpuPerG float64 // server CPU-seconds per GB
	rss     int64   // server VmHWM
}

func (b *bench) run(sizes []int64) error {
	var err error
	if b.curl, err = exec.LookPath("curl"); err != nil {
		return fmt.Errorf("curl is needed: %w", err)
	}
	if b.dir, err = os.MkdirTemp("", "xetbench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	key := make([]byte, 32)
	rand.Read(key)
	b.key = base64.StdEncoding.EncodeToString(key)

	// the fake Hub, in this process, xorbs on disk (8 GiB files)
	fh, hubURL, stopHub, err := benchkit.StartHub(fakehub.Config{Dir: filepath.Join(b.dir, "hub")})
	if err != nil {
		return err
	}
	defer stopHub()
	b.hubURL = hubURL
	if err := fh.CreateRepo(fakehub.RepoSpec{ID: benchRepo}); err != nil {
		return err
	}
	for i, size := range sizes {
		name := fmt.Sprintf("model-%d.safetensors", i)
		logf("ingesting %s into fakehub...", benchkit.Human(size))
		t0 := time.Now()
		f, err := fh.AddFile(context.Background(), benchRepo, name, sample.NewSafetensors(size, uint64(7+i)))
		if err != nil {
			return err
		}
		logf("ingested in %.0fs", time.Since(t0).Seconds())
		if err := b.measure(f, name); err != nil {
			return err
		}
	}
	b.print(os.Stdout)
	return nil
}

// measure warms a disk cache with the file, then downloads it with every
// client, each through a fresh server on that cache.
func (b *bench) measure(f fakehub.File, name string) error {
	cache := filepath.Join(b.dir, "cache-"+name)
	capacity := 2*f.Size + (1 << 30)
	want := f.SHA256
	// warm: the plain route and one Xet pass, so both paths find the chunks
	p, err := b.start(cache, capacity)
	if err != nil {
		return err
	}
	if _, err := b.plain(p, name, want); err != nil {
		p.Stop()
		return err
	}
	if err := b.xetGo(p, f, 8, want); err != nil {
		p.Stop()
		return err
	}
	p.Stop()
	logf("%s: cache warm", benchkit.Human(f.Size))

	type client struct {
		name string
		do   func(p *benchkit.Proxy) error
	}
	clients := []client{{"plain route, curl", func(p *benchkit.Proxy) error { _, err := b.plain(p, name, want); return err }}}
	for _, n := range b.par {
		clients = append(clients, client{fmt.Sprintf("Xet, Go hf_xet-flow client, %d parallel", n), func(p *benchkit.Proxy) error { return b.xetGo(p, f, n, want) }})
	}
	if b.node != "" {
		clients = append(clients, client{"Xet, @huggingface/hub downloadFile", func(p *benchkit.Proxy) error { return b.xetJS(p, name, want) }})
	}
	for _, c := range clients {
		var bps, cpu []float64
		var rss []float64
		for i := 0; i < b.runs; i++ {
			p, err := b.start(cache, capacity)
			if err != nil {
				return err
			}
			cpu0 := p.CPUSeconds()
			t0 := time.Now()
			err = c.do(p)
			wall := time.Since(t0).Seconds()
			used := p.CPUSeconds() - cpu0
			hwm := p.Stop()
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			bps = append(bps, float64(f.Size)/wall)
			cpu = append(cpu, used/(float64(f.Size)/1e9))
			rss = append(rss, float64(hwm))
			logf("%s %s: %s, %.2f server CPU-s/GB, peak RSS %s", benchkit.Human(f.Size), c.name,
				benchkit.MBps(float64(f.Size)/wall), used/(float64(f.Size)/1e9), benchkit.Human(hwm))
		}
		b.results = append(b.results, result{size: f.Size, client: c.name, bps: benchkit.Median(bps),
			cpuPerG: benchkit.Median(cpu), rss: int64(benchkit.Median(rss))})
	}
	return nil
}

func (b *bench) plain(p *benchkit.Proxy, name, want string) (int64, error) {
	cmd := exec.Command(b.curl, "-sS", "-f", p.URL+"/download/"+benchRepo+"/"+name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	h := sha256.New()
	n, err := io.Copy(h, out)
	if werr := cmd.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return n, fmt.Errorf("curl: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return n, fmt.Errorf("plain route: sha256 %s, want %s", got, want)
	}
	return n, nil
}

func (b *bench) xetGo(p *benchkit.Proxy, f fakehub.File, parallel int, want string) error {
	c := &xetclient.Client{Endpoint: p.URL, Parallel: parallel}
	ctx := context.Background()
	fi, err := c.Resolve(ctx, "", benchRepo, "main", f.Path)
	if err != nil {
		return err
	}
	h := sha256.New()
	if err := c.DownloadTo(ctx, fi.RefreshRoute, fi.Hash, uint64(fi.Size), b.segment, h); err != nil {
		return err
	}
	for _, u := range c.URLs() {
		if !strings.HasPrefix(u, p.URL+"/") {
			return fmt.Errorf("the Xet client left the proxy: %s", strings.SplitN(u, "?", 2)[0])
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("Xet client: sha256 %s, want %s", got, want)
	}
	return nil
}

func (b *bench) xetJS(p *benchkit.Proxy, name, want string) error {
	cmd := exec.Command(b.node, b.jsScript)
	cmd.Env = append(os.Environ(), "HUB_URL="+p.URL, "HUB_JS_MODULE="+b.jsModule, "REPO="+benchRepo, "FILE="+name)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	var r struct {
		SHA256      string `json:"sha256"`
		XorbFetches int    `json:"xorbFetches"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return fmt.Errorf("node output %q: %w", out, err)
	}
	if r.SHA256 != want || r.XorbFetches == 0 {
		return fmt.Errorf("JS client: sha256 %s (want %s), %d xorb fetches", r.SHA256, want, r.XorbFetches)
	}
	return nil
}

// start runs `xetproxy serve` on the cache directory, with a signing key,
// and waits until its start-up work is done.
func (b *bench) start(cache string, capacity int64) (*benchkit.Proxy, error) {
	p, err := benchkit.StartProxyEnv(b.bin, b.hubURL, []string{"XETPROXY_SIGNING_KEY=" + b.key},
		"--cache-dir", cache, "--cache-size", strconv.FormatInt(capacity, 10))
	if err != nil {
		return nil, err
	}
	p.WaitIdle()
	return p, nil
}

func (b *bench) print(w io.Writer) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "\n## Results (%s, warm disk cache, %d run(s) each, medians)\n\n", time.Now().UTC().Format("2006-01-02"), b.runs)
	fmt.Fprintf(bw, "| file | client | throughput | server CPU-s per GB | server peak RSS |\n|---|---|---|---|---|\n")
	for _, r := range b.results {
		fmt.Fprintf(bw, "| %s | %s | %s | %.2f | %s |\n", benchkit.Human(r.size), r.client, benchkit.MBps(r.bps), r.cpuPerG, benchkit.Human(r.rss))
	}
}
