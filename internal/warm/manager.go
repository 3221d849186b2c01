package warm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
)

// Engine is what a job needs of the download engine; *proxy.Engine
// implements it.
type Engine interface {
	// Stat resolves path at revision of repo with token.
	Stat(ctx context.Context, token string, repo hub.Repo, revision, path string) (*hub.FileMeta, error)
	// Open returns the bytes of the file from offset; a whole-file read is
	// checked against the file hash before its clean end.
	Open(ctx context.Context, token string, meta *hub.FileMeta, offset, length int64) (io.ReadCloser, error)
}

// ListFunc lists every entry of repo at revision, recursively, one page at
// a time in order, stopping with fn's error (hub.Client.ListPages).
type ListFunc func(ctx context.Context, token string, repo hub.Repo, revision string, fn func(page []hub.Entry) error) error

// AdmitFunc waits until a read of size bytes may start, and returns the
// function that gives its share back; or fails when ctx ends or no read
// can start any more (shutdown).
type AdmitFunc func(ctx context.Context, size int64) (release func(), err error)

// ClassifyFunc maps an error to the HTTP status and Hub-style error code
// the server would answer for it (404 RepoNotFound, 502 IntegrityError...).
type ClassifyFunc func(err error) (status int, code string)

// Defaults of Config.
const (
	DefaultFiles         = 4
	DefaultMaxFiles      = 100_000
	DefaultKeepJobs      = 100
	DefaultMaxRunning    = 32
	DefaultProgressEvery = 500 * time.Millisecond
	DefaultFlushTimeout  = time.Minute
)

// Config configures a Manager. Zero fields take the defaults.
type Config struct {
	Engine   Engine   // required
	List     ListFunc // required
	Admit    AdmitFunc
	Flush    func(ctx context.Context) error // waits for the engine's cache writes; nil = none
	Classify ClassifyFunc
	// Files bounds the files read at once over all jobs (each job also
	// runs at most Files workers).
	Files int
	// MaxFiles bounds the files one job selects; a larger selection fails
	// the job (narrow it with include patterns).
	MaxFiles int
	// KeepJobs is the number of finished jobs kept for Jobs.
	KeepJobs int
	// MaxRunning bounds the jobs running at once; past it Start fails
	// with ErrBusy.
	MaxRunning int
	// ProgressEvery is the interval of file_progress events.
	ProgressEvery time.Duration
	// FlushTimeout bounds the Flush at the end of a job.
	FlushTimeout time.Duration
	Logger       *slog.Logger
}

// Errors of Start.
var (
	ErrInvalid = errors.New("invalid warm request")
	ErrClosed  = errors.New("warming is shut down")
	ErrBusy    = errors.New("too many warm jobs running")
)

// errTooManyFiles fails a job whose selection is larger than MaxFiles.
var errTooManyFiles = errors.New("too many files selected")

// Request asks for a repo at a revision to be warmed.
type Request struct {
	Repo     hub.Repo
	Revision string   // "" = main
	Include  []string // globs; none = every file
	Exclude  []string
	// Token is the upstream credential of the listing and the reads
	// ("" = anonymous). It is never shown or logged.
	Token string
}

// Validate reports a request that cannot run.
func (r *Request) Validate() error {
	if err := r.Repo.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if r.Revision == "" {
		r.Revision = "main"
	}
	if len(r.Include) > 100 || len(r.Exclude) > 100 {
		return fmt.Errorf("%w: at most 100 include and 100 exclude patterns", ErrInvalid)
	}
	if err := checkPatterns(r.Include); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkPatterns(r.Exclude); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// key identifies the work of r: a digest of the token, never the token.
func (r *Request) key() string {
	d := sha256.Sum256([]byte(r.Token))
	typ := r.Repo.Type
	if typ == "" {
		typ = hub.Model
	}
	return strings.Join([]string{hex.EncodeToString(d[:16]), string(typ), r.Repo.ID, r.Revision,
		strings.Join(r.Include, "\x01"), strings.Join(r.Exclude, "\x01")}, "\x00")
}

// Manager runs warm jobs in the background, until Close.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{} // server-wide file slots
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	running map[string]*Job // by key
	jobs    []*Job          // running and kept, oldest first
}

// New returns a Manager.
func New(cfg Config) *Manager {
	if cfg.Files <= 0 {
		cfg.Files = DefaultFiles
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	if cfg.KeepJobs <= 0 {
		cfg.KeepJobs = DefaultKeepJobs
	}
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = DefaultMaxRunning
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = DefaultProgressEvery
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = DefaultFlushTimeout
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, slots: make(chan struct{}, cfg.Files), running: make(map[string]*Job)}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// Start starts warming what req names, or returns the running job with
// the same key (attached true). Errors: ErrInvalid (wrapped), ErrClosed,
// ErrBusy.
func (m *Manager) Start(req Request) (j *Job, attached bool, err error) {
	if err := req.Validate(); err != nil {
		return nil, false, err
	}
	req.Include, req.Exclude = slices.Clone(req.Include), slices.Clone(req.Exclude)
	key := req.key()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false, ErrClosed
	}
	// A job that has sent job_done but not yet left running (its goroutine
	// is on its way out) is over: a new request starts a new job instead
	// of attaching to a finished one and getting its old result.
	if j := m.running[key]; j != nil && !j.finished() {
		return j, true, nil
	}
	if len(m.running) >= m.cfg.MaxRunning {
		return nil, false, ErrBusy
	}
	j = newJob(newID(), key, req)
	m.running[key] = j
	m.jobs = append(m.jobs, j)
	m.wg.Add(1)
	go m.run(j)
	return j, false, nil
}

// Jobs returns a snapshot of the running and kept jobs, newest first.
func (m *Manager) Jobs() []Status {
	m.mu.Lock()
	jobs := slices.Clone(m.jobs)
	m.mu.Unlock()
	out := make([]Status, 0, len(jobs))
	for i := len(jobs) - 1; i >= 0; i-- {
		out = append(out, jobs[i].Status())
	}
	return out
}

// Job returns the job with this id, running or kept.
func (m *Manager) Job(id string) *Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range m.jobs {
		if j.id == id {
			return j
		}
	}
	return nil
}

// Close refuses new jobs and cancels the running ones; they end as
// "cancelled" shortly after. Wait waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
}

// Wait waits until every job has ended, or ctx is done.
func (m *Manager) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ended moves j from running to kept, dropping the oldest kept jobs past
// KeepJobs.
func (m *Manager) ended(j *Job) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running[j.key] == j {
		delete(m.running, j.key)
	}
	kept := len(m.jobs) - len(m.running)
	for i := 0; kept > m.cfg.KeepJobs && i < len(m.jobs); {
		if m.jobs[i].finished() {
			m.jobs = slices.Delete(m.jobs, i, i+1)
			kept--
			continue
		}
		i++
	}
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
