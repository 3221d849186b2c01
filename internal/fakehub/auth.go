package fakehub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Hub error codes (X-Error-Code).
const (
	codeRepoNotFound     = "RepoNotFound"
	codeGatedRepo        = "GatedRepo"
	codeRevisionNotFound = "RevisionNotFound"
	codeEntryNotFound    = "EntryNotFound"
)

// hubError answers as the Hub does: X-Error-Code, X-Error-Message and a
// JSON body {"error": msg}.
func hubError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	if code != "" {
		h.Set("X-Error-Code", code)
	}
	h.Set("X-Error-Message", msg)
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Del("Content-Length")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.Write(b)
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// need is the access a request requires.
type need int

const (
	needMeta  need = iota // repo metadata, tree, paths-info (public for gated repos)
	needFiles             // file contents and read tokens
	needWrite             // uploads and commits
)

func (rp *repo) canRead(tok string) bool {
	return tok != "" && (rp.readers[tok] || rp.writers[tok])
}

// tokenValidLocked reports whether a Hub token is known (h.mu held).
func (h *Hub) tokenValidLocked(tok string) bool {
	if h.valid[tok] {
		return true
	}
	for _, rp := range h.repos {
		if rp.readers[tok] || rp.writers[tok] {
			return true
		}
	}
	return false
}

func typeWord(t RepoType) string { return string(t) }

// authorize finds the repo and checks that the caller may do what n
// requires, answering with the Hub's error otherwise (PROTOCOL §6.4):
// an unknown token is 401; a missing or hidden private repo is 401 for
// anonymous callers and 404 for authenticated ones (RepoNotFound); a gated
// repo is 401 anonymous, 403 authenticated without approval (GatedRepo).
func (h *Hub) authorize(w http.ResponseWriter, r *http.Request, t RepoType, name string, n need) (*repo, bool) {
	tok := bearer(r)
	h.mu.RLock()
	rp := h.repos[repoKey(t, name)]
	valid := tok == "" || h.tokenValidLocked(tok)
	var spec RepoSpec
	var reader, writer bool
	if rp != nil {
		spec, reader, writer = rp.spec, rp.canRead(tok), tok != "" && rp.writers[tok]
	}
	h.mu.RUnlock()
	if !valid {
		hubError(w, http.StatusUnauthorized, "", "Invalid credentials in Authorization header")
		return nil, false
	}
	if rp == nil || (spec.Private && !reader) {
		msg := "Repository not found"
		if tok == "" {
			hubError(w, http.StatusUnauthorized, codeRepoNotFound, msg)
		} else {
			hubError(w, http.StatusNotFound, codeRepoNotFound, msg)
		}
		return nil, false
	}
	if spec.Disabled {
		hubError(w, http.StatusForbidden, "", "Access to this resource is disabled.")
		return nil, false
	}
	switch n {
	case needFiles:
		if spec.Gated && !reader {
			if tok == "" {
				hubError(w, http.StatusUnauthorized, codeGatedRepo, fmt.Sprintf(
					"Access to %s %s is restricted. You must have access to it and be authenticated to access it. Please log in.",
					typeWord(rp.typ), rp.name))
			} else {
				hubError(w, http.StatusForbidden, codeGatedRepo, fmt.Sprintf(
					"Access to %s %s is restricted and you are not in the authorized list.", typeWord(rp.typ), rp.name))
			}
			return nil, false
		}
	case needWrite:
		if tok == "" {
			hubError(w, http.StatusUnauthorized, "", "You must be authenticated to write to this repo")
			return nil, false
		}
		if !writer {
			hubError(w, http.StatusForbidden, "", "You don't have the rights to write to this repo")
			return nil, false
		}
	}
	return rp, true
}
