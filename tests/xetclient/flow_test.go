package xetclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// forTargets runs f once per target, each in a subtest.
func forTargets(t *testing.T, f func(t *testing.T, tg target)) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) { f(t, tg) })
	}
}

func mustHash(t *testing.T, s string) merklehash.Hash {
	t.Helper()
	h, err := merklehash.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestResolveFlow: HEAD resolve, token route, v2 reconstruction, xorb
// ranges; every file of a repo whose files share chunks comes back whole.
func TestResolveFlow(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		c, _ := newClient(tg, "")
		for _, p := range dedupFiles {
			fi, err := c.Resolve(ctx, "", dedupRepo, "main", p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size != int64(len(content[dedupRepo+":"+p])) {
				t.Errorf("%s: X-Linked-Size %d, want %d", p, fi.Size, len(content[dedupRepo+":"+p]))
			}
			if !strings.HasPrefix(fi.RefreshRoute, tg.endpoint+"/api/models/"+dedupRepo+"/xet-read-token/") {
				t.Errorf("%s: token route %s is not the endpoint's", p, fi.RefreshRoute)
			}
			got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, nil)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if !bytes.Equal(got, content[dedupRepo+":"+p]) {
				t.Fatalf("%s: %d bytes differ from the %d uploaded", p, len(got), len(content[dedupRepo+":"+p]))
			}
		}
		// One token for the repo, reused across files; v2 answered.
		if n := c.TokenFetches.Load(); n != 1 {
			t.Errorf("token fetched %d times, want 1", n)
		}
		if n := c.V1Fallbacks.Load(); n != 0 {
			t.Errorf("%d fallbacks to v1 although v2 is served", n)
		}
		if countURLs(c, "/v2/reconstructions/") != len(dedupFiles) || countURLs(c, "/resolve/") != len(dedupFiles) {
			t.Errorf("URLs: %d reconstructions, %d resolves", countURLs(c, "/v2/reconstructions/"), countURLs(c, "/resolve/"))
		}
		if c.XorbFetches.Load() == 0 {
			t.Error("no xorb range fetched")
		}
		if tg.viaProxy {
			assertOrigin(t, c, tg.endpoint)
		}
	})
}

// TestTreeListingFlow: an entry with xetHash in the tree goes straight to
// the token route, without a HEAD (huggingface_hub since 1.22).
func TestTreeListingFlow(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		c, _ := newClient(tg, "")
		hashes := treeXetHashes(t, c, dedupRepo, "main")
		route := c.TokenRoute("model", dedupRepo, "main")
		for _, p := range dedupFiles {
			if hashes[p] == "" {
				t.Fatalf("tree lists no xetHash for %s", p)
			}
			got, err := c.Download(ctx, route, mustHash(t, hashes[p]), nil)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if !bytes.Equal(got, content[dedupRepo+":"+p]) {
				t.Fatalf("%s: bytes differ", p)
			}
		}
		if n := countURLs(c, "/resolve/"); n != 0 {
			t.Errorf("%d resolve requests; the tree path needs none", n)
		}
		if tg.viaProxy {
			assertOrigin(t, c, tg.endpoint)
		}
	})
}

// TestRangedReconstruction: ranges that start and end inside chunks and
// xorbs, a one-byte range, the last byte, and a range past the end
// (clamped).
func TestRangedReconstruction(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		c, _ := newClient(tg, "")
		want := content[dedupRepo+":d.bin"]
		n := uint64(len(want))
		fi, err := c.Resolve(ctx, "", dedupRepo, "main", "d.bin")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []ByteRange{{0, 0}, {1, 100}, {70_000, 1_500_000}, {n / 2, n - 1}, {n - 1, n - 1}, {12345, n + 1000}} {
			got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, &r)
			if err != nil {
				t.Fatalf("%d-%d: %v", r.Start, r.End, err)
			}
			end := min(r.End, n-1)
			if !bytes.Equal(got, want[r.Start:end+1]) {
				t.Fatalf("%d-%d: %d bytes, not the file's %d", r.Start, r.End, len(got), end-r.Start+1)
			}
		}
		if tg.viaProxy {
			assertOrigin(t, c, tg.endpoint)
		}
	})
}

