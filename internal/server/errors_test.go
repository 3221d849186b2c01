package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestClassify(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		err    error
		status int
		code   string
	}{
		{"own", live, badRequest("InvalidHash", "bad"), 400, "InvalidHash"},
		{"own wrapped", live, fmt.Errorf("x: %w", newAPIError(404, "EntryNotFound", "nope")), 404, "EntryNotFound"},
		{"client gone", gone, errors.New("context canceled"), 499, "ClientClosedRequest"},
		{"overload", live, errOverloaded, 503, "Overloaded"},
		{"our timeout", live, fmt.Errorf("%w: %w", errUpstreamTimeout, context.Canceled), 504, "UpstreamTimeout"},
		{"our timeout with ctx gone", gone, fmt.Errorf("%w: %w", errUpstreamTimeout, context.Canceled), 504, "UpstreamTimeout"},
		{"deadline", live, fmt.Errorf("get: %w", context.DeadlineExceeded), 504, "UpstreamTimeout"},
		{"net timeout", live, &net.OpError{Op: "read", Err: timeoutErr{}}, 504, "UpstreamTimeout"},
		{"other", live, errors.New("connection refused"), 502, "UpstreamError"},
		{"hash lookup too large", live, fmt.Errorf("list: %w", proxy.ErrListingTooLarge), 422, "HashLookupTooLarge"},
		{"hash not found", live, fmt.Errorf("x: %w", proxy.ErrNotFound), 404, "EntryNotFound"},
		{"integrity", live, &proxy.IntegrityError{File: "f", Err: errors.New("bad chunk")}, 502, "IntegrityError"},
	}
	for _, tc := range tests {
		e := classify(tc.ctx, tc.err)
		if e.Status != tc.status || e.Code != tc.code {
			t.Errorf("%s: classify = %d %s, want %d %s", tc.name, e.Status, e.Code, tc.status, tc.code)
		}
	}
	if e := classify(live, errOverloaded); e.RetryAfter == "" {
		t.Error("overload without Retry-After")
	}
	// a Hub answer's X-Repo-Commit goes with its 4xx, never with a 502
	const commit = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		he   *hub.Error
		want string
	}{
		{&hub.Error{Status: 404, Code: "EntryNotFound", Commit: commit}, commit},
		{&hub.Error{Status: 404, Code: "RevisionNotFound"}, ""},
		{&hub.Error{Status: 503, Commit: commit}, ""},
	} {
		if e := classify(live, fmt.Errorf("resolve: %w", tc.he)); e.RepoCommit != tc.want {
			t.Errorf("classify(%v).RepoCommit = %q, want %q", tc.he, e.RepoCommit, tc.want)
		}
	}
}

func TestWriteError(t *testing.T) {
	for _, method := range []string{"GET", "HEAD"} {
		r := httptest.NewRequest(method, "/x", nil)
		info := &reqInfo{id: "req-1"}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))
		w := httptest.NewRecorder()
		w.Header().Set("ETag", `"stale"`)
		e := newAPIError(416, "RangeNotSatisfiable", "bad\r\nrange")
		e.Size = 1234
		e.RepoCommit = "0123456789abcdef0123456789abcdef01234567"
		writeError(w, r, e)
		res := w.Result()
		if res.StatusCode != 416 || res.Header.Get("Content-Range") != "bytes */1234" || res.Header.Get("X-Error-Code") != "RangeNotSatisfiable" ||
			res.Header.Get("X-Error-Message") != "bad  range" || res.Header.Get("ETag") != "" || res.Header.Get("Content-Type") != "application/json" ||
			res.Header.Get("X-Repo-Commit") != e.RepoCommit {
			t.Errorf("%s: headers %v", method, res.Header)
		}
		if method == "HEAD" {
			if w.Body.Len() != 0 {
				t.Error("HEAD error with a body")
			}
			continue
		}
		var body errorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Code != "RangeNotSatisfiable" || body.RequestID != "req-1" || body.Error != "bad\r\nrange" {
			t.Errorf("body %q: %+v %v", w.Body.String(), body, err)
		}
		if info.err == nil {
			t.Error("error not recorded for the log")
		}
	}
	// 499: nothing is written, the status is recorded
	r := httptest.NewRequest("GET", "/x", nil)
	info := &reqInfo{id: "req-2"}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))
	w := httptest.NewRecorder()
	writeError(w, r, newAPIError(StatusClientClosedRequest, "ClientClosedRequest", "gone"))
	if w.Code != http.StatusOK || w.Body.Len() != 0 || info.status != 499 {
		t.Errorf("499 wrote %d %q, recorded %d", w.Code, w.Body.String(), info.status)
	}
}
