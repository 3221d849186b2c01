package server

import (
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// This file holds the HTTP semantics of the download routes as pure
// functions: Range and the conditional headers (RFC 9110 §13, §14) and the
// representation headers. The handlers only apply their verdicts.

// rangeKind is the verdict on a Range header for a representation of a
// known size.
type rangeKind int

const (
	rangeNone          rangeKind = iota // no usable Range: send the whole representation (200)
	rangeSingle                         // exactly one satisfiable range (206)
	rangeMulti                          // several satisfiable ranges: we send the whole file (200)
	rangeUnsatisfiable                  // no range overlaps the representation (416)
	rangeInvalid                        // a bytes range set that does not parse (416)
)

func (k rangeKind) String() string {
	return [...]string{"none", "single", "multi", "unsatisfiable", "invalid"}[k]
}

// span is a satisfiable byte range: length bytes from start.
type span struct{ start, length int64 }

// parseRange judges the Range header value h for a representation of size
// bytes (RFC 9110 §14.1.2). Policy, in the order of the checks:
//   - no header, or a unit other than "bytes": rangeNone (a server must
//     ignore units it does not know);
//   - a bytes range set that does not parse: rangeInvalid (we reject it
//     with 416 rather than guess);
//   - no satisfiable range: rangeUnsatisfiable;
//   - exactly one satisfiable range: rangeSingle with that range, the end
//     clamped to the size and a suffix range -n covering min(n, size) bytes;
//   - more than one: rangeMulti, answered with the whole file as 200.
//     Multipart/byteranges answers are not implemented; a 200 is always a
//     correct answer to a Range request and no download client we serve
//     sends multi-range requests to a resolve URL.
func parseRange(h string, size int64) (span, rangeKind) {
	if h == "" {
		return span{}, rangeNone
	}
	unit, set, ok := strings.Cut(h, "=")
	if !ok {
		return span{}, rangeInvalid
	}
	if !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return span{}, rangeNone
	}
	var (
		found  span
		nfound int
		nspecs int
	)
	for _, spec := range strings.Split(set, ",") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue // empty list elements are allowed (RFC 9110 §5.6.1)
		}
		nspecs++
		first, last, ok := strings.Cut(spec, "-")
		if !ok {
			return span{}, rangeInvalid
		}
		var s span
		if first == "" {
			// suffix-range: the last n bytes
			n, ok := parseDigits(last)
			if !ok {
				return span{}, rangeInvalid
			}
			if n == 0 || size == 0 {
				continue
			}
			n = min(n, size)
			s = span{start: size - n, length: n}
		} else {
			a, ok := parseDigits(first)
			if !ok {
				return span{}, rangeInvalid
			}
			end := size - 1
			if last != "" {
				b, ok := parseDigits(last)
				if !ok || b < a {
					return span{}, rangeInvalid
				}
				end = min(b, size-1)
			}
			if a >= size {
				continue
			}
			s = span{start: a, length: end - a + 1}
		}
		found = s
		nfound++
	}
	switch {
	case nspecs == 0:
		return span{}, rangeInvalid
	case nfound == 0:
		return span{}, rangeUnsatisfiable
	case nfound == 1:
		return found, rangeSingle
	}
	return span{}, rangeMulti
}

