// Command downloadbench measures xetproxy's download engine and
// `xetproxy download` on this machine, against fakehub serving from memory
// on loopback, side by side with the @huggingface/hub JS client and with
// curl fetching the same bytes from plain static servers (the loopback
// ceiling). It prints a Markdown report. Run it through bench/download.sh.
//
// Measurements (medians of --runs):
//   - engine: proxy.Engine reading the whole file to io.Discard in this
//     process, every chunk decoded and hashed, the Xet file hash checked;
//   - cli: `xetproxy download` of the file to disk (wall time, peak RSS);
//   - cli xN: the same for a file --factor times larger (peak RSS: memory
//     must not depend on the file size);
//   - js: @huggingface/hub downloadFile() from the same fakehub, streamed to
//     disk with node (skipped if tests/js/node_modules is missing);
//   - curl: the same bytes as a static file from Go's http.ServeContent
//     (sendfile) and from nginx when installed.
//
// Peak RSS comes from /usr/bin/time -v ("Maximum resident set size").
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/bench/internal/benchkit"
	"github.com/xetproxy/xetproxy/internal/engineconf"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

const benchRepo = "bench/models"

func main() {
	bin := flag.String("bin", "", "xetproxy binary (required)")
	size := flag.Int64("size-mib", 2048, "file size, MiB")
	factor := flag.Int("factor", 4, "the large file is this many times bigger (0: skip it)")
	runs := flag.Int("runs", 3, "repetitions of each measurement")
	jsDir := flag.String("js", "tests/js", "directory holding node_modules/@huggingface/hub")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "downloadbench: --bin is required")
		os.Exit(2)
	}
	if err := run(*bin, *size<<20, *factor, *runs, *jsDir); err != nil {
		fmt.Fprintln(os.Stderr, "downloadbench:", err)
		os.Exit(1)
	}
}

// result is one measured scenario.
type result struct {
	name   string
	bytes  int64
	walls  []time.Duration
	rssKiB []int64
	cpu    []float64 // user+system seconds of the downloading process, per run
	note   string
}

func (r *result) median() time.Duration {
	w := append([]time.Duration(nil), r.walls...)
	sort.Slice(w, func(i, j int) bool { return w[i] < w[j] })
	return w[len(w)/2]
}

func (r *result) mbps() float64 { return float64(r.bytes) / r.median().Seconds() / 1e6 }

func (r *result) peakRSS() string {
	if len(r.rssKiB) == 0 {
		return "n/a"
	}
	m := r.rssKiB[0]
	for _, v := range r.rssKiB {
		m = max(m, v)
	}
	return fmt.Sprintf("%.0f MiB", float64(m)/1024)
}

// cpuPerGB is the median CPU-seconds the downloading process spent per GB
// (1e9 bytes), or "—" when not measured.
func (r *result) cpuPerGB() string {
	if len(r.cpu) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", benchkit.Median(r.cpu)/(float64(r.bytes)/1e9))
}

// add records one run.
func (r *result) add(m measured) {
	r.walls, r.rssKiB, r.cpu = append(r.walls, m.wall), append(r.rssKiB, m.rssKiB), append(r.cpu, m.cpu)
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "downloadbench: "+format+"\n", args...) }

