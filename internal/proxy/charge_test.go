package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"unsafe"

	"golang.org/x/sync/errgroup"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
)

// Many readers of one file through a cache, with an engine budget smaller
// than one stream's read-ahead: first on the cold file (the fills, and the
// cache behind them for the readers that lag), then on the warm file, whole
// and ranged. No stream reads a cache entry into memory before charging the
// budgets for it, and the budget goes past its limit only by what each
// reader waits for (a few chunks of an entry, and its chunks).
func TestStreamsChargeCacheEntriesBeforeReading(t *testing.T) {
	const (
		limit   = 2 << 20
		readers = 12
	)
	// Small xorbs: many fetches, each starting with its first entry.
	e := newEnv(t, fakehub.Config{MaxXorbBytes: 1 << 20}, func(c *Config) {
		c.Cache = memCache(t, 1<<30)
		c.BlockSize = 64 << 20
		c.StreamBuffer = 4 << 20
		c.MaxBuffer = limit
	})
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(41, 8<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	for _, phase := range []string{"cold", "warm"} {
		readMany(t, e.eng, m, data, readers)
		if n := e.eng.stats.unchargedReads.Load(); n != 0 {
			t.Fatalf("%s: %d cache entries read before they were charged", phase, n)
		}
	}
	if st := e.eng.CacheStats(); st.Hits == 0 || st.Fills == 0 {
		t.Fatalf("stats %+v: want fills and cache hits, or the test tests nothing", st)
	}
	used, peak := e.eng.budget.stats()
	if used != 0 {
		t.Errorf("budget holds %d bytes after the reads", used)
	}
	// A waiting reader reads urgentPiece chunks at a time when the budget
	// is full, and is charged for its chunks beyond that.
	if slack := int64(readers) * ((urgentPiece + waitBatch + 1) * maxChunk); peak > limit+slack {
		t.Errorf("budget peaked at %d, limit %d + %d", peak, limit, slack)
	}
}

// readMany reads m with n concurrent streams, a quarter of them ranged,
// and checks their bytes.
func readMany(t *testing.T, eng *Engine, m *hub.FileMeta, data []byte, n int) {
	t.Helper()
	var g errgroup.Group
	for i := range n {
		off, size := int64(0), int64(-1)
		if i%4 == 3 {
			off, size = int64(i)<<18, int64(len(data))/2
		}
		g.Go(func() error {
			rc, err := eng.Open(context.Background(), "", m, off, size)
			if err != nil {
				return err
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			want := data[off:]
			if size >= 0 {
				want = want[:size]
			}
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("reader %d: bytes differ", i)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A stream's plan (a slot per chunk of its blocks) is charged to the
// engine's budget while the stream holds it, and given back when it ends.
func TestStreamPlanIsCharged(t *testing.T) {
	e := newEnv(t, fakehub.Config{}, func(c *Config) { c.StreamBuffer = 1 << 20 })
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(42, 6<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	rc, err := e.eng.Open(context.Background(), "", m, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	s := rc.(*stream)
	s.allMu.Lock()
	var chunks int64
	for _, f := range s.ahead {
		chunks += int64(len(f.slots))
	}
	s.allMu.Unlock()
	if chunks == 0 {
		t.Fatal("no chunk planned: the test tests nothing")
	}
	if used, _ := e.eng.budget.stats(); used < chunks*int64(unsafe.Sizeof(slot{})) {
		t.Errorf("budget holds %d bytes for a plan of %d chunks", used, chunks)
	}
	rc.Close()
	if used, _ := e.eng.budget.stats(); used != 0 {
		t.Errorf("budget holds %d bytes after Close", used)
	}
}
