package server

import (
	"net/url"
	"path"
	"strings"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Route parsing works on r.URL.EscapedPath(): a revision is one segment that
// may hold %2F (refs%2Fpr%2F1), while a file path keeps real slashes. Each
// segment is unescaped on its own and checked, so that neither "..", "."
// nor an encoded slash (%2F) or dot-dot (%2E%2E) can smuggle a path
// component into a repo id or file path.

// fileRef names a file of a repo at a revision.
type fileRef struct {
	repoType string // "model", "dataset" or "space"
	repoID   string // "name" or "namespace/name"
	revision string
	path     string // slash-separated, every segment checked
}

// hashRef names a file by its Xet hash, with the repo that grants access.
type hashRef struct {
	hash     merklehash.Hash
	repoType string
	repoID   string
	revision string
	filename string // for Content-Disposition and Content-Type; the hash if not given
}

// splitEscaped splits an escaped path (without its leading slash) into
// unescaped segments. It rejects empty segments and any segment whose
// unescaped form is ".", "..", or holds a slash, backslash or control byte.
// Segments listed in allowSlash may hold an encoded slash (revisions).
func splitEscaped(p string, allowSlash func(i int) bool) ([]string, *apiError) {
	if p == "" {
		return nil, badRequest("InvalidPath", "empty path")
	}
	raw := strings.Split(p, "/")
	out := make([]string, len(raw))
	for i, s := range raw {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, badRequest("InvalidPath", "malformed percent-encoding in path")
		}
		slashOK := allowSlash != nil && allowSlash(i)
		if err := checkSegment(u, slashOK); err != nil {
			return nil, err
		}
		out[i] = u
	}
	return out, nil
}

func checkSegment(s string, slashOK bool) *apiError {
	if s == "" {
		return badRequest("InvalidPath", "empty path segment")
	}
	if s == "." || s == ".." {
		return badRequest("InvalidPath", "dot segments are not allowed in paths")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return badRequest("InvalidPath", "control characters are not allowed in paths")
		case c == '\\':
			return badRequest("InvalidPath", "backslashes are not allowed in paths")
		case c == '/' && !slashOK:
			return badRequest("InvalidPath", "encoded slashes are not allowed here")
		}
	}
	return nil
}

// checkRevision accepts a branch, tag, commit or ref like refs/pr/1.
func checkRevision(rev string) *apiError {
	if rev == "" || len(rev) > 256 {
		return badRequest("InvalidRevision", "invalid revision")
	}
	for _, part := range strings.Split(rev, "/") {
		if err := checkSegment(part, false); err != nil {
			return badRequest("InvalidRevision", "invalid revision")
		}
	}
	return nil
}

// checkRepoName accepts a Hub repo name or namespace: letters, digits,
// '-', '_' and '.', at most 96 characters, not starting with '.' or '-'.
func checkRepoName(s string) *apiError {
	if s == "" || len(s) > 96 || s[0] == '.' || s[0] == '-' || strings.Contains(s, "..") {
		return badRequest("InvalidRepo", "invalid repo id")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return badRequest("InvalidRepo", "invalid repo id")
		}
	}
	return nil
}

// typePrefix strips a "datasets" or "spaces" first segment.
func typePrefix(segs []string) (string, []string) {
	if len(segs) > 0 {
		switch segs[0] {
		case "datasets":
			return "dataset", segs[1:]
		case "spaces":
			return "space", segs[1:]
		}
	}
	return "model", segs
}

// parseDownload reads /download/[datasets/|spaces/]{namespace}/{repo}/{path...}
// (rest is the escaped path after "/download/") with ?revision= (default main).
func parseDownload(rest string, query url.Values) (*fileRef, *apiError) {
	segs, err := splitEscaped(rest, nil)
	if err != nil {
		return nil, err
	}
	typ, segs := typePrefix(segs)
	if len(segs) < 3 {
		return nil, newAPIError(404, "InvalidPath", "want /download/[datasets/|spaces/]{namespace}/{repo}/{path}")
	}
	for _, s := range segs[:2] {
		if err := checkRepoName(s); err != nil {
			return nil, err
		}
	}
	rev := query.Get("revision")
	if rev == "" {
		rev = "main"
	}
	if err := checkRevision(rev); err != nil {
		return nil, err
	}
	return &fileRef{repoType: typ, repoID: segs[0] + "/" + segs[1], revision: rev, path: strings.Join(segs[2:], "/")}, nil
}

