package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// xetEnv is an engine with a cache and the reconstruction a Xet client
// gets for one file: warm, the engine has read the file whole first (the
// cache holds its chunks and the engine its xorbs' manifests, so every
// range is served as records from the cache); cold, it has not (every
// range is served as upstream stores it).
type xetEnv struct {
	*testEnv
	data []byte
	ans  *CASAnswer
	// ref is the served bytes of every range of ans, read one at a
	// time and checked by rebuilding the file from them.
	ref map[xorbRangeKey][]byte
}

type xorbRangeKey struct {
	fetch, rng int
}

func newXetEnv(t *testing.T, limit int64, warm bool) *xetEnv {
	t.Helper()
	return newXetEnvOf(t, limit, warm, 1<<20, 6<<20)
}

// newXetEnvOf is newXetEnv with xorbs of at most xorbBytes and a file of
// size bytes, the engine's configuration changed by tweak.
func newXetEnvOf(t *testing.T, limit int64, warm bool, xorbBytes, size int, tweak ...func(*Config)) *xetEnv {
	t.Helper()
	e := newEnv(t, fakehub.Config{MaxXorbBytes: xorbBytes}, append([]func(*Config){func(c *Config) {
		c.Cache = memCache(t, 1<<30)
		c.BlockSize = 64 << 20 // whole xorbs per fetch: their manifests are learnt
		c.MaxBuffer = limit
	}}, tweak...)...)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(43, size)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	if warm {
		if got, err := e.read(context.Background(), "", m, 0, -1); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("warming read: %v (equal %v)", err, bytes.Equal(got, data))
		}
		// Fills outlive the read: their last segments and manifests
		// come after it.
		for deadline := time.Now().Add(20 * time.Second); fillsInFlight(e) > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the fills of the warming read never ended")
			}
		}
	}
	ctx := context.Background()
	tok, err := e.eng.XetReadToken(ctx, "", repoM, "main")
	if err != nil {
		t.Fatal(err)
	}
	ans, err := e.eng.CASReconstruct(ctx, UpstreamCAS{URL: tok.CASURL, Token: tok.AccessToken}, *m.XetHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := &xetEnv{testEnv: e, data: data, ans: ans, ref: map[xorbRangeKey][]byte{}}
	chunks := map[merklehash.Hash]map[uint32][]byte{}
	for i, f := range ans.Fetches {
		if want := map[bool]Layout{true: LayoutRecords, false: LayoutUpstream}[warm]; f.Layout != want {
			t.Fatalf("fetch %d of xorb %s has layout %d, want %d: the test tests nothing", i, f.Xorb, f.Layout, want)
		}
		for j, rg := range f.Ranges {
			b, err := x.readRange(ctx, i, j, rg.Served)
			if err != nil {
				t.Fatal(err)
			}
			x.ref[xorbRangeKey{i, j}] = b
			if chunks[f.Xorb] == nil {
				chunks[f.Xorb] = map[uint32][]byte{}
			}
			if err := decodeRecords(b, rg.Chunks.Start, chunks[f.Xorb]); err != nil {
				t.Fatalf("fetch %d range %d: %v", i, j, err)
			}
		}
	}
	var got []byte
	for _, term := range ans.Terms {
		for c := term.Range.Start; c < term.Range.End; c++ {
			got = append(got, chunks[term.Hash][c]...)
		}
	}
	if got = got[min(uint64(len(got)), ans.OffsetIntoFirstRange):]; !bytes.Equal(got, data) {
		t.Fatalf("the served records rebuild %d bytes, not the file's %d", len(got), len(data))
	}
	return x
}

// resetPeak forgets b's peak so far.
func resetPeak(b *budget) {
	b.mu.Lock()
	b.peak = b.used
	b.mu.Unlock()
}

func fillsInFlight(e *testEnv) int64 { return e.eng.CacheStats().FillsInFlight }

// readRange reads window w of range j of fetch i.
func (x *xetEnv) readRange(ctx context.Context, i, j int, w reconstruction.ByteRange) ([]byte, error) {
	f := x.ans.Fetches[i]
	rc, err := x.eng.OpenXorbRange(ctx, XorbRange{Xorb: f.Xorb, UpstreamURL: f.UpstreamURL, Layout: f.Layout, Range: f.Ranges[j]}, w)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// readPrefix reads the first n bytes of window w of range j of fetch i,
// and closes the reader there.
func (x *xetEnv) readPrefix(i, j int, w reconstruction.ByteRange, n int) ([]byte, error) {
	f := x.ans.Fetches[i]
	rc, err := x.eng.OpenXorbRange(context.Background(), XorbRange{Xorb: f.Xorb, UpstreamURL: f.UpstreamURL, Layout: f.Layout, Range: f.Ranges[j]}, w)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, n)
	_, err = io.ReadFull(rc, b)
	return b, err
}

// decodeRecords decodes the chunk records b, the first being chunk
// first, into into.
func decodeRecords(b []byte, first uint32, into map[uint32][]byte) error {
	d := xorb.NewDecoder(bytes.NewReader(b))
	for c := first; ; c++ {
		chunk, err := d.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("chunk %d: %w", c, err)
		}
		into[c] = bytes.Clone(chunk)
	}
}

