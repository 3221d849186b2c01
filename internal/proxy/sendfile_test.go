package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/hub"
)

// serveEngine answers GET /?off=&n= with bytes [off, off+n) of m (n < 0:
// to the end) as the server's download handler does: a Content-Length,
// then the stream's WriteTo on net/http's response writer, whose ReadFrom
// sends files with sendfile; a failure cuts the connection.
func serveEngine(t *testing.T, e *Engine, m *hub.FileMeta) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		off, _ := strconv.ParseInt(r.URL.Query().Get("off"), 10, 64)
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if n < 0 {
			n = m.Size - off
		}
		rc, err := e.Open(r.Context(), "", m, off, n)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer rc.Close()
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.WriteHeader(http.StatusOK)
		if _, err := rc.(io.WriterTo).WriteTo(w); err != nil {
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

func httpGet(url string) ([]byte, error) {
	res, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	return io.ReadAll(res.Body)
}

// waitNoLentFiles waits until every cache file lent with an entry is given
// back: no stream keeps a file open once it is done.
func waitNoLentFiles(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); cache.LentFiles() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d cache files still lent", cache.LentFiles())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A warm read over HTTP goes from the cache files to the socket, and its
// bytes are exact, whole or ranged; every file is given back.
func TestCacheHitSentFromFileIsExact(t *testing.T) {
	d := diskCache(t, t.TempDir(), 1<<30)
	e := cacheEnv(t, d)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(51, 13<<20+777)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	readAll(t, e.eng, "", m, 0, -1)
	flush(t, e.eng)
	url := serveEngine(t, e.eng, m)

	before := e.eng.CacheStats().SentFromFile
	for _, r := range [][2]int64{{0, -1}, {0, -1}, {1, 5 << 20}, {4<<20 + 12345, 70000}, {int64(len(data)) - 3, 3}} {
		got, err := httpGet(fmt.Sprintf("%s/?off=%d&n=%d", url, r[0], r[1]))
		want := data[r[0]:]
		if r[1] >= 0 {
			want = want[:r[1]]
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("bytes %v: %d bytes, %v; differ at %d", r, len(got), err, firstDiff(got, want))
		}
	}
	sent := e.eng.CacheStats().SentFromFile - before
	if sent < 2*int64(len(data)) {
		t.Fatalf("%d bytes sent from cache files, want at least two whole files (%d)", sent, 2*len(data))
	}
	if st := e.eng.CacheStats(); st.ServedUpstream != int64(len(data)) {
		t.Fatalf("premise: %d bytes from upstream, want only the cold read's %d", st.ServedUpstream, len(data))
	}
	waitNoLentFiles(t)
}

// provenLastEntry reads m until the disk store vouches for the entry file
// holding the file's last chunk (proven once, cache/vouch.go), and returns
// that file's path.
func provenLastEntry(t *testing.T, e *testEnv, d *cache.Disk, dir string, m *hub.FileMeta, data []byte) string {
	t.Helper()
	r, err := e.eng.cas.Reconstruct(context.Background(), e.eng.auth("", m), *m.XetHash, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := r.Terms[len(r.Terms)-1]
	x, c := last.Hash, last.Range.End-1
	lo := c - c%segmentChunks
	for deadline := time.Now().Add(30 * time.Second); ; {
		if got, _ := readAll(t, e.eng, "", m, 0, -1); !bytes.Equal(got, data) {
			t.Fatal("bytes differ")
		}
		ent, err := d.Get(context.Background(), x, lo, c+1)
		if err != nil {
			t.Fatalf("last segment not cached: %v", err)
		}
		proven := ent.Proven()
		ent.Release()
		if proven {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the disk store never vouched for the last entry")
		}
		time.Sleep(100 * time.Millisecond)
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "chunks-v2", x.String()[:2], x.String()+".*"))
	for _, p := range paths {
		var s, e uint32
		if _, err := fmt.Sscanf(strings.TrimPrefix(filepath.Base(p), x.String()+"."), "%d-%d", &s, &e); err == nil && s <= c && c < e {
			return p
		}
	}
	t.Fatalf("no entry file holds chunk %d of xorb %s", c, x)
	return ""
}

// Bit rot in a proven entry file: one byte of the file's last chunk
// (stored uncompressed) flipped in place. The next answer over HTTP is
// never the wrong bytes: the chunk fails its CRC-32C, the entry is
// deleted, and the chunks come from upstream.
func TestCacheHitCorruptLastChunkInPlaceNeverServed(t *testing.T) {
	dir := t.TempDir()
	d := diskCache(t, dir, 1<<30)
	e := vouchEnv(t, d)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := randomData(52, 5<<20+999) // stored raw: the flipped byte decodes
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	readAll(t, e.eng, "", m, 0, -1)
	flush(t, e.eng)
	victim := provenLastEntry(t, e, d, dir, m, data)

	info, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(victim, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, info.Size()-1); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, info.Size()-1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(victim, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}

	corrupt := d.Stats().Corrupt
	url := serveEngine(t, e.eng, m)
	for _, r := range [][2]int64{{0, -1}, {int64(len(data)) - 1000, 1000}} {
		got, err := httpGet(fmt.Sprintf("%s/?off=%d&n=%d", url, r[0], r[1]))
		want := data[r[0]:]
		if r[1] >= 0 {
			want = want[:r[1]]
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("bytes %v: a complete answer with wrong bytes (differ at %d)", r, firstDiff(got, want))
		}
		if err != nil || len(got) != len(want) {
			t.Fatalf("bytes %v: %d bytes, %v; want the right bytes from upstream", r, len(got), err)
		}
	}
	if d.Stats().Corrupt == corrupt {
		t.Fatal("the flipped byte was never caught")
	}
	waitNoLentFiles(t)
}

// Cache files cut short while their bytes are being sent: the server does
// not crash, every file is given back, the answer in flight ends (broken,
// or complete if the bytes had all been handed to the kernel), and the
// next answer is exact (the cut entries fail their checks and are fetched
// again). What the answer in flight holds is not checked: bytes handed to
// the kernel are read from the page cache as they go out, and the cut
// zeroes the tail of the page it falls in (docs/cache.md, "Sent from the
// file").
func TestCacheHitFileTruncatedWhileSent(t *testing.T) {
	dir := t.TempDir()
	d := diskCache(t, dir, 1<<30)
	e := cacheEnv(t, d)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := randomData(53, 48<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	readAll(t, e.eng, "", m, 0, -1)
	flush(t, e.eng)
	url := serveEngine(t, e.eng, m)

	res, err := http.Get(url + "/?off=0&n=-1")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(res.Body, head); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "chunks-v2", "*", "*"))
	if len(files) == 0 {
		t.Fatal("no cache files")
	}
	for _, p := range files {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, info.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	rest, err := io.ReadAll(res.Body)
	if got := len(head) + len(rest); err == nil && got != len(data) {
		t.Fatalf("a clean end after %d of %d bytes", got, len(data))
	}
	waitNoLentFiles(t)
	if got, err := httpGet(url + "/?off=0&n=-1"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after the cut: %d bytes, %v; differ at %d", len(got), err, firstDiff(got, data))
	}
	if d.Stats().Corrupt == 0 {
		t.Fatal("premise: no cut entry was read again")
	}
	waitNoLentFiles(t)
}

// cuttingWriter collects what is written to it; the first time it is
// offered bytes from a file, it cuts that file in the middle of them.
type cuttingWriter struct {
	t   *testing.T
	cut bool
	buf bytes.Buffer
}

func (w *cuttingWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *cuttingWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.cut {
		lr, ok := r.(*io.LimitedReader)
		if !ok {
			w.t.Fatalf("offered a %T, want an *io.LimitedReader of a file", r)
		}
		f, ok := lr.R.(*os.File)
		if !ok {
			w.t.Fatalf("offered bytes of a %T, want an *os.File", lr.R)
		}
		at, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			w.t.Fatal(err)
		}
		if err := os.Truncate(f.Name(), at+lr.N/2); err != nil {
			w.t.Fatal(err)
		}
		w.cut = true
	}
	return w.buf.ReadFrom(r)
}

