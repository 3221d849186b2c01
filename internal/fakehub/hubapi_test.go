package fakehub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// parseLinks maps rel → URL of a Link header.
func parseLinks(h string) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(h, ",") {
		m := regexp.MustCompile(`<([^>]*)>;\s*rel="([^"]*)"`).FindStringSubmatch(strings.TrimSpace(part))
		if m != nil {
			out[m[2]] = m[1]
		}
	}
	return out
}

func TestResolveXetFile(t *testing.T) {
	h, srv := testHub(t, Config{})
	mustCreate(t, h, RepoSpec{ID: "org/m"})
	data := randomBytes(1, 300_000)
	f := mustAdd(t, h, "org/m", "sub/w.bin", data)
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])

	for _, method := range []string{"HEAD", "GET"} {
		r := do(t, method, srv.URL+"/org/m/resolve/main/sub/w.bin", nil)
		if r.status != http.StatusFound {
			t.Fatalf("%s resolve: %d", method, r.status)
		}
		hd := r.header
		if hd.Get("X-Xet-Hash") != f.XetHash.String() || hd.Get("X-Linked-Size") != "300000" ||
			hd.Get("X-Linked-Etag") != `"`+sha+`"` || hd.Get("ETag") != `"`+sha+`"` || !commitRE.MatchString(hd.Get("X-Repo-Commit")) {
			t.Fatalf("%s resolve headers: %v", method, hd)
		}
		links := parseLinks(hd.Get("Link"))
		if links["xet-auth"] != srv.URL+"/api/models/org/m/xet-read-token/"+hd.Get("X-Repo-Commit") ||
			links["xet-reconstruction-info"] != srv.URL+"/cas/v1/reconstructions/"+f.XetHash.String() {
			t.Fatalf("Link: %q", hd.Get("Link"))
		}
		// The bridge serves the whole file with Range.
		loc := hd.Get("Location")
		whole := do(t, "GET", loc, nil)
		if whole.status != 200 || !bytes.Equal(whole.body, data) {
			t.Fatalf("bridge: %d, %d bytes", whole.status, len(whole.body))
		}
		part := do(t, "GET", loc, nil, "Range", "bytes=131070-131079")
		if part.status != 206 || !bytes.Equal(part.body, data[131070:131080]) ||
			part.header.Get("Content-Range") != "bytes 131070-131079/300000" {
			t.Fatalf("bridge range: %d %q", part.status, part.header.Get("Content-Range"))
		}
		if r := do(t, "GET", loc, nil, "Range", "bytes=300000-"); r.status != 416 {
			t.Fatalf("bridge past the end: %d", r.status)
		}
		if r := do(t, "GET", strings.Replace(loc, "Signature=", "Signature=0", 1), nil); r.status != 403 {
			t.Fatalf("bridge with a bad signature: %d", r.status)
		}
	}

	// What @huggingface/hub sends.
	r := do(t, "GET", srv.URL+"/org/m/resolve/main/sub/w.bin", nil,
		"Range", "bytes=0-0", "Accept", "application/vnd.xet-fileinfo+json, */*")
	if r.status != 200 || r.header.Get("Content-Type") != "application/vnd.xet-fileinfo+json" {
		t.Fatalf("fileinfo: %d %q", r.status, r.header.Get("Content-Type"))
	}
	var info struct {
		Hash              string `json:"hash"`
		Size              int64  `json:"size"`
		Etag              string `json:"etag"`
		RefreshURL        string `json:"refreshUrl"`
		ReconstructionURL string `json:"reconstructionUrl"`
	}
	decodeJSON(t, r, &info)
	if info.Hash != f.XetHash.String() || info.Size != 300000 || info.Etag != sha ||
		info.RefreshURL == "" || info.ReconstructionURL == "" || r.header.Get("X-Xet-Hash") == "" {
		t.Fatalf("fileinfo body %+v", info)
	}
}

