package server_test

// The download log line, the per-repo-type metrics and the top repos,
// end to end: fakehub and xetproxy servers (the real engine with a disk
// cache) on loopback, the log captured as JSON.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/servertest"
)

// auditProxy is a cacheProxy whose log is kept (as JSON), with its Server.
type auditProxy struct {
	*cacheProxy
	srv  *server.Server
	logs *servertest.Buffer
}

func startAuditProxy(t *testing.T, hubURL string, mod func(*server.Config)) *auditProxy {
	t.Helper()
	cfg := servertest.Config(t, hubURL)
	cfg.LogFormat, cfg.LogLevel = "json", "info"
	if mod != nil {
		mod(&cfg)
	}
	s := servertest.Start(t, cfg, servertest.Log("json", slog.LevelInfo))
	p := newCacheProxy(t, s)
	return &auditProxy{cacheProxy: p, srv: s.Srv, logs: s.Log}
}

// downloads waits until the log holds n lines with msg "download" (they
// are written after the answer is out) and returns them, in order.
func (p *auditProxy) downloads(n int) []map[string]any {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out []map[string]any
		for _, line := range strings.Split(p.logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "download" {
				out = append(out, m)
			}
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%d download lines, want %d:\n%s", len(out), n, p.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const (
	auditKey    = "audit-key-0123456789"
	readerTok   = "hf_reader_token_for_audit"
	otherTok    = "hf_other_token_for_audit"
	proxyKey    = "proxy-key-0123456789"
	auditedRepo = "org/m"
)

func stepID(i int) string { return "audit-step-" + strconv.Itoa(i) }

// wantDigest is the documented caller digest, computed here on its own.
func wantDigest(key, secret string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte("xetproxy caller v1\x00" + secret))
	return hex.EncodeToString(mac.Sum(nil))[:16]
}

