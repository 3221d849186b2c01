package hub

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/upstream"
)

// FileMeta describes one file of one revision, as resolve reports it.
type FileMeta struct {
	Repo     Repo
	Revision string // as asked ("" = main)
	Path     string
	Commit   string // X-Repo-Commit: the resolved commit, if the Hub said
	Size     int64
	// ETag is the sha256 of the content for LFS and Xet files, the git blob
	// sha1 for files stored in git; without quotes or W/.
	ETag string
	// XetHash is the Xet file hash; nil for a file that is not Xet-backed.
	XetHash *merklehash.Hash
	// RefreshURL is the xet-auth link (read-token URL), ReconstructionURL
	// the xet-reconstruction-info link; informational.
	RefreshURL        string
	ReconstructionURL string
	// PlainURL serves the bytes over plain HTTP with Range (the resolve
	// URL; GET follows its redirects).
	PlainURL string
}

// TokenRevision is the revision to ask read tokens for: the resolved commit
// when known (stable under branch moves), else the revision asked.
func (m *FileMeta) TokenRevision() string {
	if m.Commit != "" {
		return m.Commit
	}
	return m.Revision
}

// ResolveURL is the URL of path at revision in repo.
func (c *Client) ResolveURL(repo Repo, revision, path string) string {
	c.init()
	return c.BaseURL + "/" + repo.prefix() + escapePath(repo.ID) + "/resolve/" + revisionSegment(revision) + "/" + escapePath(path)
}

// maxRelativeRedirects bounds the chain of renames followed by Resolve.
const maxRelativeRedirects = 5

// Resolve asks the Hub about path at revision with a HEAD on the resolve
// URL, without following the redirect to the file bytes: Xet files are
// recognised by X-Xet-Hash. Relative redirects (renamed repos) are
// followed. token may be "" (anonymous).
func (c *Client) Resolve(ctx context.Context, token string, repo Repo, revision, path string) (*FileMeta, error) {
	if err := repo.Validate(); err != nil {
		return nil, err
	}
	if path == "" || strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("bad path %q", path)
	}
	u := c.ResolveURL(repo, revision, path)
	hdr := http.Header{"Accept-Encoding": {"identity"}}
	for redirects := 0; ; redirects++ {
		resp, err := c.do(ctx, "resolve", http.MethodHead, u, token, hdr, true)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" && isRelative(loc) {
			if redirects >= maxRelativeRedirects {
				return nil, fmt.Errorf("hub resolve %s: too many redirects", upstream.Redact(u))
			}
			next, err := url.Parse(u)
			if err != nil {
				return nil, err
			}
			ref, err := url.Parse(loc)
			if err != nil {
				return nil, fmt.Errorf("hub resolve %s: bad Location", upstream.Redact(u))
			}
			u = next.ResolveReference(ref).String()
			continue
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 && loc == "" {
			return nil, fmt.Errorf("hub resolve %s: http %d without Location", upstream.Redact(u), resp.StatusCode)
		}
		return metaFrom(resp, repo, revision, path, u)
	}
}

func isRelative(loc string) bool {
	p, err := url.Parse(loc)
	return err == nil && p.Scheme == "" && p.Host == ""
}

func metaFrom(resp *http.Response, repo Repo, revision, path, u string) (*FileMeta, error) {
	h := resp.Header
	m := &FileMeta{
		Repo: repo, Revision: revision, Path: path,
		Commit:   h.Get("X-Repo-Commit"),
		PlainURL: u,
		Size:     -1,
	}
	if s := h.Get("X-Linked-Size"); s != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("hub resolve %s: bad X-Linked-Size %q", upstream.Redact(u), s)
		}
		m.Size = n
	} else if resp.StatusCode < 300 {
		m.Size = resp.ContentLength
	}
	if m.Size < 0 {
		return nil, fmt.Errorf("hub resolve %s: no file size in the answer", upstream.Redact(u))
	}
	m.ETag = cleanETag(h.Get("X-Linked-Etag"))
	if m.ETag == "" {
		m.ETag = cleanETag(h.Get("ETag"))
	}
	if x, err := merklehash.Parse(strings.TrimSpace(h.Get("X-Xet-Hash"))); err == nil {
		m.XetHash = &x
	}
	links := parseLinks(h.Values("Link"))
	m.RefreshURL = links["xet-auth"]
	if m.RefreshURL == "" {
		m.RefreshURL = h.Get("X-Xet-Refresh-Route")
	}
	m.ReconstructionURL = links["xet-reconstruction-info"]
	return m, nil
}

// cleanETag strips W/ and quotes.
func cleanETag(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	return strings.Trim(s, `"`)
}

// parseLinks reads Link headers: `<url>; rel="a", <url>; rel="b"` into
// rel -> url (the first of each rel wins). URLs may contain commas.
func parseLinks(values []string) map[string]string {
	out := map[string]string{}
	for _, v := range values {
		for len(v) > 0 {
			start := strings.IndexByte(v, '<')
			if start < 0 {
				break
			}
			end := strings.IndexByte(v[start:], '>')
			if end < 0 {
				break
			}
			target := v[start+1 : start+end]
			v = v[start+end+1:]
			params := v
			if next := strings.IndexByte(v, '<'); next >= 0 {
				params, v = v[:next], v[next:]
			} else {
				v = ""
			}
			for _, p := range strings.Split(params, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
					continue
				}
				for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(strings.TrimRight(val, ", ")), `"`)) {
					if _, dup := out[rel]; !dup {
						out[rel] = target
					}
				}
			}
		}
	}
	return out
}
