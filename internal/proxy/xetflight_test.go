package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// flightEnv is a warm xetEnv (the engine knows the xorbs' manifests, so
// ranges are laid out as records) whose cache then lost every chunk: the
// requests for its range, one of several segments, miss the cache and go
// upstream.
type flightEnv struct {
	*xetEnv
	i, j   int    // the range: range j of fetch i
	want   []byte // its served bytes
	chunks int64  // decoded bytes of its chunks
	base   CacheStats
}

func newFlightEnv(t *testing.T) *flightEnv {
	t.Helper()
	x := newXetEnvOf(t, 64<<20, true, 16<<20, 12<<20)
	fe := &flightEnv{xetEnv: x, i: -1}
	var most uint32
	for i, f := range x.ans.Fetches {
		for j, rg := range f.Ranges {
			if n := rg.Chunks.End - rg.Chunks.Start; n > most {
				fe.i, fe.j, most = i, j, n
			}
		}
	}
	if most <= 2*segmentChunks {
		t.Fatalf("the longest range has %d chunks: want several segments, or the test tests little", most)
	}
	ctx := context.Background()
	for _, f := range x.ans.Fetches {
		m := x.eng.manifest(ctx, f.Xorb)
		if err := x.eng.cache.Delete(ctx, f.Xorb, 0, uint32(m.Len())); err != nil {
			t.Fatal(err)
		}
		if x.eng.manifest(ctx, f.Xorb) == nil {
			t.Fatal("the manifest went with the chunks")
		}
	}
	rg := fe.rng()
	fe.want = x.ref[xorbRangeKey{fe.i, fe.j}]
	for _, s := range x.eng.manifest(ctx, x.ans.Fetches[fe.i].Xorb).Sizes[rg.Chunks.Start:rg.Chunks.End] {
		fe.chunks += int64(s)
	}
	x.fh.ResetStats()
	fe.base = x.eng.CacheStats()
	return fe
}

func (fe *flightEnv) rng() CASRange { return fe.ans.Fetches[fe.i].Ranges[fe.j] }

// open opens the whole range; it has read its first chunk on return.
func (fe *flightEnv) open(t *testing.T, ctx context.Context) *xorbReader {
	t.Helper()
	f := fe.ans.Fetches[fe.i]
	rc, err := fe.eng.OpenXorbRange(ctx, XorbRange{Xorb: f.Xorb, UpstreamURL: f.UpstreamURL, Layout: f.Layout, Range: fe.rng()}, fe.rng().Served)
	if err != nil {
		t.Fatal(err)
	}
	return rc.(*xorbReader)
}

// followers reads the whole range n times at once, each answer checked;
// the channel gets one error (or nil) per reader.
func (fe *flightEnv) followers(ctx context.Context, n int) chan error {
	errs := make(chan error, n)
	for k := range n {
		go func() {
			got, err := fe.readRange(ctx, fe.i, fe.j, fe.rng().Served)
			if err == nil && !bytes.Equal(got, fe.want) {
				err = fmt.Errorf("reader %d: %d bytes differ from the range's %d", k, len(got), len(fe.want))
			}
			errs <- err
		}()
	}
	return errs
}

func (fe *flightEnv) joins() uint64 { return fe.eng.CacheStats().XorbJoins - fe.base.XorbJoins }

// fromUpstream and fromCache are the chunk bytes the engine decoded from
// upstream and served from the cache since the env was made.
func (fe *flightEnv) fromUpstream() int64 {
	return fe.eng.CacheStats().XorbFromUpstream - fe.base.XorbFromUpstream
}

func (fe *flightEnv) fromCache() int64 {
	return fe.eng.CacheStats().XorbFromCache - fe.base.XorbFromCache
}

// readExact reads r to its end, closes it, and fails the test unless it
// gave the range's exact bytes.
func (fe *flightEnv) readExact(t *testing.T, r *xorbReader) {
	t.Helper()
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, fe.want) {
		t.Fatalf("the fetching request: %v (equal %v)", err, bytes.Equal(got, fe.want))
	}
}

