package server

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseDownload(t *testing.T) {
	tests := []struct {
		rest, query string
		want        *fileRef
		status      int
	}{
		{"org/model/config.json", "", &fileRef{"model", "org/model", "main", "config.json"}, 0},
		{"org/model/sub/dir/w.bin", "revision=v1.0", &fileRef{"model", "org/model", "v1.0", "sub/dir/w.bin"}, 0},
		{"datasets/org/data/train.parquet", "revision=refs/pr/1", &fileRef{"dataset", "org/data", "refs/pr/1", "train.parquet"}, 0},
		{"spaces/org/app/app.py", "", &fileRef{"space", "org/app", "main", "app.py"}, 0},
		{"org/model/a%20b.txt", "", &fileRef{"model", "org/model", "main", "a b.txt"}, 0},
		{"org/model", "", nil, 404},
		{"org/model/", "", nil, 400},
		{"org/model/../x", "", nil, 400},
		{"org/model/%2E%2E/x", "", nil, 400},
		{"org/model/a%2Fb", "", nil, 400},
		{"org/model/a%5Cb", "", nil, 400},
		{"org/model/a%00b", "", nil, 400},
		{"org/model//x", "", nil, 400},
		{"org/model/./x", "", nil, 400},
		{"org/mo%2Fdel/x", "", nil, 400},
		{"o$rg/model/x", "", nil, 400},
		{"org/..model/x", "", nil, 400},
		{"org/model/x", "revision=..", nil, 400},
		{"org/model/x", "revision=refs/../main", nil, 400},
		{"org/model/x", "revision=a%0Ab", nil, 400},
		{"org/model/x%zz", "", nil, 400},
	}
	for _, tc := range tests {
		q, _ := url.ParseQuery(tc.query)
		got, err := parseDownload(tc.rest, q)
		if tc.want != nil {
			if err != nil || *got != *tc.want {
				t.Errorf("parseDownload(%q, %q) = %+v, %v; want %+v", tc.rest, tc.query, got, err, tc.want)
			}
			continue
		}
		if err == nil || err.Status != tc.status {
			t.Errorf("parseDownload(%q, %q) = %+v, %v; want status %d", tc.rest, tc.query, got, err, tc.status)
		}
	}
}

func TestParseResolve(t *testing.T) {
	tests := []struct {
		p      string
		want   *fileRef
		ok     bool
		status int
	}{
		{"org/model/resolve/main/config.json", &fileRef{"model", "org/model", "main", "config.json"}, true, 0},
		{"gpt2/resolve/main/config.json", &fileRef{"model", "gpt2", "main", "config.json"}, true, 0},
		{"org/model/resolve/refs%2Fpr%2F1/a/b.bin", &fileRef{"model", "org/model", "refs/pr/1", "a/b.bin"}, true, 0},
		{"datasets/org/d/resolve/0123456789abcdef0123456789abcdef01234567/x.csv", &fileRef{"dataset", "org/d", "0123456789abcdef0123456789abcdef01234567", "x.csv"}, true, 0},
		{"spaces/org/s/resolve/main/app.py", &fileRef{"space", "org/s", "main", "app.py"}, true, 0},
		{"org/model/resolve/main", nil, false, 0},
		{"org/model/tree/main/x", nil, false, 0},
		{"favicon.ico", nil, false, 0},
		{"org/model/resolve/main/%2E%2E/x", nil, true, 400},
		{"org/model/resolve/main/a%2Fb", nil, true, 400},
		{"org/model/resolve/..%2Fmain/x", nil, true, 400},
		{"org/model/resolve/main/..", nil, true, 400},
		{"or%2Fg/model/resolve/main/x", nil, true, 400},
	}
	for _, tc := range tests {
		got, ok, err := parseResolve(tc.p)
		if ok != tc.ok {
			t.Errorf("parseResolve(%q) ok = %v, want %v", tc.p, ok, tc.ok)
			continue
		}
		if tc.want != nil {
			if err != nil || *got != *tc.want {
				t.Errorf("parseResolve(%q) = %+v, %v; want %+v", tc.p, got, err, tc.want)
			}
		} else if tc.status != 0 && (err == nil || err.Status != tc.status) {
			t.Errorf("parseResolve(%q) = %+v, %v; want status %d", tc.p, got, err, tc.status)
		}
	}
}

func TestParseDownloadHash(t *testing.T) {
	const h = "63bed80836ee0758c8fd4f8975d59bb0b864263ee2753547c358e8a37cde8758"
	q := func(s string) url.Values { v, _ := url.ParseQuery(s); return v }
	got, err := parseDownloadHash(h, q("repo=org/m&repo_type=datasets&revision=v2&filename=dir/w.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if got.hash.String() != h || got.repoType != "dataset" || got.repoID != "org/m" || got.revision != "v2" || got.filename != "w.safetensors" {
		t.Errorf("parseDownloadHash = %+v", got)
	}
	got, err = parseDownloadHash(strings.ToUpper(h), q("repo=gpt2"))
	if err != nil || got.filename != h || got.revision != "main" || got.repoType != "model" {
		t.Errorf("parseDownloadHash upper = %+v, %v", got, err)
	}
	for _, tc := range []struct{ rest, query, code string }{
		{h[:63], "repo=a/b", "InvalidHash"},
		{h + "0", "repo=a/b", "InvalidHash"},
		{strings.Repeat("g", 64), "repo=a/b", "InvalidHash"},
		{h + "/x", "repo=a/b", "InvalidHash"},
		{"", "repo=a/b", "InvalidHash"},
		{h, "", "MissingRepo"},
		{h, "repo=a/b/c", "InvalidRepo"},
		{h, "repo=../b", "InvalidRepo"},
		{h, "repo=a/b&repo_type=bucket", "InvalidRepoType"},
		{h, "repo=a/b&revision=..", "InvalidRevision"},
		{h, "repo=a/b&filename=..", "InvalidFilename"},
	} {
		_, err := parseDownloadHash(tc.rest, q(tc.query))
		if err == nil || err.Status != 400 || err.Code != tc.code {
			t.Errorf("parseDownloadHash(%q, %q) = %v, want 400 %s", tc.rest, tc.query, err, tc.code)
		}
	}
}

func FuzzRoutes(f *testing.F) {
	for _, s := range []string{"org/model/resolve/main/x", "a/resolve/refs%2Fpr%2F1/b/c", "datasets/x/y/resolve/%2E%2E/z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		check := func(ref *fileRef) {
			for _, s := range strings.Split(ref.path, "/") {
				if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "\\\x00") {
					t.Fatalf("%q: unsafe path %q", p, ref.path)
				}
			}
			if strings.Count(ref.repoID, "/") > 1 || strings.Contains(ref.repoID, "..") {
				t.Fatalf("%q: unsafe repo %q", p, ref.repoID)
			}
		}
		if ref, ok, err := parseResolve(p); ok && err == nil {
			check(ref)
		}
		if ref, err := parseDownload(p, url.Values{}); err == nil {
			check(ref)
		}
	})
}
