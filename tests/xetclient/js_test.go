package xetclient

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// jsDir is tests/js, where the @huggingface/hub client is installed.
func jsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "js")
}

// needNode finds node and the installed client; missing ones skip the
// test, except in CI (CI=true), where they fail it.
func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(jsDir(), "node_modules", "@huggingface", "hub"))
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node and tests/js/node_modules are required in CI (scripts/test.sh runs npm ci): %v", err)
		}
		t.Skipf("node or tests/js/node_modules missing (run npm ci in tests/js): %v", err)
	}
	return node
}

type jsFile struct {
	Repo   string  `json:"repo"`
	Path   string  `json:"path"`
	Size   int     `json:"size"`
	SHA256 string  `json:"sha256"`
	Slices [][]any `json:"slices"`
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// jsFiles describes dedupRepo's files with slices inside chunks, across
// xorbs, and at the ends.
func jsFiles() []jsFile {
	var out []jsFile
	for _, p := range dedupFiles {
		b := content[dedupRepo+":"+p]
		n := len(b)
		f := jsFile{Repo: dedupRepo, Path: p, Size: n, SHA256: sha(b)}
		for _, r := range [][2]int{{0, 1}, {777, 70_000}, {n/3 + 5, 2*n/3 + 11}, {n - 1, n}} {
			f.Slices = append(f.Slices, []any{r[0], r[1], sha(b[r[0]:r[1]])})
		}
		out = append(out, f)
	}
	return out
}

// runJSXet runs tests/js/xet.test.mjs against tg once (a fresh client:
// the client's token cache lives in its process) and returns the URLs it
// fetched.
func runJSXet(t *testing.T, node string, tg target) []string {
	t.Helper()
	files, _ := json.Marshal(jsFiles())
	log := filepath.Join(t.TempDir(), "urls.txt")
	cmd := exec.Command(node, "--test", "--test-reporter=spec", "xet.test.mjs")
	cmd.Dir = jsDir()
	cmd.Env = append(os.Environ(), "HUB_URL="+tg.endpoint, "ORIGIN="+tg.endpoint, "XORB_PART="+tg.xorbPart,
		"FILES="+string(files), "URL_LOG="+log)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pass 4") {
		t.Fatalf("node --test xet.test.mjs: %v\n%s", err, out)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// TestJSXetClient: @huggingface/hub's downloadFile on its Xet path, whole
// and sliced, against every target; on the proxy, a second run (a fresh
// client) costs no upstream xorb bytes.
func TestJSXetClient(t *testing.T) {
	node := needNode(t)
	forTargets(t, func(t *testing.T, tg target) {
		urls := runJSXet(t, node, tg)
		if len(urls) == 0 {
			t.Fatal("no URL logged")
		}
		if tg.viaProxy {
			assertSecondRunFree(t, func() { runJSXet(t, node, tg) })
		}
	})
}