// parseResolve reads the Hub's own URL shape,
// [datasets/|spaces/]{repo}/resolve/{rev}/{path...} where {repo} is "name"
// or "namespace/name" and {rev} is one (possibly %2F-encoded) segment. ok is
// false when p is not a resolve URL at all.
func parseResolve(p string) (ref *fileRef, ok bool, err *apiError) {
	raw := strings.Split(p, "/")
	off := 0
	typ := "model"
	if len(raw) > 0 && (raw[0] == "datasets" || raw[0] == "spaces") {
		typ, _ = typePrefix(raw[:1])
		off = 1
	}
	var nrepo int
	switch {
	case len(raw) >= off+5 && raw[off+2] == "resolve":
		nrepo = 2
	case len(raw) >= off+4 && raw[off+1] == "resolve":
		nrepo = 1
	default:
		return nil, false, nil
	}
	revIdx := off + nrepo + 1
	segs, err := splitEscaped(p, func(i int) bool { return i == revIdx })
	if err != nil {
		return nil, true, err
	}
	repo := segs[off : off+nrepo]
	for _, s := range repo {
		if err := checkRepoName(s); err != nil {
			return nil, true, err
		}
	}
	rev := segs[revIdx]
	if err := checkRevision(rev); err != nil {
		return nil, true, err
	}
	return &fileRef{repoType: typ, repoID: strings.Join(repo, "/"), revision: rev, path: strings.Join(segs[revIdx+1:], "/")}, true, nil
}

// parseQuery parses the query of a download route. url.Query drops pairs
// it cannot decode, so ?revision=% would silently serve main: a malformed
// query, or a parameter we read given twice, is refused instead.
func parseQuery(raw string) (url.Values, *apiError) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("InvalidQuery", "malformed query string")
	}
	for _, k := range []string{"revision", "repo", "repo_type", "filename"} {
		if len(q[k]) > 1 {
			return nil, badRequest("InvalidQuery", "query parameter "+k+" given more than once")
		}
	}
	return q, nil
}

// parseRepoType reads ?repo_type= (model, dataset, space, or their plurals).
func parseRepoType(s string) (string, *apiError) {
	switch s {
	case "", "model", "models":
		return "model", nil
	case "dataset", "datasets":
		return "dataset", nil
	case "space", "spaces":
		return "space", nil
	}
	return "", badRequest("InvalidRepoType", "repo_type must be model, dataset or space")
}

// parseDownloadHash reads /download-hash/{hash}?repo=&repo_type=&revision=&filename=
// (rest is the escaped path after "/download-hash/").
func parseDownloadHash(rest string, query url.Values) (*hashRef, *apiError) {
	if strings.Contains(rest, "/") {
		return nil, badRequest("InvalidHash", "want /download-hash/{64-hex xet hash}")
	}
	h, err := merklehash.Parse(rest)
	if err != nil {
		return nil, badRequest("InvalidHash", "malformed xet hash: want 64 hexadecimal digits")
	}
	repo := query.Get("repo")
	if repo == "" {
		return nil, badRequest("MissingRepo", "the repo query parameter is required: access is checked against it")
	}
	parts := strings.Split(repo, "/")
	if len(parts) > 2 {
		return nil, badRequest("InvalidRepo", "invalid repo id")
	}
	for _, s := range parts {
		if err := checkRepoName(s); err != nil {
			return nil, err
		}
	}
	typ, aerr := parseRepoType(query.Get("repo_type"))
	if aerr != nil {
		return nil, aerr
	}
	rev := query.Get("revision")
	if rev == "" {
		rev = "main"
	}
	if err := checkRevision(rev); err != nil {
		return nil, err
	}
	name := query.Get("filename")
	if name != "" {
		name = path.Base(strings.ReplaceAll(name, "\\", "/"))
		if checkSegment(name, false) != nil {
			return nil, badRequest("InvalidFilename", "invalid filename")
		}
	} else {
		name = h.String()
	}
	return &hashRef{hash: h, repoType: typ, repoID: repo, revision: rev, filename: name}, nil
}