func TestResolvePlainFile(t *testing.T) {
	h, srv := testHub(t, Config{})
	mustCreate(t, h, RepoSpec{ID: "org/m"})
	data := []byte(`{"model_type": "gpt2", "n_layer": 12}` + "\n")
	f := mustAdd(t, h, "org/m", "config.json", data)
	if f.Xet {
		t.Fatal("config.json stored as Xet")
	}
	u := srv.URL + "/org/m/resolve/main/config.json"
	r := do(t, "GET", u, nil)
	if r.status != 200 || !bytes.Equal(r.body, data) || r.header.Get("ETag") != `"`+f.GitOID+`"` ||
		r.header.Get("X-Xet-Hash") != "" || !commitRE.MatchString(r.header.Get("X-Repo-Commit")) {
		t.Fatalf("plain GET: %d %v", r.status, r.header)
	}
	if f.GitOID != gitBlobOID(data) {
		t.Fatal("git oid")
	}
	n := len(data)
	for _, c := range []struct {
		rng    string
		status int
		want   []byte
		cr     string
	}{
		{"bytes=0-0", 206, data[:1], fmt.Sprintf("bytes 0-0/%d", n)},
		{fmt.Sprintf("bytes=%d-", n-1), 206, data[n-1:], fmt.Sprintf("bytes %d-%d/%d", n-1, n-1, n)},
		{"bytes=5-9", 206, data[5:10], fmt.Sprintf("bytes 5-9/%d", n)},
		{fmt.Sprintf("bytes=%d-", n), 416, nil, fmt.Sprintf("bytes */%d", n)},
	} {
		r := do(t, "GET", u, nil, "Range", c.rng)
		if r.status != c.status || r.header.Get("Content-Range") != c.cr || (c.want != nil && !bytes.Equal(r.body, c.want)) {
			t.Errorf("Range %s: %d %q %q", c.rng, r.status, r.header.Get("Content-Range"), r.body)
		}
	}
	// @huggingface/hub's probe gets a normal 206 for a non-Xet file.
	r = do(t, "GET", u, nil, "Range", "bytes=0-0", "Accept", "application/vnd.xet-fileinfo+json, */*")
	if r.status != 206 || r.header.Get("Content-Range") != fmt.Sprintf("bytes 0-0/%d", n) {
		t.Fatalf("fileinfo probe of a plain file: %d", r.status)
	}
	if r := do(t, "HEAD", u, nil); r.status != 200 || r.header.Get("Content-Length") != fmt.Sprint(n) {
		t.Fatalf("HEAD: %d %v", r.status, r.header)
	}
	// raw of a Xet file is its LFS pointer.
	x := mustAdd(t, h, "org/m", "w.bin", randomBytes(2, 1000))
	r = do(t, "GET", srv.URL+"/org/m/raw/main/w.bin", nil)
	if r.status != 200 || !strings.Contains(string(r.body), "oid sha256:"+x.SHA256) || gitBlobOID(r.body) != x.GitOID {
		t.Fatalf("raw: %d %q", r.status, r.body)
	}
}

func TestRevisions(t *testing.T) {
	h, srv := testHub(t, Config{})
	mustCreate(t, h, RepoSpec{ID: "datasets/org/d"})
	v1 := mustAdd(t, h, "datasets/org/d", "data.bin", randomBytes(1, 5000))
	if err := h.CreateTag("datasets/org/d", "v1.0", "main"); err != nil {
		t.Fatal(err)
	}
	if err := h.CreateBranch("datasets/org/d", "refs/pr/1", "main"); err != nil {
		t.Fatal(err)
	}
	v2 := mustAdd(t, h, "datasets/org/d", "data.bin", randomBytes(2, 5000))
	if v1.Commit == v2.Commit || !commitRE.MatchString(v2.Commit) {
		t.Fatalf("commits %s %s", v1.Commit, v2.Commit)
	}
	head := func(rev string) string {
		r := do(t, "GET", srv.URL+"/datasets/org/d/resolve/"+rev+"/data.bin", nil,
			"Accept", "application/vnd.xet-fileinfo+json")
		if r.status != 200 {
			t.Fatalf("resolve %s: %d %s", rev, r.status, r.body)
		}
		return r.header.Get("X-Xet-Hash")
	}
	for rev, want := range map[string]string{
		"main":                    v2.XetHash.String(),
		"v1.0":                    v1.XetHash.String(),
		v1.Commit:                 v1.XetHash.String(),
		v2.Commit:                 v2.XetHash.String(),
		"refs%2Fpr%2F1":           v1.XetHash.String(),
		"refs/pr/1":               v1.XetHash.String(),
		url.PathEscape(v2.Commit): v2.XetHash.String(),
	} {
		if got := head(rev); got != want {
			t.Errorf("rev %s: %s, want %s", rev, got, want)
		}
	}
	r := do(t, "GET", srv.URL+"/api/datasets/org/d/revision/refs%2Fpr%2F1", nil)
	var info struct{ Sha string }
	decodeJSON(t, r, &info)
	if info.Sha != v1.Commit {
		t.Fatalf("revision refs/pr/1: %s, want %s", info.Sha, v1.Commit)
	}
	r = do(t, "GET", srv.URL+"/api/datasets/org/d/tree/refs%2Fpr%2F1", nil)
	if r.status != 200 {
		t.Fatalf("tree at refs%%2Fpr%%2F1: %d", r.status)
	}
	r = do(t, "GET", srv.URL+"/api/datasets/org/d/xet-read-token/refs/pr/1", nil)
	if r.status != 200 {
		t.Fatalf("token at raw refs/pr/1: %d", r.status)
	}
}

