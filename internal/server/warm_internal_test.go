package server

import (
	"context"
	"testing"
)

// Warming takes download slots and read-ahead like downloads, but only
// while a quarter of each stays free for clients.
func TestAcquireBackgroundLeavesAQuarterToClients(t *testing.T) {
	c := &Config{MaxDownloads: 8, MaxBuffer: 800, ReadAhead: 50}
	a := newAdmission(c, NewMetrics("test"))
	var held []func()
	for {
		release, ok, draining := a.acquireBackground(10)
		if draining {
			t.Fatal("draining reported before the drain")
		}
		if !ok {
			break
		}
		held = append(held, release)
	}
	if len(held) != 6 {
		t.Fatalf("background work took %d of 8 slots, want 6", len(held))
	}
	// clients get the rest
	for i := 0; i < 2; i++ {
		if _, err := a.acquire(context.Background(), 10); err != nil {
			t.Fatalf("client download %d refused next to background work", i+1)
		}
	}
	if _, err := a.acquire(context.Background(), 10); err == nil {
		t.Fatal("premise: the slots are all taken now")
	}
	for _, r := range held {
		r()
	}

	// the read-ahead budget: 50 bytes each, background up to 150 of 200
	b := newAdmission(&Config{MaxDownloads: 100, MaxBuffer: 200, ReadAhead: 50}, NewMetrics("test"))
	n := 0
	for {
		if _, ok, _ := b.acquireBackground(1 << 20); !ok {
			break
		}
		n++
	}
	if n != 3 {
		t.Fatalf("background work reserved %d read-aheads of 50 in 200, want 3", n)
	}
	if _, err := b.acquire(context.Background(), 1<<20); err != nil {
		t.Fatal("client download refused next to background work")
	}

	b.setDraining()
	if _, ok, draining := b.acquireBackground(0); ok || !draining {
		t.Fatalf("while draining: ok %v, draining %v", ok, draining)
	}
}
