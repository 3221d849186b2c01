package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// TestServeAndDownloadShareTheEngine runs both commands that download
// against one fake Hub and checks that they behave as one engine: the same
// user agent upstream (ls's Hub client too), no credentials on any
// transfer, and one cache
// layout — `download --cache-dir D` fills a cache from which
// `serve --cache-dir D` then serves the file without a single transfer.
// Both also shut down through the engine's bounded close (serve exits 0
// after its drain, download after its fills are flushed).
func TestServeAndDownloadShareTheEngine(t *testing.T) {
	h := newDLHub(t)
	if err := h.fh.CreateRepo(fakehub.RepoSpec{ID: "org/m"}); err != nil {
		t.Fatal(err)
	}
	data := weightsData(11, 3<<20)
	h.add(t, "org/m", "w.bin", data)
	cacheDir := t.TempDir()

	// agents returns the user agents of the requests the fake Hub saw, and
	// fails on a transfer that carried credentials.
	agents := func(who string) []string {
		t.Helper()
		var uas []string
		for _, r := range h.fh.Requests() {
			if r.Class == fakehub.ClassXorb && r.HasAuth {
				t.Errorf("%s: a transfer carried credentials: %s", who, r.Path)
			}
			if ua := r.Header.Get("User-Agent"); !slices.Contains(uas, ua) {
				uas = append(uas, ua)
			}
		}
		return uas
	}

	h.fh.ResetStats()
	if code, _, errOut := runCmd(t, "ls", "org/m"); code != exitOK {
		t.Fatalf("ls: exit %d: %s", code, errOut)
	}
	out := t.TempDir()
	if code, _, errOut := runCmd(t, "download", "-q", "--cache-dir", cacheDir, "-o", out, "org/m", "w.bin"); code != exitOK {
		t.Fatalf("download: exit %d: %s", code, errOut)
	}
	mustEqualFile(t, filepath.Join(out, "w.bin"), data)
	if h.fh.Stats()[fakehub.ClassXorb].Requests == 0 {
		t.Fatal("download made no transfer: the premise of the cache check fails")
	}
	dlAgents := agents("ls and download")

	h.fh.ResetStats()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sout, serr serveTestBuffer
	done := make(chan int, 1)
	go func() {
		done <- serveCommand().run(ctx, env{stdin: strings.NewReader(""), stdout: &sout, stderr: &serr},
			[]string{"--listen", "127.0.0.1:0", "--hub-url", h.srv.URL, "--cache-dir", cacheDir, "--log-format", "json"})
	}()
	addr := serveWaitMatch(t, &serr, regexp.MustCompile(`"msg":"serving","addr":"([^"]+)"`))
	res, err := http.Get("http://" + addr + "/download/org/m/w.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 || !bytes.Equal(got, data) {
		t.Fatalf("serve: %d, %d bytes, %v", res.StatusCode, len(got), err)
	}
	if n := h.fh.Stats()[fakehub.ClassXorb].Requests; n != 0 {
		t.Errorf("serve made %d transfers for a file download had cached in the same directory", n)
	}
	serveAgents := agents("serve")
	if len(dlAgents) != 1 || !slices.Equal(dlAgents, serveAgents) || !strings.HasPrefix(dlAgents[0], "xetproxy/") {
		t.Errorf("user agents upstream: ls and download %q, serve %q", dlAgents, serveAgents)
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve: exit %d\n%s", code, serr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop")
	}
}
