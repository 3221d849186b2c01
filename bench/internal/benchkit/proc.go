package benchkit

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// CurlResult is what curl's -w reports of one transfer.
type CurlResult struct {
	TTFB  float64 // seconds to the first byte
	Total float64 // seconds in all
	Speed float64 // bytes per second
	Size  int64
}

// Curl fetches url once with curl into /dev/null; extra goes before the URL.
func Curl(curl, url string, extra ...string) (CurlResult, error) {
	args := append([]string{"-sS", "-f", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total} %{speed_download} %{size_download}"}, extra...)
	out, err := exec.Command(curl, append(args, url)...).Output()
	if err != nil {
		return CurlResult{}, fmt.Errorf("curl %s: %w", url, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 {
		return CurlResult{}, fmt.Errorf("curl output %q", out)
	}
	var r CurlResult
	r.TTFB, _ = strconv.ParseFloat(f[0], 64)
	r.Total, _ = strconv.ParseFloat(f[1], 64)
	r.Speed, _ = strconv.ParseFloat(f[2], 64)
	r.Size, _ = strconv.ParseInt(f[3], 10, 64)
	return r, nil
}

// Proxy is a running `xetproxy serve` whose peak RSS is sampled every 20 ms.
type Proxy struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex // guards peak: the sampler writes it, Peak and Stop read it
	peak int64
}

// StartProxy runs `bin serve` on a free loopback port in front of hubURL,
// with args appended, and waits until /readyz answers 200.
func StartProxy(bin, hubURL string, args ...string) (*Proxy, error) {
	return StartProxyEnv(bin, hubURL, nil, args...)
}

// StartProxyEnv is StartProxy with env added to the process's environment.
func StartProxyEnv(bin, hubURL string, env []string, args ...string) (*Proxy, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"serve", "--listen", addr, "--hub-url", hubURL, "--log-level", "warn"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proxy{URL: "http://" + addr, cmd: cmd, done: make(chan struct{})}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(p.URL + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("/readyz: %s", res.Status)
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("proxy did not start: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
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

// PID is the proxy's process id.
func (p *Proxy) PID() int { return p.cmd.Process.Pid }

func (p *Proxy) sample() {
	v := VmHWM(p.cmd.Process.Pid)
	p.mu.Lock()
	p.peak = max(p.peak, v)
	p.mu.Unlock()
}

// Peak is the highest RSS (VmHWM) seen so far.
func (p *Proxy) Peak() int64 {
	p.sample()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

// CPUSeconds is the user+system CPU time the proxy has used so far.
func (p *Proxy) CPUSeconds() float64 { return CPUSeconds(p.cmd.Process.Pid) }

// WaitIdle waits (up to 10 s) until the proxy's CPU time stops moving, so
// that start-up work (opening a cache) is not counted in what is measured
// next.
func (p *Proxy) WaitIdle() {
	last := -1.0
	for range 50 {
		c := p.CPUSeconds()
		if c == last {
			return
		}
		last = c
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop ends the proxy with SIGTERM (it drains and closes its cache) and
// returns its peak RSS.
func (p *Proxy) Stop() int64 {
	peak := p.Peak()
	close(p.done)
	p.wg.Wait()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	return peak
}

// CPUSeconds reads utime+stime of pid from /proc/PID/stat; 0 if unreadable.
func CPUSeconds(pid int) float64 {
	u := ReadUsage(pid)
	return u.User + u.System
}

// Usage is what a process has used so far: CPU seconds in user space and
// in the kernel (/proc/PID/stat), and read and write system calls
// (/proc/PID/io). Zero where unreadable.
type Usage struct {
	User, System  float64
	Reads, Writes int64
}

// Sub is u - v.
func (u Usage) Sub(v Usage) Usage {
	return Usage{u.User - v.User, u.System - v.System, u.Reads - v.Reads, u.Writes - v.Writes}
}

// Usage reads the proxy's Usage.
func (p *Proxy) Usage() Usage { return ReadUsage(p.cmd.Process.Pid) }

// ReadUsage reads the Usage of pid.
func ReadUsage(pid int) Usage {
	var u Usage
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// the command name (field 2) may hold spaces: count fields after ')'
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) >= 13 {
				ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14
				st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
				u.User, u.System = float64(ut)/clockTicks, float64(st)/clockTicks
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ": ")
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "syscr":
				u.Reads = n
			case "syscw":
				u.Writes = n
			}
		}
	}
	return u
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// StartNginx serves www with a throwaway nginx (one worker, sendfile on,
// as a static file server is deployed) from the config folder dir; probe
// is a path under www that must answer before it counts as started.
func StartNginx(ng, dir, www, probe string) (url string, stop func(), err error) {
	addr, err := FreeAddr()
	if err != nil {
		return "", nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`user root;
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
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(ng, "-c", conf, "-p", dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	url = "http://" + addr
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := http.Head(url + "/" + probe)
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

// StartHub serves a fakehub made with cfg on a free loopback port; stop
// closes both.
func StartHub(cfg fakehub.Config) (fh *fakehub.Hub, url string, stop func(), err error) {
	if fh, err = fakehub.New(cfg); err != nil {
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fh.Close()
		return nil, "", nil, err
	}
	url = "http://" + ln.Addr().String()
	fh.SetPublicURL(url)
	srv := &http.Server{Handler: fh}
	go srv.Serve(ln)
	return fh, url, func() { srv.Close(); fh.Close() }, nil
}
