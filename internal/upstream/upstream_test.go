package upstream

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pw@cas.example/xorb/abc?X-Signature=s3cr3t#frag": "https://cas.example/xorb/abc",
		"http://h/p?":          "http://h/p",
		"::bad::?token=1":      "::bad::",
		"/relative/path?sig=x": "/relative/path",
		"https://h/a%2Fb?q=1":  "https://h/a%2Fb",
	} {
		if got := Redact(in); got != want || strings.Contains(got, "s3cr3t") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClip(t *testing.T) {
	if got := Clip("  first line\nsecond  ", 100); got != "first line" {
		t.Errorf("got %q", got)
	}
	got := Clip(strings.Repeat("é", 10), 5) // 2-byte runes: cut must not split one
	if got != "éé…" {
		t.Errorf("got %q", got)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		" 3 ":                           3 * time.Second,
		"-1":                            0,
		"0":                             0,
		"abc":                           0,
		"99999999999":                   1 << 20 * time.Second,
		"Fri, 02 Jan 2026 03:04:35 GMT": 30 * time.Second,
		"Fri, 02 Jan 2026 03:00:00 GMT": 0, // in the past
	}
	for in, want := range cases {
		if got := RetryAfter(in, now); got != want {
			t.Errorf("RetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestTemporaryStatus(t *testing.T) {
	for code, want := range map[int]bool{408: true, 429: true, 500: true, 502: true, 503: true, 504: true,
		501: false, 400: false, 401: false, 403: false, 404: false, 416: false, 200: false} {
		if TemporaryStatus(code) != want {
			t.Errorf("TemporaryStatus(%d) != %v", code, want)
		}
	}
}

func TestCause(t *testing.T) {
	inner := errors.New("connection refused")
	err := &url.Error{Op: "Get", URL: "https://h/x?sig=secret", Err: inner}
	if got := Cause(err); got != inner || strings.Contains(got.Error(), "secret") {
		t.Errorf("Cause = %v", got)
	}
	if Cause(inner) != inner {
		t.Error("Cause changed a plain error")
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "5", "Fri, 02 Jan 2026 03:04:35 GMT", "-9", "1e9"} {
		f.Add(s)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, s string) {
		if d := RetryAfter(s, now); d < 0 || d > 1<<20*time.Second {
			t.Fatalf("RetryAfter(%q) = %v", s, d)
		}
	})
}
