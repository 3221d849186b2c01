package server

import (
	"net/http"
	"net/url"
	"strings"
)

// The /api passthrough is read-only. A proxy API key lends the server's
// HF_TOKEN, and that token can usually write (commit, create and delete
// repos, mint Xet write tokens); forwarding everything under /api would lend
// all of that. So requests are matched against the short list of reads that
// Hugging Face clients make, and everything else is refused here, before
// any credential is looked at and before anything is sent upstream.
//
// Allowed (repo = name or namespace/name, {t} = models, datasets or spaces):
//
//	GET|HEAD /api/whoami-v2
//	GET|HEAD /api/{t}                                  search listings
//	GET|HEAD /api/{t}/{repo}                           repo info
//	GET|HEAD /api/{t}/{repo}/revision/{rev}            repo info at a revision
//	GET|HEAD /api/{t}/{repo}/tree/{rev}[/{path}]       tree listing
//	POST     /api/{t}/{repo}/paths-info/{rev}          entries of listed paths (reads only)
//	GET|HEAD /api/{t}/{repo}/refs                      branches and tags
//	GET|HEAD /api/{t}/{repo}/commits/{rev}             commit history
//
// xet-read-token is deliberately absent: it hands out the upstream CAS
// credential, letting a client go around the proxy (and, with a key, around
// the server token's scope); xet-write-token, preupload, commit, LFS batch
// and every repo or settings mutation are writes.

// errReadOnly is the answer to everything the list above does not hold.
func errReadOnly() *apiError {
	return newAPIError(http.StatusForbidden, "ReadOnlyProxy",
		"this proxy forwards only read requests to the Hub; writes, tokens and other API calls are refused")
}

var (
	readMethods = []string{http.MethodGet, http.MethodHead}
	postMethod  = []string{http.MethodPost}
)

// repoReadActions are the read routes below a repo: the action segment, the
// number of segments after it (min, max; -1 = any), and the methods.
var repoReadActions = map[string]struct {
	min, max int
	methods  []string
}{
	"revision":   {1, 1, readMethods},
	"tree":       {1, -1, readMethods},
	"paths-info": {1, 1, postMethod},
	"refs":       {0, 0, readMethods},
	"commits":    {1, 1, readMethods},
}

// checkAPIRoute judges method and the escaped path after "/api/". A nil
// answer means forward. Otherwise it is 400 for a malformed path (dot
// segments, encoded slashes outside a revision, bad escapes), 405 with
// allow set for a read route asked with another method, 403 ReadOnlyProxy
// for everything else.
func checkAPIRoute(method, rest string) (allow []string, err *apiError) {
	allow, _, err = routeAPI(method, rest)
	return allow, err
}

// apiTarget is what a forwarded /api route reads: one repo (typ and repo
// set), a search listing of a type (listing set), or neither (whoami).
type apiTarget struct {
	typ     string // model, dataset or space
	repo    string // "name" or "namespace/name"; "" when no single repo
	listing bool
}

// routeAPI is checkAPIRoute that also says what the route reads, for the
// repo policy.
func routeAPI(method, rest string) (allow []string, target apiTarget, err *apiError) {
	raw := strings.Split(rest, "/")
	segs := make([]string, len(raw))
	for i, s := range raw {
		u, err := unescapeSegment(s)
		if err != nil {
			return nil, target, err
		}
		segs[i] = u
	}
	methods, nrepo := apiReadMethods(segs)
	if methods == nil {
		return nil, target, errReadOnly()
	}
	if segs[0] != "whoami-v2" {
		target.typ, _ = typePrefix(segs[:1]) // models, datasets, spaces
		target.listing = nrepo == 0
		target.repo = strings.Join(segs[1:1+nrepo], "/")
	}
	for _, m := range methods {
		if m == method {
			return nil, target, nil
		}
	}
	e := newAPIError(http.StatusMethodNotAllowed, "ReadOnlyProxy",
		"this route is read-only through the proxy; allowed: "+strings.Join(methods, ", "))
	return methods, target, e
}

