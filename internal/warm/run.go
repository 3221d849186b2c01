package warm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

// notXet is the reason given for skipping a file.
const notXet = "not stored in Xet: the chunk cache holds only Xet files"

// run is the life of a job, on its own goroutine.
func (m *Manager) run(j *Job) {
	defer m.wg.Done()
	defer m.ended(j)
	ctx := m.ctx
	req := j.req
	m.log.Info("warm job started", "job", j.id, "repo", req.Repo.String(), "revision", req.Revision,
		"include", req.Include, "exclude", req.Exclude, "token_set", req.Token != "")

	xet, err := m.list(ctx, j)
	if err != nil {
		m.finish(j, err)
		return
	}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range min(m.cfg.Files, len(xet)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(xet)) {
					return
				}
				m.warmFile(ctx, j, xet[i])
			}
		}()
	}
	stop := make(chan struct{})
	ticks := make(chan struct{})
	go func() {
		defer close(ticks)
		t := time.NewTicker(m.cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				j.progress()
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-ticks
	if m.cfg.Flush != nil && ctx.Err() == nil {
		// The promotions of proven chunks run in the background: wait for
		// them, so that a done job means cached.
		fctx, cancel := context.WithTimeout(ctx, m.cfg.FlushTimeout)
		if err := m.cfg.Flush(fctx); err != nil && ctx.Err() == nil {
			m.log.Warn("warm job: waiting for cache writes", "job", j.id, "err", err)
		}
		cancel()
	}
	m.finish(j, nil)
}

// list reads the repo's listing, selects the files, reports the totals
// and the skipped files, and returns the Xet files to read.
func (m *Manager) list(ctx context.Context, j *Job) ([]hub.Entry, error) {
	req := j.req
	var sel []hub.Entry
	err := m.cfg.List(ctx, req.Token, req.Repo, req.Revision, func(page []hub.Entry) error {
		for _, e := range page {
			if e.IsDir() || !selected(req.Include, req.Exclude, e.Path) {
				continue
			}
			if len(sel) >= m.cfg.MaxFiles {
				return fmt.Errorf("%w: more than %d; narrow the selection with include patterns", errTooManyFiles, m.cfg.MaxFiles)
			}
			sel = append(sel, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var xet []hub.Entry
	j.mu.Lock()
	defer j.mu.Unlock()
	j.st.State = StateRunning
	j.st.FilesTotal = len(sel)
	for _, e := range sel {
		if mayBeXet(e) {
			xet = append(xet, e)
			j.st.BytesTotal += e.Size
		}
	}
	st := j.statusLocked()
	j.emitLocked(Event{Event: EventListed, Job: &st})
	for _, e := range sel {
		if !mayBeXet(e) {
			j.st.FilesSkipped++
			j.emitLocked(Event{Event: EventFileSkipped, Path: e.Path, Size: e.Size, Reason: notXet})
		}
	}
	return xet, nil
}

// mayBeXet reports whether a listed file may be stored in Xet: the
// listing says so (xetHash), or it is an LFS file whose xetHash the
// listing left out (a mirror that strips it); resolving it tells.
// Files stored in git are not.
func mayBeXet(e hub.Entry) bool { return e.XetHash != nil || e.LFS != nil }

// warmFile reads one file whole through the engine.
func (m *Manager) warmFile(ctx context.Context, j *Job, e hub.Entry) {
	select {
	case m.slots <- struct{}{}:
	case <-ctx.Done():
		m.fileFailed(j, e.Path, e.Size, ctx.Err())
		return
	}
	defer func() { <-m.slots }()
	req := j.req
	meta, err := m.cfg.Engine.Stat(ctx, req.Token, req.Repo, req.Revision, e.Path)
	if err != nil {
		m.fileFailed(j, e.Path, e.Size, err)
		return
	}
	if meta.XetHash == nil {
		// an LFS file not in Xet, or one changed by a new commit
		j.mu.Lock()
		j.st.FilesSkipped++
		j.st.BytesTotal -= e.Size
		j.emitLocked(Event{Event: EventFileSkipped, Path: e.Path, Size: meta.Size, Reason: notXet})
		j.mu.Unlock()
		return
	}
	if meta.Size != e.Size {
		j.mu.Lock()
		j.st.BytesTotal += meta.Size - e.Size
		j.mu.Unlock()
	}
	if m.cfg.Admit != nil {
		release, err := m.cfg.Admit(ctx, meta.Size)
		if err != nil {
			m.fileFailed(j, e.Path, meta.Size, err)
			return
		}
		defer release()
	}
	f := &fileRun{path: e.Path, size: meta.Size}
	j.mu.Lock()
	j.inflight[f] = struct{}{}
	j.emitLocked(Event{Event: EventFileStarted, Path: f.path, Size: f.size})
	j.mu.Unlock()

	src, err := m.read(ctx, req.Token, meta, f)
	var ie *proxy.IntegrityError
	if errors.As(err, &ie) && ctx.Err() == nil {
		// The engine purged what it read; the truth may come now.
		m.log.Warn("warm job: integrity check failed; trying the file once more", "job", j.id, "path", e.Path, "err", err)
		f.n.Store(0)
		src, err = m.read(ctx, req.Token, meta, f)
	}
	j.mu.Lock()
	delete(j.inflight, f)
	j.mu.Unlock()
	if err != nil {
		m.fileFailed(j, e.Path, meta.Size, err)
		return
	}
	up := src.Upstream + src.Shared
	res := ResultWarmed
	if up == 0 {
		res = ResultCached
	}
	j.mu.Lock()
	j.st.FilesDone++
	if res == ResultCached {
		j.st.FilesCached++
	}
	j.st.BytesDone += meta.Size
	j.st.BytesUpstream += up
	j.emitLocked(Event{Event: EventFileDone, Path: e.Path, Size: meta.Size, Bytes: meta.Size, UpstreamBytes: up, Result: res})
	j.mu.Unlock()
}

// read reads the whole file into f's counter and says where the bytes
// came from.
func (m *Manager) read(ctx context.Context, token string, meta *hub.FileMeta, f *fileRun) (proxy.Sources, error) {
	rc, err := m.cfg.Engine.Open(ctx, token, meta, 0, meta.Size)
	if err != nil {
		return proxy.Sources{}, err
	}
	defer rc.Close()
	n, err := io.Copy(counter{&f.n}, rc)
	if err == nil && n != meta.Size {
		err = fmt.Errorf("read %d of %d bytes", n, meta.Size)
	}
	if err != nil {
		return proxy.Sources{}, err
	}
	var src proxy.Sources
	if sr, ok := rc.(proxy.SourceReporter); ok {
		src = sr.Sources()
	}
	return src, nil
}

// counter discards what it is given and counts it.
type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

func (m *Manager) fileFailed(j *Job, path string, size int64, err error) {
	ev := Event{Event: EventFileFailed, Path: path, Size: size, Error: err.Error()}
	if m.cfg.Classify != nil {
		ev.Status, ev.Code = m.cfg.Classify(err)
	}
	if m.ctx.Err() == nil {
		m.log.Warn("warm job: file failed", "job", j.id, "path", path, "err", err)
	}
	j.mu.Lock()
	j.st.FilesFailed++
	j.emitLocked(ev)
	j.mu.Unlock()
}

// finish ends j: its final state, the last event, the token dropped.
func (m *Manager) finish(j *Job, err error) {
	j.mu.Lock()
	now := time.Now().UTC()
	j.st.Finished = &now
	switch {
	case m.ctx.Err() != nil:
		j.st.State = StateCancelled
		j.st.Error = "cancelled: the server is shutting down"
	case err != nil:
		j.st.State = StateFailed
		j.st.Error = err.Error()
		if m.cfg.Classify != nil {
			j.st.ErrorStatus, j.st.ErrorCode = m.cfg.Classify(err)
		}
	case j.st.FilesFailed > 0:
		j.st.State = StateFailed
		j.st.Error = fmt.Sprintf("%d of %d files failed", j.st.FilesFailed, j.st.FilesTotal-j.st.FilesSkipped)
	default:
		j.st.State = StateDone
	}
	j.req.Token = ""
	st := j.statusLocked()
	j.emitLocked(Event{Event: EventJobDone, Job: &st})
	close(j.done)
	j.mu.Unlock()
	m.log.Info("warm job ended", "job", j.id, "repo", j.req.Repo.String(), "revision", j.req.Revision,
		"state", st.State, "files", st.FilesTotal, "done", st.FilesDone, "cached", st.FilesCached,
		"skipped", st.FilesSkipped, "failed", st.FilesFailed, "bytes", st.BytesDone, "upstream_bytes", st.BytesUpstream,
		"error", st.Error)
}
