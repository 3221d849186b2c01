package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

// fakeEngine is an in-memory Engine for the handler tests: files by
// repo/revision/path, the tokens that may read them, and fault knobs. The
// end-to-end tests use the real engine against fakehub instead.
type fakeEngine struct {
	mu    sync.Mutex
	files map[string]*fakeFile // key: type/id@rev:path
	// failAfter: Open returns a body that fails after this many bytes (-1 = never).
	failAfter int64
	// failOpen: Open itself fails with this error.
	failOpen error
	// statErr: Stat fails with this error.
	statErr error
	// gate: when set, bodies block before each read until a value arrives
	// or the context ends.
	gate  chan struct{}
	opens int
	stats int
	// openTokens records the token of each Open.
	openTokens []string
	// live counts bodies not yet closed.
	live int
}

type fakeFile struct {
	data    []byte
	meta    hub.FileMeta
	private string // token required, "" = public
}

const fakeCommit = "0123456789abcdef0123456789abcdef01234567"

func newFakeEngine() *fakeEngine { return &fakeEngine{files: map[string]*fakeFile{}, failAfter: -1} }

func (e *fakeEngine) add(typ, id, rev, path string, data []byte, xet bool, private string) *fakeFile {
	sum := sha256.Sum256(data)
	f := &fakeFile{data: data, private: private}
	f.meta = hub.FileMeta{Commit: fakeCommit, Size: int64(len(data)), ETag: hex.EncodeToString(sum[:])}
	if xet {
		h := merklehash.ChunkHash(data)
		f.meta.XetHash = &h
	} else {
		f.meta.ETag = hex.EncodeToString(sum[:20]) // a git-sha1-like etag
	}
	e.mu.Lock()
	e.files[typ+"/"+id+"@"+rev+":"+path] = f
	e.mu.Unlock()
	return f
}

func (e *fakeEngine) Stat(ctx context.Context, token string, repo hub.Repo, revision, path string) (*hub.FileMeta, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats++
	if e.statErr != nil {
		return nil, e.statErr
	}
	f := e.files[string(repo.Type)+"/"+repo.ID+"@"+revision+":"+path]
	if f == nil {
		return nil, &hub.Error{Status: 404, Code: "EntryNotFound", Message: "Entry not found"}
	}
	if f.private != "" && token != f.private {
		if token == "" {
			return nil, &hub.Error{Status: 401, Code: "RepoNotFound", Message: "Repository not found"}
		}
		return nil, &hub.Error{Status: 404, Code: "RepoNotFound", Message: "Repository not found"}
	}
	m := f.meta
	return &m, nil
}

func (e *fakeEngine) StatHash(ctx context.Context, token string, repo hub.Repo, revision string, h merklehash.Hash) (*hub.FileMeta, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, f := range e.files {
		if f.meta.XetHash != nil && *f.meta.XetHash == h && len(k) > len(string(repo.Type)+"/"+repo.ID) && k[:len(string(repo.Type)+"/"+repo.ID)+1] == string(repo.Type)+"/"+repo.ID+"@" {
			if f.private != "" && token != f.private {
				return nil, &hub.Error{Status: 401, Code: "RepoNotFound", Message: "Repository not found"}
			}
			m := f.meta
			return &m, nil
		}
	}
	return nil, &hub.Error{Status: 404, Code: "EntryNotFound", Message: "no such file"}
}

func (e *fakeEngine) Open(ctx context.Context, token string, meta *hub.FileMeta, offset, length int64) (io.ReadCloser, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opens++
	e.openTokens = append(e.openTokens, token)
	if e.failOpen != nil {
		return nil, e.failOpen
	}
	var data []byte
	for _, f := range e.files {
		if f.meta.ETag == meta.ETag {
			data = f.data
		}
	}
	if offset >= int64(len(data)) {
		return nil, proxy.ErrRangeNotSatisfiable
	}
	e.live++
	return &fakeBody{e: e, ctx: ctx, data: data[offset : offset+length], failAfter: e.failAfter, gate: e.gate}, nil
}

type fakeBody struct {
	e         *fakeEngine
	ctx       context.Context
	data      []byte
	pos       int64
	failAfter int64
	gate      chan struct{}
	closed    bool
}

var errFakeUpstream = errors.New("fake upstream failure")

func (b *fakeBody) Read(p []byte) (int, error) {
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
	}
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	if b.pos >= int64(len(b.data)) {
		return 0, io.EOF
	}
	if b.failAfter >= 0 && b.pos >= b.failAfter {
		return 0, errFakeUpstream
	}
	end := min(int64(len(b.data)), b.pos+int64(len(p)), b.pos+64<<10)
	if b.failAfter >= 0 {
		end = min(end, b.failAfter)
	}
	n := copy(p, b.data[b.pos:end])
	b.pos += int64(n)
	return n, nil
}

func (b *fakeBody) Close() error {
	b.e.mu.Lock()
	defer b.e.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.e.live--
	}
	return nil
}

func (e *fakeEngine) liveBodies() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.live
}

func testEngine(t *testing.T) Engine { return newFakeEngine() }
