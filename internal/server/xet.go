package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/castoken"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// Xet mode: the proxy speaks Xet to Xet clients as their CAS, with each
// caller's own rights (docs/design.md, "Xet clients").
//
//	resolve           X-Xet-Hash, X-Xet-Refresh-Route, Link rels xet-auth and
//	                  xet-reconstruction-info, all on the proxy's origin; the
//	                  fileinfo answer for Accept: application/vnd.xet-fileinfo+json
//	xet-read-token    the caller's upstream read token (the Hub decides
//	                  access), sealed into the proxy's own CAS token
//	/cas/v1|v2/reconstructions/{file}
//	                  upstream's reconstruction for that caller, with every
//	                  xorb URL replaced by the proxy's own
//	/cas/xorbs/{xorb}?t={ticket}
//	                  the ranges that reconstruction granted, from the chunk
//	                  cache or from upstream
//
// Nothing the proxy answers names the upstream CAS: its URL and tokens
// travel only inside sealed values (internal/castoken).

// CASEngine is what Xet mode needs of the download engine; *proxy.Engine
// implements it. Without it (an Engine that lacks these methods) Xet mode
// stays off.
type CASEngine interface {
	// XetReadToken returns the caller's upstream Xet read token.
	XetReadToken(ctx context.Context, token string, repo hub.Repo, revision string) (*hub.CASToken, error)
	// CASReconstruct asks upstream with the caller's credential and lays
	// out the xorb ranges the proxy serves.
	CASReconstruct(ctx context.Context, up proxy.UpstreamCAS, file merklehash.Hash, r *reconstruction.ByteRange) (*proxy.CASAnswer, error)
	// OpenXorbRange returns the served bytes window of a xorb range.
	OpenXorbRange(ctx context.Context, src proxy.XorbRange, window reconstruction.ByteRange) (io.ReadCloser, error)
}

var _ CASEngine = (*proxy.Engine)(nil)

// xetCAS is the state of Xet mode.
type xetCAS struct {
	engine   CASEngine
	sealer   *castoken.Sealer
	tokenTTL time.Duration
	urlTTL   time.Duration
}

// newXetCAS returns the Xet mode of a server, nil when it is off.
func newXetCAS(cfg *Config, opts Options, log *slog.Logger) (*xetCAS, error) {
	if !cfg.Xet {
		return nil, nil
	}
	eng, ok := opts.Engine.(CASEngine)
	if !ok {
		log.Warn("xet mode off: the download engine cannot serve the CAS routes")
		return nil, nil
	}
	var key []byte
	if cfg.SigningKey != "" {
		k, err := castoken.ParseKey(cfg.SigningKey)
		if err != nil {
			return nil, fmt.Errorf("XETPROXY_SIGNING_KEY: %w", err)
		}
		key = k
	} else {
		key = castoken.GenerateKey()
		log.Warn("XETPROXY_SIGNING_KEY is not set: using a key of this process only; " +
			"CAS tokens and xorb URLs it issues fail on other instances and after a restart (clients then ask again)")
	}
	sealer, err := castoken.NewSealer(key)
	if err != nil {
		return nil, err
	}
	x := &xetCAS{engine: eng, sealer: sealer, tokenTTL: cfg.XetTokenTTL, urlTTL: cfg.XetURLTTL}
	if x.tokenTTL <= 0 {
		x.tokenTTL = DefaultXetTokenTTL
	}
	if x.urlTTL <= 0 {
		x.urlTTL = DefaultXetURLTTL
	}
	return x, nil
}

// callerDigest identifies the upstream credential of a request without
// keeping it.
func callerDigest(token string) castoken.Caller {
	sum := sha256.Sum256([]byte("xetproxy caller\x00" + token))
	var c castoken.Caller
	copy(c[:], sum[:])
	return c
}

// parseXetTokenPath recognises {t}/{repo}/xet-read-token/{rev} (rest is
// the escaped path after /api/; repo is name or namespace/name; the
// revision one segment, %2F-encoded, or several raw segments). ok is false
// for any other path.
func parseXetTokenPath(rest string) (typ, repo, rev string, ok bool, err *apiError) {
	raw := strings.Split(rest, "/")
	if len(raw) < 4 {
		return "", "", "", false, nil
	}
	at := -1
	for _, i := range []int{2, 3} {
		if i < len(raw)-1 && raw[i] == "xet-read-token" {
			at = i
			break
		}
	}
	if at < 0 {
		return "", "", "", false, nil
	}
	switch raw[0] {
	case "models", "datasets", "spaces":
		typ = strings.TrimSuffix(raw[0], "s")
	default:
		return "", "", "", false, nil
	}
	segs := make([]string, len(raw))
	for i, s := range raw {
		u, aerr := unescapeSegment(s)
		if aerr != nil {
			return "", "", "", true, aerr
		}
		segs[i] = u
	}
	if !validRepoSegments(segs[1:at]) {
		return "", "", "", true, badRequest("InvalidRepo", "invalid repo id")
	}
	rev = strings.Join(segs[at+1:], "/")
	if aerr := checkRevision(rev); aerr != nil {
		return "", "", "", true, aerr
	}
	return typ, strings.Join(segs[1:at], "/"), rev, true, nil
}

