package corruption

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
)

// position picks the corrupted chunk of a file of n chunks.
type position struct {
	name  string
	index func(n int) int
}

var positions = []position{
	{"first", func(int) int { return 0 }},
	{"middle", func(n int) int { return n / 2 }},
	{"last", func(n int) int { return n - 1 }},
}

// read is one request of a test: the whole file or a byte range.
type read struct {
	name string
	rng  []int64 // [start, end); nil = the whole file
	want []byte
}

func (r read) status() int {
	if r.rng == nil {
		return http.StatusOK
	}
	return http.StatusPartialContent
}

// readsOf returns the three reads of the matrix for a corruption of f:
// the whole file; a range of a few hundred bytes inside the damaged
// chunk, around the first byte it decodes wrong; and a range elsewhere,
// from the middle of one neighbouring chunk to the middle of the next
// (the chunks after the damaged one, or before it for the last chunks),
// in the damaged chunk's xorb or the next.
func readsOf(f *testFile, corr *fakehub.Corruption) (whole, inside, elsewhere read) {
	whole = read{name: "whole", want: f.data}
	c := corr.Chunk
	a := max(c.FileOffset, corr.FirstWrong-300)
	b := min(c.FileOffset+int64(c.Size), corr.FirstWrong+300)
	inside = read{name: "inside", rng: []int64{a, b}, want: f.data[a:b]}
	x, y := c.Index+1, c.Index+2
	if y >= len(f.chunks) {
		x, y = c.Index-2, c.Index-1
	}
	mid := func(i int) int64 { return f.chunks[i].FileOffset + int64(f.chunks[i].Size)/2 }
	elsewhere = read{name: "elsewhere", rng: []int64{mid(x), mid(y)}, want: f.data[mid(x):mid(y)]}
	return whole, inside, elsewhere
}

// mustFail: a whole-file read while the Hub serves a damaged chunk. The
// client must see a failure: an error answer (502 with the code
// IntegrityError, when the failure is known before the status line), or a
// transfer cut short. Never a complete answer.
func mustFail(t *testing.T, what string, o outcome, want []byte) {
	t.Helper()
	switch {
	case o.complete && bytes.Equal(o.body, want):
		t.Errorf("%s: premise: the right bytes, although the Hub serves a damaged chunk (%v)", what, o)
	case o.complete:
		t.Errorf("%s: a complete answer of wrong bytes: %v, first wrong byte at %d", what, o, firstDiff(o.body, want))
	default:
		checkFailure(t, what, o)
		t.Logf("%s: failed as it must: %v", what, o)
	}
}

// checkFailure: a failed answer is a cut transfer or 502 IntegrityError.
func checkFailure(t *testing.T, what string, o outcome) {
	t.Helper()
	if o.status >= 300 && (o.status != http.StatusBadGateway || o.code != "IntegrityError") {
		t.Errorf("%s: failed with %v, want 502 IntegrityError or a cut transfer", what, o)
	}
}

// wellFormed: a range read of damaged bytes with no proof at hand. A
// range has no end-to-end check in the Xet protocol, so the proxy may
// pass the damage on (term lengths are all it can check), but only as a
// well-formed 206 of exactly the range; or it fails as checkFailure says.
func wellFormed(t *testing.T, what string, o outcome, r read) {
	t.Helper()
	switch {
	case o.complete && (o.status != http.StatusPartialContent || len(o.body) != len(r.want)):
		t.Errorf("%s: %v, want 206 with %d bytes", what, o, len(r.want))
	case o.complete && !bytes.Equal(o.body, r.want):
		t.Logf("%s: damaged bytes passed on (no proof for this range): %v", what, o)
	case !o.complete:
		checkFailure(t, what, o)
	}
}

// rightOrFail: bytes the Hub does not damage, while it damages others.
func rightOrFail(t *testing.T, what string, o outcome, r read) {
	t.Helper()
	if !o.complete {
		checkFailure(t, what, o)
		return
	}
	if o.status != r.status() || !bytes.Equal(o.body, r.want) {
		t.Errorf("%s: %v, want %d with the right %d bytes (first wrong byte at %d)", what, o, r.status(), len(r.want), firstDiff(o.body, r.want))
	}
}

// exact: the right bytes, completely.
func exact(t *testing.T, what string, o outcome, r read) {
	t.Helper()
	if !o.complete || o.status != r.status() || !bytes.Equal(o.body, r.want) {
		t.Errorf("%s: %v, want %d with the right %d bytes (first wrong byte at %d)", what, o, r.status(), len(r.want), firstDiff(o.body, r.want))
	}
}

