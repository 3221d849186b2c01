package fakehub

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// repoRef is a repo named by a request, found or not.
type repoRef struct {
	typ  RepoType
	name string
}

func (h *Hub) exists(t RepoType, name string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.repos[repoKey(t, name)] != nil
}

func unescapeAll(segs []string) ([]string, bool) {
	out := make([]string, len(segs))
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		out[i] = u
	}
	return out, true
}

// splitRepo finds where the repo id ends in segs: the action keyword sits
// after one segment ("gpt2") or two ("org/name"); an existing repo wins.
func (h *Hub) splitRepo(t RepoType, segs []string, isAction func(string) bool) (repoRef, string, []string, bool) {
	names, ok := unescapeAll(segs)
	if !ok {
		return repoRef{}, "", nil, false
	}
	try := func(i int, mustExist bool) (repoRef, string, []string, bool) {
		if len(names) <= i || !isAction(names[i]) {
			return repoRef{}, "", nil, false
		}
		name := strings.Join(names[:i], "/")
		if mustExist && !h.exists(t, name) {
			return repoRef{}, "", nil, false
		}
		return repoRef{t, name}, names[i], segs[i+1:], true
	}
	for _, mustExist := range []bool{true, false} {
		for _, i := range []int{2, 1} {
			if ref, action, rest, ok := try(i, mustExist); ok {
				return ref, action, rest, true
			}
		}
	}
	return repoRef{}, "", nil, false
}

func typeFromSegment(s string) (RepoType, bool) {
	switch s {
	case "models":
		return Model, true
	case "datasets":
		return Dataset, true
	case "spaces":
		return Space, true
	}
	return "", false
}

// routeFiles routes the web URLs: resolve, raw and the git LFS batch API.
func (h *Hub) routeFiles(r *http.Request, segs []string) (Class, handlerFunc) {
	t := Model
	if len(segs) > 0 && (segs[0] == "datasets" || segs[0] == "spaces") {
		t, _ = typeFromSegment(segs[0])
		segs = segs[1:]
	}
	// {repo}.git/info/lfs/objects/batch
	for i, s := range segs {
		if strings.HasSuffix(s, ".git") && strings.Join(segs[i+1:], "/") == "info/lfs/objects/batch" {
			names, ok := unescapeAll(append(append([]string(nil), segs[:i]...), strings.TrimSuffix(s, ".git")))
			if !ok || len(names) > 2 {
				break
			}
			ref := repoRef{t, strings.Join(names, "/")}
			return ClassCommit, func(w *recorder, r *http.Request) { h.lfsBatch(w, r, ref) }
		}
	}
	ref, action, rest, ok := h.splitRepo(t, segs, func(s string) bool { return s == "resolve" || s == "raw" })
	if !ok || len(rest) < 2 {
		return ClassOther, notFound
	}
	raw := action == "raw"
	return ClassResolve, func(w *recorder, r *http.Request) { h.resolve(w, r, ref, rest, raw) }
}

var apiActions = map[string]bool{
	"revision": true, "tree": true, "paths-info": true, "xet-read-token": true, "xet-write-token": true,
	"preupload": true, "commit": true,
}