// xetTokenRoute answers GET /api/{t}/{repo}/xet-read-token/{rev} and
// reports true, or reports false for every other /api path.
func (s *Server) xetTokenRoute(w http.ResponseWriter, r *http.Request, rest string) bool {
	typ, repo, rev, ok, aerr := parseXetTokenPath(rest)
	if !ok {
		return false
	}
	setRoute(r, "xet_token")
	if aerr != nil {
		writeError(w, r, aerr)
		return true
	}
	if !s.getOrHead(w, r) {
		return true
	}
	token, _, aerr := s.auth.upstreamToken(r)
	if aerr != nil {
		writeError(w, r, aerr)
		return true
	}
	if aerr := s.repoAllowed(typ, repo); aerr != nil {
		writeError(w, r, aerr)
		return true
	}
	d := s.newDownload(r)
	defer d.cancel(nil)
	up, err := s.xet.engine.XetReadToken(d.ctx, token, hubRepo(typ, repo), rev)
	if err != nil {
		s.fail(w, r, d, err)
		return true
	}
	d.timer.Stop()
	now := time.Now()
	exp := now.Add(s.xet.tokenTTL)
	if up.Exp.Before(exp) {
		exp = up.Exp
	}
	if !exp.After(now) {
		s.fail(w, r, d, newAPIError(http.StatusBadGateway, "UpstreamError", "the Hub gave an expired Xet token"))
		return true
	}
	sealed := s.xet.sealer.SealAccess(&castoken.AccessToken{
		Exp: exp, Caller: callerDigest(token), RepoType: typ, RepoID: repo, Revision: rev,
		UpstreamURL: up.CASURL, UpstreamToken: up.AccessToken, UpstreamExp: up.Exp,
	})
	casURL := requestOrigin(r) + "/cas"
	h := w.Header()
	h.Set("X-Xet-Access-Token", sealed)
	h.Set("X-Xet-Token-Expiration", strconv.FormatInt(exp.Unix(), 10))
	h.Set("X-Xet-Cas-Url", casURL)
	writeJSON(w, r, http.StatusOK, map[string]any{"accessToken": sealed, "exp": exp.Unix(), "casUrl": casURL})
	return true
}

// xetLinks returns the token route and reconstruction URL of a Xet file,
// on the proxy's origin. The token is asked for the resolved commit, as
// the Hub does, so that it stays valid when the branch moves.
func xetLinks(r *http.Request, ref *fileRef, meta *hub.FileMeta) (refresh, recon string) {
	origin := requestOrigin(r)
	rev := meta.Commit
	if rev == "" {
		rev = ref.revision
	}
	refresh = origin + "/api/" + ref.repoType + "s/" + ref.repoID + "/xet-read-token/" + url.PathEscape(rev)
	recon = origin + "/cas/v1/reconstructions/" + meta.XetHash.String()
	return refresh, recon
}

// xetResolve adds the Xet headers to the resolve answer of a Xet file and
// answers the fileinfo request of @huggingface/hub itself (it reports
// true then); plain clients get the bytes as before.
func (s *Server) xetResolve(w http.ResponseWriter, r *http.Request, d *download, ref *fileRef, meta *hub.FileMeta) bool {
	refresh, recon := xetLinks(r, ref, meta)
	h := w.Header()
	h.Set("X-Xet-Hash", meta.XetHash.String())
	h.Set("X-Xet-Refresh-Route", refresh)
	h.Set("Link", `<`+refresh+`>; rel="xet-auth", <`+recon+`>; rel="xet-reconstruction-info"`)
	if !strings.Contains(strings.ToLower(r.Header.Get("Accept")), "application/vnd.xet-fileinfo+json") {
		return false
	}
	d.timer.Stop()
	etag := quoteETag(meta.ETag)
	body, _ := json.Marshal(map[string]any{
		"hash": meta.XetHash.String(), "size": meta.Size, "etag": strings.Trim(etag, `"`),
		"refreshUrl": refresh, "reconstructionUrl": recon,
	})
	h.Set("ETag", etag)
	h.Set("X-Linked-Etag", etag)
	h.Set("X-Linked-Size", itoa(meta.Size))
	if meta.Commit != "" {
		h.Set("X-Repo-Commit", meta.Commit)
	}
	h.Set("Content-Type", "application/vnd.xet-fileinfo+json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", itoa(int64(len(body))))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
	return true
}

// errCASToken answers a missing, malformed, foreign or expired CAS token.
func errCASToken(err error) *apiError {
	msg := "missing or invalid CAS token"
	if errors.Is(err, castoken.ErrExpired) {
		msg = "CAS token expired"
	}
	e := newAPIError(http.StatusUnauthorized, "InvalidCASToken", msg)
	e.cause = err
	return e
}
