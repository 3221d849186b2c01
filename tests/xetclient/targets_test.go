package xetclient

import (
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
// bytes for it: the proxy served every range from its cache (one-chunk
// xorbs included).
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
	for _, r := range hub.Requests()[n0:] {
		if r.Class == fakehub.ClassXorb {
			t.Errorf("second run: upstream xorb %s %s (%d bytes)", r.Path, r.Header.Get("Range"), r.BytesOut)
		}
	}
	if d := xorbBytes() - before; d != 0 {
		t.Errorf("second run: upstream xorb bytes grew by %d", d)
	}
}
