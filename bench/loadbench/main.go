// Command loadbench measures how `xetproxy serve` holds its memory budget
// under concurrent load: for each --max-buffer given, a fresh disk cache
// and three scenarios, many clients on one cold file, many clients spread
// over several cold files, and many clients asking for overlapping ranges
// of one cold file, some of them slow. It reports the proxy's peak RSS against
// --max-buffer, the answers other than 200 (503s when clients are turned
// away), the aggregate throughput and the CPU time. fakehub runs in this
// process. Run it through bench/load.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/bench/internal/benchkit"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/sample"
)

const benchRepo = "bench/models"

func main() {
	bin := flag.String("bin", "", "xetproxy binary to benchmark (required)")
	oneSize := flag.String("one-size", "512MiB", "size of the file of the one-file scenario")
	oneClients := flag.Int("one-clients", 32, "clients on the one cold file")
	manySize := flag.String("many-size", "64MiB", "size of each file of the many-files scenario")
	manyFiles := flag.Int("many-files", 16, "files of the many-files scenario")
	manyClients := flag.Int("many-clients", 64, "clients spread over those files")
	buffers := flag.String("max-buffer", "256MiB,1GiB", "comma-separated --max-buffer values to run")
	extra := flag.String("args", "", "more flags for xetproxy serve, space-separated")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "loadbench: --bin is required")
		os.Exit(2)
	}
	one, err1 := server.ParseSize(*oneSize)
	many, err2 := server.ParseSize(*manySize)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(2)
	}
	var bufs []int64
	for _, s := range strings.Split(*buffers, ",") {
		n, err := server.ParseSize(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", err)
			os.Exit(2)
		}
		bufs = append(bufs, n)
	}
	if err := run(*bin, one, *oneClients, many, *manyFiles, *manyClients, bufs, strings.Fields(*extra)); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// scenario is a set of clients, each downloading one of files. ranged:
// client i asks for a quarter of its file from offset i/clients of it
// (cut at its end; the ranges overlap and none is aligned); slow:
// every slow-th client reads slowBlock bytes every slowPause (about 12 MiB/s).
type scenario struct {
	name    string
	files   []string
	clients int
	ranged  bool
	slow    int
}

// The pace of a slow client.
const (
	slowBlock = 256 << 10
	slowPause = 20 * time.Millisecond
)

type result struct {
	scenario, buffer string
	peak, budget     int64
	ok, other        int // 200s; anything else (503s)
	bytes            int64
	secs, cpu        float64
}

func run(bin string, one int64, oneClients int, many int64, manyFiles, manyClients int, bufs []int64, extra []string) error {
	dir, err := os.MkdirTemp("", "loadbench-")
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
	logf("ingesting %s and %d × %s into fakehub...", benchkit.Human(one), manyFiles, benchkit.Human(many))
	start := time.Now()
	sizes := map[string]int64{}
	add := func(name string, size int64, seed uint64) error {
		r := sample.NewSafetensors(size, seed)
		sizes[name] = r.Size()
		_, err := fh.AddFile(context.Background(), benchRepo, name, r)
		return err
	}
	if err := add("one.safetensors", one, 1); err != nil {
		return err
	}
	var manyNames []string
	for i := range manyFiles {
		name := fmt.Sprintf("many-%02d.safetensors", i)
		if err := add(name, many, uint64(10+i)); err != nil {
			return err
		}
		manyNames = append(manyNames, name)
	}
	logf("ingested in %.1fs", time.Since(start).Seconds())
	scenarios := []scenario{
		{name: fmt.Sprintf("%d clients, one cold %s file", oneClients, benchkit.Human(one)), files: []string{"one.safetensors"}, clients: oneClients},
		{name: fmt.Sprintf("%d clients, %d cold %s files", manyClients, manyFiles, benchkit.Human(many)), files: manyNames, clients: manyClients},
		{name: fmt.Sprintf("%d clients, one cold %s file, ranged, 1 in 4 slow", oneClients, benchkit.Human(one)),
			files: []string{"one.safetensors"}, clients: oneClients, ranged: true, slow: 4},
	}
	var results []result
	for _, buf := range bufs {
		for i, sc := range scenarios {
			cache := filepath.Join(dir, fmt.Sprintf("cache-%d-%d", buf, i))
			args := append([]string{"--cache-dir", cache, "--max-buffer", fmt.Sprint(buf)}, extra...)
			p, err := benchkit.StartProxy(bin, hubURL, args...)
			if err != nil {
				return err
			}
			r := load(p.URL, sc, sizes)
			r.buffer, r.budget = benchkit.Human(buf), buf
			r.cpu = p.CPUSeconds()
			r.peak = p.Stop()
			os.RemoveAll(cache)
			results = append(results, r)
			logf("%s, --max-buffer %s: peak RSS %s, %d ok, %d other, %s",
				sc.name, r.buffer, benchkit.Human(r.peak), r.ok, r.other, benchkit.MBps(float64(r.bytes)/r.secs))
		}
	}
	fmt.Println("| scenario | --max-buffer | peak RSS | RSS − budget | 200 | other (503) | throughput | CPU s |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		fmt.Printf("| %s | %s | %s | %+.0f MiB | %d | %d | %s | %.1f |\n", r.scenario, r.buffer, benchkit.Human(r.peak),
			float64(r.peak-r.budget)/(1<<20), r.ok, r.other, benchkit.MBps(float64(r.bytes)/r.secs), r.cpu)
	}
	return nil
}

// load runs the clients of sc at once against the proxy at url.
func load(url string, sc scenario, sizes map[string]int64) result {
	r := result{scenario: sc.name}
	tr := &http.Transport{MaxIdleConnsPerHost: sc.clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := range sc.clients {
		name := sc.files[i%len(sc.files)]
		want, code := sizes[name], 200
		req, _ := http.NewRequest("GET", url+"/download/"+benchRepo+"/"+name, nil)
		if sc.ranged {
			size := sizes[name]
			off := size * int64(i) / int64(sc.clients)
			want, code = min(size/4, size-off), 206
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+want-1))
		}
		slow := sc.slow > 0 && i%sc.slow == sc.slow-1
		wg.Go(func() {
			res, err := client.Do(req)
			ok := false
			var n int64
			if err == nil {
				if slow {
					n, err = slowCopy(res.Body)
				} else {
					n, err = io.Copy(io.Discard, res.Body)
				}
				res.Body.Close()
				ok = err == nil && res.StatusCode == code && n == want
			}
			mu.Lock()
			defer mu.Unlock()
			r.bytes += n
			if ok {
				r.ok++
			} else {
				r.other++
			}
		})
	}
	wg.Wait()
	r.secs = time.Since(start).Seconds()
	return r
}

// slowCopy reads r to its end at about slowBlock per slowPause.
func slowCopy(r io.Reader) (int64, error) {
	var n int64
	for {
		m, err := io.CopyN(io.Discard, r, slowBlock)
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		time.Sleep(slowPause)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadbench: "+format+"\n", args...)
}
