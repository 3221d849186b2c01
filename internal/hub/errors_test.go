package hub

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// An error answer keeps the X-Repo-Commit the Hub sent with it, and only
// when it is a commit id.
func TestErrorCommit(t *testing.T) {
	tests := []struct {
		name   string
		header string // X-Repo-Commit sent; "" = none
		want   string
	}{
		{"sha1", commit, commit},
		{"sha256", xetHashStr, xetHashStr},
		{"padded", " " + commit + " ", commit},
		{"none", "", ""},
		{"not hex", "main", ""},
		{"too long", commit + commit, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newHub(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.header != "" {
					w.Header().Set("X-Repo-Commit", tc.header)
				}
				w.Header().Set("X-Error-Code", "EntryNotFound")
				w.WriteHeader(http.StatusNotFound)
			})
			_, err := c.Resolve(context.Background(), "", Repo{Model, "a/b"}, "main", "missing.bin")
			var he *Error
			if !errors.As(err, &he) || he.Status != 404 || he.Code != "EntryNotFound" {
				t.Fatalf("err = %#v", err)
			}
			if he.Commit != tc.want {
				t.Errorf("Commit = %q, want %q", he.Commit, tc.want)
			}
		})
	}
}

// Against fakehub: a missing path of a revision that exists carries the
// revision's commit (resolve and tree); a missing revision carries none.
func TestErrorCommitFakehub(t *testing.T) {
	fh, err := fakehub.New(fakehub.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fh)
	defer srv.Close()
	fh.SetPublicURL(srv.URL)
	if err := fh.CreateRepo(fakehub.RepoSpec{ID: "org/m"}); err != nil {
		t.Fatal(err)
	}
	f, err := fh.AddFile(context.Background(), "org/m", "dir/config.json", bytes.NewReader([]byte(`{"a":1}`)))
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{BaseURL: srv.URL}
	ctx := context.Background()
	repo := Repo{Model, "org/m"}

	_, err = c.Resolve(ctx, "", repo, "main", "missing.bin")
	var he *Error
	if !errors.As(err, &he) || he.Status != 404 || he.Code != "EntryNotFound" || he.Commit != f.Commit {
		t.Errorf("missing path: %#v, want commit %s", err, f.Commit)
	}
	_, err = c.List(ctx, "", repo, "main", "nodir", false)
	if !errors.As(err, &he) || he.Code != "EntryNotFound" || he.Commit != f.Commit {
		t.Errorf("missing tree path: %#v, want commit %s", err, f.Commit)
	}
	_, err = c.Resolve(ctx, "", repo, "nobranch", "dir/config.json")
	if !errors.As(err, &he) || he.Code != "RevisionNotFound" || he.Commit != "" {
		t.Errorf("missing revision: %#v, want no commit", err)
	}
	if m, err := c.Resolve(ctx, "", repo, "main", "dir/config.json"); err != nil || m.Commit != f.Commit {
		t.Errorf("existing path: %+v %v", m, err)
	}
}