func run(bin string, size int64, factor, runs int, jsDir string) error {
	work, err := os.MkdirTemp("", "downloadbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// fakehub in this process, in memory, on loopback.
	fh, hubURL, stop, err := benchkit.StartHub(fakehub.Config{})
	if err != nil {
		return err
	}
	defer stop()
	if err := fh.CreateRepo(fakehub.RepoSpec{ID: benchRepo}); err != nil {
		return err
	}
	logf("ingesting %d MiB into fakehub (memory)", size>>20)
	static := filepath.Join(work, "static", "model.safetensors")
	if err := os.MkdirAll(filepath.Dir(static), 0o755); err != nil {
		return err
	}
	sum, err := ingest(fh, "model.safetensors", size, static)
	if err != nil {
		return err
	}
	var results []*result

	// 1. the engine in process, to io.Discard.
	eng, err := newEngine(hubURL)
	if err != nil {
		return err
	}
	meta, err := eng.Stat(context.Background(), "", hub.Repo{Type: hub.Model, ID: benchRepo}, "main", "model.safetensors")
	if err != nil {
		return err
	}
	r := &result{name: "engine → io.Discard (in process, verified)", bytes: size}
	fh.ResetStats()
	for i := range runs {
		start := time.Now()
		rc, err := eng.Open(context.Background(), "", meta, 0, -1)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != size {
			return fmt.Errorf("engine: %d bytes, %v", n, err)
		}
		r.walls = append(r.walls, time.Since(start))
		logf("engine run %d: %v", i+1, r.walls[i])
	}
	// fakehub counts a request once its handler has returned, which may be
	// just after the client saw the last byte: wait for the count to settle.
	stored := fh.Stats()[fakehub.ClassXorb].BytesOut
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		n := fh.Stats()[fakehub.ClassXorb].BytesOut
		if n == stored && n > 0 {
			break
		}
		stored = n
	}
	stored /= int64(runs)
	r.note = fmt.Sprintf("%.0f MB of xorb ranges per read (%.0f%% of the file)", float64(stored)/1e6, 100*float64(stored)/float64(size))
	results = append(results, r)

	// 2. the CLI, to standard output (/dev/null), then to disk.
	hubEnv := []string{"HF_ENDPOINT=" + hubURL}
	cliNull := &result{name: "`xetproxy download -o -` → /dev/null", bytes: size}
	for i := range runs {
		m, err := timed(nil, hubEnv, bin, "download", "-q", "-o", "-", benchRepo, "model.safetensors")
		if err != nil {
			return fmt.Errorf("xetproxy download: %w", err)
		}
		cliNull.add(m)
		logf("cli run %d: %v, %d KiB, %.2f CPU-s", i+1, m.wall, m.rssKiB, m.cpu)
	}
	results = append(results, cliNull)
	out := filepath.Join(work, "out")
	cli := &result{name: "`xetproxy download` → disk (temp file, rename)", bytes: size}
	for i := range runs {
		os.RemoveAll(out)
		m, err := timed(nil, []string{"HF_ENDPOINT=" + hubURL}, bin, "download", "-q", "-o", out+"/", benchRepo, "model.safetensors")
		if err != nil {
			return fmt.Errorf("xetproxy download: %w", err)
		}
		if i == 0 {
			if err := checkFile(filepath.Join(out, "model.safetensors"), sum); err != nil {
				return err
			}
		}
		cli.add(m)
		logf("cli run %d: %v, %d KiB, %.2f CPU-s", i+1, m.wall, m.rssKiB, m.cpu)
	}
	os.RemoveAll(out)
	results = append(results, cli)

	// 3. @huggingface/hub with node.
	if mod := filepath.Join(jsDir, "node_modules", "@huggingface", "hub", "dist", "index.mjs"); fileExists(mod) {
		abs, _ := filepath.Abs(mod)
		script, _ := filepath.Abs(filepath.Join(filepath.Dir(os.Args[0]), "download-js.mjs"))
		if !fileExists(script) {
			script, _ = filepath.Abs("bench/download-js.mjs")
		}
		js := &result{name: "@huggingface/hub 2.17.5 (node " + nodeVersion() + ") → /dev/null", bytes: size}
		dest := filepath.Join(work, "js.bin")
		for i := range runs {
			os.Remove(dest)
			to := os.DevNull
			if i == 0 {
				to = dest // the first run is checked
			}
			m, err := timed(nil, []string{"HUB_URL=" + hubURL, "HUB_JS_MODULE=" + abs, "REPO=" + benchRepo,
				"FILE=model.safetensors", "OUT=" + to}, "node", script)
			if err != nil {
				return fmt.Errorf("node: %w", err)
			}
			if i == 0 {
				if err := checkFile(dest, sum); err != nil {
					return fmt.Errorf("js download: %w", err)
				}
			}
			js.add(m)
			logf("js run %d: %v, %d KiB, %.2f CPU-s", i+1, m.wall, m.rssKiB, m.cpu)
		}
		os.Remove(dest)
		results = append(results, js)
	} else {
		logf("skipping the JS client: %s not found (npm ci in tests/js)", mod)
	}

	// 4. curl from static servers: the loopback ceiling.
	goURL, goStop, err := serveStatic(static)
	if err != nil {
		return err
	}
	defer goStop()
	servers := [][2]string{{"curl ← Go http.ServeContent (sendfile)", goURL}}
	if nginxURL, nginxStop, err := startNginx(work, static); err == nil {
		defer nginxStop()
		servers = append(servers, [2]string{"curl ← nginx", nginxURL + "/model.safetensors"})
	} else {
		logf("skipping nginx: %v", err)
	}
	for _, s := range servers {
		c := &result{name: s[0] + " → /dev/null", bytes: size}
		for range runs {
			m, err := timed(nil, nil, "curl", "-sSf", "-o", os.DevNull, s[1])
			if err != nil {
				return fmt.Errorf("curl: %w", err)
			}
			c.add(m)
		}
		results = append(results, c)
	}
	dest := filepath.Join(work, "curl.bin")
	c := &result{name: servers[0][0] + " → disk", bytes: size}
	for range runs {
		os.Remove(dest)
		m, err := timed(nil, nil, "curl", "-sSf", "-o", dest, servers[0][1])
		if err != nil {
			return fmt.Errorf("curl: %w", err)
		}
		c.add(m)
	}
	if err := checkFile(dest, sum); err != nil {
		return err
	}
	os.Remove(dest)
	results = append(results, c)

	// 5. memory does not grow with the file: a file factor times larger.
	var big *result
	if factor > 0 {
		bigSize := size * int64(factor)
		dfh, dURL, dStop, err := benchkit.StartHub(fakehub.Config{Dir: filepath.Join(work, "hub")})
		if err != nil {
			return err
		}
		defer dStop()
		if err := dfh.CreateRepo(fakehub.RepoSpec{ID: benchRepo}); err != nil {
			return err
		}
		logf("ingesting %d MiB into fakehub (xorbs on disk)", bigSize>>20)
		bigSum, err := ingest(dfh, "big.safetensors", bigSize, "")
		if err != nil {
			return err
		}
		big = &result{name: fmt.Sprintf("`xetproxy download` → disk, %d× file (xorbs served from disk)", factor), bytes: bigSize}
		for i := range max(1, runs-1) {
			os.RemoveAll(out)
			m, err := timed(nil, []string{"HF_ENDPOINT=" + dURL}, bin, "download", "-q", "-o", out+"/", benchRepo, "big.safetensors")
			if err != nil {
				return fmt.Errorf("xetproxy download (big): %w", err)
			}
			if i == 0 {
				if err := checkFile(filepath.Join(out, "big.safetensors"), bigSum); err != nil {
					return err
				}
			}
			big.add(m)
			logf("cli big run %d: %v, %d KiB, %.2f CPU-s", i+1, m.wall, m.rssKiB, m.cpu)
		}
		os.RemoveAll(out)
		results = append(results, big)
	}
	report(os.Stdout, results, size, runs)
	return nil
}

