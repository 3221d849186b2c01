package casclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/xetproxy/xetproxy/internal/upstream"
)

// Conditions callers branch on. A *StatusError matches the one its status
// means (errors.Is), so decorators need not look at codes.
var (
	// ErrNotFound: the CAS does not know the file (404).
	ErrNotFound = errors.New("not found")
	// ErrRangeNotSatisfiable: the range starts at or past the end of the file (416).
	ErrRangeNotSatisfiable = errors.New("range not satisfiable")
	// ErrUnauthorized: the CAS refused the access token (401), also after a refresh.
	ErrUnauthorized = errors.New("cas token rejected")
	// ErrForbidden: the CAS API refused the call (403, e.g. a token of the wrong scope).
	ErrForbidden = errors.New("forbidden")
	// ErrURLRejected: a presigned transfer URL was refused (403): expired or
	// not signed for the range. The remedy is a new reconstruction query.
	ErrURLRejected = errors.New("presigned url rejected")
	// ErrStalled: a response body made no progress for the stall timeout.
	ErrStalled = errors.New("transfer stalled")
	// ErrBadResponse: the server answered something that breaks the protocol
	// (wrong Content-Range, missing multipart part...).
	ErrBadResponse = errors.New("bad response")
)

// StatusError is an HTTP answer other than the one expected. URL carries no
// query string (presigned URLs hold signatures) and never a credential.
type StatusError struct {
	Op         string // what was being done: "reconstruction", "xorb range"...
	Code       int
	URL        string
	Message    string        // start of the body, if it was text
	RetryAfter time.Duration // from Retry-After, 0 if absent
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s: %s: http %d", e.Op, e.URL, e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is maps the status to the sentinel errors above.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == 404
	case ErrRangeNotSatisfiable:
		return e.Code == 416
	case ErrUnauthorized:
		return e.Code == 401
	case ErrForbidden:
		return e.Code == 403 && e.Op != opFetch
	case ErrURLRejected:
		return e.Code == 403 && e.Op == opFetch
	}
	return false
}

// Temporary reports whether the same request may succeed later.
func (e *StatusError) Temporary() bool {
	return upstream.TemporaryStatus(e.Code)
}

// TransportError is a failure below HTTP: connection refused or reset,
// DNS, TLS, a body cut short or stalled. It is always retryable.
type TransportError struct {
	Op  string
	URL string // redacted
	Err error
}

func (e *TransportError) Error() string { return fmt.Sprintf("%s: %s: %v", e.Op, e.URL, e.Err) }
func (e *TransportError) Unwrap() error { return e.Err }

// Retryable reports whether err is worth another attempt: 408, 429, 5xx
// other than 501, any transport failure, a short or stalled body, an
// unparsable answer. Cancellation of the caller's context never is.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	var te *TransportError
	if errors.As(err, &te) {
		return !errors.Is(te.Err, context.Canceled)
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrStalled) ||
		errors.As(err, &syn) || errors.As(err, &typ)
}

// Timeout reports whether err is the upstream being too slow (a stalled body,
// a connection or header timeout, a 504), as opposed to refusing or failing.
func Timeout(err error) bool {
	if errors.Is(err, ErrStalled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code == 504 || se.Code == 408
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// RetryAfter returns the delay the server asked for, or 0.
func RetryAfter(err error) time.Duration {
	var se *StatusError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}

// transportErr wraps an error of http.Client.Do or a body read, dropping
// the *url.Error layer that would print the full (signed) URL.
func transportErr(op, rawURL string, err error) error {
	return &TransportError{Op: op, URL: upstream.Redact(rawURL), Err: upstream.Cause(err)}
}