func TestDownloadAuditLineMetricsAndTopRepos(t *testing.T) {
	h := newCacheHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: auditedRepo})
	h.CreateRepo(fakehub.RepoSpec{ID: "org/private", Private: true, Readers: []string{readerTok}})
	h.AddToken(otherTok)
	data := cacheTestData(7, 2<<20+99)
	plain := []byte(`{"plain":"git file"}`)
	if _, err := h.Commit(context.Background(), auditedRepo, fakehub.CommitSpec{Branch: "main", Title: "config",
		Files: []fakehub.FileSpec{{Path: "config.json", Content: bytes.NewReader(plain), Storage: fakehub.StoragePlain}}}); err != nil {
		t.Fatal(err)
	}
	f := h.add(t, auditedRepo, "model.bin", data)
	priv := h.add(t, "org/private", "w.bin", data[:5000])
	p := startAuditProxy(t, h.url, func(c *server.Config) {
		c.AuditKey = auditKey
		c.APIKeys = []string{proxyKey}
		c.Deny = []string{"*/blocked/*"}
	})
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	steps := []struct {
		path   string
		hdr    []string
		status int
	}{
		{"/download/org/m/model.bin", nil, 200},                                                   // 0 cold, anonymous
		{"/download/org/m/model.bin", bearer(readerTok), 200},                                     // 1 from the cache
		{"/org/m/resolve/main/model.bin", bearer(readerTok), 200},                                 // 2 same token, other route
		{"/download/org/m/model.bin?revision=" + f.Commit, bearer(otherTok), 200},                 // 3 another token
		{"/download/blocked/x/f.bin", bearer(readerTok), 403},                                     // 4 policy
		{"/download/org/m/missing.bin", nil, 404},                                                 // 5
		{"/download-hash/" + priv.XetHash.String() + "?repo=org/private", bearer(readerTok), 200}, // 6
		{"/download/org/m/config.json", []string{"X-Proxy-Key", proxyKey}, 200},                   // 7 plain file, keyed
	}
	for i, s := range steps {
		g := p.get(s.path, append([]string{"X-Request-Id", stepID(i)}, s.hdr...)...)
		if g.status != s.status {
			t.Fatalf("step %d %s: %d, want %d", i, s.path, g.status, s.status)
		}
		if i == 0 {
			p.flush() // the next download finds the file in the cache
		}
	}
	lines := p.downloads(len(steps))
	if len(lines) != len(steps) {
		t.Fatalf("%d download lines for %d downloads", len(lines), len(steps))
	}
	get := func(i int) map[string]any {
		t.Helper()
		for _, l := range lines {
			if l["request_id"] == stepID(i) {
				return l
			}
		}
		t.Fatalf("no line for step %d (%s) in %v", i, steps[i].path, lines)
		return nil
	}
	num := func(l map[string]any, k string) int64 { v, _ := l[k].(float64); return int64(v) }
	size := int64(len(data))

	cold := get(0)
	for k, want := range map[string]any{
		"route": "download", "repo_type": "model", "repo": auditedRepo, "revision": "main", "commit": f.Commit,
		"file": "model.bin", "status": float64(200), "outcome": "ok", "auth": "none", "caller": "anonymous",
	} {
		if cold[k] != want {
			t.Errorf("cold line %s = %v, want %v", k, cold[k], want)
		}
	}
	if num(cold, "file_bytes") != size || num(cold, "upstream_bytes") != size || num(cold, "cache_bytes") != 0 {
		t.Errorf("cold line bytes: %v", cold)
	}
	if _, ok := cold["duration_ms"].(float64); !ok {
		t.Errorf("cold line has no duration_ms: %v", cold)
	}

	warm := get(1)
	if num(warm, "file_bytes") != size || num(warm, "cache_bytes") != size || num(warm, "upstream_bytes") != 0 {
		t.Errorf("cached download line bytes: %v", warm)
	}
	if warm["auth"] != "token" || warm["caller"] != wantDigest(auditKey, readerTok) {
		t.Errorf("token caller = %v %v, want token %s", warm["auth"], warm["caller"], wantDigest(auditKey, readerTok))
	}
	resolve := get(2)
	if resolve["route"] != "resolve" || resolve["caller"] != warm["caller"] {
		t.Errorf("same token on resolve: route %v caller %v, want the same digest %v", resolve["route"], resolve["caller"], warm["caller"])
	}
	other := get(3)
	if other["caller"] == warm["caller"] || other["caller"] != wantDigest(auditKey, otherTok) || other["revision"] != f.Commit {
		t.Errorf("another token: caller %v (first token %v), revision %v", other["caller"], warm["caller"], other["revision"])
	}
	refused := get(4)
	if _, ok := refused["commit"]; refused["outcome"] != "refused" || refused["repo"] != "blocked/x" || num(refused, "file_bytes") != 0 || ok {
		t.Errorf("refused line: %v", refused)
	}
	if missing := get(5); missing["outcome"] != "not_found" || missing["status"] != float64(404) {
		t.Errorf("missing line: %v", missing)
	}
	hashLine := get(6)
	if hashLine["route"] != "download_hash" || hashLine["xet_hash"] != priv.XetHash.String() || hashLine["repo"] != "org/private" ||
		hashLine["file"] != priv.XetHash.String() || num(hashLine, "file_bytes") != 5000 {
		t.Errorf("download-hash line: %v", hashLine)
	}
	keyed := get(7)
	if keyed["auth"] != "key" || keyed["caller"] != wantDigest(auditKey, proxyKey) ||
		num(keyed, "file_bytes") != int64(len(plain)) || num(keyed, "upstream_bytes") != int64(len(plain)) || num(keyed, "cache_bytes") != 0 {
		t.Errorf("keyed plain-file line: %v", keyed)
	}
	logs := p.logs.String()
	for _, secret := range []string{readerTok, otherTok, auditKey, proxyKey} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds the secret %q", secret)
		}
	}

	// metrics by repo type and outcome, bytes by source
	for sample, want := range map[string]float64{
		`xetproxy_downloads_total{outcome="ok",repo_type="model"}`:        6,
		`xetproxy_downloads_total{outcome="refused",repo_type="model"}`:   1,
		`xetproxy_downloads_total{outcome="not_found",repo_type="model"}`: 1,
	} {
		if got := p.metric(sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	if got := p.metric(`xetproxy_download_bytes_total{repo_type="model",source="cache"}`); got < float64(3*size) {
		t.Errorf("cache bytes metric %v, want at least %d", got, 3*size)
	}
	if got := p.metric(`xetproxy_download_bytes_total{repo_type="model",source="upstream"}`); got < float64(size) {
		t.Errorf("upstream bytes metric %v, want at least %d", got, size)
	}
	var served, bySource float64
	for _, r := range []string{"download", "download_hash", "resolve"} {
		served += p.metric(`xetproxy_served_bytes_total{route="` + r + `"}`)
	}
	for _, src := range []string{"cache", "upstream"} {
		bySource += p.metric(`xetproxy_download_bytes_total{repo_type="model",source="` + src + `"}`)
	}
	if served != bySource || served != float64(4*size+5000+int64(len(plain))) {
		t.Errorf("download bytes by source sum to %v, served bytes of the download routes %v", bySource, served)
	}
	if metrics := p.get("/metrics").body; bytes.Contains(metrics, []byte("org/m")) || bytes.Contains(metrics, []byte(warm["caller"].(string))) {
		t.Error("a repo name or a caller is in /metrics")
	}

	// top repos: org/m is public (an anonymous download of it sent bytes),
	// org/private was only ever fetched with a token
	if got := p.srv.TopRepos(10, false); len(got) != 1 || got[0] != (server.RepoBytes{Type: "model", Repo: auditedRepo, Bytes: 4*size + int64(len(plain))}) {
		t.Errorf("TopRepos(public) = %+v", got)
	}
	all := p.srv.TopRepos(10, true)
	if len(all) != 2 || all[0].Repo != auditedRepo || all[1] != (server.RepoBytes{Type: "model", Repo: "org/private", Bytes: 5000, Private: true}) {
		t.Errorf("TopRepos(all) = %+v", all)
	}
	if got := p.srv.TopRepos(1, true); len(got) != 1 || got[0].Repo != auditedRepo {
		t.Errorf("TopRepos(1) = %+v", got)
	}

	// another instance with the same key names the same caller alike;
	// one without a key names it otherwise, still without the token
	q := startAuditProxy(t, h.url, func(c *server.Config) { c.AuditKey = auditKey })
	q.get("/download/org/m/model.bin", bearer(readerTok)...)
	if l := q.downloads(1)[0]; l["caller"] != warm["caller"] {
		t.Errorf("second instance: caller %v, want %v", l["caller"], warm["caller"])
	}
	nokey := startAuditProxy(t, h.url, nil)
	nokey.get("/download/org/m/model.bin", bearer(readerTok)...)
	l := nokey.downloads(1)[0]
	sum := sha256.Sum256([]byte("xetproxy caller v1\x00" + readerTok))
	if l["caller"] != hex.EncodeToString(sum[:])[:16] || strings.Contains(nokey.logs.String(), readerTok) {
		t.Errorf("keyless caller %v", l["caller"])
	}
}
