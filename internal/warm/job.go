package warm

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Job states.
const (
	StateListing   = "listing"   // listing the repo
	StateRunning   = "running"   // reading files
	StateDone      = "done"      // every selected Xet file is cached
	StateFailed    = "failed"    // the listing or some file failed
	StateCancelled = "cancelled" // stopped by shutdown
)

// Status is a snapshot of a job, as GET /admin/warm lists it.
type Status struct {
	ID       string   `json:"id"`
	RepoType string   `json:"repo_type"`
	Repo     string   `json:"repo"`
	Revision string   `json:"revision"`
	Include  []string `json:"include,omitempty"`
	Exclude  []string `json:"exclude,omitempty"`
	State    string   `json:"state"`
	// FilesTotal counts the selected files, skipped ones included;
	// FilesDone those now cached, of which FilesCached were cached before.
	FilesTotal   int `json:"files_total"`
	FilesDone    int `json:"files_done"`
	FilesCached  int `json:"files_cached"`
	FilesSkipped int `json:"files_skipped"`
	FilesFailed  int `json:"files_failed"`
	// BytesTotal is the size of the selected Xet files, BytesDone what has
	// been read of them, BytesUpstream what of that came from upstream.
	BytesTotal    int64      `json:"bytes_total"`
	BytesDone     int64      `json:"bytes_done"`
	BytesUpstream int64      `json:"bytes_upstream"`
	Started       time.Time  `json:"started"`
	Finished      *time.Time `json:"finished,omitempty"`
	// Error says why a job failed; ErrorStatus and ErrorCode classify a
	// failure of the job itself (the listing) as the server's answers do.
	Error       string `json:"error,omitempty"`
	ErrorStatus int    `json:"error_status,omitempty"`
	ErrorCode   string `json:"error_code,omitempty"`
}

// Event names.
const (
	EventJob          = "job"           // first line of every follower: the job as it is
	EventListed       = "listed"        // the selection is known: Job has the totals
	EventFileStarted  = "file_started"  // Path, Size
	EventFileProgress = "file_progress" // Path, Size, Bytes read so far
	EventFileDone     = "file_done"     // Result "warmed" or "cached", Bytes, UpstreamBytes
	EventFileSkipped  = "file_skipped"  // Path, Reason
	EventFileFailed   = "file_failed"   // Path, Error, Status, Code
	EventJobDone      = "job_done"      // Job with the final state and totals; the last line
	EventLagged       = "lagged"        // the follower missed Missed events
)

// Results of file_done.
const (
	ResultWarmed = "warmed" // fetched (some of it) from upstream into the cache
	ResultCached = "cached" // read entirely from the cache
)

// Event is one line of a job's progress stream.
type Event struct {
	Event         string  `json:"event"`
	Job           *Status `json:"job,omitempty"`
	Attached      bool    `json:"attached,omitempty"`
	Path          string  `json:"path,omitempty"`
	Size          int64   `json:"size,omitempty"`
	Bytes         int64   `json:"bytes,omitempty"`
	UpstreamBytes int64   `json:"upstream_bytes,omitempty"`
	Result        string  `json:"result,omitempty"`
	Reason        string  `json:"reason,omitempty"`
	Error         string  `json:"error,omitempty"`
	Status        int     `json:"status,omitempty"`
	Code          string  `json:"code,omitempty"`
	Missed        uint64  `json:"missed,omitempty"`
}

// ringSize is the number of events a job keeps for its followers.
const ringSize = 1024

// Job is one warm job.
type Job struct {
	id  string
	key string

	mu       sync.Mutex
	req      Request // Token dropped when the job ends
	st       Status
	ring     [ringSize]Event
	next     uint64        // sequence number of the next event
	changed  chan struct{} // closed and replaced at each event
	inflight map[*fileRun]struct{}
	done     chan struct{}
	initial  Status // as created: what a follower from the start sees first
}

// fileRun is a file being read.
type fileRun struct {
	path string
	size int64
	n    atomic.Int64 // bytes read
	last int64        // n at the last progress event (job.mu)
}

func newJob(id, key string, req Request) *Job {
	typ := string(req.Repo.Type)
	if typ == "" {
		typ = "model"
	}
	st := Status{
		ID: id, RepoType: typ, Repo: req.Repo.ID, Revision: req.Revision,
		Include: req.Include, Exclude: req.Exclude, State: StateListing, Started: time.Now().UTC(),
	}
	return &Job{
		id: id, key: key, req: req, st: st, initial: st,
		changed:  make(chan struct{}),
		inflight: make(map[*fileRun]struct{}),
		done:     make(chan struct{}),
	}
}

// ID returns the job's id.
func (j *Job) ID() string { return j.id }

// Done is closed when the job has ended.
func (j *Job) Done() <-chan struct{} { return j.done }

func (j *Job) finished() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// Status returns a snapshot of the job.
func (j *Job) Status() Status {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.statusLocked()
}

func (j *Job) statusLocked() Status {
	st := j.st
	st.Include, st.Exclude = slices.Clone(st.Include), slices.Clone(st.Exclude)
	for f := range j.inflight {
		st.BytesDone += f.n.Load()
	}
	if st.Finished != nil {
		t := *st.Finished
		st.Finished = &t
	}
	return st
}

func (j *Job) emitLocked(ev Event) {
	j.ring[j.next%ringSize] = ev
	j.next++
	close(j.changed)
	j.changed = make(chan struct{})
}

func (j *Job) emit(ev Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.emitLocked(ev)
}

// Follow calls fn with the job (event "job") and then with its events up
// to and including "job_done", in order. The one who started the job
// (attached false) gets the job as created and every event from the
// first; one who attached gets a snapshot of the job now and the events
// after it. It returns nil after job_done, fn's error, or ctx's.
func (j *Job) Follow(ctx context.Context, attached bool, fn func(Event) error) error {
	j.mu.Lock()
	st := j.statusLocked()
	seq := j.next
	ended := st.Finished != nil
	if !attached {
		// the job ran from Start on: replay it from its first event
		st = j.initial
		st.Include, st.Exclude = slices.Clone(st.Include), slices.Clone(st.Exclude)
		seq, ended = 0, false
	}
	j.mu.Unlock()
	if err := fn(Event{Event: EventJob, Job: &st, Attached: attached}); err != nil {
		return err
	}
	if ended {
		return fn(Event{Event: EventJobDone, Job: &st})
	}
	var batch []Event
	for {
		j.mu.Lock()
		batch = batch[:0]
		if oldest := j.next - min(j.next, ringSize); seq < oldest {
			batch = append(batch, Event{Event: EventLagged, Missed: oldest - seq})
			seq = oldest
		}
		for ; seq < j.next; seq++ {
			batch = append(batch, j.ring[seq%ringSize])
		}
		ch := j.changed
		j.mu.Unlock()
		for _, ev := range batch {
			if err := fn(ev); err != nil {
				return err
			}
			if ev.Event == EventJobDone {
				return nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// progress emits file_progress for the files read since the last call.
func (j *Job) progress() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for f := range j.inflight {
		if n := f.n.Load(); n != f.last {
			f.last = n
			j.emitLocked(Event{Event: EventFileProgress, Path: f.path, Size: f.size, Bytes: n})
		}
	}
}