// TestV1Fallback: a CAS that answers 404 on /v2 is asked /v1.
func TestV1Fallback(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		hub.DisableV2(true)
		defer hub.DisableV2(false)
		n0 := len(hub.Requests())
		ctx := context.Background()
		c, _ := newClient(tg, "")
		fi, err := c.Resolve(ctx, "", dedupRepo, "main", "b.bin")
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content[dedupRepo+":b.bin"]) {
			t.Fatal("bytes differ")
		}
		if tg.viaProxy {
			// The proxy speaks v1 and v2 whatever its upstream serves: the
			// client's v2 query is answered, upstream was asked v1.
			assertOrigin(t, c, tg.endpoint)
			if c.V1Fallbacks.Load() != 0 {
				t.Errorf("the client fell back to v1 %d times", c.V1Fallbacks.Load())
			}
			upV1 := 0
			for _, r := range hub.Requests()[n0:] {
				if strings.Contains(r.Path, "/v1/reconstructions/") && r.Status == 200 {
					upV1++
				}
			}
			if upV1 == 0 {
				t.Error("the proxy never asked upstream /v1")
			}
			return
		}
		if c.V1Fallbacks.Load() != 1 || countURLs(c, "/v1/reconstructions/") != 1 {
			t.Errorf("fallbacks %d, v1 URLs %d; want 1 and 1", c.V1Fallbacks.Load(), countURLs(c, "/v1/reconstructions/"))
		}
	})
}

// TestTokenRefreshNearExpiry: a cached token that expires within the
// margin is fetched again through the same route before the next query.
func TestTokenRefreshNearExpiry(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		c, _ := newClient(tg, "")
		fi, err := c.Resolve(ctx, "", dedupRepo, "main", "a.bin")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, &ByteRange{0, 999}); err != nil {
			t.Fatal(err)
		}
		_, _, exp, err := c.AccessToken(ctx, fi.RefreshRoute)
		if err != nil {
			t.Fatal(err)
		}
		if c.TokenFetches.Load() != 1 {
			t.Fatalf("token fetched %d times, want 1", c.TokenFetches.Load())
		}
		// The client's clock reaches 30 s before exp: inside the 60 s margin.
		c.Now = func() time.Time { return exp.Add(-30 * time.Second) }
		got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, &ByteRange{1000, 1999})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content[dedupRepo+":a.bin"][1000:2000]) {
			t.Fatal("bytes differ")
		}
		if c.TokenFetches.Load() != 2 {
			t.Errorf("token fetched %d times, want 2 (one refresh)", c.TokenFetches.Load())
		}
		if n := countURLs(c, "/xet-read-token/"); n != 2 {
			t.Errorf("%d token route requests, want 2", n)
		}
	})
}

// TestExpiredXorbURL: xorb URLs that expired between the reconstruction
// and the fetch answer 403; the client asks for the reconstruction again
// and finishes with fresh URLs.
func TestExpiredXorbURL(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		endpoint, stale, fresh := urlExpiry(t, tg)
		tg.endpoint = endpoint
		c, _ := newClient(tg, "")
		fi, err := c.Resolve(ctx, "", dedupRepo, "main", "c.txt")
		if err != nil {
			t.Fatal(err)
		}
		stale()
		defer fresh()
		first := true
		c.AfterReconstruction = func() {
			if first {
				first = false
				fresh() // only the first answer's URLs are stale
			}
		}
		got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content[dedupRepo+":c.txt"]) {
			t.Fatal("bytes differ")
		}
		if c.Requeries.Load() < 1 || c.Reconstructions.Load() != c.Requeries.Load()+1 {
			t.Errorf("requeries %d, reconstructions %d; want at least one requery", c.Requeries.Load(), c.Reconstructions.Load())
		}
		if tg.viaProxy {
			assertOrigin(t, c, tg.endpoint)
		}
	})
}

// TestRequeryBounded: xorb URLs that are always refused end the download
// with an error after a bounded number of reconstructions.
func TestRequeryBounded(t *testing.T) {
	hub.SetURLTTL(-time.Minute)
	defer hub.SetURLTTL(time.Hour)
	c, _ := newClient(fakehubTarget(), "")
	ctx := context.Background()
	fi, err := c.Resolve(ctx, "", dedupRepo, "main", "a.bin")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Download(ctx, fi.RefreshRoute, fi.Hash, &ByteRange{0, 10})
	if !errors.Is(err, errForbidden) {
		t.Fatalf("err = %v, want a 403", err)
	}
	if n := c.Reconstructions.Load(); n != maxRequeries+1 {
		t.Errorf("%d reconstructions, want %d", n, maxRequeries+1)
	}
}

