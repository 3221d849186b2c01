package xetclient

import (
	"testing"
	"time"
)

// targets are the servers every flow test runs against.
func targets(t *testing.T) []target {
	return []target{fakehubTarget()}
}

// urlExpiry returns functions that make the xorb URLs tg hands out from
// now on already expired, and that restore their lifetime.
func urlExpiry(t *testing.T, tg target) (expire, restore func()) {
	return func() { hub.SetURLTTL(-time.Minute) }, func() { hub.SetURLTTL(time.Hour) }
}

// assertSecondRunFree runs again and checks that the fake Hub sent no xorb
// bytes for it: the proxy served every range from its cache.
func assertSecondRunFree(t *testing.T, again func()) {
	t.Helper()
	t.Fatal("no proxy target yet")
}
