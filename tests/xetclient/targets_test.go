package xetclient

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
)

// targets are the servers every flow test runs against.
func targets(t *testing.T) []target {
	return []target{fakehubTarget(), proxyTarget(newProxy(t, nil))}
}

// urlExpiry returns the endpoint to use, stale, run before a
// reconstruction whose xorb URLs must be expired when fetched, and fresh,
// run once that answer is in, after which URLs live long enough again.
// The proxy's xorb URLs live XetURLTTL (whole seconds): a proxy with a
// short one, and fresh waits the first answer's URLs out.
func urlExpiry(t *testing.T, tg target) (endpoint string, stale, fresh func()) {
	if !tg.viaProxy {
		return tg.endpoint, func() { hub.SetURLTTL(-time.Minute) }, func() { hub.SetURLTTL(time.Hour) }
	}
	const ttl = 2 * time.Second
	p := newProxy(t, func(c *server.Config) { c.XetURLTTL = ttl })
	var issued time.Time
	return p.url, func() { issued = time.Now() }, func() { time.Sleep(time.Until(issued.Add(ttl + 1500*time.Millisecond))) }
}

// assertSecondRunFree runs again and checks that the fake Hub sent no xorb
// bytes for it: the proxy served every range from its cache.
//
// One exception, by design of the proxy: a one-chunk xorb's manifest does
// not prove the chunk's size (cache.Manifest), so the proxy always relays
// such xorbs from upstream (proxy.Engine.CASReconstruct). Those ranges are
// logged; any other upstream xorb byte fails the test. XETCLIENT_STRICT=1
// allows none at all.
func assertSecondRunFree(t *testing.T, again func()) {
	t.Helper()
	waitHubQuiet(t)
	before := xorbBytes()
	if before == 0 {
		t.Fatal("the first run fetched no xorb bytes upstream: nothing was measured")
	}
	n0 := len(hub.Requests())
	again()
	waitHubQuiet(t)
	oneChunk := oneChunkXorbs(t)
	strict := os.Getenv("XETCLIENT_STRICT") != ""
	var relayed, unexpected int64
	for _, r := range hub.Requests()[n0:] {
		if r.Class != fakehub.ClassXorb {
			continue
		}
		x := strings.TrimPrefix(strings.SplitN(r.Path, "?", 2)[0], "/cas/transfer/")
		if oneChunk[x] && !strict {
			relayed += r.BytesOut
			continue
		}
		unexpected += r.BytesOut
		t.Errorf("second run: upstream xorb %s %s (%d bytes)", x, r.Header.Get("Range"), r.BytesOut)
	}
	if relayed > 0 {
		t.Logf("second run: %d bytes of one-chunk xorbs relayed from upstream, as designed", relayed)
	}
	if d := xorbBytes() - before; d != relayed+unexpected {
		t.Errorf("upstream xorb bytes grew by %d, the request log accounts for %d", d, relayed+unexpected)
	}
}

// oneChunkXorbs is the set of xorbs (hex) of the fake Hub's files that hold
// a single chunk.
func oneChunkXorbs(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, repo := range []string{dedupRepo, otherRepo, privateRepo} {
		files, err := hub.Files(repo, "main")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if !f.Xet {
				continue
			}
			chunks, err := hub.FileChunks(f.XetHash)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range chunks {
				if c.XorbChunks == 1 {
					out[c.Xorb.String()] = true
				}
			}
		}
	}
	return out
}
