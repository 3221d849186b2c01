package server

import "testing"

func TestAdmission(t *testing.T) {
	m := NewMetrics("test")
	a := newAdmission(&Config{MaxDownloads: 3, MaxBuffer: 100, ReadAhead: 40}, m)
	if ok, _ := a.ready(); !ok {
		t.Fatal("not ready when idle")
	}
	r1, ok := a.acquire(1000) // reserves 40
	if !ok {
		t.Fatal("first download refused")
	}
	r2, ok := a.acquire(10) // reserves 10
	if !ok {
		t.Fatal("small download refused")
	}
	if _, ok := a.acquire(1000); ok { // 40+10+40 = 90 fits, so this must pass; check the next one
	} else {
		t.Fatal("third download refused with budget left")
	}
	if _, ok := a.acquire(1); ok {
		t.Fatal("fourth download admitted past max downloads")
	}
	if ok, why := a.ready(); ok || why != "download slots full" {
		t.Errorf("ready = %v %q with slots full", ok, why)
	}
	r1()
	r1() // idempotent
	if a.inFlight() != 2 {
		t.Errorf("in flight = %d after one release", a.inFlight())
	}
	if _, ok := a.acquire(1000); ok {
		// 10+40+40 = 90 fits again
	} else {
		t.Fatal("refused after release")
	}
	r2()
	a2 := newAdmission(&Config{MaxDownloads: 10, MaxBuffer: 100, ReadAhead: 60}, m)
	if _, ok := a2.acquire(1000); !ok {
		t.Fatal("refused first")
	}
	if _, ok := a2.acquire(1000); ok {
		t.Fatal("admitted past the buffer budget")
	}
	if _, ok := a2.acquire(40); !ok {
		t.Fatal("small download refused though it fits the budget")
	}
	a2.setDraining()
	if ok, why := a2.ready(); ok || why != "draining" {
		t.Errorf("ready while draining = %v %q", ok, why)
	}
}
