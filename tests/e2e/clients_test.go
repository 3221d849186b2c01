package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/sample"
)

func TestCurl(t *testing.T) {
	curl := needTool(t, "curl")
	p := startProxy(t, nil)
	dir := t.TempDir()
	want := content[weightsKey]
	run := func(args ...string) (string, error) {
		out, err := exec.Command(curl, append([]string{"-sS", "--fail"}, args...)...).CombinedOutput()
		return string(out), err
	}

	// whole file, both URL shapes
	for i, u := range []string{p.url + weightsPath, p.url + resolvePath} {
		out := filepath.Join(dir, "whole"+string(rune('0'+i)))
		if msg, err := run("-o", out, u); err != nil {
			t.Fatalf("curl %s: %v %s", u, err, msg)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
			t.Errorf("curl %s: %d bytes differ", u, len(got))
		}
	}
	// -J: the server's file name
	if msg, err := exec.Command(curl, "-sS", "--fail", "-O", "-J", "--output-dir", dir, p.url+"/download/"+sample.ModelRepo+"/onnx/model.onnx").CombinedOutput(); err != nil {
		t.Fatalf("curl -OJ: %v %s", err, msg)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "model.onnx")); !bytes.Equal(got, content[sample.ModelRepo+":onnx/model.onnx"]) {
		t.Error("curl -OJ: wrong content or name")
	}
	// a range
	part := filepath.Join(dir, "part")
	if msg, err := run("-r", "1000-1999", "-o", part, p.url+weightsPath); err != nil {
		t.Fatalf("curl -r: %v %s", err, msg)
	}
	if got, _ := os.ReadFile(part); !bytes.Equal(got, want[1000:2000]) {
		t.Error("curl -r: wrong bytes")
	}
	// resume with -C -: start from a partial file
	resumed := filepath.Join(dir, "resumed")
	os.WriteFile(resumed, want[:len(want)/3], 0o644)
	if msg, err := run("-C", "-", "-o", resumed, p.url+resolvePath); err != nil {
		t.Fatalf("curl -C -: %v %s", err, msg)
	}
	if got, _ := os.ReadFile(resumed); !bytes.Equal(got, want) {
		t.Errorf("curl -C -: %d bytes, not the file", len(got))
	}
	// resume of a complete file: 416 with Content-Range: bytes */SIZE,
	// which curl (without --fail) takes as "already complete"
	if msg, err := exec.Command(curl, "-sS", "-C", "-", "-o", resumed, p.url+resolvePath).CombinedOutput(); err != nil {
		t.Errorf("curl -C - on a complete file: %v %s", err, msg)
	}
	if got, _ := os.ReadFile(resumed); !bytes.Equal(got, want) {
		t.Errorf("curl -C - on a complete file changed it: %d bytes", len(got))
	}
	// a missing file fails with 404
	if _, err := run("-o", filepath.Join(dir, "x"), p.url+"/"+sample.ModelRepo+"/resolve/main/nope"); err == nil {
		t.Error("curl: missing file succeeded")
	}
}

// TestCurlSeesBrokenTransfer: curl must report a failure (exit 18, partial
// file) when the upstream dies mid-stream, never a clean end.
func TestCurlSeesBrokenTransfer(t *testing.T) {
	curl := needTool(t, "curl")
	p := startProxy(t, func(c *server.Config) { c.ReadAhead = 1 << 20 })
	hub.InjectFault(fakehub.Fault{Class: fakehub.ClassXorb, Nth: 12, Times: 1 << 20, Status: 404})
	out := filepath.Join(t.TempDir(), "broken")
	cmd := exec.Command(curl, "-sS", "--fail", "-o", out, p.url+bigPath)
	msg, err := cmd.CombinedOutput()
	got, _ := os.ReadFile(out)
	if err == nil {
		t.Fatalf("curl succeeded with %d of %d bytes", len(got), len(bigContent))
	}
	if len(got) == 0 {
		t.Logf("curl failed before the first byte (a 502): %s", msg)
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 18 {
		t.Errorf("curl exit %v (%s), want 18 (partial file)", err, msg)
	}
	if len(got) >= len(bigContent) {
		t.Errorf("curl got the whole file")
	}
}

func TestAria2c(t *testing.T) {
	aria := needTool(t, "aria2c")
	p := startProxy(t, nil)
	dir := t.TempDir()
	for _, tc := range []struct {
		path string
		want []byte
	}{
		{resolvePath, content[weightsKey]},
		{bigPath, bigContent},
	} {
		name := filepath.Base(tc.path)
		cmd := exec.Command(aria, "-q", "-x4", "-s4", "-k1M", "--allow-overwrite=true", "--auto-file-renaming=false",
			"-d", dir, "-o", name, p.url+tc.path)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("aria2c %s: %v %s", tc.path, err, msg)
		}
		got, _ := os.ReadFile(filepath.Join(dir, name))
		if !bytes.Equal(got, tc.want) {
			t.Errorf("aria2c %s: %d bytes, not the file", tc.path, len(got))
		}
	}
}