// unescapeSegment decodes one path segment and refuses what could move a
// request somewhere else once a server or an intermediary normalises the
// path: ".", "..", their percent-encoded forms (also double-encoded),
// backslashes, control characters and empty segments. Encoded slashes are
// kept (a revision may hold one); the route matcher decides where they may
// appear.
func unescapeSegment(s string) (string, *apiError) {
	u, err := url.PathUnescape(s)
	if err != nil {
		return "", badRequest("InvalidPath", "malformed percent-encoding in path")
	}
	twice, err := url.PathUnescape(u)
	if err != nil {
		twice = u
	}
	if u == "." || u == ".." || twice == "." || twice == ".." {
		return "", badRequest("InvalidPath", "dot segments are not allowed in paths")
	}
	if err := checkSegment(u, true); err != nil {
		return "", err
	}
	return u, nil
}

// apiReadMethods returns the methods allowed on the unescaped segments of
// an /api path, or nil when the path is not a read route, and how many
// segments after the type name the repo (0: none).
func apiReadMethods(segs []string) ([]string, int) {
	if len(segs) == 1 && segs[0] == "whoami-v2" {
		return readMethods, 0
	}
	switch segs[0] {
	case "models", "datasets", "spaces":
	default:
		return nil, 0
	}
	if len(segs) == 1 {
		return readMethods, 0
	}
	// A repo id is "name" or "namespace/name", so a path can read two
	// ways: /api/models/a/b/paths-info/x is paths-info of a/b, or action
	// "b" of repo a. A reading is accepted only if the segments it takes
	// for names are no Hub action word: then the other reading names no
	// action and the Hub cannot take the request for a write.
	for _, nrepo := range []int{2, 1} {
		if len(segs) < 1+nrepo {
			continue
		}
		if !validRepoSegments(segs[1 : 1+nrepo]) {
			continue
		}
		rest := segs[1+nrepo:]
		if len(rest) == 0 {
			return readMethods, nrepo
		}
		a, ok := repoReadActions[rest[0]]
		if !ok {
			continue
		}
		n := len(rest) - 1
		if n < a.min || (a.max >= 0 && n > a.max) {
			continue
		}
		if n >= 1 {
			if checkRevision(rest[1]) != nil {
				continue
			}
			// read as namespace/name + action, name/action/rev would be
			// action rev of repo name/action
			if nrepo == 1 && hubActionWords[rest[1]] {
				continue
			}
			if !noSlashes(rest[2:]) {
				continue
			}
		}
		return a.methods, nrepo
	}
	return nil, 0
}

func validRepoSegments(segs []string) bool {
	for _, s := range segs {
		if checkRepoName(s) != nil || hubActionWords[s] {
			return false
		}
	}
	return true
}

// hubActionWords are the sub-resources the Hub knows below a repo, read or
// write (as far as the clients and the Hub's documentation show them). No
// segment the matcher reads as a repo name or a revision may be one of
// them, so that no read route can be taken for another route upstream.
var hubActionWords = map[string]bool{
	"revision": true, "tree": true, "paths-info": true, "refs": true, "commits": true, "commit": true,
	"preupload": true, "xet-read-token": true, "xet-write-token": true, "branch": true, "tag": true,
	"settings": true, "discussions": true, "resolve": true, "raw": true, "blob": true, "lfs-files": true,
	"super-squash": true, "treesize": true, "scan": true, "compare": true, "resource-group": true,
	"duplicate": true, "access-requests": true, "user-access-request": true, "auth-check": true,
	"parquet": true, "croissant": true, "notebook": true, "jwt": true, "events": true, "likes": true,
	"like": true, "secrets": true, "variables": true, "hardware": true, "sleeptime": true,
	"restart": true, "pause": true, "logs": true, "metrics": true, "storage": true, "delete": true,
	"move": true, "create": true, "update": true, "upload": true, "ask-access": true,
}

// noSlashes reports whether no segment held an encoded slash: only a
// revision may.
func noSlashes(segs []string) bool {
	for _, s := range segs {
		if strings.Contains(s, "/") {
			return false
		}
	}
	return true
}
