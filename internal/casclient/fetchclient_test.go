package casclient

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestFetchClientRedirects checks the redirect rule of transfer clients:
// an Authorization header set on the first request does not reach the
// host a redirect points to, and a sixth redirect is refused.
func TestFetchClientRedirects(t *testing.T) {
	var gotAuth []string
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
	}))
	defer target.Close()
	var first string
	hops := 0
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hops == 0 {
			first = r.Header.Get("Authorization")
		}
		hops++
		if r.URL.Path == "/loop" {
			http.Redirect(w, r, "/loop", http.StatusFound)
			return
		}
		http.Redirect(w, r, target.URL+"/data", http.StatusFound)
	}))
	defer origin.Close()

	c := FetchClient(http.DefaultTransport)
	req, _ := http.NewRequest("GET", origin.URL+"/presigned", nil)
	req.Header.Set("Authorization", "Bearer secret")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if first != "Bearer secret" || len(gotAuth) != 1 || gotAuth[0] != "" {
		t.Fatalf("origin saw %q, redirect target saw %q: want the header at the origin only", first, gotAuth)
	}

	hops = 0
	if _, err := c.Get(origin.URL + "/loop"); err == nil || hops != 5 {
		t.Fatalf("redirect loop: %v after %d requests, want an error after 5", err, hops)
	}
}