// Xet clients reading xorb ranges from the cache read no entry before
// charging the budget for it, and the budget is empty once they are done.
func TestXorbRangesChargeCacheEntriesBeforeReading(t *testing.T) {
	x := newXetEnv(t, 64<<20, true)
	if n := x.eng.stats.unchargedReads.Load(); n != 0 {
		t.Fatalf("%d cache entries read before they were charged", n)
	}
	if st := x.eng.CacheStats(); st.XorbFromCache == 0 || st.XorbFromUpstream != 0 {
		t.Fatalf("stats %+v: want xorb bytes from the cache only, or the test tests nothing", st)
	}
	if used, _ := x.eng.budget.stats(); used != 0 {
		t.Errorf("budget holds %d bytes after the reads", used)
	}
}

// Many Xet clients at once, with a budget of a few chunks, reading ranges
// from the cache (warm) or from upstream (cold, each request holding the
// decoder's buffers): every request completes with its exact bytes (no
// one waits for ever), the budget never goes past its limit, and it is
// empty afterwards. Half the requests cut their range to a window; some
// close after a few records.
func TestXorbRangesWithinATinyBudget(t *testing.T) {
	for _, warm := range []bool{true, false} {
		t.Run(map[bool]string{true: "warm", false: "cold"}[warm], func(t *testing.T) {
			testXorbRangesWithin(t, warm)
		})
	}
}

func testXorbRangesWithin(t *testing.T, warm bool) {
	const limit = 1 << 20 // the decoder's buffers, or a few chunks
	x := newXetEnv(t, limit, warm)
	type req struct {
		i, j int
		w    reconstruction.ByteRange
	}
	var reqs []req
	for i, f := range x.ans.Fetches {
		for j, rg := range f.Ranges {
			for k := range 6 {
				w := rg.Served
				if k%2 == 1 { // an unaligned window inside the range
					n := w.End - w.Start + 1
					w = reconstruction.ByteRange{Start: w.Start + n/(3+uint64(k)), End: w.End - n/(4+uint64(k))}
				}
				reqs = append(reqs, req{i, j, w})
			}
		}
	}
	if len(reqs) < 24 {
		t.Fatalf("%d requests: want many", len(reqs))
	}
	resetPeak(x.eng.budget) // the warming read's is not these requests'
	var g errgroup.Group
	for n, r := range reqs {
		g.Go(func() error {
			rg := x.ans.Fetches[r.i].Ranges[r.j].Served
			want := x.ref[xorbRangeKey{r.i, r.j}][r.w.Start-rg.Start : r.w.End-rg.Start+1]
			var got []byte
			var err error
			if n%6 == 4 { // closes after a few records
				want = want[:min(len(want), 3*xorbTargetChunk)]
				got, err = x.readPrefix(r.i, r.j, r.w, len(want))
			} else {
				got, err = x.readRange(t.Context(), r.i, r.j, r.w)
			}
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("request %d (fetch %d range %d, %d-%d): bytes differ", n, r.i, r.j, r.w.Start, r.w.End)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := x.eng.stats.unchargedReads.Load(); n != 0 {
		t.Errorf("%d cache entries read before they were charged", n)
	}
	if st := x.eng.CacheStats(); warm && st.XorbFromUpstream != 0 || !warm && st.XorbFromCache != 0 {
		t.Errorf("stats %+v: the ranges did not all come from where the test means", st)
	}
	used, peak := x.eng.budget.stats()
	if used != 0 {
		t.Errorf("budget holds %d bytes after the reads", used)
	}
	if peak > limit {
		t.Errorf("budget peaked at %d, past its limit %d", peak, limit)
	}
	// Each request charged what it held: an entry's chunks, or the
	// decoder's buffers.
	if low := map[bool]int64{true: maxChunk, false: bufCost(maxChunk) + xorb.MaxCompressedSize}[warm]; peak < low {
		t.Errorf("budget peaked at %d: the requests charged less than %d", peak, low)
	}
}

// acquireSome takes the whole units that fit, waits while none does,
// grants a unit larger than the limit to an empty budget, and gives up
// with its context.
func TestBudgetAcquireSome(t *testing.T) {
	ctx := context.Background()
	b := newBudget(10)
	if got, err := b.acquireSome(ctx, 12, 3); err != nil || got != 9 {
		t.Fatalf("took %d (%v), want the 9 bytes that fit", got, err)
	}
	took := make(chan int64)
	go func() {
		got, _ := b.acquireSome(ctx, 6, 3)
		took <- got
	}()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.waiters == 1 })
	b.release(4) // 5 free: one unit fits
	if got := <-took; got != 3 {
		t.Fatalf("took %d after the release, want 3", got)
	}
	b.release(8)
	if got, err := b.acquireSome(ctx, 40, 20); err != nil || got != 20 {
		t.Fatalf("empty budget: took %d (%v), want one unit of 20", got, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.waiters == 1 })
		cancel()
	}()
	if got, err := b.acquireSome(cctx, 3, 3); !errors.Is(err, context.Canceled) || got != 0 {
		t.Fatalf("over a full budget with a cancelled context: took %d (%v)", got, err)
	}
	if used, peak := b.stats(); used != 20 || peak != 20 {
		t.Errorf("used %d peak %d, want 20 and 20", used, peak)
	}
}

// waitFor polls cond until it holds, for at most 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Error("condition never held")
			return
		}
	}
}
