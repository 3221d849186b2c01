package fakehub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

func ndjson(t *testing.T, lines ...any) *bytes.Reader {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		j, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return bytes.NewReader(b.Bytes())
}

type kv = map[string]any

func TestPreupload(t *testing.T) {
	h, srv := testHub(t, Config{SmallFileThreshold: 10})
	const w = "hf_w"
	mustCreate(t, h, RepoSpec{ID: "org/m", Writers: []string{w}})
	sample := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	body, _ := json.Marshal(kv{"files": []kv{
		{"path": "README.md", "size": 100, "sample": sample([]byte("# title\n"))},
		{"path": "tiny.bin", "size": 5, "sample": sample([]byte{0, 1, 2, 3, 4})},
		{"path": "w.safetensors", "size": 100, "sample": sample([]byte("{}"))},
		{"path": "blob.dat", "size": 100, "sample": sample([]byte{0, 1, 2})},
		{"path": "big.txt", "size": 11 << 20, "sample": sample([]byte("text"))},
		{"path": "saved_model/x/y.txt", "size": 100, "sample": sample([]byte("text"))},
	}})
	r := do(t, "POST", srv.URL+"/api/models/org/m/preupload/main", bytes.NewReader(body),
		"Authorization", "Bearer "+w, "Content-Type", "application/json")
	var out struct {
		Files []struct {
			Path, UploadMode string
		}
		CommitOid string
	}
	decodeJSON(t, r, &out)
	got := map[string]string{}
	for _, f := range out.Files {
		got[f.Path] = f.UploadMode
	}
	want := map[string]string{"README.md": "regular", "tiny.bin": "regular", "w.safetensors": "lfs",
		"blob.dat": "lfs", "big.txt": "lfs", "saved_model/x/y.txt": "lfs"}
	if fmt.Sprint(got) != fmt.Sprint(want) || !commitRE.MatchString(out.CommitOid) {
		t.Fatalf("preupload %s", r.body)
	}
	if r := do(t, "POST", srv.URL+"/api/models/org/m/preupload/main", bytes.NewReader(body)); r.status != 401 {
		t.Fatalf("anonymous preupload: %d", r.status)
	}
}

