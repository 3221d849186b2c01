package corruption

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCorruptJSClient runs the official @huggingface/hub client
// (tests/js/corrupt.test.mjs, unmodified client) through the proxy, with
// no cache, while the Hub damages a raw chunk in the middle of the file:
// downloadFile and downloadFileToCacheDir must fail, and leave no complete
// file of wrong bytes. Then, the Hub healthy, the same downloads must give
// the right bytes (so the failures above were the damage, not the client).
func TestCorruptJSClient(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	_, file, _, _ := runtime.Caller(0)
	jsDir := filepath.Join(filepath.Dir(file), "..", "js")
	if err == nil {
		_, err = os.Stat(filepath.Join(jsDir, "node_modules", "@huggingface", "hub"))
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node and tests/js/node_modules are required in CI (scripts/test.sh runs npm ci): %v", err)
		}
		t.Skipf("node or tests/js/node_modules missing (run npm ci in tests/js): %v", err)
	}
	f := newFile(t, schemes[0])
	p := newStack(t, noCache).start(nil)
	sum := sha256.Sum256(f.data)
	run := func(expect string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "corrupt.test.mjs")
		cmd.Dir = jsDir
		cmd.Env = append(os.Environ(), "PROXY_URL="+p.url, "REPO="+f.repo, "FILE="+f.path,
			"SIZE="+strconv.Itoa(len(f.data)), "SHA256="+hex.EncodeToString(sum[:]), "EXPECT="+expect,
			"CACHE_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "pass 2") {
			t.Errorf("node --test, expecting %s: %v\n%s", expect, err, out)
		}
	}
	corr := corrupt(t, f, len(f.chunks)/2)
	run("failure")
	heal(t, f, corr)
	run("exact")
}
