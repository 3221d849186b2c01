package e2e

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/server/servertest"
)

// buildBinary builds cmd/xetproxy into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = needTool(t, "go")
	}
	bin := filepath.Join(t.TempDir(), "xetproxy")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/xetproxy/xetproxy/cmd/xetproxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSIGTERMDrain runs the real binary, sends SIGTERM in the middle of a
// download, and checks that the download completes byte-identical, that no
// new connection is accepted meanwhile, and that the process exits 0.
func TestSIGTERMDrain(t *testing.T) {
	bin := buildBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var stderr servertest.Buffer // safe for the process's stderr copier
	cmd := exec.Command(bin, "serve", "--listen", addr, "--hub-url", hubURL, "--drain-timeout", "60s", "--log-format", "json", "--read-ahead", "1MiB")
	cmd.Env = append(os.Environ(), "HF_TOKEN=", "XETPROXY_API_KEYS=", "XETPROXY_CACHE_DIR="+t.TempDir())
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	waited := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(waited) }()
	defer func() {
		cmd.Process.Kill() // harmless if it exited already
		<-waited
		if t.Failed() {
			t.Logf("server log:\n%s", stderr.String())
		}
	}()
	base := "http://" + addr
	waitFor(t, "the server to start", func() bool {
		res, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Get(base + bigPath)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReaderSize(res.Body, 64<<10)
	head := make([]byte, 4<<20)
	if _, err := io.ReadFull(br, head); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-exited:
		t.Fatalf("server exited (%v) with a download in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	// read the rest slowly at first, then all of it
	time.Sleep(300 * time.Millisecond)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("download cut by the drain: %v", err)
	}
	if got := append(head, rest...); !bytes.Equal(got, bigContent) {
		t.Fatalf("download during drain: %d bytes, not the file", len(got))
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after a clean drain: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not exit after the drain")
	}
	if log := stderr.String(); !strings.Contains(log, `"msg":"draining"`) || !strings.Contains(log, `"msg":"drained"`) {
		t.Errorf("drain not logged:\n%s", log)
	}
}

// TestServeConfigErrors: a configuration that cannot work exits 2 before
// listening, naming the problem.
func TestServeConfigErrors(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--server-token-enabled"}, []string{"HF_TOKEN=hf_x"}, "API key"},
		{[]string{"--hub-url", "ftp://x"}, nil, "hub-url"},
		{nil, []string{"XETPROXY_MAX_DOWNLOADS=lots"}, "XETPROXY_MAX_DOWNLOADS"},
		{nil, []string{"XETPROXY_ALLOW=model/ok/*,models/x"}, `allow: repo glob "models/x"`},
		{[]string{"--deny", "model/[x"}, nil, `deny: repo glob "model/[x"`},
	} {
		cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0"}, tc.args...)...)
		cmd.Env = append(os.Environ(), append(tc.env, "XETPROXY_CACHE_DIR="+t.TempDir())...)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v %v: %v %s", tc.args, tc.env, err, out)
		}
		if strings.Contains(string(out), "hf_x") {
			t.Errorf("the token was printed: %s", out)
		}
	}
}
