package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// Cold readers of several files through a cache: the fills charge their
// segments to the fill budget, which never goes past its limit, the
// streams' read-ahead stays within the engine budget (plus what each
// reader waits for), and everything is given back at the end.
func TestBudgetsBoundDataInFlight(t *testing.T) {
	const (
		fillLimit   = 2 * segmentChunks * maxChunk // two segments decoding or waiting to be stored
		streamLimit = 4 << 20
		files       = 3
		readers     = 4 // per file
	)
	e := cacheEnv(t, memCache(t, 1<<30), func(c *Config) {
		c.FillBuffer = fillLimit
		c.MaxBuffer = streamLimit
		c.StreamBuffer = 2 << 20
	})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	var data [files][]byte
	for i := range files {
		data[i] = mixed(uint64(100+i), 6<<20)
		e.add(t, "org/m", fmt.Sprintf("f%d.bin", i), data[i])
	}
	var wg sync.WaitGroup
	errs := make(chan error, files*readers)
	for i := range files {
		m := e.stat(t, "", repoM, fmt.Sprintf("f%d.bin", i))
		for range readers {
			wg.Go(func() {
				rc, err := e.eng.Open(context.Background(), "", m, 0, -1)
				if err != nil {
					errs <- err
					return
				}
				defer rc.Close()
				got, err := io.ReadAll(rc)
				if err == nil && !bytes.Equal(got, data[i]) {
					err = errors.New("bytes differ")
				}
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := e.eng.CacheStats(); st.Fills == 0 {
		t.Fatal("no fill ran: the test tests nothing")
	}
	// Fills outlive their streams: wait for them to give their bytes back.
	deadline := time.Now().Add(30 * time.Second)
	for {
		used, _ := e.eng.fillBudget.stats()
		if used == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fill budget still holds %d bytes after the fills", used)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, peak := e.eng.fillBudget.stats()
	if peak == 0 || peak > fillLimit {
		t.Errorf("fill budget peaked at %d, limit %d (0: fills not charged)", peak, fillLimit)
	}
	used, speak := e.eng.budget.stats()
	if used != 0 {
		t.Errorf("stream budget holds %d bytes after the reads", used)
	}
	// Past the limit only by what each reader waits for: its chunks, and
	// the first cache entry of a fetch, charged once read (at most a
	// segment).
	if slack := int64(files*readers) * ((waitBatch+1)*maxChunk + segmentChunks*maxChunk); speak > streamLimit+slack {
		t.Errorf("stream budget peaked at %d, limit %d + %d", speak, streamLimit, slack)
	}
}

// acquireUpTo takes everything when it fits, only the small part for an
// urgent caller when it does not, and makes any other caller wait.
func TestBudgetAcquireUpTo(t *testing.T) {
	ctx := context.Background()
	b := newBudget(10)
	yes := func() bool { return true }
	if got, err := b.acquireUpTo(ctx, 8, 2, never, whole); err != nil || got != 8 {
		t.Fatalf("took %d, %v; want 8 (it fits)", got, err)
	}
	if got, err := b.acquireUpTo(ctx, 8, 2, yes, whole); err != nil || got != 2 {
		t.Fatalf("urgent: took %d, %v; want the small part, 2", got, err)
	}
	done := make(chan int64)
	go func() {
		got, _ := b.acquireUpTo(ctx, 8, 2, never, whole)
		done <- got
	}()
	b.release(10)
	if got := <-done; got != 8 {
		t.Fatalf("after the release: took %d, want 8", got)
	}
	if used, peak := b.stats(); used != 8 || peak != 10 {
		t.Fatalf("used %d, peak %d; want 8, 10", used, peak)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.acquireUpTo(cctx, 8, 2, never, whole); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wait: %v", err)
	}
}

// acquireEvicting takes what fits without evicting; when it does not fit
// it evicts and asks again rather than waiting, and waits only when
// nothing is left to evict, until room is given back or its context ends.
func TestBudgetAcquireEvicting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := newBudget(10)
	nothing := func() bool { return false }
	if err := b.acquireEvicting(ctx, 8, func() bool {
		t.Error("evicted for bytes that fit")
		return false
	}); err != nil {
		t.Fatal(err)
	}
	kept, evictions := int64(8), 0
	evict := func() bool {
		evictions++
		if kept == 0 {
			return false
		}
		b.release(kept)
		kept = 0
		return true
	}
	if err := b.acquireEvicting(ctx, 4, evict); err != nil {
		t.Fatalf("with a segment to evict: %v", err)
	}
	if used, _ := b.stats(); used != 4 || evictions != 1 {
		t.Fatalf("used %d after %d evictions; want 4 after 1", used, evictions)
	}
	done := make(chan error)
	go func() { done <- b.acquireEvicting(ctx, 8, nothing) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		waiting := b.waiters
		b.mu.Unlock()
		if waiting == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("acquireEvicting did not wait with nothing to evict")
		}
	}
	select {
	case err := <-done:
		t.Fatalf("returned %v before any room was given back", err)
	default:
	}
	b.release(4)
	if err := <-done; err != nil {
		t.Fatalf("after the release: %v", err)
	}
	if used, _ := b.stats(); used != 8 {
		t.Fatalf("used %d, want 8", used)
	}
	cctx, cancelNow := context.WithCancel(ctx)
	cancelNow()
	if err := b.acquireEvicting(cctx, 8, nothing); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wait: %v", err)
	}
}
