package server

import (
	"context"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// Every answer, errors included, has nosniff; file answers of active types
// are attachments under a sandbox CSP.
func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	f := newFixture(t, nil)
	files := []fakehub.FileSpec{
		{Path: "page.html", Content: strings.NewReader("<script>alert(document.domain)</script>"), Storage: fakehub.StoragePlain},
		{Path: "pic.svg", Content: strings.NewReader(`<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>`), Storage: fakehub.StoragePlain},
		{Path: "feed.xml", Content: strings.NewReader(`<x/>`), Storage: fakehub.StoragePlain},
		{Path: "notes.txt", Content: strings.NewReader("<script>not run</script>"), Storage: fakehub.StoragePlain},
	}
	if err := f.fh.CreateRepo(fakehub.RepoSpec{ID: "org/web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.fh.Commit(context.Background(), "org/web", fakehub.CommitSpec{Branch: "main", Title: "web", Files: files}); err != nil {
		t.Fatal(err)
	}
	type want struct {
		path, ctype, disposition string
	}
	for _, w := range []want{
		{"/org/web/resolve/main/page.html", "text/html", "attachment"},
		{"/org/web/resolve/main/pic.svg", "image/svg+xml", "attachment"},
		{"/org/web/resolve/main/feed.xml", "xml", "attachment"},
		{"/org/web/resolve/main/notes.txt", "text/plain", "inline"},
		{"/org/m/resolve/main/model.safetensors", "application/octet-stream", "inline"},
		{"/download/org/web/page.html", "text/html", "attachment"},
		{"/download-hash/" + f.big.xetHash.String() + "?repo=org/m&filename=x.html", "text/html", "attachment"},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			a := f.do(method, w.path)
			disp, _, _ := strings.Cut(a.header.Get("Content-Disposition"), ";")
			if a.status != 200 || !strings.Contains(a.header.Get("Content-Type"), w.ctype) || disp != w.disposition ||
				a.header.Get("Content-Security-Policy") != "sandbox" || a.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s %s: %d Content-Type %q, Content-Disposition %q, CSP %q, nosniff %q; want %s %s", method, w.path, a.status,
					a.header.Get("Content-Type"), a.header.Get("Content-Disposition"), a.header.Get("Content-Security-Policy"),
					a.header.Get("X-Content-Type-Options"), w.ctype, w.disposition)
			}
		}
	}
	// the premise: the HTML really is served, as HTML
	if a := f.do("GET", "/org/web/resolve/main/page.html"); !strings.Contains(string(a.body), "<script>") {
		t.Errorf("page.html body: %q", a.body)
	}
	for _, p := range []string{"/health", "/readyz", "/", "/metrics", "/nothing/here", "/api/models/org/m", "/api/models/org/m/commit/main",
		"/download/org/m/missing.bin", "/org/m/resolve/main/model.safetensors"} {
		for _, hdr := range [][]string{nil, {"If-None-Match", `"` + f.big.etag + `"`}} {
			a := f.do("GET", p, hdr...)
			if a.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s (%v): %d without nosniff", p, hdr, a.status)
			}
		}
	}
}

// Answers to requests with credentials are private to them, on every
// route; anonymous ones are left to the usual rules.
func TestAuthenticatedAnswersArePrivate(t *testing.T) {
	const key = "key-0123456789abcdef"
	f := newFixture(t, func(c *Config) {
		c.ServerTokenEnabled, c.ServerToken, c.APIKeys = true, readerToken, []string{key}
	})
	paths := []string{
		"/download/org/m/config.json", "/org/m/resolve/main/model.safetensors", "/org/private/resolve/main/w.bin",
		"/download-hash/" + f.big.xetHash.String() + "?repo=org/m", "/api/models/org/m", "/api/models/org/m/tree/main",
		"/api/models/org/m/commit/main", "/download/org/m/missing.bin", "/health",
	}
	for _, p := range paths {
		for _, c := range []struct {
			hdr  []string
			vary []string
		}{
			{[]string{"Authorization", "Bearer " + readerToken}, []string{"Authorization"}},
			{[]string{"Authorization", "Bearer " + key}, []string{"Authorization"}},
			{[]string{"X-Proxy-Key", key}, []string{"Authorization", "X-Proxy-Key"}},
		} {
			a := f.do("GET", p, c.hdr...)
			cc := a.header.Values("Cache-Control")
			vary := strings.Join(a.header.Values("Vary"), ",")
			ok := len(cc) == 1 && strings.HasPrefix(cc[0], "private") && !strings.Contains(cc[0], "public")
			for _, v := range c.vary {
				ok = ok && strings.Contains(vary, v)
			}
			if !ok {
				t.Errorf("GET %s with %s: %d Cache-Control %q, Vary %q; want private, Vary %v", p, c.hdr[0], a.status, cc, vary, c.vary)
			}
		}
	}
	// the premise of the file routes: these were real answers
	if a := f.do("GET", "/org/private/resolve/main/w.bin", "X-Proxy-Key", key); a.status != 200 {
		t.Errorf("private file with a key: %d", a.status)
	}
	a := f.do("GET", "/download/org/m/config.json")
	if strings.Contains(a.header.Get("Cache-Control"), "private") || a.header.Get("Vary") != "" {
		t.Errorf("anonymous download: Cache-Control %q, Vary %q", a.header.Get("Cache-Control"), a.header.Get("Vary"))
	}
}