// routeAPI routes /api/{models|datasets|spaces}/{repo}[/{action}/...].
func (h *Hub) routeAPI(r *http.Request, segs []string) (Class, handlerFunc) {
	if len(segs) < 2 {
		return ClassOther, notFound
	}
	t, ok := typeFromSegment(segs[0])
	if !ok {
		return ClassOther, notFound
	}
	segs = segs[1:]
	ref, action, rest, ok := h.splitRepo(t, segs, func(s string) bool { return apiActions[s] })
	if !ok {
		if len(segs) > 2 {
			return ClassOther, notFound
		}
		names, ok := unescapeAll(segs)
		if !ok {
			return ClassOther, notFound
		}
		ref := repoRef{t, strings.Join(names, "/")}
		return ClassAPI, func(w *recorder, r *http.Request) { h.repoInfo(w, r, ref, "") }
	}
	revRest, ok := unescapeAll(rest)
	if !ok {
		return ClassOther, notFound
	}
	joined := strings.Join(revRest, "/")
	switch action {
	case "revision":
		return ClassAPI, func(w *recorder, r *http.Request) { h.repoInfo(w, r, ref, joined) }
	case "tree":
		return ClassAPI, func(w *recorder, r *http.Request) { h.tree(w, r, ref, rest) }
	case "paths-info":
		return ClassAPI, func(w *recorder, r *http.Request) { h.pathsInfo(w, r, ref, joined) }
	case "xet-read-token":
		return ClassToken, func(w *recorder, r *http.Request) { h.xetToken(w, r, ref, joined, scopeRead) }
	case "xet-write-token":
		return ClassToken, func(w *recorder, r *http.Request) { h.xetToken(w, r, ref, joined, scopeWrite) }
	case "preupload":
		return ClassCommit, func(w *recorder, r *http.Request) { h.preupload(w, r, ref, joined) }
	case "commit":
		return ClassCommit, func(w *recorder, r *http.Request) { h.commitAPI(w, r, ref, joined) }
	}
	return ClassOther, notFound
}

// splitRev takes the revision off the front of escaped segments: normally
// one percent-encoded segment, else the shortest run of raw segments that
// names a revision (refs/pr/1 sent unencoded).
func (h *Hub) splitRev(rp *repo, segs []string) (string, []string) {
	names, ok := unescapeAll(segs)
	if !ok || len(names) == 0 {
		return "", nil
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if rp.resolveRev(names[0]) != nil {
		return names[0], names[1:]
	}
	for k := 2; k <= len(names); k++ {
		if rev := strings.Join(names[:k], "/"); rp.resolveRev(rev) != nil {
			return rev, names[k:]
		}
	}
	return names[0], names[1:]
}

// commitOf resolves rev or answers 404 RevisionNotFound.
func (h *Hub) commitOf(w http.ResponseWriter, rp *repo, rev string) (*commit, bool) {
	h.mu.RLock()
	c := rp.resolveRev(rev)
	h.mu.RUnlock()
	if c == nil {
		hubError(w, http.StatusNotFound, codeRevisionNotFound, "Invalid rev id: "+rev)
		return nil, false
	}
	return c, true
}

func (h *Hub) readTokenURL(r *http.Request, rp *repo, rev string) string {
	return fmt.Sprintf("%s/api/%ss/%s/xet-read-token/%s", h.base(r), rp.typ, rp.name, url.PathEscape(rev))
}

func (h *Hub) reconstructionURL(r *http.Request, e *entry) string {
	return h.casBase(r) + "/v1/reconstructions/" + e.xetHash.String()
}

func (h *Hub) bridgeURL(r *http.Request, e *entry) string {
	exp := itoa(h.urlExpiry())
	hash := e.xetHash.String()
	return fmt.Sprintf("%s/bridge/%s?Expires=%s&Signature=%s", h.casBase(r), hash, exp, h.mac("bridge", hash, exp))
}

// resolve answers GET/HEAD /{repo}/resolve/{rev}/{path} (and raw).
func (h *Hub) resolve(w *recorder, r *http.Request, ref repoRef, rest []string, raw bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r)
		return
	}
	rp, ok := h.authorize(w, r, ref.typ, ref.name, needFiles)
	if !ok {
		return
	}
	rev, pathSegs := h.splitRev(rp, rest)
	c, ok := h.commitOf(w, rp, rev)
	if !ok {
		return
	}
	w.Header().Set("X-Repo-Commit", c.id)
	path := strings.Join(pathSegs, "/")
	e := c.files[path]
	if e == nil {
		hubError(w, http.StatusNotFound, codeEntryNotFound, "Entry not found")
		return
	}
	hdr := w.Header()
	if raw || !e.xet {
		content := e.content
		etag := e.oid
		if e.xet {
			content = lfsPointer(e.sha256, e.size)
		}
		hdr.Set("ETag", `"`+etag+`"`)
		hdr.Set("Accept-Ranges", "bytes")
		if ct := mime.TypeByExtension(pathExt(path)); ct != "" {
			hdr.Set("Content-Type", ct)
		} else {
			hdr.Set("Content-Type", "application/octet-stream")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
		return
	}
	sha := hex.EncodeToString(e.sha256[:])
	hdr.Set("X-Xet-Hash", e.xetHash.String())
	hdr.Set("X-Linked-Size", strconv.FormatInt(e.size, 10))
	hdr.Set("X-Linked-Etag", `"`+sha+`"`)
	hdr.Set("ETag", `"`+sha+`"`)
	refresh := h.readTokenURL(r, rp, c.id)
	recon := h.reconstructionURL(r, e)
	hdr.Set("Link", fmt.Sprintf(`<%s>; rel="xet-auth", <%s>; rel="xet-reconstruction-info"`, refresh, recon))
	if strings.Contains(r.Header.Get("Accept"), "application/vnd.xet-fileinfo+json") {
		body, _ := json.Marshal(map[string]any{
			"hash": e.xetHash.String(), "size": e.size, "etag": sha,
			"refreshUrl": refresh, "reconstructionUrl": recon,
		})
		hdr.Set("Content-Type", "application/vnd.xet-fileinfo+json")
		hdr.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(body)
		}
		return
	}
	hdr.Set("Location", h.bridgeURL(r, e))
	hdr.Set("Content-Length", "0")
	w.WriteHeader(http.StatusFound)
}

