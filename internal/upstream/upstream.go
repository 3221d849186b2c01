package upstream

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Redact returns u without query, fragment and user info — where presigned
// signatures and credentials live — so it is safe for logs and errors.
func Redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		if i := strings.IndexAny(u, "?#"); i >= 0 {
			u = u[:i]
		}
		return u
	}
	p.User, p.RawQuery, p.Fragment, p.ForceQuery = nil, "", "", false
	return p.String()
}

// Clip trims s to its first line and at most max bytes (ending on a rune
// boundary, with an ellipsis when cut): what an upstream said, fit for an
// error message.
func Clip(s string, max int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}

// RetryAfter reads a Retry-After header value, delay-seconds or an HTTP
// date relative to now; 0 when absent, malformed or in the past. Huge
// values are capped so a hostile server cannot park a client forever.
func RetryAfter(v string, now time.Time) time.Duration {
	const maxWait = 1 << 20 * time.Second
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(maxWait/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxWait)
	}
	return 0
}

// Drain reads a little of a body so its connection can be reused, then
// closes it.
func Drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	body.Close()
}

// TemporaryStatus reports whether an answer with this status may succeed
// if asked again: 408, 429 and 5xx except 501 (which means "never here").
func TemporaryStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests ||
		(code >= 500 && code != http.StatusNotImplemented)
}

// Cause strips the *url.Error layer of an http.Client error, which would
// print the full (possibly signed) URL.
func Cause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
