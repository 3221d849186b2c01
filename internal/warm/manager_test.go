package warm

import (
	"context"
	"errors"
	"testing"

	"github.com/xetproxy/xetproxy/internal/hub"
)

// A job that has ended (job_done sent) but whose goroutine has not yet
// taken it out of the running set is not attached to: the same request
// starts a new job.
func TestStartDoesNotAttachToAnEndedJob(t *testing.T) {
	listErr := errors.New("listing refused")
	m := New(Config{List: func(context.Context, string, hub.Repo, string, func([]hub.Entry) error) error { return listErr }})
	defer m.Close()
	req := Request{Repo: hub.Repo{ID: "org/m"}, Revision: "main"}
	old := newJob("old", req.key(), req)
	close(old.done) // ended, still in running: the window between finish and ended
	m.mu.Lock()
	m.running[old.key] = old
	m.mu.Unlock()

	j, attached, err := m.Start(req)
	if err != nil || attached || j == old {
		t.Fatalf("Start: job %v attached %v err %v, want a new job", j.id, attached, err)
	}
	<-j.done
	if st := j.Status(); st.State != StateFailed {
		t.Errorf("the new job: %+v, want it to run (and fail its listing)", st)
	}
}
