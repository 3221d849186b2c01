package fakehub

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseRanges(t *testing.T) {
	for _, c := range []struct {
		in         string
		start, end uint64
		open, ok   bool
	}{
		{"bytes=0-0", 0, 0, false, true},
		{"bytes=5-", 5, 0, true, true},
		{" bytes=1-9 ", 1, 9, false, true},
		{"bytes=9-1", 0, 0, false, false},
		{"bytes=-5", 0, 0, false, false},
		{"bytes=0-1,3-4", 0, 0, false, false},
		{"bits=0-1", 0, 0, false, false},
		{"bytes=a-b", 0, 0, false, false},
	} {
		s, e, open, ok := parseHTTPRange(c.in)
		if s != c.start || e != c.end || open != c.open || ok != c.ok {
			t.Errorf("%q: %d %d %v %v", c.in, s, e, open, ok)
		}
	}
	got, ok := parseRangeList("bytes=0-9,20-,5-5", 100)
	if !ok || len(got) != 3 || got[1] != (byteRange{20, 99}) || got[2] != (byteRange{5, 5}) {
		t.Fatalf("list: %v %v", got, ok)
	}
	for _, bad := range []string{"bytes=", "bytes=1-0", "bytes=-3", "bytes=1-2,", "0-1"} {
		if _, ok := parseRangeList(bad, 100); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzRanges(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=5-", "bytes=0-9,20-30", "bytes=-5", "bytes=18446744073709551615-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, b, open, ok := parseHTTPRange(s); ok && !open && b < a {
			t.Fatalf("%q: end %d before start %d", s, b, a)
		}
		if rs, ok := parseRangeList(s, 1000); ok {
			for _, r := range rs {
				if r.start < 0 || r.end < r.start {
					t.Fatalf("%q: bad range %+v", s, r)
				}
			}
		}
	})
}

// FuzzRequests sends arbitrary paths, methods and headers through the whole
// handler: it must answer without panicking.
func FuzzRequests(f *testing.F) {
	h, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	if err := h.CreateRepo(RepoSpec{ID: "org/m", Writers: []string{"hf_w"}}); err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"/org/m/resolve/main/.gitattributes", "/api/models/org/m/tree/main?recursive=1&cursor=%%",
		"/cas/v2/reconstructions/00", "/cas/transfer/xx?X-Xet-Signed-Range=bytes%3D0-1", "/api/models/org/m/xet-read-token/refs%2Fpr%2F1",
		"/datasets/a/b.git/info/lfs/objects/batch", "/api/spaces/x", "//..//", "/cas/v1/chunks/a/b",
	} {
		f.Add("GET", s, "bytes=0-1", "")
		f.Add("POST", s, "", "hf_w")
	}
	f.Fuzz(func(t *testing.T, method, path, rng, token string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") || len(method) == 0 ||
			strings.ContainsAny(method, " \r\n\t()<>@,;:\\\"/[]?={}") {
			return
		}
		req, err := http.NewRequest(method, "http://fakehub"+path, strings.NewReader("{}"))
		if err != nil {
			return
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		func() {
			defer func() {
				if r := recover(); r != nil && r != http.ErrAbortHandler {
					t.Fatalf("%s %s panicked: %v", method, path, r)
				}
			}()
			h.ServeHTTP(w, req)
		}()
		if w.Code < 100 || w.Code > 599 {
			t.Fatalf("%s %s: status %d", method, path, w.Code)
		}
	})
}
