package warm

import (
	"context"
	"testing"

	"github.com/xetproxy/xetproxy/internal/hub"
)

// A follower that falls more than the ring behind is told how many events
// it missed, then gets the rest in order up to job_done.
func TestFollowReportsMissedEvents(t *testing.T) {
	j := newJob("j", "k", Request{Repo: hub.Repo{ID: "org/m"}, Revision: "main"})
	unblock := make(chan struct{})
	snapshot := make(chan struct{})
	got := make(chan []Event, 1)
	go func() {
		var evs []Event
		err := j.Follow(context.Background(), false, func(ev Event) error {
			if ev.Event == EventJob {
				close(snapshot)
				<-unblock // slow reader
			}
			evs = append(evs, ev)
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		got <- evs
	}()
	const n = 2000
	<-snapshot // the follower took its snapshot at seq 0
	for i := range n {
		j.emit(Event{Event: EventFileProgress, Bytes: int64(i)})
	}
	j.emit(Event{Event: EventJobDone, Job: &Status{ID: "j", State: StateDone}})
	close(unblock)
	evs := <-got
	if len(evs) < 3 || evs[0].Event != EventJob {
		t.Fatalf("%d events, first %+v", len(evs), evs[0])
	}
	total := uint64(n + 1)
	if evs[1].Event != EventLagged || evs[1].Missed != total-ringSize {
		t.Fatalf("second event %+v, want lagged by %d", evs[1], total-ringSize)
	}
	if len(evs) != 2+ringSize || evs[len(evs)-1].Event != EventJobDone {
		t.Fatalf("%d events, last %+v", len(evs), evs[len(evs)-1])
	}
	for i, ev := range evs[2 : len(evs)-1] {
		if want := int64(n - ringSize + 1 + i); ev.Bytes != want {
			t.Fatalf("event %d: bytes %d, want %d (order)", i, ev.Bytes, want)
		}
	}
}
