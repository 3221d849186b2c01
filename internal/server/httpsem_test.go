package server

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	const size = 1000
	tests := []struct {
		h    string
		size int64
		want span
		kind rangeKind
	}{
		{"", size, span{}, rangeNone},
		{"bytes=0-0", size, span{0, 1}, rangeSingle},
		{"bytes=0-999", size, span{0, 1000}, rangeSingle},
		{"bytes=0-5000", size, span{0, 1000}, rangeSingle},
		{"bytes=10-19", size, span{10, 10}, rangeSingle},
		{"bytes=999-", size, span{999, 1}, rangeSingle},
		{"bytes=100-", size, span{100, 900}, rangeSingle},
		{"bytes=-1", size, span{999, 1}, rangeSingle},
		{"bytes=-1000", size, span{0, 1000}, rangeSingle},
		{"bytes=-5000", size, span{0, 1000}, rangeSingle},
		{"Bytes = 1-2", size, span{1, 2}, rangeSingle},
		{"bytes= 1-2 ,", size, span{1, 2}, rangeSingle},
		{"bytes=0-99999999999999999999999", size, span{0, 1000}, rangeSingle},
		{"bytes=1000-", size, span{}, rangeUnsatisfiable},
		{"bytes=1000-2000", size, span{}, rangeUnsatisfiable},
		{"bytes=99999999999999999999999-", size, span{}, rangeUnsatisfiable},
		{"bytes=-0", size, span{}, rangeUnsatisfiable},
		{"bytes=0-0", 0, span{}, rangeUnsatisfiable},
		{"bytes=-5", 0, span{}, rangeUnsatisfiable},
		{"bytes=0-", 0, span{}, rangeUnsatisfiable},
		{"bytes=0-1,5-6", size, span{}, rangeMulti},
		{"bytes=0-1,-1", size, span{}, rangeMulti},
		{"bytes=0-1,2000-3000", size, span{0, 2}, rangeSingle},
		{"bytes=2000-,3000-", size, span{}, rangeUnsatisfiable},
		{"items=0-5", size, span{}, rangeNone},
		{"bytes", size, span{}, rangeInvalid},
		{"bytes=", size, span{}, rangeInvalid},
		{"bytes=,", size, span{}, rangeInvalid},
		{"bytes=5", size, span{}, rangeInvalid},
		{"bytes=a-b", size, span{}, rangeInvalid},
		{"bytes=5-4", size, span{}, rangeInvalid},
		{"bytes=-", size, span{}, rangeInvalid},
		{"bytes=+1-2", size, span{}, rangeInvalid},
		{"bytes=1--2", size, span{}, rangeInvalid},
		{"bytes=0-1,x", size, span{}, rangeInvalid},
		{"bytes=0x10-", size, span{}, rangeInvalid},
		{"bytes=1 2-3", size, span{}, rangeInvalid},
	}
	for _, tc := range tests {
		got, kind := parseRange(tc.h, tc.size)
		if kind != tc.kind || got != tc.want {
			t.Errorf("parseRange(%q, %d) = %v %v, want %v %v", tc.h, tc.size, got, kind, tc.want, tc.kind)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=-5", "bytes=1-,2-3", "bytes=99999999999999999999-", "x=1"} {
		f.Add(s, int64(1000))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
			if size < 0 {
				size = 0
			}
		}
		s, kind := parseRange(h, size)
		if kind == rangeSingle {
			if s.length <= 0 || s.start < 0 || s.start+s.length > size {
				t.Fatalf("parseRange(%q, %d) = %+v outside the representation", h, size, s)
			}
		} else if s != (span{}) {
			t.Fatalf("parseRange(%q, %d) = %+v with kind %v", h, size, s, kind)
		}
	})
}

func TestContentRange(t *testing.T) {
	if got := contentRange(span{0, 1}, 10); got != "bytes 0-0/10" {
		t.Errorf("contentRange = %q", got)
	}
	if got := contentRange(span{5, 5}, 10); got != "bytes 5-9/10" {
		t.Errorf("contentRange = %q", got)
	}
	if got := unsatisfiedRange(10); got != "bytes */10" {
		t.Errorf("unsatisfiedRange = %q", got)
	}
}

