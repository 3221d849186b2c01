package xetclient

import (
	"testing"
	"time"
)

// targets are the servers every flow test runs against.
func targets(t *testing.T) []target {
	return []target{fakehubTarget()}
}

// urlExpiry returns stale, run before a reconstruction whose xorb URLs
// must be expired when fetched, and fresh, run once that answer is in,
// after which URLs live long enough again.
func urlExpiry(t *testing.T, tg target) (stale, fresh func()) {
	return func() { hub.SetURLTTL(-time.Minute) }, func() { hub.SetURLTTL(time.Hour) }
}

// assertSecondRunFree runs again and checks that the fake Hub sent no xorb
// bytes for it: the proxy served every range from its cache.
func assertSecondRunFree(t *testing.T, again func()) {
	t.Helper()
	t.Fatal("no proxy target yet")
}
