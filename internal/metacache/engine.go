package metacache

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

// DefaultRevalidate is how long an answer about a branch or tag is used
// before it is asked again.
const DefaultRevalidate = 5 * time.Minute

// Upstream is the download engine Engine decorates (the server's Engine
// interface; *proxy.Engine implements it).
type Upstream interface {
	Stat(ctx context.Context, token string, repo hub.Repo, revision, path string) (*hub.FileMeta, error)
	StatHash(ctx context.Context, token string, repo hub.Repo, revision string, h merklehash.Hash) (*hub.FileMeta, error)
	Open(ctx context.Context, token string, meta *hub.FileMeta, offset, length int64) (io.ReadCloser, error)
}

// CachedOpener serves a file from the chunk cache alone
// (*proxy.Engine.OpenCached, CheckCached); proxy.ErrNotCached when it
// cannot.
type CachedOpener interface {
	OpenCached(ctx context.Context, meta *hub.FileMeta, offset, length int64) (io.ReadCloser, error)
	CheckCached(ctx context.Context, meta *hub.FileMeta) error
}

// Config configures an Engine (and a Transport).
type Config struct {
	Store  *Store
	Health *Health
	// Revalidate: answers about branches and tags are asked again after
	// it (0: every time; commit ids are never asked again). Repos are also
	// probed for being public at most once per Revalidate (never with 0).
	Revalidate time.Duration
	// AuthTTL: an answer about a repo that is not public serves a token
	// that got a positive answer for the repo within AuthTTL (0: never).
	AuthTTL time.Duration
}

// Cache is the metadata store with its access rules and the upstream
// health, shared by the decorators it makes (Engine, Transport).
type Cache struct {
	store  *Store
	health *Health
	access *access
	reval  time.Duration
}

// New returns a Cache. A nil Store is a memory one; a nil Health is never
// offline.
func New(cfg Config) *Cache {
	if cfg.Store == nil {
		cfg.Store, _ = NewStore(StoreConfig{})
	}
	return &Cache{store: cfg.Store, health: cfg.Health, reval: cfg.Revalidate,
		access: newAccess(cfg.Store, cfg.AuthTTL, cfg.Revalidate)}
}

// Engine decorates a download engine with the metadata store and offline
// mode: resolves are answered from the store while fresh (and for anyone
// only for public repos), and while offline files come from the chunk
// cache alone. It implements Upstream itself.
type Engine struct {
	*Cache
	next   Upstream
	cached CachedOpener // nil: nothing served offline
}

var _ Upstream = (*Engine)(nil)

// Engine wraps next. If next implements CachedOpener, files are served
// from the chunk cache while offline.
func (c *Cache) Engine(next Upstream) *Engine {
	e := &Engine{Cache: c, next: next}
	e.cached, _ = next.(CachedOpener)
	return e
}

// Health returns the upstream state the decorators feed.
func (c *Cache) Health() *Health { return c.health }

// Codes of OfflineError.
const (
	CodeNotCachedOffline = "NotCachedOffline"
)

// ErrOffline is matched by every *OfflineError.
var ErrOffline = errors.New("upstream unreachable")

// OfflineError: the server is offline and cannot answer from its caches
// (not stored, or access to a repo that is not public cannot be checked).
// It says nothing about whether anything is stored for a caller that may
// not know.
type OfflineError struct {
	Code    string
	Message string // safe to show to the caller
	Err     error  // the cause, for logs; nil if none
}

func (e *OfflineError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}
func (e *OfflineError) Is(target error) bool { return target == ErrOffline }
func (e *OfflineError) Unwrap() error        { return e.Err }

func notCached(what string) error {
	return &OfflineError{Code: CodeNotCachedOffline, Message: "the Hub is unreachable and " + what +
		" is not available offline (not in the cache, or access to the repo cannot be checked without the Hub)"}
}

