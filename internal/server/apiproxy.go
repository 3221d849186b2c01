package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	"github.com/xetproxy/xetproxy/internal/policy"
)

// maxAPIJSON bounds a JSON answer the API proxy rewrites in memory (the
// Hub's tree pages are a few hundred KiB).
const maxAPIJSON = 64 << 20

// xetJSONFields are removed from every JSON object of every /api answer
// when Xet mode is off: a client that sees them switches to the Xet
// protocol, and without the proxy's CAS it would fetch from the upstream
// CAS directly, around the proxy (HUB-MIRROR.md, "Where Xet leaks").
var xetJSONFields = []string{"xetHash", "xetEnabled"}

// apiProxy passes the read routes of /api (checkAPIRoute) through to the
// Hub with the request's upstream token, and rewrites the answers so that
// unmodified clients stay on the proxy: Xet metadata removed from JSON,
// X-Xet-* headers and xet Link rels dropped, and Link/Location URLs that
// point at the Hub moved to the proxy's own origin.
type apiProxy struct {
	hub    *url.URL
	auth   *authPolicy
	policy *policy.Policy // repo policy; nil allows all
	rp     *httputil.ReverseProxy
	// keepXet keeps xetHash and xetEnabled in JSON answers (Xet mode:
	// the proxy is the CAS those fields lead clients to).
	keepXet bool
}

type apiCtxKey struct{}

type apiCtx struct {
	token  string
	origin string // scheme://host of the proxy as the client reached it
	// listType is set for a search listing under an active repo policy:
	// the answer's entries are filtered by it (filterListing).
	listType string
}

func newAPIProxy(hub *url.URL, transport http.RoundTripper, auth *authPolicy, log *slog.Logger) *apiProxy {
	p := &apiProxy{hub: hub, auth: auth}
	p.rp = &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			c, _ := pr.In.Context().Value(apiCtxKey{}).(*apiCtx)
			pr.SetURL(hub)
			h := pr.Out.Header
			for _, k := range []string{"Authorization", "X-Proxy-Key", "Cookie", "Accept-Encoding", "X-Request-Id",
				// a server that honours these would run another method
				// than the one checkAPIRoute allowed
				"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"} {
				h.Del(k)
			}
			if pr.Out.Method != http.MethodPost {
				// reads carry no body upstream
				pr.Out.Body, pr.Out.ContentLength, pr.Out.TransferEncoding = nil, 0, nil
			}
			if c != nil && c.token != "" {
				h.Set("Authorization", "Bearer "+c.token)
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			c, _ := resp.Request.Context().Value(apiCtxKey{}).(*apiCtx)
			origin := ""
			if c != nil {
				origin = c.origin
			}
			if err := rewriteAPIResponse(resp, hub, origin, p.keepXet); err != nil {
				return err
			}
			if c != nil && c.listType != "" {
				return filterListing(resp, c.listType, p.policy)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, r, classify(r.Context(), err))
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return p
}

func (p *apiProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setRoute(r, "api")
	// Read-only whoever asks: the route is judged before the credentials.
	allow, target, aerr := routeAPI(r.Method, strings.TrimPrefix(r.URL.EscapedPath(), "/api/"))
	if aerr != nil {
		if allow != nil {
			w.Header().Set("Allow", strings.Join(allow, ", "))
		}
		writeError(w, r, aerr)
		return
	}
	if target.repo != "" && !p.policy.Allows(target.typ, target.repo) {
		writeError(w, r, errRepoNotAllowed())
		return
	}
	listType := ""
	if target.listing && p.policy.Active() {
		listType = target.typ
	}
	token, _, aerr := p.auth.upstreamToken(r)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	if r.Method == http.MethodPost {
		// the whole body first, under guardBody's deadline and cap: a
		// client trickling it must not hold an upstream request open
		b, aerr := readBody(w, r)
		if aerr != nil {
			writeError(w, r, aerr)
			return
		}
		r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	}
	ctx := context.WithValue(r.Context(), apiCtxKey{}, &apiCtx{token: token, origin: requestOrigin(r), listType: listType})
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// requestOrigin is the scheme and host the client used to reach us.
func requestOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// rewriteAPIResponse applies the proxy's rewrites to one Hub answer.
func rewriteAPIResponse(resp *http.Response, hub *url.URL, origin string, keepXet bool) error {
	h := resp.Header
	if id := h.Get("X-Request-Id"); id != "" {
		// ours is the X-Request-Id; keep the Hub's under another name
		h.Del("X-Request-Id")
		h.Set("X-Upstream-Request-Id", id)
	}
	// X-Xet-* carry the Xet hash, the refresh route and, on token routes,
	// the CAS credential (X-Xet-Access-Token, X-Xet-Cas-Url): none may
	// reach the client. Cookies of the Hub have no business on our origin.
	for k := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), "X-Xet-") {
			delete(h, k)
		}
	}
	h.Del("Set-Cookie")
	if links := h.Values("Link"); len(links) > 0 {
		h.Del("Link")
		for _, l := range links {
			if nl := rewriteLinks(l, hub, origin); nl != "" {
				h.Add("Link", nl)
			}
		}
	}
	if loc := h.Get("Location"); loc != "" {
		h.Set("Location", rewriteHubURL(loc, hub, origin))
	}
	if keepXet || !isJSON(h.Get("Content-Type")) || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		return nil
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Errorf("hub sent a %s-encoded JSON answer that cannot be rewritten", ce)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIJSON+1))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read hub answer: %w", err)
	}
	if len(body) > maxAPIJSON {
		return errors.New("hub JSON answer too large to rewrite")
	}
	body = stripXetJSON(body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Del("Content-Encoding")
	return nil
}