// A cache file cut short between its read (checked) and the send of its
// bytes: the send comes up short and the stream fails, with only right
// bytes before the failure.
func TestCacheHitFileCutBeforeSendFailsStream(t *testing.T) {
	dir := t.TempDir()
	d := diskCache(t, dir, 1<<30)
	e := cacheEnv(t, d)
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := randomData(54, 9<<20)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	readAll(t, e.eng, "", m, 0, -1)
	flush(t, e.eng)

	rc, err := e.eng.Open(context.Background(), "", m, 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	w := &cuttingWriter{t: t}
	n, err := rc.(io.WriterTo).WriteTo(w)
	rc.Close()
	if !w.cut {
		t.Fatal("premise: nothing was offered from a file")
	}
	if err == nil || !strings.Contains(err.Error(), "ended") {
		t.Fatalf("WriteTo: %d bytes, err %v; want a send that came up short", n, err)
	}
	if got := w.buf.Bytes(); int64(len(got)) != n || n >= int64(len(data)) || !bytes.Equal(got, data[:n]) {
		t.Fatalf("%d bytes written (%d counted) of %d; differ at %d", len(got), n, len(data), firstDiff(got, data))
	}
	waitNoLentFiles(t)
}

// With NoSendfile, disk hits are exact and written from memory: no byte is
// sent from a cache file and no file is lent.
func TestCacheHitNoSendfile(t *testing.T) {
	d := diskCache(t, t.TempDir(), 1<<30)
	e := cacheEnv(t, d, func(c *Config) { c.NoSendfile = true })
	e.repo(t, fakehub.RepoSpec{ID: "org/m"})
	data := mixed(52, 9<<20+321)
	e.add(t, "org/m", "f.bin", data)
	m := e.stat(t, "", repoM, "f.bin")
	readAll(t, e.eng, "", m, 0, -1)
	flush(t, e.eng)
	url := serveEngine(t, e.eng, m)
	for range 2 {
		got, err := httpGet(url + "/?off=0&n=-1")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes, %v; differ at %d", len(got), err, firstDiff(got, data))
		}
	}
	st := e.eng.CacheStats()
	if st.SentFromFile != 0 {
		t.Fatalf("%d bytes sent from cache files with NoSendfile", st.SentFromFile)
	}
	if st.ServedUpstream != int64(len(data)) {
		t.Fatalf("premise: %d bytes from upstream, want only the cold read's %d", st.ServedUpstream, len(data))
	}
	waitNoLentFiles(t)
}
