//go:build unix

package server

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// The status page as a real browser renders it: headless Chromium loads
// it from the real server, its DOM is checked, and a screenshot is kept
// for people to look at.

// chromiumTimeout bounds one Chromium run; it can hang without the flags
// of runChromium, and a hung browser must fail the test, not stall it.
const chromiumTimeout = 60 * time.Second

// findChromium returns the Chromium binary. A missing one skips the test
// on a developer machine and fails it in CI, where scripts/test.sh
// installs it.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found; scripts/test.sh installs it (apt-get install chromium)")
	}
	t.Skip("chromium not found: install it (apt-get install chromium) to run the browser test of the status page")
	return ""
}

// runChromium runs headless Chromium with args and returns its stdout. It
// runs in a process group of its own, killed whole when the run ends or
// times out, so that no renderer or zygote outlives the test.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	profile, err := os.MkdirTemp("", "xetproxy-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(context.Background(), chromiumTimeout)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-proxy-server",
		"--user-data-dir=" + profile}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if cmd.Process != nil {
		// the group may outlive its leader; end it (ESRCH when it did not)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("chromium %v: no answer within %v; stderr:\n%s", args, chromiumTimeout, tail(stderr.String(), 2000))
	}
	if err != nil {
		t.Fatalf("chromium %v: %v; stderr:\n%s", args, err, tail(stderr.String(), 2000))
	}
	return stdout.Bytes()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// artifactDir is where tests leave files for people to look at:
// $XETPROXY_ARTIFACTS, else test-artifacts/ at the top of the tree (not
// tracked by git).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("XETPROXY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestStatusPageInChromium(t *testing.T) {
	bin := findChromium(t)
	st := newStatusStack(t, fixedSources())
	st.download() // real cache numbers: the whole file came from upstream
	n := strconv.Itoa(len(st.data))

	dom := runChromium(t, bin, "--dump-dom", st.url+"/")
	doc, err := html.Parse(bytes.NewReader(dom))
	if err != nil {
		t.Fatal(err)
	}
	// The browser asked for HTML by itself (Accept: text/html) and got it.
	if got := text(byID(t, doc, "version")); got != "v9.8.7-status" {
		t.Errorf("#version %q", got)
	}
	if got := attr(byID(t, doc, "served-upstream"), "data-bytes"); got != n {
		t.Errorf("#served-upstream data-bytes %q, want %s", got, n)
	}
	if got := text(byID(t, doc, "served-upstream")); got != "2.00 MiB" {
		t.Errorf("#served-upstream %q", got)
	}
	if got := text(byID(t, doc, "upstream-state")); got != "offline" {
		t.Errorf("#upstream-state %q", got)
	}
	rows := findAll(byID(t, doc, "top-repos"), func(n *html.Node) bool { return hasClass(n, "repo") })
	if len(rows) != 4 || !strings.Contains(text(rows[0]), "meta-llama/Llama-3.1-8B") || !strings.Contains(text(rows[1]), "private repo") {
		t.Errorf("repo rows: %d", len(rows))
	}
	if bytes.Contains(dom, []byte("secret-model")) {
		t.Errorf("the page names a private repo to an anonymous browser:\n%s", dom)
	}
	byID(t, doc, "private-hidden")

	shot := filepath.Join(artifactDir(t), "status.png")
	os.Remove(shot)
	runChromium(t, bin, "--screenshot="+shot, "--window-size=1200,900", "--hide-scrollbars", st.url+"/")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 900 {
		t.Errorf("screenshot %s is %v, want 1200x900", shot, b)
	}
	// The header is dark (#1f2937) only if the inline style sheet applied:
	// the Content-Security-Policy let it through.
	r, g, b, _ := img.At(5, 5).RGBA()
	if r>>8 > 0x30 || g>>8 > 0x40 || b>>8 > 0x48 {
		t.Errorf("header pixel %02x%02x%02x, want about 1f2937: the style sheet did not apply", r>>8, g>>8, b>>8)
	}
	t.Logf("screenshot: %s", shot)
}