type errCase struct {
	name   string
	method string
	url    string
	token  string
	status int
	code   string
}

func TestErrorStatuses(t *testing.T) {
	h, srv := testHub(t, Config{})
	const reader, other = "hf_reader", "hf_other"
	h.AddToken(other)
	mustCreate(t, h, RepoSpec{ID: "org/public"})
	mustCreate(t, h, RepoSpec{ID: "org/private", Private: true, Readers: []string{reader}})
	mustCreate(t, h, RepoSpec{ID: "org/gated", Gated: true, Readers: []string{reader}})
	mustCreate(t, h, RepoSpec{ID: "org/disabled", Disabled: true})
	for _, id := range []string{"org/public", "org/private", "org/gated"} {
		mustAdd(t, h, id, "w.bin", randomBytes(1, 1000))
	}
	u := srv.URL
	cases := []errCase{
		{"public anonymous", "GET", "/org/public/resolve/main/w.bin", "", 302, ""},
		{"missing repo anonymous", "GET", "/org/nope/resolve/main/w.bin", "", 401, codeRepoNotFound},
		{"missing repo authenticated", "GET", "/org/nope/resolve/main/w.bin", other, 404, codeRepoNotFound},
		{"private anonymous", "GET", "/org/private/resolve/main/w.bin", "", 401, codeRepoNotFound},
		{"private not allowed", "GET", "/org/private/resolve/main/w.bin", other, 404, codeRepoNotFound},
		{"private allowed", "GET", "/org/private/resolve/main/w.bin", reader, 302, ""},
		{"gated anonymous", "GET", "/org/gated/resolve/main/w.bin", "", 401, codeGatedRepo},
		{"gated not approved", "GET", "/org/gated/resolve/main/w.bin", other, 403, codeGatedRepo},
		{"gated approved", "GET", "/org/gated/resolve/main/w.bin", reader, 302, ""},
		{"gated metadata is public", "GET", "/api/models/org/gated", "", 200, ""},
		{"gated tree is public", "GET", "/api/models/org/gated/tree/main", "", 200, ""},
		{"gated read token anonymous", "GET", "/api/models/org/gated/xet-read-token/main", "", 401, codeGatedRepo},
		{"gated read token not approved", "GET", "/api/models/org/gated/xet-read-token/main", other, 403, codeGatedRepo},
		{"private info anonymous", "GET", "/api/models/org/private", "", 401, codeRepoNotFound},
		{"private info not allowed", "GET", "/api/models/org/private", other, 404, codeRepoNotFound},
		{"private tree allowed", "GET", "/api/models/org/private/tree/main", reader, 200, ""},
		{"private token anonymous", "GET", "/api/models/org/private/xet-read-token/main", "", 401, codeRepoNotFound},
		{"bad token", "GET", "/org/public/resolve/main/w.bin", "hf_unknown", 401, ""},
		{"bad token on api", "GET", "/api/models/org/public", "hf_unknown", 401, ""},
		{"missing revision", "GET", "/org/public/resolve/nope/w.bin", "", 404, codeRevisionNotFound},
		{"missing revision api", "GET", "/api/models/org/public/revision/nope", "", 404, codeRevisionNotFound},
		{"missing revision tree", "GET", "/api/models/org/public/tree/nope", "", 404, codeRevisionNotFound},
		{"missing revision token", "GET", "/api/models/org/public/xet-read-token/nope", "", 404, codeRevisionNotFound},
		{"missing entry", "GET", "/org/public/resolve/main/nope.bin", "", 404, codeEntryNotFound},
		{"missing entry HEAD", "HEAD", "/org/public/resolve/main/nope.bin", "", 404, codeEntryNotFound},
		{"missing tree path", "GET", "/api/models/org/public/tree/main/nope", "", 404, codeEntryNotFound},
		{"disabled", "GET", "/org/disabled/resolve/main/x", "", 403, ""},
		{"write token anonymous", "GET", "/api/models/org/public/xet-write-token/main", "", 401, ""},
		{"write token reader", "GET", "/api/models/org/public/xet-write-token/main", other, 403, ""},
		{"missing dataset", "GET", "/api/datasets/org/public", other, 404, codeRepoNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := []string{}
			if c.token != "" {
				hdr = append(hdr, "Authorization", "Bearer "+c.token)
			}
			r := do(t, c.method, u+c.url, nil, hdr...)
			if r.status != c.status || r.header.Get("X-Error-Code") != c.code {
				t.Fatalf("%s %s: %d %q, want %d %q (%s)", c.method, c.url, r.status, r.header.Get("X-Error-Code"),
					c.status, c.code, r.header.Get("X-Error-Message"))
			}
			if r.status >= 400 && r.header.Get("X-Error-Message") == "" {
				t.Fatal("no X-Error-Message")
			}
			if c.code == codeEntryNotFound && c.url[:4] != "/api" && !commitRE.MatchString(r.header.Get("X-Repo-Commit")) {
				t.Fatal("EntryNotFound without X-Repo-Commit")
			}
		})
	}
}

