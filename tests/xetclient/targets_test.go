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
