package server

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
)

// StatusClientClosedRequest is the status recorded (logs and metrics, never
// sent) when the client went away before the answer was complete.
const StatusClientClosedRequest = 499

// retryAfterSeconds is the Retry-After hint of an overload answer.
const retryAfterSeconds = "5"

// apiError is an answer the server gives instead of the file: its status,
// a Hub-style error code (X-Error-Code) and a message safe to show.
type apiError struct {
	Status     int
	Code       string // X-Error-Code, e.g. RepoNotFound, EntryNotFound, InvalidRange
	Message    string // X-Error-Message and the JSON "error"
	RetryAfter string // Retry-After, for 503
	RepoCommit string // X-Repo-Commit, when the Hub gave one (EntryNotFound)
	Size       int64  // for 416: Content-Range: bytes */Size; -1 otherwise
	cause      error  // the underlying error, for logs only
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.Message + ": " + e.cause.Error()
	}
	return e.Message
}

func (e *apiError) Unwrap() error { return e.cause }

func newAPIError(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg, Size: -1}
}

func badRequest(code, msg string) *apiError { return newAPIError(http.StatusBadRequest, code, msg) }

// Sentinel conditions of the server's own making.
var (
	// errOverloaded: no download slot or read-ahead budget left.
	errOverloaded = errors.New("too many downloads in progress")
	// errUpstreamTimeout: the first upstream step took longer than
	// Config.UpstreamTimeout.
	errUpstreamTimeout = errors.New("upstream did not answer in time")
	// errStalled: the client accepted no bytes for Config.StallTimeout.
	errStalled = errors.New("client stalled")
)

// classify maps any error of a request to the answer it deserves. This is
// the one error→status table of the server:
//
//	*apiError (our own decisions)          as built
//	client gone (request context canceled) 499, logged at debug, nothing sent
//	errOverloaded                          503 + Retry-After
//	offline, not in the caches             503 (code NotCachedOffline) + Retry-After
//	Hub answers (*hub.Error)               4xx kept as the Hub gave them, with its X-Error-Code
//	                                       and X-Repo-Commit; 429 kept with Retry-After; 5xx → 502
//	range not satisfiable                  416
//	repo too large for a lookup by hash    422 (code HashLookupTooLarge)
//	integrity failure                      502 (code IntegrityError)
//	timeouts (ours, context, net)          504
//	anything else upstream                 502
func classify(ctx context.Context, err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errUpstreamTimeout) && !errors.Is(err, errUpstreamTimeout) {
		e := newAPIError(StatusClientClosedRequest, "ClientClosedRequest", "client closed the request")
		e.cause = err
		return e
	}
	if errors.Is(err, errOverloaded) {
		e := newAPIError(http.StatusServiceUnavailable, "Overloaded", "too many downloads in progress, retry later")
		e.RetryAfter = retryAfterSeconds
		e.cause = err
		return e
	}
	if e := classifyOffline(err); e != nil {
		return e
	}
	if e := classifyUpstream(err); e != nil {
		return e
	}
	if isTimeout(err) {
		e := newAPIError(http.StatusGatewayTimeout, "UpstreamTimeout", "the Hub did not answer in time")
		e.cause = err
		return e
	}
	e := newAPIError(http.StatusBadGateway, "UpstreamError", "upstream request failed")
	e.cause = err
	return e
}

func isTimeout(err error) bool {
	if errors.Is(err, errUpstreamTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error     string `json:"error"`
	Code      string `json:"code"`
	RequestID string `json:"request_id"`
}

// writeError sends e (unless the client is gone) and records it for the
// access log and metrics.
func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	info := infoFrom(r.Context())
	if info != nil {
		info.err = e
		if e.Status == StatusClientClosedRequest {
			info.status = StatusClientClosedRequest
		}
	}
	if e.Status == StatusClientClosedRequest {
		return
	}
	h := w.Header()
	for _, k := range []string{"Content-Length", "Content-Range", "Content-Disposition", "Accept-Ranges", "ETag", "X-Linked-Etag", "X-Linked-Size", "Last-Modified"} {
		h.Del(k)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.Code != "" {
		h.Set("X-Error-Code", e.Code)
	}
	h.Set("X-Error-Message", headerSafe(e.Message))
	if e.RetryAfter != "" {
		h.Set("Retry-After", e.RetryAfter)
	}
	if e.RepoCommit != "" {
		h.Set("X-Repo-Commit", headerSafe(e.RepoCommit))
	}
	if e.Size >= 0 && e.Status == http.StatusRequestedRangeNotSatisfiable {
		h.Set("Content-Range", unsatisfiedRange(e.Size))
	}
	id := ""
	if info != nil {
		id = info.id
	}
	body, _ := json.Marshal(errorBody{Error: e.Message, Code: e.Code, RequestID: id})
	body = append(body, '\n')
	if r.Method != http.MethodHead {
		h.Set("Content-Length", itoa(int64(len(body))))
	}
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// headerSafe makes s usable as a header value: printable ASCII only, at
// most 300 bytes.
func headerSafe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 300; i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			c = ' '
		}
		b.WriteByte(c)
	}
	return b.String()
}
