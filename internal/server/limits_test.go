package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// tryAcquire is acquire that reports whether the download was admitted
// (for admissions without a queue, which never wait).
func tryAcquire(a *admission, length int64) (func(), bool) {
	release, err := a.acquire(context.Background(), length)
	return release, err == nil
}

func TestAdmission(t *testing.T) {
	m := NewMetrics("test")
	a := newAdmission(&Config{MaxDownloads: 3, MaxBuffer: 100, ReadAhead: 40}, m)
	if ok, _ := a.ready(); !ok {
		t.Fatal("not ready when idle")
	}
	r1, ok := tryAcquire(a, 1000) // reserves 40
	if !ok {
		t.Fatal("first download refused")
	}
	r2, ok := tryAcquire(a, 10) // reserves 10
	if !ok {
		t.Fatal("small download refused")
	}
	if _, ok := tryAcquire(a, 1000); !ok { // 40+10+40 = 90 fits
		t.Fatal("third download refused with budget left")
	}
	if _, ok := tryAcquire(a, 1); ok {
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
	if _, ok := tryAcquire(a, 1000); !ok { // 10+40+40 = 90 fits again
		t.Fatal("refused after release")
	}
	r2()
	a2 := newAdmission(&Config{MaxDownloads: 10, MaxBuffer: 100, ReadAhead: 60}, m)
	if _, ok := tryAcquire(a2, 1000); !ok {
		t.Fatal("refused first")
	}
	if _, ok := tryAcquire(a2, 1000); ok {
		t.Fatal("admitted past the buffer budget")
	}
	if _, ok := tryAcquire(a2, 40); !ok {
		t.Fatal("small download refused though it fits the budget")
	}
	a2.setDraining()
	if ok, why := a2.ready(); ok || why != "draining" {
		t.Errorf("ready while draining = %v %q", ok, why)
	}
}

// A download reserves at most admissionCharge at admission, whatever its
// read-ahead: 16 readers of a file with 16 MiB read-ahead under a 256 MiB
// bound leave room for a 17th.
func TestAdmissionChargeIsSmall(t *testing.T) {
	a := newAdmission(&Config{MaxDownloads: 64, MaxBuffer: 256 << 20, ReadAhead: 16 << 20}, NewMetrics("test"))
	for i := range 17 {
		if _, ok := tryAcquire(a, 1<<30); !ok {
			t.Fatalf("reader %d refused", i+1)
		}
	}
	if got := a.reserved; got != 17*admissionCharge {
		t.Errorf("reserved %d, want %d", got, 17*admissionCharge)
	}
}

// Past the slots a download waits in the queue, is admitted in order when
// a slot frees, and is refused when the queue is full or its wait ends.
func TestAdmissionQueue(t *testing.T) {
	m := NewMetrics("test")
	a := newAdmission(&Config{MaxDownloads: 1, MaxBuffer: 100, ReadAhead: 10, QueueMax: 2, QueueTimeout: time.Hour}, m)
	r1, ok := tryAcquire(a, 5)
	if !ok {
		t.Fatal("first refused")
	}
	type result struct {
		release func()
		err     error
	}
	second, third := make(chan result, 1), make(chan result, 1)
	go func() { r, err := a.acquire(context.Background(), 5); second <- result{r, err} }()
	waitFor(t, func() bool { return a.queued() == 1 })
	go func() { r, err := a.acquire(context.Background(), 5); third <- result{r, err} }()
	waitFor(t, func() bool { return a.queued() == 2 })
	if ok, why := a.ready(); ok || why != "download queue full" {
		t.Errorf("ready with the queue full = %v %q", ok, why)
	}
	if _, err := a.acquire(context.Background(), 5); !errors.Is(err, errOverloaded) {
		t.Fatalf("full queue: %v, want errOverloaded", err)
	}
	r1()
	got := <-second
	if got.err != nil {
		t.Fatalf("second after the first ended: %v", got.err)
	}
	select {
	case r := <-third:
		t.Fatalf("third admitted while the second holds the slot: %v", r.err)
	default:
	}
	if ok, _ := a.ready(); !ok {
		t.Error("not ready with room in the queue")
	}
	got.release()
	if r := <-third; r.err != nil {
		t.Fatalf("third: %v", r.err)
	} else {
		r.release()
	}
	if a.inFlight() != 0 || a.queued() != 0 || a.reserved != 0 {
		t.Errorf("after all: %d in flight, %d queued, %d reserved", a.inFlight(), a.queued(), a.reserved)
	}

	// a wait that times out, and one whose caller leaves
	b := newAdmission(&Config{MaxDownloads: 1, MaxBuffer: 100, ReadAhead: 10, QueueMax: 5, QueueTimeout: time.Millisecond}, m)
	hold, _ := tryAcquire(b, 5)
	if _, err := b.acquire(context.Background(), 5); !errors.Is(err, errOverloaded) {
		t.Fatalf("timed out wait: %v", err)
	}
	c := newAdmission(&Config{MaxDownloads: 1, MaxBuffer: 100, ReadAhead: 10, QueueMax: 5, QueueTimeout: time.Hour}, m)
	holdC, _ := tryAcquire(c, 5)
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() { _, err := c.acquire(ctx, 5); left <- err }()
	waitFor(t, func() bool { return c.queued() == 1 })
	cancel()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller gone: %v", err)
	}
	if c.queued() != 0 {
		t.Error("a leaving caller stays queued")
	}
	// draining refuses those waiting
	go func() { _, err := c.acquire(context.Background(), 5); left <- err }()
	waitFor(t, func() bool { return c.queued() == 1 })
	c.setDraining()
	if err := <-left; !errors.Is(err, errOverloaded) {
		t.Fatalf("queued at drain: %v", err)
	}
	hold()
	holdC()
	if c.inFlight() != 0 || b.inFlight() != 0 {
		t.Error("slots not given back")
	}
}