// TestHFJSClient runs the official @huggingface/hub client (unmodified,
// tests/js/proxy.test.mjs) with hubUrl = the proxy, then checks fakehub's
// request log: no request of that client reached the Hub's resolve, token
// or CAS endpoints directly (only /api passthrough, which the proxy made).
func TestHFJSClient(t *testing.T) {
	node := needTool(t, "node")
	_, file, _, _ := runtime.Caller(0)
	jsDir := filepath.Join(filepath.Dir(file), "..", "js")
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@huggingface", "hub")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tests/js/node_modules is missing (scripts/test.sh runs npm ci): %v", err)
		}
		t.Skip("tests/js/node_modules missing: run npm ci in tests/js")
	}
	p := startProxy(t, nil)
	type jsFile struct {
		Repo   string  `json:"repo"`
		Path   string  `json:"path"`
		Size   int     `json:"size"`
		SHA256 string  `json:"sha256"`
		Slices [][]any `json:"slices"`
		Xet    bool    `json:"xet"`
	}
	var list []jsFile
	for _, key := range []string{weightsKey, sample.ModelRepo + ":config.json", sample.ModelRepo + ":onnx/model.onnx", sample.DatasetRepo + ":data/train.csv"} {
		f, b := files[key], content[key]
		jf := jsFile{Repo: f.Repo, Path: f.Path, Size: len(b), SHA256: sha256hex(b), Xet: isXet(t, f.Repo, f.Path)}
		for _, s := range [][2]int{{0, 1}, {len(b) / 3, min(len(b), len(b)/3+1000)}, {len(b) - 10, len(b)}} {
			jf.Slices = append(jf.Slices, []any{s[0], s[1], sha256hex(b[s[0]:s[1]])})
		}
		list = append(list, jf)
	}
	fj, _ := json.Marshal(list)
	hub.ResetStats()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "proxy.test.mjs")
	cmd.Dir = jsDir
	mode := "plain"
	if *xetMode {
		mode = "xet"
	}
	cmd.Env = append(os.Environ(), "PROXY_URL="+p.url, "FILES="+string(fj), "PROXY_MODE="+mode,
		"PRIVATE_REPO="+sample.PrivateRepo, "PRIVATE_PATH=model.safetensors", "READER_TOKEN="+sample.ReaderToken)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test output:\n%s", out)
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	if !strings.Contains(string(out), "pass 6") {
		t.Errorf("expected 6 passing node tests")
	}
	var sawAPI bool
	for _, r := range hub.Requests() {
		if r.Header.Get("X-Test-Client") == "" {
			continue // the proxy's own upstream requests
		}
		if r.Class == fakehub.ClassAPI {
			sawAPI = true // passed through by the proxy
			continue
		}
		t.Errorf("the JS client reached fakehub directly: %s %s (%s)", r.Method, r.Path, r.Class)
	}
	if !sawAPI {
		t.Error("no /api request of the JS client went through the proxy (is the tagging broken?)")
	}
	var casRequests int64
	st := hub.Stats()
	for _, c := range []fakehub.Class{fakehub.ClassReconstruction, fakehub.ClassXorb} {
		casRequests += st[c].Requests
	}
	if casRequests == 0 {
		t.Error("the proxy made no CAS request: was the Xet path used at all?")
	}
}

// isXet reports whether fakehub stores repo's path with Xet.
func isXet(t *testing.T, repo, path string) bool {
	t.Helper()
	fs, err := hub.Files(repo, "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Path == path {
			return f.Xet
		}
	}
	t.Fatalf("%s/%s: no such file", repo, path)
	return false
}
