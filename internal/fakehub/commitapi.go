package fakehub

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// preupload answers POST /api/{type}s/{repo}/preupload/{rev}: which files
// go to LFS/Xet ("lfs") and which are committed inline ("regular").
func (h *Hub) preupload(w *recorder, r *http.Request, ref repoRef, rev string) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r)
		return
	}
	rp, ok := h.authorize(w, r, ref.typ, ref.name, needWrite)
	if !ok {
		return
	}
	var req struct {
		GitAttributes *string `json:"gitAttributes"`
		Files         []struct {
			Path   string `json:"path"`
			Size   int64  `json:"size"`
			Sample string `json:"sample"`
		} `json:"files"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 32<<20)).Decode(&req); err != nil {
		hubError(w, http.StatusBadRequest, "", "Invalid JSON body")
		return
	}
	h.mu.RLock()
	head := rp.resolveRev(rev)
	if head == nil {
		head = rp.resolveRev("main")
	}
	rules := lfsRules(head)
	h.mu.RUnlock()
	if req.GitAttributes != nil {
		rules = lfsRules(&commit{files: map[string]*entry{".gitattributes": {content: []byte(*req.GitAttributes)}}})
	}
	type answer struct {
		Path         string `json:"path"`
		UploadMode   string `json:"uploadMode"`
		ShouldIgnore bool   `json:"shouldIgnore"`
		OID          string `json:"oid,omitempty"`
	}
	out := make([]answer, 0, len(req.Files))
	for _, f := range req.Files {
		sample, err := base64.StdEncoding.DecodeString(f.Sample)
		if err != nil {
			hubError(w, http.StatusBadRequest, "", "Invalid sample for "+f.Path)
			return
		}
		mode := "regular"
		switch {
		case f.Size < h.cfg.SmallFileThreshold:
		case rules.match(f.Path), isBinary(sample), f.Size >= h.cfg.TextFileThreshold:
			mode = "lfs"
		}
		a := answer{Path: f.Path, UploadMode: mode}
		if head != nil {
			if e := head.files[f.Path]; e != nil {
				a.OID = e.oid
			}
		}
		out = append(out, a)
	}
	resp := map[string]any{"files": out}
	if head != nil {
		resp["commitOid"] = head.id
	}
	jsonAnswer(w, http.StatusOK, resp)
}

// lfsBatch answers the git LFS batch API. Xet-capable clients get
// transfer "xet" with a write-token URL and the token in the headers;
// others get "basic" with a signed PUT URL that ingests the body.
func (h *Hub) lfsBatch(w *recorder, r *http.Request, ref repoRef) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r)
		return
	}
	var req struct {
		Operation string   `json:"operation"`
		Transfers []string `json:"transfers"`
		Ref       *struct {
			Name string `json:"name"`
		} `json:"ref"`
		Objects []struct {
			OID  string `json:"oid"`
			Size int64  `json:"size"`
		} `json:"objects"`
	}
	n := needWrite
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 32<<20)).Decode(&req); err != nil {
		hubError(w, http.StatusBadRequest, "", "Invalid JSON body")
		return
	}
	if req.Operation == "download" {
		n = needFiles
	}
	rp, ok := h.authorize(w, r, ref.typ, ref.name, n)
	if !ok {
		return
	}
	if req.Operation != "upload" {
		hubError(w, http.StatusBadRequest, "", "Only upload is supported")
		return
	}
	rev := "main"
	if req.Ref != nil && req.Ref.Name != "" {
		rev = strings.TrimPrefix(req.Ref.Name, "refs/heads/")
	}
	xet := containsString(req.Transfers, "xet")
	transfer := "basic"
	if xet {
		transfer = "xet"
	}
	var tok string
	var exp int64
	if xet {
		tok, exp = h.issueToken(rp.key(), rev, scopeWrite)
	}
	session := fmt.Sprintf("fakehub-session-%d", h.reqSeq.Load())
	objects := make([]map[string]any, 0, len(req.Objects))
	for _, o := range req.Objects {
		obj := map[string]any{"oid": o.OID, "size": o.Size, "authenticated": true}
		sum, err := hex.DecodeString(o.OID)
		if err != nil || len(sum) != 32 || o.Size < 0 {
			obj["error"] = map[string]any{"code": 422, "message": "Invalid oid or size"}
			objects = append(objects, obj)
			continue
		}
		if f, ok := h.store.fileBySHA([32]byte(sum)); ok && int64(f.size) == o.Size {
			objects = append(objects, obj) // already stored: no action
			continue
		}
		var upload map[string]any
		if xet {
			upload = map[string]any{
				"href": fmt.Sprintf("%s/api/%ss/%s/xet-write-token/%s", h.base(r), rp.typ, rp.name, url.PathEscape(rev)),
				"header": map[string]string{
					"X-Xet-Cas-Url":          h.casBase(r),
					"X-Xet-Access-Token":     tok,
					"X-Xet-Token-Expiration": itoa(exp),
					"X-Xet-Session-Id":       session,
				},
			}
		} else {
			e := itoa(h.urlExpiry())
			upload = map[string]any{
				"href": fmt.Sprintf("%s/lfs/%s?size=%d&Expires=%s&Signature=%s", h.casBase(r), o.OID, o.Size, e,
					h.mac("lfs", o.OID, itoa(o.Size), e)),
			}
		}
		obj["actions"] = map[string]any{"upload": upload}
		objects = append(objects, obj)
	}
	w.Header().Set("Content-Type", "application/vnd.git-lfs+json")
	b, _ := json.Marshal(map[string]any{"transfer": transfer, "objects": objects, "hash_algo": "sha256"})
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// lfsUpload answers the basic-transfer PUT: the body is ingested into the
// CAS and must match the signed oid and size.
func (h *Hub) lfsUpload(w *recorder, r *http.Request, oid string) {
	if r.Method != http.MethodPut {
		methodNotAllowed(w, r)
		return
	}
	q := r.URL.Query()
	size, exp := q.Get("size"), q.Get("Expires")
	if !h.verifyMAC(q.Get("Signature"), "lfs", oid, size, exp) {
		hubError(w, http.StatusForbidden, "", "Invalid signature")
		return
	}
	if e, err := parseInt(exp); err != nil || expired(e) {
		hubError(w, http.StatusForbidden, "", "Request has expired")
		return
	}
	in, err := h.ingest(r.Context(), r.Body)
	if err != nil {
		hubError(w, http.StatusBadRequest, "", err.Error())
		return
	}
	if hex.EncodeToString(in.sha256[:]) != oid || itoa(in.size) != size {
		hubError(w, http.StatusBadRequest, "", "Uploaded content does not match its oid or size")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// commitAPI answers POST /api/{type}s/{repo}/commit/{rev} (NDJSON: a header
// line, then file, lfsFile, deletedFile and deletedFolder lines).
func (h *Hub) commitAPI(w *recorder, r *http.Request, ref repoRef, rev string) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r)
		return
	}
	rp, ok := h.authorize(w, r, ref.typ, ref.name, needWrite)
	if !ok {
		return
	}
	if rev == "" {
		rev = "main"
	}
	var title, parent string
	var add []*entry
	var del []string
	sc := bufio.NewScanner(http.MaxBytesReader(w, r.Body, 1<<30))
	sc.Buffer(make([]byte, 64<<10), 512<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var op struct {
			Key   string `json:"key"`
			Value struct {
				Summary      string `json:"summary"`
				ParentCommit string `json:"parentCommit"`
				Path         string `json:"path"`
				Content      string `json:"content"`
				Encoding     string `json:"encoding"`
				OID          string `json:"oid"`
				Size         int64  `json:"size"`
			} `json:"value"`
		}
		if err := json.Unmarshal(line, &op); err != nil {
			hubError(w, http.StatusBadRequest, "", "Invalid NDJSON line")
			return
		}
		v := op.Value
		switch op.Key {
		case "header":
			title, parent = v.Summary, v.ParentCommit
		case "file":
			if err := checkPath(v.Path); err != nil {
				hubError(w, http.StatusBadRequest, "", err.Error())
				return
			}
			content := []byte(v.Content)
			if v.Encoding == "base64" {
				b, err := base64.StdEncoding.DecodeString(v.Content)
				if err != nil {
					hubError(w, http.StatusBadRequest, "", "Invalid base64 content for "+v.Path)
					return
				}
				content = b
			}
			add = append(add, plainEntry(v.Path, content, nil))
		case "lfsFile":
			if err := checkPath(v.Path); err != nil {
				hubError(w, http.StatusBadRequest, "", err.Error())
				return
			}
			sum, err := hex.DecodeString(v.OID)
			if err != nil || len(sum) != 32 {
				hubError(w, http.StatusBadRequest, "", "Invalid oid for "+v.Path)
				return
			}
			f, ok := h.store.fileBySHA([32]byte(sum))
			if !ok || int64(f.size) != v.Size {
				hubError(w, http.StatusUnprocessableEntity, "", fmt.Sprintf(
					"Your push was rejected because an LFS pointer (%s) pointed to a file that does not exist", v.Path))
				return
			}
			add = append(add, xetEntryFor(v.Path, f.hash, v.Size, [32]byte(sum)))
		case "deletedFile":
			del = append(del, v.Path)
		case "deletedFolder":
			del = append(del, strings.TrimSuffix(v.Path, "/")+"/")
		default:
			hubError(w, http.StatusBadRequest, "", "Unknown operation "+op.Key)
			return
		}
	}
	if err := sc.Err(); err != nil {
		hubError(w, http.StatusBadRequest, "", "Invalid body")
		return
	}
	branch := rev
	prURL := ""
	h.mu.Lock()
	_, isBranch := rp.branches[rev]
	base := rp.resolveRev(rev)
	pr := 0
	if base != nil && boolParam(r.URL.Query().Get("create_pr")) {
		rp.prs++
		pr = rp.prs
		branch = fmt.Sprintf("refs/pr/%d", pr)
		rp.branches[branch] = base.id
	}
	h.mu.Unlock()
	if base == nil || (pr == 0 && !isBranch) {
		hubError(w, http.StatusNotFound, codeRevisionNotFound, "Invalid rev id: "+rev)
		return
	}
	if pr > 0 {
		prURL = fmt.Sprintf("%s/%s%s/discussions/%d", h.base(r), rp.urlPrefix(), rp.name, pr)
	}
	id, err := h.apply(rp, branch, title, add, del, parent)
	switch {
	case errors.Is(err, errConflict):
		hubError(w, http.StatusPreconditionFailed, "", "A commit has happened since. Please refresh and try again.")
		return
	case errors.Is(err, ErrNotFound):
		hubError(w, http.StatusNotFound, codeRevisionNotFound, "Invalid rev id: "+rev)
		return
	case err != nil:
		hubError(w, http.StatusBadRequest, "", err.Error())
		return
	}
	resp := map[string]any{
		"success":    true,
		"commitOid":  id,
		"commitUrl":  fmt.Sprintf("%s/%s%s/commit/%s", h.base(r), rp.urlPrefix(), rp.name, id),
		"hookOutput": "",
	}
	if prURL != "" {
		resp["pullRequestUrl"] = prURL
	}
	jsonAnswer(w, http.StatusOK, resp)
}

func parseInt(s string) (int64, error) {
	var n int64
	if s == "" {
		return 0, errors.New("empty")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
		n = n*10 + int64(c-'0')
		if n > 1<<53 {
			return 0, errors.New("too large")
		}
	}
	return n, nil
}