func TestQuoteETag(t *testing.T) {
	for in, want := range map[string]string{
		"abc":      `"abc"`,
		`"abc"`:    `"abc"`,
		`W/"abc"`:  `"abc"`,
		"":         `""`,
		"0123beef": `"0123beef"`,
	} {
		if got := quoteETag(in); got != want {
			t.Errorf("quoteETag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckConditions(t *testing.T) {
	const etag = `"abc"`
	tests := []struct {
		name   string
		method string
		hdr    map[string]string
		want   precondition
	}{
		{"none", "GET", nil, condProceed},
		{"inm match", "GET", map[string]string{"If-None-Match": `"abc"`}, condNotModified},
		{"inm weak match", "HEAD", map[string]string{"If-None-Match": `W/"abc"`}, condNotModified},
		{"inm list", "GET", map[string]string{"If-None-Match": `"x", "abc"`}, condNotModified},
		{"inm star", "GET", map[string]string{"If-None-Match": `*`}, condNotModified},
		{"inm other", "GET", map[string]string{"If-None-Match": `"abd"`}, condProceed},
		{"inm unquoted", "GET", map[string]string{"If-None-Match": `abc`}, condProceed},
		{"inm garbage then match", "GET", map[string]string{"If-None-Match": `junk, "abc"`}, condNotModified},
		{"inm unterminated", "GET", map[string]string{"If-None-Match": `"abc`}, condProceed},
		{"im match", "GET", map[string]string{"If-Match": `"abc"`}, condProceed},
		{"im star", "GET", map[string]string{"If-Match": `*`}, condProceed},
		{"im weak never", "GET", map[string]string{"If-Match": `W/"abc"`}, condFailed},
		{"im other", "GET", map[string]string{"If-Match": `"zzz"`}, condFailed},
		{"if-range match", "GET", map[string]string{"Range": "bytes=0-1", "If-Range": `"abc"`}, condProceed},
		{"if-range other", "GET", map[string]string{"Range": "bytes=0-1", "If-Range": `"zzz"`}, condIgnoreRange},
		{"if-range weak", "GET", map[string]string{"Range": "bytes=0-1", "If-Range": `W/"abc"`}, condIgnoreRange},
		{"if-range date", "GET", map[string]string{"Range": "bytes=0-1", "If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"}, condIgnoreRange},
		{"if-range without range", "GET", map[string]string{"If-Range": `"zzz"`}, condProceed},
		{"inm beats if-range", "GET", map[string]string{"Range": "bytes=0-1", "If-Range": `"zzz"`, "If-None-Match": `"abc"`}, condNotModified},
	}
	for _, tc := range tests {
		h := http.Header{}
		for k, v := range tc.hdr {
			h.Set(k, v)
		}
		if got := checkConditions(h, tc.method, etag); got != tc.want {
			t.Errorf("%s: checkConditions = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestContentType(t *testing.T) {
	for name, want := range map[string]string{
		"model.safetensors": "application/octet-stream",
		"config.json":       "application/json",
		"CONFIG.JSON":       "application/json",
		"noext":             "application/octet-stream",
		"a/b/page.html":     "text/html; charset=utf-8",
	} {
		if got := contentType(name); got != want {
			t.Errorf("contentType(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestContentDisposition(t *testing.T) {
	tests := map[string]string{
		"model.safetensors": `attachment; filename="model.safetensors"; filename*=UTF-8''model.safetensors`,
		"a b.txt":           `attachment; filename="a b.txt"; filename*=UTF-8''a%20b.txt`,
		`q"uo\te%.bin`:      `attachment; filename="q_uo_te_.bin"; filename*=UTF-8''q%22uo%5Cte%25.bin`,
		"é.txt":             `attachment; filename="__.txt"; filename*=UTF-8''%C3%A9.txt`,
		"x\r\ny":            `attachment; filename="x__y"; filename*=UTF-8''x%0D%0Ay`,
	}
	for in, want := range tests {
		got := contentDisposition("attachment", in)
		if got != want {
			t.Errorf("contentDisposition(%q) = %q, want %q", in, got, want)
		}
		if strings.ContainsAny(got, "\r\n") {
			t.Errorf("contentDisposition(%q) has a line break", in)
		}
	}
}

// Files a browser could run (HTML, SVG, XML, scripts, anything unknown) are
// attachments even on resolve URLs; plain data keeps the route's
// disposition. Every file answer is sandboxed.
func TestSetRepresentation(t *testing.T) {
	tests := []struct {
		name, disposition, want string
	}{
		{"page.html", "inline", "attachment"},
		{"page.HTM", "inline", "attachment"},
		{"logo.svg", "inline", "attachment"},
		{"feed.xml", "inline", "attachment"},
		{"page.xhtml", "inline", "attachment"},
		{"app.js", "inline", "attachment"},
		{"app.mjs", "inline", "attachment"},
		{"doc.pdf", "inline", "attachment"},
		{"style.css", "inline", "attachment"},
		{"model.safetensors", "inline", "inline"}, // octet-stream: downloaded, never run
		{"config.json", "inline", "inline"},
		{"notes.txt", "inline", "inline"},
		{"img.png", "inline", "inline"},
		{"config.json", "attachment", "attachment"},
	}
	for _, tc := range tests {
		h := http.Header{}
		setRepresentation(h, tc.name, tc.disposition)
		disp, _, _ := strings.Cut(h.Get("Content-Disposition"), ";")
		if disp != tc.want || h.Get("Content-Security-Policy") != "sandbox" {
			t.Errorf("%s (%s): Content-Type %q, Content-Disposition %q, CSP %q; want %s", tc.name, tc.disposition,
				h.Get("Content-Type"), h.Get("Content-Disposition"), h.Get("Content-Security-Policy"), tc.want)
		}
	}
}