func pathExt(p string) string {
	base := p[strings.LastIndexByte(p, '/')+1:]
	if i := strings.LastIndexByte(base, '.'); i >= 0 {
		return base[i:]
	}
	return ""
}

func jsonAnswer(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		hubError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// jsonAnswerCond answers a read of the API with v as the Hub does: a weak
// ETag over the body, and 304 Not Modified to a request whose
// If-None-Match holds it.
func jsonAnswerCond(w http.ResponseWriter, r *http.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		hubError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	sum := sha256.Sum256(b)
	etag := `W/"` + hex.EncodeToString(sum[:16]) + `"`
	w.Header().Set("ETag", etag)
	for _, m := range strings.Split(r.Header.Get("If-None-Match"), ",") {
		if m = strings.TrimSpace(m); m == etag || m == "*" || strings.TrimPrefix(m, "W/") == strings.TrimPrefix(etag, "W/") {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func hubTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// repoInfo answers /api/{type}s/{repo} and .../revision/{rev}.
func (h *Hub) repoInfo(w *recorder, r *http.Request, ref repoRef, rev string) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r)
		return
	}
	rp, ok := h.authorize(w, r, ref.typ, ref.name, needMeta)
	if !ok {
		return
	}
	c, ok := h.commitOf(w, rp, rev)
	if !ok {
		return
	}
	blobs := boolParam(r.URL.Query().Get("blobs"))
	paths := sortedPaths(c)
	siblings := make([]map[string]any, 0, len(paths))
	var used int64
	for _, p := range paths {
		e := c.files[p]
		s := map[string]any{"rfilename": p}
		if blobs {
			s["size"] = e.size
			s["blobId"] = e.oid
			if e.xet {
				s["lfs"] = map[string]any{"sha256": hex.EncodeToString(e.sha256[:]), "size": e.size, "pointerSize": e.pointerSize}
			}
		}
		if e.xet {
			s["xetHash"] = e.xetHash.String()
		}
		used += e.size
		siblings = append(siblings, s)
	}
	idSum := sha1.Sum([]byte(rp.key()))
	h.mu.RLock()
	spec := rp.spec
	h.mu.RUnlock()
	var gated any = false
	if spec.Gated {
		gated = "manual"
	}
	info := map[string]any{
		"_id":          hex.EncodeToString(idSum[:12]),
		"id":           rp.name,
		"sha":          c.id,
		"lastModified": hubTime(c.date),
		"createdAt":    hubTime(rp.created),
		"private":      spec.Private,
		"gated":        gated,
		"disabled":     spec.Disabled,
		"downloads":    0,
		"likes":        0,
		"tags":         []string{},
		"siblings":     siblings,
		"xetEnabled":   true,
		"usedStorage":  used,
	}
	if ns, _, ok := strings.Cut(rp.name, "/"); ok {
		info["author"] = ns
	}
	if rp.typ == Model {
		info["modelId"] = rp.name
	}
	if rp.typ == Space {
		info["sdk"] = "static"
	}
	jsonAnswerCond(w, r, info)
}

func boolParam(s string) bool {
	switch strings.ToLower(s) {
	case "1", "true", "yes":
		return true
	}
	return false
}

func sortedPaths(c *commit) []string {
	ps := make([]string, 0, len(c.files))
	for p := range c.files {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// treeEntry is one item of tree and paths-info answers.
type treeEntry struct {
	Type       string         `json:"type"`
	OID        string         `json:"oid"`
	Size       int64          `json:"size"`
	Path       string         `json:"path"`
	LFS        *lfsInfo       `json:"lfs,omitempty"`
	XetHash    string         `json:"xetHash,omitempty"`
	LastCommit *lastCommit    `json:"lastCommit,omitempty"`
	Security   map[string]any `json:"securityFileStatus,omitempty"`
}

type lfsInfo struct {
	OID         string `json:"oid"`
	Size        int64  `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

type lastCommit struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Date  string `json:"date"`
}

func fileEntry(e *entry, expand bool) treeEntry {
	te := treeEntry{Type: "file", OID: e.oid, Size: e.size, Path: e.path}
	if e.xet {
		te.LFS = &lfsInfo{OID: hex.EncodeToString(e.sha256[:]), Size: e.size, PointerSize: e.pointerSize}
		te.XetHash = e.xetHash.String()
	}
	if expand {
		te.LastCommit = &lastCommit{ID: e.commit.id, Title: e.commit.title, Date: hubTime(e.commit.date)}
		te.Security = map[string]any{"status": "safe"}
	}
	return te
}

func dirEntry(c *commit, p string, expand bool) treeEntry {
	sum := sha1.Sum([]byte(c.id + "\x00" + p))
	te := treeEntry{Type: "directory", OID: hex.EncodeToString(sum[:]), Path: p}
	if expand {
		te.LastCommit = &lastCommit{ID: c.id, Title: c.title, Date: hubTime(c.date)}
	}
	return te
}

// listTree lists the entries under dir ("" = root), sorted by path.
func listTree(c *commit, dir string, recursive, expand bool) ([]treeEntry, bool) {
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	dirs := map[string]bool{}
	var out []treeEntry
	found := dir == ""
	for _, p := range sortedPaths(c) {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		found = true
		rel := p[len(prefix):]
		parts := strings.Split(rel, "/")
		for i := 1; i < len(parts); i++ {
			if !recursive && i > 1 {
				break
			}
			d := prefix + strings.Join(parts[:i], "/")
			if !dirs[d] {
				dirs[d] = true
				out = append(out, dirEntry(c, d, expand))
			}
		}
		if recursive || len(parts) == 1 {
			out = append(out, fileEntry(c.files[p], expand))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, found
}

// tree answers /api/{type}s/{repo}/tree/{rev}[/{path}] with cursor
// pagination: Link: <next>; rel="next".
func (h *Hub) tree(w *recorder, r *http.Request, ref repoRef, rest []string) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r)
		return
	}
	rp, ok := h.authorize(w, r, ref.typ, ref.name, needMeta)
	if !ok {
		return
	}
	rev, pathSegs := h.splitRev(rp, rest)
	c, ok := h.commitOf(w, rp, rev)
	if !ok {
		return
	}
	q := r.URL.Query()
	dir := strings.Trim(strings.Join(pathSegs, "/"), "/")
	entries, found := listTree(c, dir, boolParam(q.Get("recursive")), boolParam(q.Get("expand")))
	if !found {
		w.Header().Set("X-Repo-Commit", c.id)
		hubError(w, http.StatusNotFound, codeEntryNotFound, fmt.Sprintf("Entry not found: %s", dir))
		return
	}
	limit := h.cfg.TreePageSize
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 && n < limit {
		limit = n
	}
	start := 0
	if cur := q.Get("cursor"); cur != "" {
		after, err := base64.RawURLEncoding.DecodeString(cur)
		if err != nil {
			hubError(w, http.StatusBadRequest, "", "Invalid cursor")
			return
		}
		start = sort.Search(len(entries), func(i int) bool { return entries[i].Path > string(after) })
	}
	end := min(start+limit, len(entries))
	page := entries[start:end]
	if end < len(entries) {
		q.Set("cursor", base64.RawURLEncoding.EncodeToString([]byte(entries[end-1].Path)))
		next := h.base(r) + r.URL.EscapedPath() + "?" + q.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, next))
	}
	if page == nil {
		page = []treeEntry{}
	}
	jsonAnswerCond(w, r, page)
}

// pathsInfo answers POST /api/{type}s/{repo}/paths-info/{rev} with form
// (paths=a&paths=b) or JSON ({"paths": [...]}) bodies.
func (h *Hub) pathsInfo(w *recorder, r *http.Request, ref repoRef, rev string) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r)
		return
	}
	rp, ok := h.authorize(w, r, ref.typ, ref.name, needMeta)
	if !ok {
		return
	}
	c, ok := h.commitOf(w, rp, rev)
	if !ok {
		return
	}
	var req struct {
		Paths  []string `json:"paths"`
		Expand any      `json:"expand"`
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(&req); err != nil {
			hubError(w, http.StatusBadRequest, "", "Invalid JSON body")
			return
		}
	} else {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<20)
		if err := r.ParseForm(); err != nil {
			hubError(w, http.StatusBadRequest, "", "Invalid form body")
			return
		}
		req.Paths = r.PostForm["paths"]
		req.Expand = r.PostForm.Get("expand")
	}
	expand := false
	switch v := req.Expand.(type) {
	case bool:
		expand = v
	case string:
		expand = boolParam(v)
	}
	out := []treeEntry{}
	for _, p := range req.Paths {
		p = strings.Trim(p, "/")
		if e := c.files[p]; e != nil {
			out = append(out, fileEntry(e, expand))
			continue
		}
		if p == "" {
			continue
		}
		for q := range c.files {
			if strings.HasPrefix(q, p+"/") {
				out = append(out, dirEntry(c, p, expand))
				break
			}
		}
	}
	jsonAnswerCond(w, r, out)
}

// xetToken answers GET .../xet-read-token/{rev} and .../xet-write-token/{rev}.
func (h *Hub) xetToken(w *recorder, r *http.Request, ref repoRef, rev, scope string) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r)
		return
	}
	n := needFiles
	if scope == scopeWrite {
		n = needWrite
	}
	rp, ok := h.authorize(w, r, ref.typ, ref.name, n)
	if !ok {
		return
	}
	if rev == "" || rev == "None" {
		rev = "main"
	}
	if !(scope == scopeWrite && boolParam(r.URL.Query().Get("create_pr"))) {
		if _, ok := h.commitOf(w, rp, rev); !ok {
			return
		}
	}
	tok, exp := h.issueToken(rp.key(), rev, scope)
	cas := h.casBase(r)
	hdr := w.Header()
	hdr.Set("X-Xet-Access-Token", tok)
	hdr.Set("X-Xet-Token-Expiration", itoa(exp))
	hdr.Set("X-Xet-Cas-Url", cas)
	if s := r.Header.Get("X-Xet-Session-Id"); s != "" {
		hdr.Set("X-Xet-Session-Id", s)
	}
	jsonAnswer(w, http.StatusOK, map[string]any{"accessToken": tok, "exp": exp, "casUrl": cas})
}
