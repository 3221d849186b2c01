package proxy

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
)

// keptEnv is stagedEnv with a fill buffer of fillBuf bytes.
func keptEnv(t *testing.T, fillBuf int64) *testEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := cache.OpenStaging(dir, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, fakehub.Config{MaxXorbBytes: 8 << 20}, func(c *Config) {
		c.Cache = diskCache(t, dir, 1<<30)
		c.Staging = st
		c.BlockSize = 64 << 20
		c.FillBuffer = fillBuf
		// The default read-ahead: a kept segment is charged to it as a
		// whole before it is read (the reader reads a few chunks from the
		// store instead when it has no room for that).
		c.StreamBuffer = DefaultStreamBuffer
	})
}

// openPaused opens the whole of m and reads its first byte, which starts
// the stream's fills, then waits until no fill runs (and, with staged,
// some bytes were staged): the reader then lags behind every fill. It
// returns the stream and the byte read.
func openPaused(t *testing.T, e *testEnv, m *hub.FileMeta, staged bool) (io.ReadCloser, []byte) {
	t.Helper()
	rc, err := e.eng.Open(context.Background(), "", m, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	first := make([]byte, 1)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for st := e.eng.CacheStats(); st.Fills == 0 || st.FillsInFlight != 0 || (staged && st.StagedBytes == 0); st = e.eng.CacheStats() {
		if time.Now().After(deadline) {
			t.Fatalf("fills still running: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return rc, first
}

// readRest reads the rest of a stream openPaused returned, checks that
// with first it makes data, closes it, flushes the engine and returns its
// stats.
func readRest(t *testing.T, e *testEnv, rc io.ReadCloser, first, data []byte) CacheStats {
	t.Helper()
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(first, rest...), data) {
		t.Fatal("bytes differ")
	}
	rc.Close()
	flush(t, e.eng)
	return e.eng.CacheStats()
}

// waitFillBufferFree polls until the fill buffer is all given back.
func waitFillBufferFree(t *testing.T, e *Engine) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for st := e.CacheStats(); st.FillBufferUsed != 0; st = e.CacheStats() {
		if time.Now().After(deadline) {
			t.Fatalf("fill buffer still held: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A reader far behind its file's fill (it stops after the first byte
// until the fills its read-ahead started have staged all and ended) reads every segment
// from the memory the fill kept for it, none back from the staging
// store or the cache (where the proven ones went), when the fill buffer holds the file; the bytes are exact, the
// file is proven and promoted, and the fill buffer is all given back once
// the reader is done.
func TestCacheFillKeepsSegmentsForItsReader(t *testing.T) {
	e := keptEnv(t, DefaultFillBuffer)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(46, 24<<20+333)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	rc, first := openPaused(t, e, m, true)
	st := readRest(t, e, rc, first, data)
	if st.StagingReads != 0 || st.Hits != 0 || st.KeptEvicted != 0 {
		t.Fatalf("stats %+v: want nothing read back from staging or the cache, no kept segment evicted", st)
	}
	if st.FileProofs != 1 || st.PromotedBytes != uint64(len(data)) {
		t.Fatalf("stats %+v: want the file proven and all of it promoted", st)
	}
	waitFillBufferFree(t, e.eng)
}

// When the fill buffer cannot hold what a paused reader has yet to read,
// the fill takes the room from the segments it kept instead of waiting
// for the reader: it runs to its end while the reader is paused, and the
// reader's bytes are exact (what it lost it reads back from the stores).
func TestCacheFillEvictsKeptSegmentsRatherThanWait(t *testing.T) {
	e := keptEnv(t, 4*segBufCap)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(47, 40<<20+5)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	rc, first := openPaused(t, e, m, true)
	if used := e.eng.CacheStats().FillBufferUsed; used > 4*segBufCap {
		t.Fatalf("fill buffer holds %d bytes, over its %d", used, 4*segBufCap)
	}
	st := readRest(t, e, rc, first, data)
	if st.KeptEvicted == 0 {
		t.Fatalf("stats %+v: want kept segments evicted", st)
	}
	if st.FileProofs != 1 || st.PromotedBytes != uint64(len(data)) {
		t.Fatalf("stats %+v: want the file proven and all of it promoted", st)
	}
	waitFillBufferFree(t, e.eng)
}
