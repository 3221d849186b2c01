package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/warm"
)

const (
	warmTestKey   = "cli-warm-key-0123456789"
	warmTestToken = "hf_cli_warm_secret"
)

// startWarmServe runs `xetproxy serve` in-process with a disk cache and
// the proxy key warmTestKey, against the fake Hub of h; it returns the
// server's URL and its log.
func startWarmServe(t *testing.T, h *dlHub) (string, *serveTestBuffer) {
	t.Helper()
	t.Setenv("XETPROXY_API_KEYS", warmTestKey)
	t.Setenv("XETPROXY_API_KEY", "")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb serveTestBuffer
	done := make(chan int, 1)
	go func() {
		done <- serveCommand().run(ctx, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb},
			[]string{"--listen", "127.0.0.1:0", "--hub-url", h.srv.URL, "--log-format", "json",
				"--cache-dir", t.TempDir(), "--cache-size", "1GiB"})
	}()
	addr := serveWaitMatch(t, &errb, regexp.MustCompile(`"msg":"serving","addr":"([^"]+)"`))
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("serve exit %d\n%s", code, errb.String())
			}
		case <-time.After(60 * time.Second):
			t.Error("serve did not stop")
		}
	})
	return "http://" + addr, &errb
}

func TestWarmCommand(t *testing.T) {
	h := newDLHub(t)
	if err := h.fh.CreateRepo(fakehub.RepoSpec{ID: "org/m"}); err != nil {
		t.Fatal(err)
	}
	h.fh.AddToken(warmTestToken)
	h.add(t, "org/m", "w1.safetensors", weightsData(21, 700000), fakehub.StorageXet)
	h.add(t, "org/m", "sub/w2.safetensors", weightsData(22, 300000), fakehub.StorageXet)
	h.add(t, "org/m", "other.bin", weightsData(23, 100000), fakehub.StorageXet)
	h.add(t, "org/m", "config.json", []byte(`{"a":1}`), fakehub.StoragePlain)
	srv, serveLog := startWarmServe(t, h)

	code, out, errOut := runCmd(t, "warm", "--server", srv, "--api-key", warmTestKey, "--token", warmTestToken,
		"--include", "*.safetensors", "--include", "config.json", "org/m@main")
	if code != exitOK {
		t.Fatalf("warm: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"warming org/m@main (job ",
		"3 files selected",
		"warmed",
		"  w1.safetensors\n",
		"  sub/w2.safetensors\n",
		"skipped",
		"config.json (not stored in Xet",
		"done: 2 of 2 files cached (0 were already), 1 skipped, 0 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "other.bin") {
		t.Errorf("a file outside the selection was warmed:\n%s", out)
	}

	// Again, as NDJSON, with the key from the environment: all cached.
	t.Setenv("XETPROXY_API_KEY", warmTestKey)
	code, out, errOut = runCmd(t, "warm", "--server", srv, "--json", "--include", "*.safetensors", "org/m")
	if code != exitOK {
		t.Fatalf("warm --json: exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	cached := 0
	for _, l := range lines {
		var ev warm.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if ev.Event == warm.EventFileDone && ev.Result == warm.ResultCached {
			cached++
		}
	}
	var first, last warm.Event
	json.Unmarshal([]byte(lines[0]), &first)
	json.Unmarshal([]byte(lines[len(lines)-1]), &last)
	if first.Event != warm.EventJob || last.Event != warm.EventJobDone || last.Job.State != warm.StateDone || cached != 2 {
		t.Fatalf("NDJSON: first %+v, last %+v, %d cached\n%s", first, last, cached, out)
	}
	if s := serveLog.String(); !strings.Contains(s, "warm job ended") || strings.Contains(s, warmTestToken) || strings.Contains(s, warmTestKey) {
		t.Fatalf("serve log (has the job, must not have the token or key):\n%s", s)
	}
}

func TestWarmCommandFailures(t *testing.T) {
	h := newDLHub(t)
	if err := h.fh.CreateRepo(fakehub.RepoSpec{ID: "org/m"}); err != nil {
		t.Fatal(err)
	}
	h.add(t, "org/m", "good.bin", weightsData(31, 400000), fakehub.StorageXet)
	bad := h.add(t, "org/m", "bad.bin", weightsData(32, 400000), fakehub.StorageXet)
	srv, _ := startWarmServe(t, h)

	if code, out, errOut := runCmd(t, "warm", "--server", srv, "--api-key", warmTestKey, "org/nope"); code != exitNotFound ||
		!strings.Contains(errOut, "failed") || !strings.Contains(errOut, "RepoNotFound") && !strings.Contains(errOut, "not found") {
		t.Errorf("unknown repo: exit %d\n%s\n%s", code, out, errOut)
	}
	c, err := h.fh.CorruptChunk(bad.XetHash, 0)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "warm", "--server", srv, "--api-key", warmTestKey, "org/m")
	if code != exitIntegrity || !strings.Contains(out, "FAILED") || !strings.Contains(errOut, "bad.bin") || !strings.Contains(errOut, "1 of 2 files failed") {
		t.Errorf("corrupt file: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "warmed") || !strings.Contains(out, "good.bin") {
		t.Errorf("the good file was not warmed:\n%s", out)
	}
	c.Heal()
	if code, out, errOut := runCmd(t, "warm", "--server", srv, "--api-key", warmTestKey, "org/m"); code != exitOK {
		t.Errorf("after heal: exit %d\n%s\n%s", code, out, errOut)
	}

	if code, _, errOut := runCmd(t, "warm", "--server", srv, "--api-key", warmTestKey, "--include", "*.gguf", "org/m"); code != exitNotFound || !strings.Contains(errOut, "no file of org/m@main matches") {
		t.Errorf("empty selection: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := runCmd(t, "warm", "--server", srv, "--api-key", "wrong-key-0123456789", "org/m"); code != exitAuth || !strings.Contains(errOut, "InvalidProxyKey") {
		t.Errorf("wrong key: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := runCmd(t, "warm", "--server", srv, "--api-key", warmTestKey, "--include", "[x", "org/m"); code != exitUsage || !strings.Contains(errOut, "400") {
		t.Errorf("bad glob: exit %d\n%s", code, errOut)
	}
	for _, args := range [][]string{
		{"warm", "--server", srv, "org/m"},                                 // no key
		{"warm", "--api-key", warmTestKey, "org/m"},                        // no server
		{"warm", "--server", "ftp://x", "--api-key", warmTestKey, "org/m"}, // not http
		{"warm", "--server", srv, "--api-key", warmTestKey},                // no repo
		{"warm", "--server", srv, "--api-key", warmTestKey, "org/m@"},      // empty revision
		{"warm", "--server", srv, "--api-key", warmTestKey, "a/b/c"},       // bad repo
	} {
		if code, _, errOut := runCmd(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, exitUsage, errOut)
		}
	}
	// a server that is not there
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	if code, _, errOut := runCmd(t, "warm", "--server", gone, "--api-key", warmTestKey, "org/m"); code != exitError || !strings.Contains(errOut, "cannot reach") || strings.Contains(errOut, warmTestKey) {
		t.Errorf("unreachable server: exit %d\n%s", code, errOut)
	}
}

// On a terminal the progress is a bar on standard error, cleared before
// each result line.
func TestWarmRendererBar(t *testing.T) {
	var out, errb bytes.Buffer
	r := &warmRenderer{e: env{stdout: &out, stderr: &errb}, tty: true, files: map[string]int64{}, began: time.Now()}
	st := warm.Status{ID: "j1", Repo: "org/m", Revision: "main", FilesTotal: 2, BytesTotal: 1000}
	r.event(warm.Event{Event: warm.EventJob, Job: &st})
	r.event(warm.Event{Event: warm.EventFileStarted, Path: "a", Size: 500})
	r.event(warm.Event{Event: warm.EventFileProgress, Path: "a", Size: 500, Bytes: 250})
	if !strings.Contains(errb.String(), "\r\033[K[======                  ]  25.0% 0/2 files") {
		t.Fatalf("bar at 25%%: %q", errb.String())
	}
	r.event(warm.Event{Event: warm.EventFileDone, Path: "a", Size: 500, Result: warm.ResultWarmed})
	if !strings.Contains(errb.String(), "[============            ]  50.0% 1/2 files") || !strings.Contains(out.String(), "warmed") {
		t.Fatalf("after a file: %q / %q", errb.String(), out.String())
	}
	if got := warmBar(3, 0, 4); got != "[====]" {
		t.Errorf("bar of an empty job %q", got)
	}
}
