package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/server/servertest"
)

func writeTree(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// startFakehub runs the command until the test ends and returns its URL and
// its stderr.
func startFakehub(t *testing.T, args ...string) (string, *servertest.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr servertest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- fakehubCommand().run(ctx, env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}, args)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("fakehub exited with %d: %s", code, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("fakehub did not stop")
		}
	})
	re := regexp.MustCompile(`fakehub serving at (http://\S+)`)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			return m[1], &stderr
		}
		select {
		case code := <-done:
			t.Fatalf("fakehub exited with %d: %s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no URL printed; stderr: %s", stderr.String())
	return "", nil
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestFakehubCommandServesTree(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	weights := make([]byte, 700_000)
	for i := range weights {
		weights[i] = byte(i*7919 + i>>9)
	}
	config := []byte(`{"model_type": "test"}` + "\n")
	writeTree(t, root, map[string][]byte{
		"org/model/config.json":                  config,
		"org/model/model.safetensors":            weights,
		"org/model/.git/HEAD":                    []byte("ref: refs/heads/main\n"),
		"datasets/org/data/train/part-0.parquet": weights[:300_000],
		"spaces/org/app/app.py":                  []byte("print('hi')\n"),
	})
	url, stderr := startFakehub(t, "--dir", root, "--listen", "127.0.0.1:0", "--state", state, "--compression", "lz4",
		"--token", "hf_admin")

	resp, body := get(t, url+"/org/model/resolve/main/model.safetensors", "Accept", "application/vnd.xet-fileinfo+json")
	if resp.StatusCode != 200 || resp.Header.Get("X-Xet-Hash") == "" || resp.Header.Get("X-Linked-Size") != "700000" {
		t.Fatalf("resolve: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = get(t, url+"/org/model/resolve/main/model.safetensors")
	if resp.StatusCode != 302 {
		t.Fatalf("resolve without Accept: %d", resp.StatusCode)
	}
	if _, whole := get(t, resp.Header.Get("Location")); !bytes.Equal(whole, weights) {
		t.Fatal("bridge download differs")
	}
	if resp, body = get(t, url+"/org/model/resolve/main/config.json"); !bytes.Equal(body, config) || resp.Header.Get("X-Xet-Hash") != "" {
		t.Fatalf("plain file: %q", body)
	}
	if resp, _ = get(t, url+"/org/model/resolve/main/.git/HEAD"); resp.StatusCode != 404 {
		t.Fatalf(".git was served: %d", resp.StatusCode)
	}
	if resp, body = get(t, url+"/api/datasets/org/data/tree/main/train"); resp.StatusCode != 200 || !strings.Contains(string(body), "part-0.parquet") {
		t.Fatalf("dataset tree: %d %s", resp.StatusCode, body)
	}
	if resp, _ = get(t, url+"/spaces/org/app/resolve/main/app.py"); resp.StatusCode != 200 {
		t.Fatalf("space file: %d", resp.StatusCode)
	}
	if resp, _ = get(t, url+"/api/models/org/model/xet-write-token/main", "Authorization", "Bearer hf_admin"); resp.StatusCode != 200 {
		t.Fatalf("write token for --token: %d", resp.StatusCode)
	}
	if !strings.Contains(stderr.String(), "org/model: 2 files") {
		t.Fatalf("progress: %s", stderr.String())
	}

	// A second run on the same state directory reuses the ingested files.
	url2, stderr2 := startFakehub(t, "--dir", root, "--listen", "127.0.0.1:0", "--state", state)
	if !strings.Contains(stderr2.String(), "org/model: 2 files, 683.6 KiB (1 unchanged files reused)") {
		t.Fatalf("second run: %s", stderr2.String())
	}
	resp, _ = get(t, url2+"/org/model/resolve/main/model.safetensors")
	if _, whole := get(t, resp.Header.Get("Location")); !bytes.Equal(whole, weights) {
		t.Fatal("bridge download differs after a restart")
	}
}

func TestFakehubCommandPrivate(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string][]byte{"org/secret/w.bin": {1, 2, 3}})
	url, _ := startFakehub(t, "--dir", root, "--listen", "127.0.0.1:0", "--state", "", "--private", "--token", "hf_me")
	if resp, _ := get(t, url+"/org/secret/resolve/main/w.bin"); resp.StatusCode != 401 || resp.Header.Get("X-Error-Code") != "RepoNotFound" {
		t.Fatalf("anonymous: %d", resp.StatusCode)
	}
	if resp, _ := get(t, url+"/org/secret/resolve/main/w.bin", "Authorization", "Bearer hf_me"); resp.StatusCode != 302 {
		t.Fatalf("with token: %d", resp.StatusCode)
	}
}

func TestFakehubCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--dir", "/does/not/exist"},
		{"--dir", ".", "extra"},
	} {
		var out bytes.Buffer
		if code := fakehubCommand().run(context.Background(), env{stdout: &out, stderr: &out}, args); code != exitUsage {
			t.Errorf("%q: exit %d", args, code)
		}
	}
	var out bytes.Buffer
	code := fakehubCommand().run(context.Background(), env{stdout: &out, stderr: &out},
		[]string{"--dir", ".", "--compression", "zstd", "--state", ""})
	if code != exitError || !strings.Contains(out.String(), "zstd") {
		t.Errorf("bad compression: %d %s", code, out.String())
	}
}