// TestParallelFetches: 8 and 16 range fetches run at once (a transport
// holds them until that many are in flight).
func TestParallelFetches(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		for _, par := range []int{8, 16} {
			t.Run(fmt.Sprint(par), func(t *testing.T) {
				ctx := context.Background()
				c, rec := newClient(tg, "")
				c.Parallel = par
				fi, err := c.Resolve(ctx, "", dedupRepo, "main", "d.bin")
				if err != nil {
					t.Fatal(err)
				}
				plan, err := c.Reconstruction(ctx, fi.RefreshRoute, fi.Hash, nil)
				if err != nil {
					t.Fatal(err)
				}
				ranges := 0
				for _, fs := range plan.Xorbs {
					for _, f := range fs {
						ranges += len(f.Ranges)
					}
				}
				if ranges < par {
					t.Fatalf("only %d fetch ranges; the test needs %d", ranges, par)
				}
				rec.gate, rec.gateAt = make(chan struct{}), par
				got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, content[dedupRepo+":d.bin"]) {
					t.Fatal("bytes differ")
				}
				if rec.maxXorb != par {
					t.Errorf("at most %d fetches in flight, want %d", rec.maxXorb, par)
				}
			})
		}
	})
}

// TestPrivateRepo: a reader's token carries the whole flow; without a
// token both resolve and the token route are refused.
func TestPrivateRepo(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		c, _ := newClient(tg, readerToken)
		fi, err := c.Resolve(ctx, "", privateRepo, "main", "p.bin")
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content[privateRepo+":p.bin"]) {
			t.Fatal("bytes differ")
		}
		anon, _ := newClient(tg, "")
		var se *StatusError
		if _, err := anon.Resolve(ctx, "", privateRepo, "main", "p.bin"); !errors.As(err, &se) || (se.Status != 401 && se.Status != 404) {
			t.Errorf("anonymous resolve: %v, want 401 or 404", err)
		}
		if _, err := anon.Download(ctx, fi.RefreshRoute, fi.Hash, nil); !errors.As(err, &se) || se.Op != "token" || (se.Status != 401 && se.Status != 404) {
			t.Errorf("anonymous token route: %v, want 401 or 404", err)
		}
		if tg.viaProxy {
			assertOrigin(t, c, tg.endpoint)
		}
	})
}

// TestDownloadToSegments: a download in ranged segments (segment
// boundaries inside chunks) writes the whole file.
func TestDownloadToSegments(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		c, _ := newClient(tg, "")
		fi, err := c.Resolve(ctx, "", dedupRepo, "main", "b.bin")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := c.DownloadTo(ctx, fi.RefreshRoute, fi.Hash, uint64(fi.Size), 700_001, &buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), content[dedupRepo+":b.bin"]) {
			t.Fatal("bytes differ")
		}
		if n := c.Reconstructions.Load(); n != int64((fi.Size+700_000)/700_001) {
			t.Errorf("%d reconstructions for %d segments", n, (fi.Size+700_000)/700_001)
		}
	})
}

// TestV1Client: a client that only knows /v1 gets the same bytes.
func TestV1Client(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		c, _ := newClient(tg, "")
		c.V1Only = true
		fi, err := c.Resolve(ctx, "", dedupRepo, "main", "d.bin")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []*ByteRange{nil, {5000, 1_234_567}} {
			got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, r)
			if err != nil {
				t.Fatal(err)
			}
			want := content[dedupRepo+":d.bin"]
			if r != nil {
				want = want[r.Start : r.End+1]
			}
			if !bytes.Equal(got, want) {
				t.Fatal("bytes differ")
			}
		}
		if n := countURLs(c, "/v1/reconstructions/"); n != 2 || countURLs(c, "/v2/") != 0 {
			t.Errorf("%d v1 and %d v2 queries, want 2 and 0", n, countURLs(c, "/v2/"))
		}
		if tg.viaProxy {
			assertOrigin(t, c, tg.endpoint)
		}
	})
}

// TestMultiRangeEntry: e.bin's reconstruction names two ranges of one
// xorb under one URL; the client fetches each range on its own with that
// URL, and gets e's bytes.
func TestMultiRangeEntry(t *testing.T) {
	forTargets(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		c, _ := newClient(tg, "")
		fi, err := c.Resolve(ctx, "", dedupRepo, "main", "e.bin")
		if err != nil {
			t.Fatal(err)
		}
		plan, err := c.Reconstruction(ctx, fi.RefreshRoute, fi.Hash, nil)
		if err != nil {
			t.Fatal(err)
		}
		multi := 0
		for _, fs := range plan.Xorbs {
			for _, f := range fs {
				if len(f.Ranges) > 1 {
					multi++
				}
			}
		}
		if multi == 0 {
			t.Fatalf("no fetch entry with several ranges: %d terms", len(plan.Terms))
		}
		got, err := c.Download(ctx, fi.RefreshRoute, fi.Hash, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content[dedupRepo+":e.bin"]) {
			t.Fatal("bytes differ")
		}
		if tg.viaProxy {
			assertOrigin(t, c, tg.endpoint)
		}
	})
}
