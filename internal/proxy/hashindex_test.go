package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// A repo of 3,000 files listed 100 to a page, as in issue 10: a listing
// costs 31 tree requests (the repo also holds a .gitattributes).
const (
	bigRepoFiles = 3000
	bigRepoPage  = 100
)

var repoBig = hub.Repo{Type: hub.Model, ID: "org/big"}

// gate holds the Hub's tree answers until it is opened.
type gate struct {
	next http.RoundTripper
	mu   sync.Mutex
	open chan struct{}
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	if ch != nil && strings.Contains(r.URL.Path, "/tree/") {
		select {
		case <-ch:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return g.next.RoundTrip(r)
}

func (g *gate) hold() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *gate) release() {
	g.mu.Lock()
	close(g.open)
	g.open = nil
	g.mu.Unlock()
}

// bigRepoEnv is an engine in front of a fakehub holding org/big: 2,995
// small plain files and 5 Xet files, and org/secret, private to hf_reader,
// with one Xet file. Tree requests go through g. pages is the number of
// pages of a listing of org/big.
func bigRepoEnv(t *testing.T, tweak ...func(*Config)) (e *testEnv, g *gate, xet map[string]fakehub.File, pages int) {
	t.Helper()
	e = newEnv(t, fakehub.Config{TreePageSize: bigRepoPage}, tweak...)
	g = &gate{next: http.DefaultTransport}
	e.hc.HTTP = &http.Client{Transport: g}
	e.repo(t, fakehub.RepoSpec{ID: "org/big"})
	var specs []fakehub.FileSpec
	for i := range bigRepoFiles {
		spec := fakehub.FileSpec{Path: fmt.Sprintf("f%04d.txt", i), Content: strings.NewReader(fmt.Sprint(i)), Storage: fakehub.StoragePlain}
		if i%600 == 0 {
			spec = fakehub.FileSpec{Path: fmt.Sprintf("f%04d.bin", i), Content: bytes.NewReader(randomData(uint64(i), 10000+i)), Storage: fakehub.StorageXet}
		}
		specs = append(specs, spec)
	}
	if _, err := e.fh.Commit(context.Background(), "org/big", fakehub.CommitSpec{Title: "many files", Files: specs}); err != nil {
		t.Fatal(err)
	}
	e.repo(t, fakehub.RepoSpec{ID: "org/secret", Private: true, Readers: []string{"hf_reader"}})
	e.add(t, "org/secret", "s.bin", randomData(99, 5000), fakehub.StorageXet)
	e.fh.AddToken("hf_user")
	xet = map[string]fakehub.File{}
	for _, id := range []string{"org/big", "org/secret"} {
		files, err := e.fh.Files(id, "main")
		if err != nil {
			t.Fatal(err)
		}
		if id == "org/big" {
			pages = (len(files) + bigRepoPage - 1) / bigRepoPage // no folders
		}
		for _, f := range files {
			if f.Xet {
				xet[f.Path] = f
			}
		}
	}
	if len(xet) != 6 {
		t.Fatalf("%d Xet files in the fixture, want 6", len(xet))
	}
	if pages <= bigRepoFiles/bigRepoPage {
		t.Fatalf("org/big lists in %d pages", pages)
	}
	e.fh.ResetStats()
	return e, g, xet, pages
}

// treeRequests counts the tree listing requests fakehub answered.
// treeRequests counts the listing pages fakehub served, waiting (5 s at
// most) for it to reach want: fakehub logs a request once its handler
// has returned, which can be just after the client read what it needed.
func treeRequests(fh *fakehub.Hub, want int) int {
	count := func() int {
		n := 0
		for _, r := range fh.Requests() {
			if r.Class == fakehub.ClassAPI && strings.Contains(r.Path, "/tree/") {
				n++
			}
		}
		return n
	}
	n := count()
	for deadline := time.Now().Add(5 * time.Second); n < want && time.Now().Before(deadline); n = count() {
		time.Sleep(5 * time.Millisecond)
	}
	return n
}

func randomHash(seed uint64) merklehash.Hash {
	var h merklehash.Hash
	copy(h[:], randomData(seed, len(h)))
	return h
}

// One lookup lists the repo once; further lookups by the same token in the
// same repo and revision, of the same hash or of others, found or not, ask
// the Hub nothing; another token lists again.
func TestStatHashListsOnceAndRemembers(t *testing.T) {
	e, _, xet, pages := bigRepoEnv(t)
	_, err := e.eng.StatHash(context.Background(), "", repoBig, "main", randomHash(1))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("miss: %v", err)
	}
	if n := treeRequests(e.fh, pages); n != pages {
		t.Fatalf("one miss made %d tree requests, want %d (one listing)", n, pages)
	}
	if _, err := e.eng.StatHash(context.Background(), "", repoBig, "main", randomHash(1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("repeated miss: %v", err)
	}
	if _, err := e.eng.StatHash(context.Background(), "", repoBig, "", randomHash(2)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other miss: %v", err)
	}
	want := xet["f0600.bin"]
	m, err := e.eng.StatHash(context.Background(), "", repoBig, "main", want.XetHash)
	if err != nil {
		t.Fatal(err)
	}
	if m.Path != want.Path || m.Size != want.Size || m.ETag != want.SHA256 || *m.XetHash != want.XetHash {
		t.Fatalf("hit: %+v, want %+v", m, want)
	}
	if n := treeRequests(e.fh, pages); n != pages {
		t.Fatalf("%d tree requests after a repeated miss, another miss and a hit, want still %d", n, pages)
	}
	// The listing belongs to the anonymous caller: a user lists for
	// himself, once.
	for range 2 {
		if _, err := e.eng.StatHash(context.Background(), "hf_user", repoBig, "main", randomHash(1)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("user miss: %v", err)
		}
	}
	if n := treeRequests(e.fh, 2*pages); n != 2*pages {
		t.Fatalf("%d tree requests, want %d (one listing per token)", n, 2*pages)
	}
}

// Concurrent lookups share one listing, whatever hashes they look for.
func TestStatHashConcurrentMissesShareOneListing(t *testing.T) {
	e, g, _, pages := bigRepoEnv(t)
	g.hold()
	const callers = 10
	errs := make(chan error, callers)
	for i := range callers {
		go func() {
			_, err := e.eng.StatHash(context.Background(), "", repoBig, "main", randomHash(uint64(100+i)))
			errs <- err
		}()
	}
	// Every caller waits on the listing in flight before any page comes.
	key := hashIndexKey("", repoBig, "main")
	waitUntil(t, func() bool {
		e.eng.hashes.mu.Lock()
		defer e.eng.hashes.mu.Unlock()
		l := e.eng.hashes.m[key]
		return l != nil && l.waiters == callers
	})
	g.release()
	for range callers {
		if err := <-errs; !errors.Is(err, ErrNotFound) {
			t.Fatalf("miss: %v", err)
		}
	}
	if n := treeRequests(e.fh, pages); n != pages {
		t.Fatalf("%d concurrent misses made %d tree requests, want %d (one listing)", callers, n, pages)
	}
}

// A caller that gives up alone stops the listing; the next lookup lists
// afresh instead of joining a cancelled one.
func TestStatHashAbandonedListing(t *testing.T) {
	e, g, _, _ := bigRepoEnv(t)
	g.hold()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.eng.StatHash(ctx, "", repoBig, "main", randomHash(3))
		done <- err
	}()
	key := hashIndexKey("", repoBig, "main")
	waitUntil(t, func() bool {
		e.eng.hashes.mu.Lock()
		defer e.eng.hashes.mu.Unlock()
		l := e.eng.hashes.m[key]
		return l != nil && l.waiters == 1
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned lookup: %v", err)
	}
	g.release()
	if _, err := e.eng.StatHash(context.Background(), "", repoBig, "main", randomHash(3)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("next lookup: %v", err)
	}
}

// A repo listing more entries than HashListMax costs a bounded number of
// pages and a clear error, remembered like any answer.
func TestStatHashBoundedListing(t *testing.T) {
	const max = 500
	e, _, xet, _ := bigRepoEnv(t, func(c *Config) { c.HashListMax = max })
	for range 3 {
		_, err := e.eng.StatHash(context.Background(), "", repoBig, "main", xet["f0000.bin"].XetHash)
		if !errors.Is(err, ErrListingTooLarge) || !strings.Contains(err.Error(), "more than 500 entries") {
			t.Fatalf("lookup in a repo past the bound: %v", err)
		}
	}
	if n := treeRequests(e.fh, max/bigRepoPage+1); n != max/bigRepoPage+1 {
		t.Fatalf("%d tree requests, want %d (the pages up to the bound, once)", n, max/bigRepoPage+1)
	}
	// A small repo is still found.
	if _, err := e.eng.StatHash(context.Background(), "hf_reader", hub.Repo{Type: hub.Model, ID: "org/secret"}, "main", xet["s.bin"].XetHash); err != nil {
		t.Fatal(err)
	}
}

// What a listing made with one token found never answers another token:
// callers without access get the Hub's refusal, each time, not the
// remembered answer.
func TestStatHashKeepsAccessPerToken(t *testing.T) {
	e, _, xet, _ := bigRepoEnv(t)
	secret := hub.Repo{Type: hub.Model, ID: "org/secret"}
	h := xet["s.bin"].XetHash
	if _, err := e.eng.StatHash(context.Background(), "hf_reader", secret, "main", h); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"", "hf_user", "hf_invalid", "", "hf_user"} {
		var he *hub.Error
		if _, err := e.eng.StatHash(context.Background(), tok, secret, "main", h); !errors.As(err, &he) {
			t.Fatalf("token %q: %v, want the Hub's refusal", tok, err)
		}
	}
	if n := treeRequests(e.fh, 6); n != 6 {
		t.Fatalf("%d tree requests, want 6 (refusals are not remembered)", n)
	}
}

// waitUntil polls cond until it holds (10 s at most).
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}