// parseDigits reads a non-empty string of ASCII digits, saturating at the
// largest int64 (a last-byte-pos beyond the size is valid and clamped).
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63-1-int64(c-'0'))/10 {
			n = 1<<63 - 1
			continue
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// contentRange formats a Content-Range value for a 206.
func contentRange(s span, size int64) string {
	return "bytes " + strconv.FormatInt(s.start, 10) + "-" + strconv.FormatInt(s.start+s.length-1, 10) + "/" + strconv.FormatInt(size, 10)
}

// unsatisfiedRange formats the Content-Range value of a 416.
func unsatisfiedRange(size int64) string { return "bytes */" + strconv.FormatInt(size, 10) }

// quoteETag renders an entity tag from the bare value the Hub gives
// (sha256 hex for LFS/Xet files, git blob sha1 otherwise). Quotes and a W/
// prefix already present are dropped first: ours are always strong.
func quoteETag(v string) string {
	v = strings.TrimPrefix(v, "W/")
	return `"` + strings.Trim(v, `"`) + `"`
}

// etagList walks a comma-separated list of entity tags and calls match for
// each one, reporting whether the list held "*" or match returned true.
func etagList(h string, match func(tag string, weak bool) bool) (star, matched bool) {
	for h != "" {
		h = strings.TrimLeft(h, " \t,")
		if h == "" {
			break
		}
		if h[0] == '*' {
			star = true
			h = h[1:]
			continue
		}
		weak := false
		if strings.HasPrefix(h, "W/") {
			weak = true
			h = h[2:]
		}
		if h == "" || h[0] != '"' {
			// not an entity tag: skip to the next element
			if i := strings.IndexByte(h, ','); i >= 0 {
				h = h[i:]
				continue
			}
			break
		}
		end := strings.IndexByte(h[1:], '"')
		if end < 0 {
			break
		}
		tag := h[:end+2]
		h = h[end+2:]
		if match(tag, weak) {
			matched = true
		}
	}
	return star, matched
}

// precondition is the verdict of the conditional request headers.
type precondition int

const (
	condProceed     precondition = iota // serve normally
	condNotModified                     // 304
	condFailed                          // 412
	condIgnoreRange                     // serve the whole file (If-Range did not match)
)

// checkConditions evaluates If-Match, If-None-Match and If-Range against the
// strong entity tag etag (quoted) of the current representation, in the
// order of RFC 9110 §13.2.2. Dates are never matched: the Hub gives us no
// Last-Modified, so If-Unmodified-Since and If-Modified-Since are ignored
// and an If-Range date never matches.
func checkConditions(h http.Header, method, etag string) precondition {
	if im := h.Get("If-Match"); im != "" {
		star, ok := etagList(im, func(tag string, weak bool) bool { return !weak && tag == etag })
		if !star && !ok {
			return condFailed
		}
	}
	if inm := h.Get("If-None-Match"); inm != "" {
		star, ok := etagList(inm, func(tag string, _ bool) bool { return tag == etag })
		if star || ok {
			if method == http.MethodGet || method == http.MethodHead {
				return condNotModified
			}
			return condFailed
		}
	}
	if ir := h.Get("If-Range"); ir != "" && h.Get("Range") != "" {
		ir = strings.TrimSpace(ir)
		if strings.HasPrefix(ir, "W/") || ir != etag {
			return condIgnoreRange
		}
	}
	return condProceed
}

// contentType guesses a Content-Type from the file name's extension.
func contentType(name string) string {
	if t := mime.TypeByExtension(strings.ToLower(path.Ext(name))); t != "" {
		return t
	}
	return "application/octet-stream"
}

// setRepresentation sets Content-Type, Content-Disposition and a sandbox
// for a repo file called name. A repo's files are anyone's content served
// on the proxy's origin: HTML, SVG, XML or a script opened inline would run
// there (stored XSS against everything else on that origin). So only types
// a browser cannot execute keep disposition ("inline" on resolve URLs);
// every other type is an attachment, and every file answer carries
// Content-Security-Policy: sandbox, which gives a document opened anyway a
// unique origin with scripts off. nosniff (on every answer, see
// finishHeaders) keeps browsers from guessing an executable type.
func setRepresentation(h http.Header, name, disposition string) {
	ct := contentType(name)
	if !passiveType(ct) {
		disposition = "attachment"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Disposition", contentDisposition(disposition, name))
	h.Set("Content-Security-Policy", "sandbox")
}

// passiveType reports whether a browser only ever displays content of
// media type ct (parameters ignored) and never runs it as a document or
// script. Anything unknown counts as active.
func passiveType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	switch mt {
	case "text/plain", "text/csv", "text/tab-separated-values", "text/markdown",
		"application/json", "application/octet-stream",
		"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp":
		return true
	}
	return strings.HasPrefix(mt, "audio/") || strings.HasPrefix(mt, "video/")
}

// contentDisposition renders a Content-Disposition value (RFC 6266) with an
// ASCII filename fallback and the exact name in filename* (RFC 8187).
func contentDisposition(disposition, name string) string {
	var ascii, ext strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '%':
			ascii.WriteByte('_')
		default:
			ascii.WriteByte(c)
		}
		if isAttrChar(c) {
			ext.WriteByte(c)
		} else {
			const hexdig = "0123456789ABCDEF"
			ext.WriteByte('%')
			ext.WriteByte(hexdig[c>>4])
			ext.WriteByte(hexdig[c&15])
		}
	}
	return disposition + `; filename="` + ascii.String() + `"; filename*=UTF-8''` + ext.String()
}

// isAttrChar reports the attr-char set of RFC 8187.
func isAttrChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", c) >= 0
}