func TestRepoInfo(t *testing.T) {
	h, srv := testHub(t, Config{})
	for _, id := range []string{"org/m", "datasets/org/d", "spaces/org/s", "gpt2"} {
		mustCreate(t, h, RepoSpec{ID: id})
		x := mustAdd(t, h, id, "w.safetensors", randomBytes(1, 2000))
		mustAdd(t, h, id, "README.md", []byte("hi\n"))
		typ, name, _ := parseRepoID(id)
		r := do(t, "GET", fmt.Sprintf("%s/api/%ss/%s?blobs=true", srv.URL, typ, name), nil)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", id, r.status, r.body)
		}
		var info struct {
			ID         string `json:"id"`
			Sha        string `json:"sha"`
			XetEnabled bool   `json:"xetEnabled"`
			Siblings   []struct {
				Rfilename string `json:"rfilename"`
				XetHash   string `json:"xetHash"`
				Size      int64  `json:"size"`
				LFS       *struct {
					Sha256 string `json:"sha256"`
				} `json:"lfs"`
			} `json:"siblings"`
		}
		decodeJSON(t, r, &info)
		if info.ID != name || info.Sha != x.Commit && !commitRE.MatchString(info.Sha) || !info.XetEnabled || len(info.Siblings) != 3 {
			t.Fatalf("%s: %+v", id, info)
		}
		for _, s := range info.Siblings {
			switch s.Rfilename {
			case "w.safetensors":
				if s.XetHash != x.XetHash.String() || s.Size != 2000 || s.LFS == nil || s.LFS.Sha256 != x.SHA256 {
					t.Errorf("%s sibling %+v", id, s)
				}
			case "README.md", ".gitattributes":
				if s.XetHash != "" || s.LFS != nil {
					t.Errorf("%s sibling %+v", id, s)
				}
			}
		}
	}
}

