package hub

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/upstream"
)

// Conditions callers branch on; *Error matches them by status.
var (
	ErrNotFound     = errors.New("not found")               // 404
	ErrUnauthorized = errors.New("authentication required") // 401: no token, or a bad one
	ErrForbidden    = errors.New("access denied")           // 403: gated, disabled, no permission
)

// Error is an error answer of the Hub. URL is redacted (no query) and no
// error ever carries a token.
type Error struct {
	Op      string // "resolve", "list", "read token", "download"...
	URL     string
	Status  int
	Code    string // X-Error-Code: RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo...
	Message string // X-Error-Message, or the "error" of a JSON body
	// RetryAfter is the wait the Hub asked for (429/503), 0 if none.
	RetryAfter time.Duration
	// Commit is the X-Repo-Commit of the answer, "" if none (or not a
	// commit id). The Hub sends it when the revision resolved but the
	// path did not (404 EntryNotFound), so a mirror can pass it on.
	Commit string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("hub %s %s: http %d", e.Op, e.URL, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is maps the status to ErrNotFound, ErrUnauthorized and ErrForbidden.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	}
	return false
}

func (e *Error) temporary() bool {
	return upstream.TemporaryStatus(e.Status)
}

// NetError is a failure to talk to the Hub at all (connection, TLS, a body
// cut short).
type NetError struct {
	Op  string
	URL string // redacted
	Err error
}

func (e *NetError) Error() string { return fmt.Sprintf("hub %s %s: %v", e.Op, e.URL, e.Err) }
func (e *NetError) Unwrap() error { return e.Err }

func netErr(op, rawURL string, err error) error {
	return &NetError{Op: op, URL: upstream.Redact(rawURL), Err: upstream.Cause(err)}
}

// errorFrom builds an *Error from a non-success answer.
func errorFrom(op, rawURL string, resp *http.Response) *Error {
	e := &Error{
		Op: op, URL: upstream.Redact(rawURL), Status: resp.StatusCode,
		Code:    resp.Header.Get("X-Error-Code"),
		Message: upstream.Clip(resp.Header.Get("X-Error-Message"), 300),
		Commit:  commitID(resp.Header.Get("X-Repo-Commit")),
	}
	e.RetryAfter = upstream.RetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if e.Message == "" && resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		e.Message = upstream.Clip(jsonError(b), 300)
	}
	return e
}

// commitID returns s if it looks like a commit id (hex digits, at most
// 64: a sha1 or a sha256), else "".
func commitID(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return ""
		}
	}
	return s
}

// jsonError extracts {"error": "..."} or returns the text as is.
func jsonError(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.Index(s, `"error":`); strings.HasPrefix(s, "{") && i >= 0 {
		rest := strings.TrimSpace(s[i+len(`"error":`):])
		if v, err := strconv.QuotedPrefix(rest); err == nil {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
		}
	}
	if strings.HasPrefix(s, "<") { // an HTML error page says nothing useful
		return ""
	}
	return s
}
