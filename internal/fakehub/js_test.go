package fakehub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJSClient runs tests/js (the official @huggingface/hub client,
// unmodified) against a Hub on a real loopback listener: uploads through
// preupload, LFS batch, write token, global dedup, xorb and shard uploads
// and the NDJSON commit, then downloads (whole and sliced) through resolve,
// read tokens, v2 reconstructions and multi-range xorb fetches, and
// downloads files the Go side ingested.
//
// Without tests/js/node_modules it skips, unless CI=true: CI must run it
// (scripts/test.sh runs npm ci first).
func TestJSClient(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "tests", "js"))
	if err != nil {
		t.Fatal(err)
	}
	ci := os.Getenv("CI") == "true"
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@huggingface", "hub")); err != nil {
		if ci {
			t.Fatalf("tests/js/node_modules is missing (run npm ci in tests/js): %v", err)
		}
		t.Skip("tests/js/node_modules is missing; run npm ci in tests/js")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		if ci {
			t.Fatal("node is not installed")
		}
		t.Skip("node is not installed")
	}

	const token = "hf_fakehub_js_writer"
	h, srv := testHub(t, Config{
		TextFileThreshold: 1 << 20, // so that corpus.txt (3 MB of text) goes to Xet
		TreePageSize:      3,       // listFiles must follow Link rel="next"
		MaxXorbBytes:      4 << 20, // Go files span several xorbs
	})
	mustCreate(t, h, RepoSpec{ID: "org/js-upload", Writers: []string{token}})
	mustCreate(t, h, RepoSpec{ID: "datasets/org/go-ingested"})
	mustCreate(t, h, RepoSpec{ID: "org/private", Private: true, Readers: []string{token}})

	type goFile struct {
		Repo   string `json:"repo"`
		Path   string `json:"path"`
		Size   int    `json:"size"`
		SHA256 string `json:"sha256"`
	}
	var manifest []goFile
	add := func(repo, path string, data []byte) {
		mustAdd(t, h, repo, path, data)
		sum := sha256.Sum256(data)
		manifest = append(manifest, goFile{repo, path, len(data), hex.EncodeToString(sum[:])})
	}
	a := randomBytes(11, 6<<20)
	b := randomBytes(12, 3<<20)
	c := randomBytes(13, 5<<20)
	add("datasets/org/go-ingested", "abc.bin", concat(a, b, c))
	// Shares a and c with abc.bin: its reconstruction uses non-adjacent
	// ranges of the same xorbs (multi-range fetches).
	add("datasets/org/go-ingested", "a-x-c.bin", concat(a[:2<<20], randomBytes(14, 1<<20), c[3<<20:], a[4<<20:]))
	add("datasets/org/go-ingested", "weights.safetensors", weights(15, 9<<20))
	add("org/private", "secret.bin", randomBytes(16, 700_000))
	goFiles, _ := json.Marshal(manifest)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "fakehub.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HUB_URL="+srv.URL,
		"HF_TOKEN="+token,
		"UPLOAD_REPO=org/js-upload",
		"PRIVATE_REPO=org/private",
		"GO_FILES="+string(goFiles),
	)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test output:\n%s", out)
	if err != nil {
		t.Fatalf("JS client tests failed: %v", err)
	}
	if !strings.Contains(string(out), "ℹ pass 4") || !strings.Contains(string(out), "ℹ skipped 0") {
		t.Fatal("the JS tests did not all run")
	}

	st := h.Stats()
	for _, c := range []Class{ClassCommit, ClassToken, ClassXorbUpload, ClassShardUpload, ClassDedup,
		ClassResolve, ClassReconstruction, ClassXorb} {
		if st[c].Requests == 0 {
			t.Errorf("the JS client made no %s request", c)
		}
	}
	multi := false
	for _, r := range h.Requests() {
		if r.Class == ClassXorb && r.HasAuth {
			t.Errorf("xorb fetch carried an Authorization header: %s", r.Path)
		}
		if r.Class == ClassXorb && strings.Contains(r.Header.Get("Range"), ",") && r.Status == 206 {
			multi = true
		}
	}
	if !multi {
		t.Error("no multi-range xorb fetch happened")
	}
	f, err := h.Files("org/js-upload", "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range f {
		wantXet := e.Path != "README.md" && e.Path != ".gitattributes"
		if e.Xet != wantXet {
			t.Errorf("%s: Xet %v, want %v", e.Path, e.Xet, wantXet)
		}
	}
	if len(f) != 9 {
		t.Errorf("%d files in the JS upload repo, want 9: %+v", len(f), f)
	}
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