func report(w io.Writer, results []*result, size int64, runs int) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "File: %d MiB of bf16-like weights (BG4) and text (LZ4) in alternating 8 MiB runs; %d runs, medians.\n", size>>20, runs)
	fmt.Fprintf(w, "Machine: %s, %d CPUs, Go %s; load average before the report: %s\n\n", cpuModel(), runtime.NumCPU(), runtime.Version(), strings.TrimSpace(string(load)))
	fmt.Fprintln(w, "CPU-s/GB: user + system seconds of the downloading process (the CLI, node or curl) per GB, median; not measured for the engine, which shares its process with fakehub.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | median wall | throughput | downloader CPU-s/GB | peak RSS | runs (wall) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|")
	for _, r := range results {
		var ws []string
		for _, d := range r.walls {
			ws = append(ws, fmt.Sprintf("%.2fs", d.Seconds()))
		}
		fmt.Fprintf(w, "| %s | %.2f s | %.0f MB/s | %s | %s | %s |\n", r.name, r.median().Seconds(), r.mbps(), r.cpuPerGB(), r.peakRSS(), strings.Join(ws, " "))
	}
	fmt.Fprintln(w)
	find := func(prefix string) *result {
		for _, r := range results {
			if strings.HasPrefix(r.name, prefix) {
				return r
			}
		}
		return nil
	}
	cli, js, gostatic, nginx := find("`xetproxy download -o -`"), find("@huggingface"), find("curl ← Go http.ServeContent (sendfile) → /dev/null"), find("curl ← nginx")
	disk, curlDisk := find("`xetproxy download` → disk (temp"), find("curl ← Go http.ServeContent (sendfile) → disk")
	for _, pair := range [][2]*result{{cli, js}, {cli, gostatic}, {cli, nginx}, {find("engine"), gostatic}, {disk, curlDisk}} {
		if pair[0] != nil && pair[1] != nil {
			fmt.Fprintf(w, "- %s vs %s: %.2f× the throughput\n", pair[0].name, pair[1].name, pair[0].mbps()/pair[1].mbps())
		}
	}
	for _, r := range results {
		if r.note != "" {
			fmt.Fprintf(w, "- %s: %s\n", r.name, r.note)
		}
	}
}