// TestCorruptMatrix: for each scheme of the damaged chunk (none: the flip
// decodes as is; LZ4 and BG4: a flipped literal), each position (first,
// middle, last chunk of the file) and each cache (none, disk, disk+S3), a
// fresh file and fresh servers:
//
//  1. while the Hub damages the chunk, each client (Go, Go with TE:
//     trailers, curl) reads the whole file, a range inside the damaged
//     chunk and a range elsewhere: no whole-file read completes;
//  2. the Hub heals. What the cache tiers kept during step 1 must give no
//     wrong byte: a second server on an empty disk and the same bucket
//     (disk+S3) reads first; then the same server, each client; then
//     (disk) a server on a copy of the cache directory taken at the end
//     of step 1 (what a crash would have left), and the same server
//     restarted on its directory (after the healthy reads of step 2, it
//     must serve from its cache).
func TestCorruptMatrix(t *testing.T) {
	t.Parallel()
	for _, s := range schemes {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			for _, pos := range positions {
				for _, mode := range []cacheMode{noCache, diskCache, s3Cache} {
					t.Run(fmt.Sprintf("%s/%s", pos.name, mode), func(t *testing.T) {
						f := newFile(t, s)
						st := newStack(t, mode)
						p := st.start(nil)
						corr := corrupt(t, f, pos.index(len(f.chunks)))
						whole, inside, elsewhere := readsOf(f, corr)
						reads := []read{inside, elsewhere, whole}

						u := p.url + f.downloadPath()
						for _, c := range clients {
							mustFail(t, fmt.Sprintf("corrupt, %s, whole", c), c.get(t, u, nil), f.data)
							wellFormed(t, fmt.Sprintf("corrupt, %s, inside", c), c.get(t, u, inside.rng), inside)
							rightOrFail(t, fmt.Sprintf("corrupt, %s, elsewhere", c), c.get(t, u, elsewhere.rng), elsewhere)
						}
						var crashed string
						if mode != noCache {
							p.flush()
							crashed = copyDir(t, st.cfg.CacheDir)
						}

						heal(t, f, corr)
						if mode == s3Cache {
							q := st.start(func(c *server.Config) { c.CacheDir = t.TempDir() })
							for _, r := range reads {
								exact(t, "healed, second instance, "+r.name, goPlain.get(t, q.url+f.downloadPath(), r.rng), r)
							}
							q.consulted("s3")
							q.stop()
						}
						for _, c := range clients {
							for _, r := range reads {
								exact(t, fmt.Sprintf("healed, %s, %s", c, r.name), c.get(t, u, r.rng), r)
							}
						}
						if mode != diskCache {
							return // disk+S3: its disk tier behaves as in disk mode
						}

						q := st.start(func(c *server.Config) { c.CacheDir = crashed })
						for _, r := range reads {
							exact(t, "healed, after a crash, "+r.name, goPlain.get(t, q.url+f.downloadPath(), r.rng), r)
						}
						q.consulted("disk")
						q.stop()

						p.stop()
						p = st.start(nil)
						for _, r := range reads {
							exact(t, "healed, restarted, "+r.name, goPlain.get(t, p.url+f.downloadPath(), r.rng), r)
						}
						if p.metric(`xetproxy_download_source_bytes_total{source="cache"}`) == 0 {
							t.Error("premise: the restarted server served nothing from its cache")
						}
					})
				}
			}
		})
	}
}

// TestCorruptWarmCache: a file read whole while the Hub was healthy is
// proven, chunk by chunk, by its file hash. Once the Hub damages a chunk
// of it, every read, ranges inside the damaged chunk included, comes out
// right from the cache: on the same server, after a restart on the same
// directory (disk), and on a second server that shares only the bucket
// (disk+S3).
func TestCorruptWarmCache(t *testing.T) {
	t.Parallel()
	for _, s := range schemes {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			for _, pos := range positions {
				for _, mode := range []cacheMode{diskCache, s3Cache} {
					t.Run(fmt.Sprintf("%s/%s", pos.name, mode), func(t *testing.T) {
						f := newFile(t, s)
						st := newStack(t, mode)
						p := st.start(nil)
						exact(t, "warming", goPlain.get(t, p.url+f.downloadPath(), nil), read{name: "whole", want: f.data})
						// Chunks proven by the whole read reach the cache in the
						// background, just after its last byte.
						p.flush()
						if mode == s3Cache {
							if st.objects() == 0 {
								t.Fatal("premise: nothing written to the bucket")
							}
						}
						corr := corrupt(t, f, pos.index(len(f.chunks)))
						whole, inside, elsewhere := readsOf(f, corr)
						check := func(p *instance, when string) {
							t.Helper()
							u := p.url + f.downloadPath()
							before := p.metric(`xetproxy_download_source_bytes_total{source="cache"}`)
							exact(t, when+", inside", goPlain.get(t, u, inside.rng), inside)
							if p.metric(`xetproxy_download_source_bytes_total{source="cache"}`) < before+float64(len(inside.want)) {
								t.Errorf("premise: %s: the range inside the damaged chunk was not served from the cache", when)
							}
							exact(t, when+", elsewhere", goTrailers.get(t, u, elsewhere.rng), elsewhere)
							exact(t, when+", whole", goPlain.get(t, u, nil), whole)
						}
						check(p, "same server")
						p.stop()
						if mode == diskCache {
							check(st.start(nil), "restarted")
						} else {
							check(st.start(func(c *server.Config) { c.CacheDir = t.TempDir() }), "second instance")
						}
					})
				}
			}
		})
	}
}

// TestCorruptEveryRoute: the whole file of a damaged raw chunk (the
// hardest case: it decodes) through each route that serves a file: never
// complete, and right once the Hub is healthy.
func TestCorruptEveryRoute(t *testing.T) {
	t.Parallel()
	f := newFile(t, schemes[0])
	p := newStack(t, noCache).start(nil)
	corr := corrupt(t, f, len(f.chunks)/2)
	routes := []string{
		f.downloadPath(),
		"/" + f.repo + "/resolve/main/" + f.path,
		"/download-hash/" + f.hash.String() + "?repo=" + f.repo,
	}
	for _, path := range routes {
		for _, c := range clients {
			mustFail(t, fmt.Sprintf("corrupt, %s %s", c, path), c.get(t, p.url+path, nil), f.data)
		}
	}
	heal(t, f, corr)
	for _, path := range routes {
		exact(t, "healed, "+path, goPlain.get(t, p.url+path, nil), read{name: "whole", want: f.data})
	}
}