// collect returns the errors of n readers.
func collect(errs chan error, n int) error {
	var all []error
	for range n {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// settled checks that no flight is left and the budget is empty.
func (fe *flightEnv) settled(t *testing.T) {
	t.Helper()
	if n := fe.eng.xorbFlights.inFlight(); n != 0 {
		t.Errorf("%d flights left", n)
	}
	if used, _ := fe.eng.budget.stats(); used != 0 {
		t.Errorf("budget holds %d bytes after the reads", used)
	}
}

// xorbRequests polls the fake Hub's xorb counter until it reaches at
// least n (it counts a request once its handler returned), and returns it.
func xorbRequests(t *testing.T, fh *fakehub.Hub, n int64) fakehub.Counter {
	t.Helper()
	waitFor(t, func() bool { return fh.Stats()[fakehub.ClassXorb].Requests >= n })
	return fh.Stats()[fakehub.ClassXorb]
}

// Concurrent cold requests for one xorb range fetch it upstream once:
// those that come while a request is fetching it wait for its chunks to
// land in the cache, holding no memory while they wait, and serve them
// from there. Every answer is exact.
func TestXorbRangesColdShareOneUpstreamFetch(t *testing.T) {
	fe := newFlightEnv(t)
	const n = 6
	leader := fe.open(t, context.Background())
	errs := fe.followers(t.Context(), n)
	waitFor(t, func() bool { return fe.joins() >= n })
	if used, _ := fe.eng.budget.stats(); used != leader.decHeld || used == 0 {
		t.Errorf("budget holds %d bytes while %d requests wait, want the fetching one's decoder (%d) alone", used, n, leader.decHeld)
	}
	fe.readExact(t, leader)
	if err := collect(errs, n); err != nil {
		t.Fatal(err)
	}
	if up := fe.fromUpstream(); up != fe.chunks {
		t.Errorf("%d chunk bytes decoded from upstream, want the range's %d once", up, fe.chunks)
	}
	if c := fe.fromCache(); c != n*fe.chunks {
		t.Errorf("%d chunk bytes served from the cache, want the range's %d %d times", c, fe.chunks, n)
	}
	c := xorbRequests(t, fe.fh, 1)
	if c.Requests != 1 || uint64(c.BytesOut) != fe.rng().Upstream.Len() {
		t.Errorf("upstream served %d xorb requests of %d bytes, want one of the range's %d", c.Requests, c.BytesOut, fe.rng().Upstream.Len())
	}
	fe.settled(t)
}

// A fetching request that fails half-way (its upstream body cut, the
// retry refused) fails alone: the requests waiting for it serve the
// segments it stored from the cache, and one of them fetches the rest
// while the others wait for it, with exact answers.
func TestXorbRangesFollowersOutliveAFailedLeader(t *testing.T) {
	fe := newFlightEnv(t)
	const n = 4
	fe.fh.TruncateBodies(fakehub.ClassXorb, int64(fe.rng().Upstream.Len()*2/5), 1)
	fe.fh.InjectFault(fakehub.Fault{Class: fakehub.ClassXorb, Nth: 2, Status: 404}) // the resume of the cut body
	leader := fe.open(t, context.Background())
	errs := fe.followers(t.Context(), n)
	waitFor(t, func() bool { return fe.joins() >= n })
	if _, err := io.ReadAll(leader); err == nil {
		t.Fatal("the fetching request read its whole range through a cut body and a refused retry")
	}
	leader.Close()
	if err := collect(errs, n); err != nil {
		t.Fatal(err)
	}
	if c := fe.fromCache(); c == 0 {
		t.Error("no chunk served from the cache: the waiting requests did not use what the failed one stored")
	}
	// the failed fetch, then one more of the range (less what it skips)
	if up := fe.fromUpstream(); up >= 2*fe.chunks {
		t.Errorf("%d chunk bytes decoded from upstream, want less than twice the range's %d", up, fe.chunks)
	}
	if c := xorbRequests(t, fe.fh, 3); c.Cut != 1 {
		t.Errorf("%d bodies cut, want 1: the test did not fail the fetch it means to", c.Cut)
	}
	fe.settled(t)
}

// A waiting request cancelled by its caller stops waiting; the request
// it waited for goes on unharmed, and fetched the range once.
func TestXorbRangesFollowerCancelledLeaderUnaffected(t *testing.T) {
	fe := newFlightEnv(t)
	leader := fe.open(t, context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	errs := fe.followers(ctx, 1)
	waitFor(t, func() bool { return fe.joins() >= 1 })
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled request ended with %v", err)
	}
	fe.readExact(t, leader)
	if up := fe.fromUpstream(); up != fe.chunks {
		t.Errorf("%d chunk bytes decoded from upstream, want the range's %d once", up, fe.chunks)
	}
	if c := xorbRequests(t, fe.fh, 1); c.Requests != 1 {
		t.Errorf("%d xorb requests upstream, want 1", c.Requests)
	}
	fe.settled(t)
}

// A fetching request whose client goes away (closes after one chunk)
// leaves no one waiting: one of the others fetches the range, the rest
// wait for it.
func TestXorbRangesLeaderGoneFollowersFetch(t *testing.T) {
	fe := newFlightEnv(t)
	const n = 4
	leader := fe.open(t, context.Background())
	errs := fe.followers(t.Context(), n)
	waitFor(t, func() bool { return fe.joins() >= n })
	leader.Close()
	if err := collect(errs, n); err != nil {
		t.Fatal(err)
	}
	if up := fe.fromUpstream(); up < fe.chunks || up >= 2*fe.chunks {
		t.Errorf("%d chunk bytes decoded from upstream, want the range's %d and the gone request's first chunk", up, fe.chunks)
	}
	fe.settled(t)
}

// A fetching request whose client stops reading, without going away,
// holds the others back for the stall bound at most: they give up on it
// and fetch the range themselves.
func TestXorbRangesStalledLeaderFollowersFetch(t *testing.T) {
	fe := newFlightEnv(t)
	fe.eng.xorbStall = 50 * time.Millisecond
	const n = 4
	leader := fe.open(t, context.Background())
	defer leader.Close()
	if err := collect(fe.followers(t.Context(), n), n); err != nil {
		t.Fatal(err)
	}
	st := fe.eng.CacheStats()
	if st.XorbJoinStalls-fe.base.XorbJoinStalls == 0 {
		t.Error("no request gave up on the stalled one: the test tests nothing")
	}
	if leader.c != fe.rng().Chunks.Start+1 {
		t.Errorf("the stalled request produced up to chunk %d, want only its first", leader.c)
	}
	leader.Close()
	fe.settled(t)
}

// When the fetch they waited for did not keep the chunks (its fill
// budget spent), the waiting requests fetch the range on their own, with
// exact answers.
func TestXorbRangesNotKeptFollowersFetch(t *testing.T) {
	fe := newFlightEnv(t)
	// the fill budget is spent: no fetch keeps a segment
	if !fe.eng.fillBudget.tryAcquire(fe.eng.fillBudget.limit) {
		t.Fatal("the fill budget is in use")
	}
	defer fe.eng.fillBudget.release(fe.eng.fillBudget.limit)
	const n = 3
	leader := fe.open(t, context.Background())
	errs := fe.followers(t.Context(), n)
	waitFor(t, func() bool { return fe.joins() >= n })
	fe.readExact(t, leader)
	if err := collect(errs, n); err != nil {
		t.Fatal(err)
	}
	if up := fe.fromUpstream(); up != (n+1)*fe.chunks {
		t.Errorf("%d chunk bytes decoded from upstream, want the range's %d %d times", up, fe.chunks, n+1)
	}
	if c := fe.fromCache(); c != 0 {
		t.Errorf("%d chunk bytes from the cache, want none", c)
	}
	fe.settled(t)
}

// Ranges of a xorb the engine has no manifest of are served as upstream
// stores them, bytes the cache does not hold; they, and every range
// without a cache, are fetched by each request.
func TestXorbRangesVerbatimEachFetch(t *testing.T) {
	for _, cached := range []bool{true, false} {
		t.Run(map[bool]string{true: "cache", false: "no-cache"}[cached], func(t *testing.T) {
			var tweak []func(*Config)
			if !cached {
				tweak = append(tweak, func(c *Config) { c.Cache = nil })
			}
			x := newXetEnvOf(t, 64<<20, false, 1<<20, 6<<20, tweak...)
			ref := x.ref[xorbRangeKey{0, 0}]
			chunks := map[uint32][]byte{}
			if err := decodeRecords(ref, x.ans.Fetches[0].Ranges[0].Chunks.Start, chunks); err != nil {
				t.Fatal(err)
			}
			var size int64
			for _, c := range chunks {
				size += int64(len(c))
			}
			base := x.eng.CacheStats()
			const n = 4
			errs := make(chan error, n)
			for range n {
				go func() {
					got, err := x.readRange(t.Context(), 0, 0, x.ans.Fetches[0].Ranges[0].Served)
					if err == nil && !bytes.Equal(got, ref) {
						err = errors.New("bytes differ")
					}
					errs <- err
				}()
			}
			if err := collect(errs, n); err != nil {
				t.Fatal(err)
			}
			st := x.eng.CacheStats()
			if up := st.XorbFromUpstream - base.XorbFromUpstream; up != n*size {
				t.Errorf("%d chunk bytes decoded from upstream, want the range's %d %d times", up, size, n)
			}
			if j := st.XorbJoins - base.XorbJoins; j != 0 {
				t.Errorf("%d joins", j)
			}
		})
	}
}

// A request that takes over a fetch fetches with its own upstream URL,
// never with the one of the request it waited for: here the waiting
// requests' URLs are refused upstream, so once the fetching request's
// client goes away each of them fails as stale, while the chunks they
// would have found in the cache need no URL of theirs.
func TestXorbRangesFollowersFetchWithTheirOwnURL(t *testing.T) {
	fe := newFlightEnv(t)
	f := fe.ans.Fetches[fe.i]
	own := strings.Replace(f.UpstreamURL, "Signature=", "Signature=00", 1)
	if own == f.UpstreamURL {
		t.Fatal("premise: a signed upstream URL")
	}
	const n = 3
	leader := fe.open(t, context.Background())
	errs := make(chan error, n)
	for range n {
		go func() {
			rc, err := fe.eng.OpenXorbRange(t.Context(), XorbRange{Xorb: f.Xorb, UpstreamURL: own, Layout: f.Layout, Range: fe.rng()}, fe.rng().Served)
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			errs <- err
		}()
	}
	waitFor(t, func() bool { return fe.joins() >= n })
	leader.Close()
	for range n {
		if err := <-errs; !errors.Is(err, ErrStaleURL) {
			t.Errorf("a request with a refused URL ended with %v, want a stale URL", err)
		}
	}
	if c := xorbRequests(t, fe.fh, 2); c.Errors == 0 {
		t.Error("upstream refused nothing: the requests did not fetch with their own URLs")
	}
	fe.settled(t)
}
