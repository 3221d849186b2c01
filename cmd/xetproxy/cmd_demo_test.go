package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/server/sample"
)

func serveTestListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// TestDemo runs the demo with small weights, follows its printed curl
// command, and stops it like Ctrl-C does.
func TestDemo(t *testing.T) {
	t.Setenv("XETPROXY_CACHE_DIR", t.TempDir()) // never the user's cache
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb serveTestBuffer
	done := make(chan int, 1)
	go func() {
		done <- demoCommand().run(ctx, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb},
			[]string{"--listen", "127.0.0.1:0", "--weights-size", "6MiB", "--log-level", "warn"})
	}()
	url := serveWaitMatch(t, &out, regexp.MustCompile(`curl -fLO (\S+/model\.safetensors)`))
	for _, want := range []string{"HF_ENDPOINT=", "aria2c -x4", "hubUrl", sample.PrivateRepo, "Press Ctrl-C"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q", want)
		}
	}
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, res.Body)
	res.Body.Close()
	wantBytes, _ := io.ReadAll(sample.NewSafetensors(6<<20, sample.WeightsSeed))
	want := sha256.Sum256(wantBytes)
	if err != nil || res.StatusCode != 200 || hex.EncodeToString(h.Sum(nil)) != hex.EncodeToString(want[:]) {
		t.Errorf("demo download: %d, %d bytes, %v", res.StatusCode, n, err)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("demo exit %d\n%s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop")
	}
	if !strings.Contains(out.String(), "stopped") {
		t.Error("demo did not say it stopped")
	}
}

func TestDemoUsage(t *testing.T) {
	var out, errb serveTestBuffer
	if code := run([]string{"demo", "--weights-size", "lots"}, strings.NewReader(""), &out, &errb); code != exitUsage {
		t.Errorf("bad size: exit %d", code)
	}
}