func TestTreePagination(t *testing.T) {
	h, srv := testHub(t, Config{TreePageSize: 2})
	mustCreate(t, h, RepoSpec{ID: "org/m", NoGitAttributes: true})
	var files []FileSpec
	for _, p := range []string{"a.bin", "b/c.bin", "b/d/e.bin", "b/f.txt", "g.txt"} {
		files = append(files, FileSpec{Path: p, Content: bytes.NewReader(randomBytes(3, 100)), Storage: StorageXet})
	}
	if _, err := h.Commit(context.Background(), "org/m", CommitSpec{Files: files}); err != nil {
		t.Fatal(err)
	}
	list := func(u string) []string {
		var out []string
		for pages := 0; u != ""; pages++ {
			if pages > 20 {
				t.Fatal("pagination does not end")
			}
			r := do(t, "GET", u, nil)
			if r.status != 200 {
				t.Fatalf("%s: %d", u, r.status)
			}
			var page []treeEntry
			decodeJSON(t, r, &page)
			if len(page) > 2 {
				t.Fatalf("page of %d entries", len(page))
			}
			for _, e := range page {
				out = append(out, e.Type[:1]+":"+e.Path)
				if e.Type == "file" && (e.XetHash == "" || e.LFS == nil || e.OID == "") {
					t.Errorf("file entry %+v", e)
				}
			}
			u = parseLinks(r.header.Get("Link"))["next"]
			if u != "" && !strings.HasPrefix(u, srv.URL+"/api/") {
				t.Fatalf("next link %q is not absolute", u)
			}
		}
		return out
	}
	base := srv.URL + "/api/models/org/m/tree/main"
	for _, c := range []struct {
		u    string
		want string
	}{
		{base + "?recursive=true", "f:a.bin d:b f:b/c.bin d:b/d f:b/d/e.bin f:b/f.txt f:g.txt"},
		{base, "f:a.bin d:b f:g.txt"},
		{base + "/b", "f:b/c.bin d:b/d f:b/f.txt"},
		{base + "/b?recursive=1", "f:b/c.bin d:b/d f:b/d/e.bin f:b/f.txt"},
		{base + "/b/d?expand=true", "f:b/d/e.bin"},
	} {
		if got := strings.Join(list(c.u), " "); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.u, got, c.want)
		}
	}
	r := do(t, "GET", base+"/b/d?expand=true", nil)
	var page []treeEntry
	decodeJSON(t, r, &page)
	if page[0].LastCommit == nil || !commitRE.MatchString(page[0].LastCommit.ID) {
		t.Fatalf("expand: %+v", page[0])
	}
}

func TestPathsInfo(t *testing.T) {
	h, srv := testHub(t, Config{})
	mustCreate(t, h, RepoSpec{ID: "org/m"})
	x := mustAdd(t, h, "org/m", "dir/w.bin", randomBytes(1, 1000))
	mustAdd(t, h, "org/m", "config.json", []byte("{}"))
	u := srv.URL + "/api/models/org/m/paths-info/main"
	check := func(r response) {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("paths-info: %d %s", r.status, r.body)
		}
		var out []treeEntry
		decodeJSON(t, r, &out)
		got := map[string]treeEntry{}
		for _, e := range out {
			got[e.Path] = e
		}
		if len(out) != 3 || got["dir/w.bin"].XetHash != x.XetHash.String() || got["config.json"].XetHash != "" ||
			got["dir"].Type != "directory" {
			t.Fatalf("paths-info: %s", r.body)
		}
	}
	form := url.Values{"paths": {"dir/w.bin", "config.json", "dir", "missing"}, "expand": {"False"}}
	check(do(t, "POST", u, strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded"))
	body, _ := json.Marshal(map[string]any{"paths": []string{"dir/w.bin", "config.json", "dir", "missing"}, "expand": true})
	check(do(t, "POST", u, bytes.NewReader(body), "Content-Type", "application/json"))
}

func TestXetTokens(t *testing.T) {
	h, srv := testHub(t, Config{})
	const writer = "hf_writer"
	mustCreate(t, h, RepoSpec{ID: "org/m", Writers: []string{writer}})
	for _, c := range []struct {
		path, token, scope string
	}{
		{"xet-read-token/main", "", scopeRead},
		{"xet-write-token/main", writer, scopeWrite},
	} {
		hdr := []string{}
		if c.token != "" {
			hdr = append(hdr, "Authorization", "Bearer "+c.token)
		}
		r := do(t, "GET", srv.URL+"/api/models/org/m/"+c.path, nil, hdr...)
		var tok tokenAnswer
		decodeJSON(t, r, &tok)
		if r.status != 200 || tok.CasURL != srv.URL+"/cas" || tok.AccessToken == "" ||
			r.header.Get("X-Xet-Access-Token") != tok.AccessToken || r.header.Get("X-Xet-Cas-Url") != tok.CasURL ||
			r.header.Get("X-Xet-Token-Expiration") != fmt.Sprint(tok.Exp) {
			t.Fatalf("%s: %d %s %v", c.path, r.status, r.body, r.header)
		}
		ct, err := h.checkToken(tok.AccessToken)
		if err != nil || ct.Scope != c.scope || ct.Repo != "models/org/m" {
			t.Fatalf("%s: token %+v %v", c.path, ct, err)
		}
		// Tampering with the opaque token breaks it.
		last := tok.AccessToken[len(tok.AccessToken)-1]
		flipped := "0"
		if last == '0' {
			flipped = "1"
		}
		if _, err := h.checkToken(tok.AccessToken[:len(tok.AccessToken)-1] + flipped); err == nil {
			t.Fatal("tampered token accepted")
		}
	}
}