// A client without Xet (transfer "basic") uploads through a signed PUT that
// the Hub ingests into the CAS; the commit then refers to the sha256.
func TestBasicLFSUploadAndCommit(t *testing.T) {
	h, srv := testHub(t, Config{})
	const w = "hf_w"
	mustCreate(t, h, RepoSpec{ID: "datasets/org/d", Writers: []string{w}})
	auth := []string{"Authorization", "Bearer " + w}
	data := randomBytes(5, 400_000)
	sum := sha256.Sum256(data)
	oid := hex.EncodeToString(sum[:])
	batch := func(transfers ...string) map[string]any {
		body, _ := json.Marshal(kv{"operation": "upload", "transfers": transfers, "hash_algo": "sha_256",
			"objects": []kv{{"oid": oid, "size": len(data)}}})
		r := do(t, "POST", srv.URL+"/datasets/org/d.git/info/lfs/objects/batch", bytes.NewReader(body),
			append(auth, "Content-Type", "application/vnd.git-lfs+json")...)
		if r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
		var out map[string]any
		decodeJSON(t, r, &out)
		return out
	}
	// Xet-capable clients get the xet transfer and a write token.
	out := batch("basic", "multipart", "xet")
	obj := out["objects"].([]any)[0].(map[string]any)
	up := obj["actions"].(map[string]any)["upload"].(map[string]any)
	hdr := up["header"].(map[string]any)
	if out["transfer"] != "xet" || !strings.Contains(up["href"].(string), "/xet-write-token/main") ||
		hdr["X-Xet-Cas-Url"] != srv.URL+"/cas" || hdr["X-Xet-Access-Token"] == "" {
		t.Fatalf("xet batch: %v", out)
	}
	// Others get basic.
	out = batch("basic")
	obj = out["objects"].([]any)[0].(map[string]any)
	href := obj["actions"].(map[string]any)["upload"].(map[string]any)["href"].(string)
	if out["transfer"] != "basic" {
		t.Fatalf("basic batch: %v", out)
	}
	if r := do(t, "PUT", href, bytes.NewReader(data[:1000])); r.status != 400 {
		t.Fatalf("PUT of the wrong bytes: %d", r.status)
	}
	if r := do(t, "PUT", strings.Replace(href, "size=", "size=1", 1), bytes.NewReader(data)); r.status != 403 {
		t.Fatalf("PUT with a tampered URL: %d", r.status)
	}
	if r := do(t, "PUT", href, bytes.NewReader(data)); r.status != 200 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	// Now stored: no action.
	out = batch("basic", "xet")
	if _, ok := out["objects"].([]any)[0].(map[string]any)["actions"]; ok {
		t.Fatalf("stored object still has actions: %v", out)
	}

	head, _ := h.Resolve("datasets/org/d", "main")
	commit := func(q string, lines ...any) response {
		return do(t, "POST", srv.URL+"/api/datasets/org/d/commit/main"+q, ndjson(t, lines...),
			append(auth, "Content-Type", "application/x-ndjson")...)
	}
	r := commit("",
		kv{"key": "header", "value": kv{"summary": "add files", "parentCommit": head}},
		kv{"key": "lfsFile", "value": kv{"path": "data/train.bin", "algo": "sha256", "oid": oid, "size": len(data)}},
		kv{"key": "file", "value": kv{"path": "README.md", "content": base64.StdEncoding.EncodeToString([]byte("# d\n")), "encoding": "base64"}},
		kv{"key": "file", "value": kv{"path": "data/notes.txt", "content": "notes"}},
	)
	var res struct {
		Success   bool   `json:"success"`
		CommitOid string `json:"commitOid"`
		CommitURL string `json:"commitUrl"`
	}
	decodeJSON(t, r, &res)
	if r.status != 200 || !res.Success || !commitRE.MatchString(res.CommitOid) ||
		res.CommitURL != srv.URL+"/datasets/org/d/commit/"+res.CommitOid {
		t.Fatalf("commit: %d %s", r.status, r.body)
	}
	files, _ := h.Files("datasets/org/d", "main")
	byPath := map[string]File{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	if f := byPath["data/train.bin"]; !f.Xet || f.SHA256 != oid || f.Commit != res.CommitOid {
		t.Fatalf("train.bin: %+v", f)
	}
	c := &xetClient{t: t, srv: srv}
	if got := c.download("datasets/org/d", byPath["data/train.bin"].XetHash, 0, int64(len(data))-1); !bytes.Equal(got, data) {
		t.Fatal("train.bin differs")
	}
	if r := do(t, "GET", srv.URL+"/datasets/org/d/resolve/main/data/notes.txt", nil); string(r.body) != "notes" {
		t.Fatalf("notes.txt: %q", r.body)
	}

	// A stale parent is refused; an unknown LFS object too.
	if r := commit("", kv{"key": "header", "value": kv{"summary": "x", "parentCommit": head}}); r.status != 412 {
		t.Fatalf("stale parent: %d", r.status)
	}
	if r := commit("", kv{"key": "header", "value": kv{"summary": "x"}},
		kv{"key": "lfsFile", "value": kv{"path": "x.bin", "oid": strings.Repeat("ab", 32), "size": 3}}); r.status != 422 {
		t.Fatalf("unknown LFS object: %d", r.status)
	}
	// Deletions and pull requests.
	r = commit("?create_pr=1", kv{"key": "header", "value": kv{"summary": "rm"}},
		kv{"key": "deletedFolder", "value": kv{"path": "data"}})
	var pr struct {
		PullRequestURL string `json:"pullRequestUrl"`
	}
	decodeJSON(t, r, &pr)
	if r.status != 200 || pr.PullRequestURL != srv.URL+"/datasets/org/d/discussions/1" {
		t.Fatalf("pull request: %d %s", r.status, r.body)
	}
	prFiles, err := h.Files("datasets/org/d", "refs/pr/1")
	if err != nil || len(prFiles) != 2 {
		t.Fatalf("refs/pr/1: %v %+v", err, prFiles)
	}
	if main, _ := h.Files("datasets/org/d", "main"); len(main) != 4 {
		t.Fatalf("main changed by the pull request: %+v", main)
	}
	if r := do(t, "POST", srv.URL+"/api/datasets/org/d/commit/main", ndjson(t, kv{"key": "header"})); r.status != 401 {
		t.Fatalf("anonymous commit: %d", r.status)
	}
}

// With Config.Dir, xorbs live on disk and a new Hub on the same directory
// reuses them.
func TestDirStore(t *testing.T) {
	dir := t.TempDir()
	data := weights(9, 3<<20)
	h1, srv1 := testHub(t, Config{Dir: dir, MaxXorbBytes: 1 << 20})
	mustCreate(t, h1, RepoSpec{ID: "org/m"})
	f := mustAdd(t, h1, "org/m", "w.bin", data)
	entries, err := os.ReadDir(dir + "/xorbs")
	if err != nil || len(entries) < 6 {
		t.Fatalf("xorbs dir: %v, %d entries", err, len(entries))
	}
	c := &xetClient{t: t, srv: srv1}
	if got := c.download("org/m", f.XetHash, 1, int64(len(data))-2); !bytes.Equal(got, data[1:len(data)-1]) {
		t.Fatal("download from disk differs")
	}
	h2, _ := testHub(t, Config{Dir: dir, MaxXorbBytes: 1 << 20})
	in, err := h2.ingest(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if in.newXorbs != 0 || in.hash != f.XetHash {
		t.Fatalf("re-ingesting into the same dir added %d xorbs", in.newXorbs)
	}
}