// ingest adds a generated file and returns its sha256; copy (if not "")
// receives the same bytes for the static servers.
func ingest(fh *fakehub.Hub, path string, size int64, copyTo string) (string, error) {
	h := sha256.New()
	var w io.Writer = h
	if copyTo != "" {
		f, err := os.Create(copyTo)
		if err != nil {
			return "", err
		}
		defer f.Close()
		w = io.MultiWriter(h, f)
	}
	src := io.TeeReader(&mixedReader{left: size}, w)
	f, err := fh.AddFile(context.Background(), benchRepo, path, src, fakehub.StorageXet)
	if err != nil {
		return "", err
	}
	if f.Size != size {
		return "", fmt.Errorf("ingested %d bytes of %d", f.Size, size)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// mixedReader yields bf16-like weights and text in alternating 8 MiB runs.
type mixedReader struct {
	left int64
	i    uint64
	buf  []byte
}

func (r *mixedReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if len(r.buf) == 0 {
		n := int(min(r.left, 8<<20))
		if r.i%2 == 0 {
			r.buf = weights(r.i, n)
		} else {
			r.buf = text(r.i, n)
		}
		r.i++
	}
	n := copy(p[:min(int64(len(p)), r.left)], r.buf)
	r.buf, r.left = r.buf[n:], r.left-int64(n)
	return n, nil
}

// weights: a random mantissa byte and a narrow exponent byte, as bf16
// tensors look; BG4 compresses them.
func weights(seed uint64, n int) []byte {
	b := xettest.SplitMix64(seed, n)
	for i := 1; i < len(b); i += 2 {
		b[i] = 0x3c + b[i]&3
	}
	return b
}

// text: words from a small vocabulary, which LZ4 compresses.
func text(seed uint64, n int) []byte {
	words := []string{"tensor ", "layer ", "weight ", "attention ", "the ", "model ", "of ", "xet ", "chunk ", "\n", "embedding ", "norm "}
	r := xettest.SplitMix64(seed, n/4+8)
	var b bytes.Buffer
	b.Grow(n + 16)
	for i := 0; b.Len() < n; i++ {
		b.WriteString(words[int(r[i%len(r)])%len(words)])
	}
	return b.Bytes()[:n]
}

// newEngine builds the engine as the commands do (engineconf), with the
// defaults and no cache.
func newEngine(hubURL string) (*proxy.Engine, error) {
	eng, _, err := engineconf.New(engineconf.Config{HubURL: hubURL})
	return eng, err
}

var (
	rssRe  = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)
	userRe = regexp.MustCompile(`User time \(seconds\): ([0-9.]+)`)
	sysRe  = regexp.MustCompile(`System time \(seconds\): ([0-9.]+)`)
)

// measured is one run of a command.
type measured struct {
	wall   time.Duration
	rssKiB int64   // peak RSS
	cpu    float64 // user + system seconds
}

// timed runs a command under /usr/bin/time -v and returns its wall time,
// peak RSS and CPU time.
func timed(stdin io.Reader, env []string, name string, args ...string) (measured, error) {
	cmd := exec.Command("/usr/bin/time", append([]string{"-v", name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return measured{}, err
	}
	defer null.Close()
	cmd.Stdout = null // the child writes to /dev/null itself, no pipe
	start := time.Now()
	err = cmd.Run()
	m := measured{wall: time.Since(start)}
	if err != nil {
		return m, fmt.Errorf("%s: %w: %s", name, err, lastLines(stderr.String(), 5))
	}
	out := stderr.String()
	rss, user, sys := rssRe.FindStringSubmatch(out), userRe.FindStringSubmatch(out), sysRe.FindStringSubmatch(out)
	if rss == nil || user == nil || sys == nil {
		return m, errors.New("no RSS or CPU times in /usr/bin/time output")
	}
	m.rssKiB, _ = strconv.ParseInt(rss[1], 10, 64)
	u, _ := strconv.ParseFloat(user[1], 64)
	st, _ := strconv.ParseFloat(sys[1], 64)
	m.cpu = u + st
	return m, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

func checkFile(p, want string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	var h hash.Hash = sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s: sha256 %s, want %s", p, got, want)
	}
	return nil
}

// serveStatic serves one file with http.ServeContent (sendfile).
func serveStatic(p string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(p)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer f.Close()
		st, _ := f.Stat()
		http.ServeContent(w, r, "", st.ModTime(), f)
	})}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/model.safetensors", func() { srv.Close() }, nil
}

// startNginx serves the folder of static with a throwaway nginx, if one is
// installed.
func startNginx(work, static string) (string, func(), error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return "", nil, err
	}
	prefix := filepath.Join(work, "nginx")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return "", nil, err
	}
	return benchkit.StartNginx(bin, prefix, filepath.Dir(static), filepath.Base(static))
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func nodeVersion() string {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