// Background work never goes before a queued client.
func TestAcquireBackgroundYieldsToQueue(t *testing.T) {
	a := newAdmission(&Config{MaxDownloads: 8, MaxBuffer: 100, ReadAhead: 50, QueueMax: 4, QueueTimeout: time.Hour}, NewMetrics("test"))
	r1, _ := tryAcquire(a, 30)
	r2, _ := tryAcquire(a, 30)
	rb, ok, _ := a.acquireBackground(10)
	if !ok {
		t.Fatal("premise: background work fits next to 60 of 100 bytes")
	}
	defer rb()
	done := make(chan error, 1)
	go func() {
		r, err := a.acquire(context.Background(), 50) // 70+50 > 100: waits
		if err == nil {
			r()
		}
		done <- err
	}()
	waitFor(t, func() bool { return a.queued() == 1 })
	if _, ok, _ := a.acquireBackground(1); ok {
		t.Error("background work admitted before a queued client")
	}
	r1()
	r2()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The queue settings: 4×max-downloads waiting for 30s by default, from
// the environment or flags, with bad values refused.
func TestConfigQueue(t *testing.T) {
	c, err := parseConfig(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.QueueMax != -1 || c.queueMax() != 4*c.MaxDownloads || c.QueueTimeout != 30*time.Second {
		t.Errorf("defaults: queue max %d (%d), timeout %v", c.QueueMax, c.queueMax(), c.QueueTimeout)
	}
	c, err = parseConfig(t, map[string]string{"XETPROXY_QUEUE_MAX": "7", "XETPROXY_QUEUE_TIMEOUT": "5s"})
	if err != nil || c.queueMax() != 7 || c.QueueTimeout != 5*time.Second {
		t.Errorf("env: %v %d %v", err, c.queueMax(), c.QueueTimeout)
	}
	c, err = parseConfig(t, nil, "--queue-max=0", "--queue-timeout=1m")
	if err != nil || c.queueMax() != 0 || c.QueueTimeout != time.Minute {
		t.Errorf("flags: %v %d %v", err, c.queueMax(), c.QueueTimeout)
	}
	for _, args := range [][]string{{"--queue-max=-2"}, {"--queue-timeout=-1s"}} {
		if _, err := parseConfig(t, nil, args...); err == nil || !strings.Contains(err.Error(), "queue-") {
			t.Errorf("%v: %v", args, err)
		}
	}
}
