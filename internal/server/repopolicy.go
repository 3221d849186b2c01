package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/xetproxy/xetproxy/internal/policy"
)

// The repo policy (--allow, --deny; package policy) is asked by every
// route that names a repo, right after its path is parsed and before any
// credential is looked at or anything is sent upstream: the download
// routes (serveFile, serveHash) and the /api routes below a repo
// (apiProxy). Search listings (/api/models and co.), which name no single
// repo, are filtered instead: under an active policy the entries whose id
// the policy refuses are removed from the Hub's answer, so that an
// allow-list does not leak the names of other repos; an answer that is not
// the expected JSON array is refused (502) rather than passed on.

// errRepoNotAllowed is the answer for a repo the policy refuses.
func errRepoNotAllowed() *apiError {
	return newAPIError(http.StatusForbidden, "RepoNotAllowed", "this proxy does not serve this repo")
}

// repoAllowed returns nil when the repo typ/repoID ("model", "dataset" or
// "space"; "name" or "namespace/name") may be served, else the 403
// RepoNotAllowed answer to write. Routes call it before any upstream
// request.
func (s *Server) repoAllowed(typ, repoID string) *apiError {
	if s.policy.Allows(typ, repoID) {
		return nil
	}
	return errRepoNotAllowed()
}

// filterListing removes from a Hub search answer (a JSON array of objects
// with an "id") the repos of type typ that p refuses. An answer of another
// shape is an error: it cannot be shown to be clean.
func filterListing(resp *http.Response, typ string, p *policy.Policy) error {
	if resp.StatusCode != http.StatusOK || resp.Request.Method == http.MethodHead {
		return nil
	}
	if !isJSON(resp.Header.Get("Content-Type")) {
		return errors.New("hub listing answer is not JSON; refused under the repo policy")
	}
	// rewriteAPIResponse has read and bounded the body already
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIJSON+1))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if len(body) > maxAPIJSON {
		return errors.New("hub listing answer too large to filter")
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(body, &entries); err != nil {
		return errors.New("hub listing answer is not a JSON array; refused under the repo policy")
	}
	kept := entries[:0]
	for _, e := range entries {
		var v struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(e, &v) == nil && v.ID != "" && p.Allows(typ, v.ID) {
			kept = append(kept, e)
		}
	}
	var out bytes.Buffer
	out.WriteByte('[')
	for i, e := range kept {
		if i > 0 {
			out.WriteByte(',')
		}
		out.Write(e)
	}
	out.WriteByte(']')
	resp.Body = io.NopCloser(bytes.NewReader(out.Bytes()))
	resp.ContentLength = int64(out.Len())
	resp.Header.Set("Content-Length", strconv.Itoa(out.Len()))
	return nil
}