// IsCommit reports whether rev is a commit id: 40 lower-case hex digits.
func IsCommit(rev string) bool {
	if len(rev) != 40 {
		return false
	}
	for i := 0; i < len(rev); i++ {
		if c := rev[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// fileRecord is a stored resolve.
type fileRecord struct {
	Meta    hub.FileMeta `json:"meta"`
	Checked time.Time    `json:"checked"`
}

func resolveKey(repo hub.Repo, rev, path string) string {
	if rev == "" {
		rev = "main"
	}
	return "resolve " + repoKey(repo) + " " + strconv.Quote(rev) + " " + strconv.Quote(path)
}

func (e *Engine) load(key string) (*fileRecord, bool) {
	b, ok := e.store.Get(key)
	if !ok {
		return nil, false
	}
	var r fileRecord
	if json.Unmarshal(b, &r) != nil {
		return nil, false
	}
	return &r, true
}

// Stat resolves a file: from the store when the answer is fresh (a
// commit id, or checked within Revalidate) and may serve this caller,
// else upstream; while offline from the store only.
func (e *Engine) Stat(ctx context.Context, token string, repo hub.Repo, revision, path string) (*hub.FileMeta, error) {
	key := resolveKey(repo, revision, path)
	rec, have := e.load(key)
	may := have && e.access.mayServe(token, repo)
	if !e.health.TryUpstream() {
		if may {
			return e.meta(rec), nil
		}
		return nil, notCached(path)
	}
	if may && (IsCommit(revision) || time.Since(rec.Checked) < e.reval) {
		return e.meta(rec), nil
	}
	m, err := e.next.Stat(ctx, token, repo, revision, path)
	if err != nil {
		if Unreachable(err) && e.cached != nil && e.health.Offline() {
			if may {
				return e.meta(rec), nil
			}
			return nil, notCached(path)
		}
		if token == "" && refused(err) {
			e.access.setPublic(repo, false)
		}
		return nil, err
	}
	e.access.grant(token, repo)
	if token == "" {
		if !e.access.public(repo) {
			e.access.setPublic(repo, true)
		}
	} else if e.access.needsProbe(repo) {
		e.probe(ctx, repo, revision, path)
	}
	b, err := json.Marshal(fileRecord{Meta: *m, Checked: time.Now()})
	if err == nil {
		e.store.Put(key, b)
	}
	return m, nil
}

func (e *Engine) meta(r *fileRecord) *hub.FileMeta {
	m := r.Meta
	return &m
}

// probe learns whether repo is public by resolving the file again without
// credentials.
func (e *Engine) probe(ctx context.Context, repo hub.Repo, revision, path string) {
	_, err := e.next.Stat(ctx, "", repo, revision, path)
	switch {
	case err == nil:
		e.access.setPublic(repo, true)
	case refused(err):
		e.access.setPublic(repo, false)
	}
}

// refused reports a Hub answer that denies an anonymous caller: the repo
// is private, gated or gone.
func refused(err error) bool {
	var he *hub.Error
	if !errors.As(err, &he) {
		return false
	}
	switch he.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return true
	case http.StatusNotFound:
		return he.Code == "RepoNotFound"
	}
	return false
}

// StatHash needs upstream (the repo's listing, with the caller's token).
func (e *Engine) StatHash(ctx context.Context, token string, repo hub.Repo, revision string, h merklehash.Hash) (*hub.FileMeta, error) {
	if !e.health.TryUpstream() {
		return nil, notCached("a lookup by Xet hash")
	}
	return e.next.StatHash(ctx, token, repo, revision, h)
}

// Open opens the file upstream, or from the chunk cache alone while
// offline (Stat has decided who may read it).
func (e *Engine) Open(ctx context.Context, token string, meta *hub.FileMeta, offset, length int64) (io.ReadCloser, error) {
	if e.cached != nil && !e.health.TryUpstream() {
		return e.openCached(ctx, meta, offset, length)
	}
	rc, err := e.next.Open(ctx, token, meta, offset, length)
	if err != nil && e.cached != nil && Unreachable(err) && e.health.Offline() {
		return e.openCached(ctx, meta, offset, length)
	}
	return rc, err
}

// CheckOffline reports, while offline, whether the whole file meta
// describes can be served from the chunk cache: nil, or an *OfflineError.
// Online it is nil. For HEAD, which answers without opening the file.
func (e *Engine) CheckOffline(ctx context.Context, meta *hub.FileMeta) error {
	if e.cached == nil || !e.health.Offline() {
		return nil
	}
	if err := e.cached.CheckCached(ctx, meta); err != nil {
		if errors.Is(err, proxy.ErrNotCached) {
			return &OfflineError{Code: CodeNotCachedOffline, Message: "the Hub is unreachable and " +
				strings.TrimSpace(meta.Path) + " is not fully in the cache", Err: err}
		}
		return err
	}
	return nil
}

func (e *Engine) openCached(ctx context.Context, meta *hub.FileMeta, offset, length int64) (io.ReadCloser, error) {
	rc, err := e.cached.OpenCached(ctx, meta, offset, length)
	if errors.Is(err, proxy.ErrNotCached) {
		return nil, &OfflineError{Code: CodeNotCachedOffline, Message: "the Hub is unreachable and " +
			strings.TrimSpace(meta.Path) + " is not fully in the cache", Err: err}
	}
	return rc, err
}