func isJSON(ct string) bool {
	ct = strings.ToLower(ct)
	return strings.Contains(ct, "json")
}

// stripXetJSON removes xetJSONFields from every object of a JSON document
// or of a sequence of them (NDJSON). Input that is not JSON is returned as
// it is: it cannot carry the fields in a form a client would read.
func stripXetJSON(body []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	n := 0
	for {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			return body
		}
		stripFields(v)
		if err := enc.Encode(v); err != nil {
			return body
		}
		n++
	}
	if n == 0 {
		return body
	}
	if n == 1 && !bytes.HasSuffix(bytes.TrimRight(body, " \t\r"), []byte("\n")) {
		out.Truncate(out.Len() - 1) // keep a single document without the encoder's newline
	}
	return out.Bytes()
}

func stripFields(v any) {
	switch t := v.(type) {
	case map[string]any:
		for _, k := range xetJSONFields {
			delete(t, k)
		}
		for _, x := range t {
			stripFields(x)
		}
	case []any:
		for _, x := range t {
			stripFields(x)
		}
	}
}

// rewriteLinks rewrites one Link header value (RFC 8288): links to the Hub
// move to origin, xet rels are dropped. It returns "" when nothing is left.
func rewriteLinks(v string, hub *url.URL, origin string) string {
	var kept []string
	for _, l := range splitLinks(v) {
		lt := strings.TrimSpace(l)
		if !strings.HasPrefix(lt, "<") {
			kept = append(kept, lt)
			continue
		}
		end := strings.IndexByte(lt, '>')
		if end < 0 {
			kept = append(kept, lt)
			continue
		}
		target, params := lt[1:end], lt[end+1:]
		if rel := linkRel(params); strings.HasPrefix(rel, "xet-") {
			continue
		}
		kept = append(kept, "<"+rewriteHubURL(target, hub, origin)+">"+params)
	}
	return strings.Join(kept, ", ")
}

// splitLinks splits a Link value at the commas between links (not inside
// <...> or quoted strings).
func splitLinks(v string) []string {
	var out []string
	depth, quoted, start := false, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
		case c == '<':
			depth = true
		case c == '>':
			depth = false
		case c == ',' && !depth:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// linkRel returns the lower-cased rel parameter of link params.
func linkRel(params string) string {
	for _, p := range strings.Split(params, ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "rel") {
			return strings.ToLower(strings.Trim(strings.TrimSpace(val), `"`))
		}
	}
	return ""
}

// rewriteHubURL moves an absolute URL on the Hub's origin (under its base
// path) to origin; anything else is returned unchanged.
func rewriteHubURL(s string, hub *url.URL, origin string) string {
	if origin == "" {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || !strings.EqualFold(u.Scheme, hub.Scheme) || !strings.EqualFold(u.Host, hub.Host) {
		return s
	}
	p := u.EscapedPath()
	base := strings.TrimSuffix(hub.EscapedPath(), "/")
	if base != "" {
		if p != base && !strings.HasPrefix(p, base+"/") {
			return s
		}
		p = strings.TrimPrefix(p, base)
	}
	out := origin + p
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	if u.Fragment != "" {
		out += "#" + u.EscapedFragment()
	}
	return out
}
