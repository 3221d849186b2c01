package server

import (
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// policyFixture is the fixture with a policy: models of org/m only (plus
// nothing else of type model), every dataset except org/d (deny wins).
func policyFixture(t *testing.T) *fixture {
	return newFixture(t, func(c *Config) {
		c.Allow = []string{"model/org/m", "dataset/*"}
		c.Deny = []string{"dataset/org/d"}
	})
}

// send sends one request to the server under test and returns the answer
// with its body read.
func (f *fixture) send(method, path, body string, hdr ...string) (*http.Response, string) {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.ts.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		f.t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return res, string(b)
}

// waitUpstream polls fakehub's request log (written after each handler
// returns) until cond holds for it.
func (f *fixture) waitUpstream(what string, cond func([]fakehub.Request) bool) []fakehub.Request {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		reqs := f.fh.Requests()
		if cond(reqs) {
			return reqs
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("fakehub never saw %s; it saw %d requests", what, len(reqs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRepoPolicyRefusesEveryRouteWithoutUpstream(t *testing.T) {
	f := policyFixture(t)
	hash := f.big.xetHash.String()
	refused := []struct{ method, path, body string }{
		{"GET", "/download/org/private/w.bin", ""},
		{"HEAD", "/download/org/private/w.bin", ""},
		{"GET", "/download/datasets/org/d/data/train.csv", ""}, // allowed by dataset/*, denied by name
		{"GET", "/download/datasets/ORG/D/data/train.csv", ""}, // case does not get around a deny
		{"GET", "/download/spaces/org/s/app.py", ""},
		{"GET", "/download-hash/" + hash + "?repo=org/private", ""},
		{"GET", "/download-hash/" + hash + "?repo=org/d&repo_type=dataset", ""},
		{"GET", "/org/private/resolve/main/w.bin", ""},
		{"HEAD", "/org/gated/resolve/main/w.bin", ""},
		{"GET", "/gpt2/resolve/main/config.json", ""}, // namespace-less: model/gpt2, not allowed
		{"GET", "/datasets/org/d/resolve/main/data/train.csv", ""},
		{"GET", "/api/models/org/private", ""},
		{"GET", "/api/models/gpt2", ""},
		{"GET", "/api/models/org/private/revision/main", ""},
		{"GET", "/api/models/org/private/tree/main", ""},
		{"GET", "/api/models/org/private/tree/main/sub/dir", ""},
		{"POST", "/api/models/org/private/paths-info/main", "paths=w.bin"},
		{"GET", "/api/models/org/private/refs", ""},
		{"GET", "/api/models/org/private/commits/main", ""},
		{"GET", "/api/datasets/org/d", ""},
		{"GET", "/api/spaces/org/s", ""},
	}
	for _, c := range refused {
		// the refusal comes before credentials: a wrong key changes nothing
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer " + readerToken}, {"X-Proxy-Key", "wrong-key-wrong-key"}} {
			res, body := f.send(c.method, c.path, c.body, hdr...)
			if res.StatusCode != http.StatusForbidden || res.Header.Get("X-Error-Code") != "RepoNotAllowed" {
				t.Errorf("%s %s (auth %v): %d %q, want 403 RepoNotAllowed", c.method, c.path, hdr != nil, res.StatusCode, res.Header.Get("X-Error-Code"))
				continue
			}
			if c.method != "HEAD" {
				var e struct{ Code string }
				if json.Unmarshal([]byte(body), &e); e.Code != "RepoNotAllowed" {
					t.Errorf("%s %s: body %s, want code RepoNotAllowed", c.method, c.path, body)
				}
			}
		}
	}
	// The allowed repos work, and their requests reaching fakehub show
	// that it logs what it is sent: none of the refused ones got there.
	if res, body := f.send("GET", "/download/org/m/config.json", ""); res.StatusCode != 200 || body != string(f.small.data) {
		t.Errorf("allowed download: %d %q", res.StatusCode, body)
	}
	if res, body := f.send("GET", "/org/m/resolve/main/model.safetensors", ""); res.StatusCode != 200 || body != string(f.big.data) {
		t.Errorf("allowed resolve: %d, %d bytes", res.StatusCode, len(body))
	}
	if res, body := f.send("GET", "/api/models/org/m", ""); res.StatusCode != 200 || !strings.Contains(body, `"org/m"`) {
		t.Errorf("allowed api: %d %s", res.StatusCode, body)
	}
	if res, _ := f.send("GET", "/download-hash/"+hash+"?repo=org/m", ""); res.StatusCode != 200 {
		t.Errorf("allowed download-hash: %d", res.StatusCode)
	}
	reqs := f.waitUpstream("the allowed requests", func(rs []fakehub.Request) bool {
		n := 0
		for _, r := range rs {
			if r.Class == fakehub.ClassAPI && strings.HasPrefix(r.Path, "/api/models/org/m") {
				n++
			}
		}
		return n >= 2 // the info, and the listing for the hash lookup
	})
	for _, r := range reqs {
		p := strings.ToLower(r.Path)
		if strings.Contains(p, "org/private") || strings.Contains(p, "org/gated") || strings.Contains(p, "org/d/") ||
			strings.Contains(p, "gpt2") || strings.Contains(p, "org/s") {
			t.Errorf("a refused repo reached upstream: %s %s", r.Method, r.Path)
		}
		if !strings.Contains(p, "org/m") && r.Class != fakehub.ClassXorb && r.Class != fakehub.ClassReconstruction && r.Class != fakehub.ClassBridge {
			t.Errorf("unexpected upstream request: %s %s (%s)", r.Method, r.Path, r.Class)
		}
	}
}

func TestRepoPolicyOffServesEverything(t *testing.T) {
	// the premise of the test above: without a policy the same requests
	// are answered by the Hub, not refused
	f := newFixture(t, nil)
	if res, _ := f.send("GET", "/download/org/private/w.bin", "", "Authorization", "Bearer "+readerToken); res.StatusCode != 200 {
		t.Errorf("private download without policy: %d", res.StatusCode)
	}
	if res, _ := f.send("GET", "/download/datasets/org/d/data/train.csv", ""); res.StatusCode != 200 {
		t.Errorf("dataset download without policy: %d", res.StatusCode)
	}
}

func TestRepoPolicyFiltersListings(t *testing.T) {
	listing := `[{"id":"org/m","downloads":1},{"id":"Acme/secret"},{"id":"gpt2"},{"id":"org/other","xetEnabled":true},{"_id":"no id"}]`
	answer := listing
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answer)
	}))
	defer upstream.Close()
	get := func(mod func(*Config), path string) (*http.Response, string) {
		cfg := testConfig(upstream.URL)
		if mod != nil {
			mod(&cfg)
		}
		front := httptest.NewServer(newTestServer(t, cfg).Handler())
		defer front.Close()
		res, err := http.Get(front.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(b)
	}
	ids := func(body string) string {
		var es []struct{ ID string }
		if err := json.Unmarshal([]byte(body), &es); err != nil {
			t.Fatalf("listing %s: %v", body, err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return strings.Join(out, ",")
	}
	if res, body := get(nil, "/api/models?search=o"); res.StatusCode != 200 || ids(body) != "org/m,Acme/secret,gpt2,org/other," {
		t.Fatalf("without a policy the listing passes whole: %d %s", res.StatusCode, body)
	}
	res, body := get(func(c *Config) { c.Allow = []string{"model/org/*"}; c.Deny = []string{"model/org/other"} }, "/api/models?search=o")
	if res.StatusCode != 200 || ids(body) != "org/m" || res.Header.Get("Content-Length") != itoa(int64(len(body))) {
		t.Errorf("allow-list listing: %d %s", res.StatusCode, body)
	}
	if !strings.Contains(body, `"downloads":1`) {
		t.Errorf("kept entries lost their fields: %s", body)
	}
	res, body = get(func(c *Config) { c.Deny = []string{"*/acme/*"} }, "/api/models")
	if res.StatusCode != 200 || ids(body) != "org/m,gpt2,org/other" {
		t.Errorf("deny-list listing: %d %s", res.StatusCode, body)
	}
	// a dataset listing is judged as datasets: model globs do not let it through
	for _, l := range []string{"/api/datasets", "/api/spaces"} {
		res, body = get(func(c *Config) { c.Allow = []string{"model/*"} }, l)
		if res.StatusCode != 200 || body != "[]" {
			t.Errorf("%s under a model allow-list: %d %s", l, res.StatusCode, body)
		}
	}
	answer = `{"not":"a list"}`
	if res, body := get(func(c *Config) { c.Allow = []string{"*"} }, "/api/models"); res.StatusCode != http.StatusBadGateway || strings.Contains(body, "not") {
		t.Errorf("unexpected listing shape under a policy: %d %s, want 502", res.StatusCode, body)
	}
}

func TestPolicyConfigFromEnvAndFlags(t *testing.T) {
	parse := func(env map[string]string, args ...string) Config {
		t.Helper()
		var c Config
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.RegisterFlags(fs, func(k string) string { return env[k] })
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	env := map[string]string{"XETPROXY_ALLOW": " model/meta-llama/* , dataset/*,", "XETPROXY_DENY": "*/acme/*", "XETPROXY_AUDIT_KEY": "k-0123456789abcdef"}
	c := parse(env)
	if strings.Join(c.Allow, "|") != "model/meta-llama/*|dataset/*" || strings.Join(c.Deny, "|") != "*/acme/*" || c.AuditKey != "k-0123456789abcdef" {
		t.Errorf("from env: allow %q deny %q key set %v", c.Allow, c.Deny, c.AuditKey != "")
	}
	c = parse(env, "--allow", "model/a/*", "--allow", "space/b/*,space/c/*")
	if strings.Join(c.Allow, "|") != "model/a/*|space/b/*|space/c/*" || strings.Join(c.Deny, "|") != "*/acme/*" {
		t.Errorf("flags replace the env list and repeat: allow %q deny %q", c.Allow, c.Deny)
	}
	for _, s := range c.Redacted() {
		if s == "k-0123456789abcdef" {
			t.Error("the audit key is in the startup summary")
		}
	}

	cfg := testConfig("http://127.0.0.1:1")
	cfg.Allow = []string{"models/meta-llama/*", "model/ok/*"}
	cfg.Deny = []string{"model/a b"}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), `allow: repo glob "models/meta-llama/*"`) || !strings.Contains(err.Error(), `deny: repo glob "model/a b"`) {
		t.Errorf("Validate = %v, want both bad globs named", err)
	}
	if _, err := New(Options{Config: cfg, Engine: newTestServer(t, testConfig("http://127.0.0.1:1")).engine}); err == nil {
		t.Error("New accepted a bad glob")
	}
	cfg = testConfig("http://127.0.0.1:1")
	cfg.AuditKey = "short"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "XETPROXY_AUDIT_KEY") || strings.Contains(err.Error(), "short") {
		t.Errorf("short audit key: %v", err)
	}
}
