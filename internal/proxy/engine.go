package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Defaults of Config.
const (
	DefaultBlockSize    = 256 << 20
	DefaultParallel     = 8
	DefaultStreamBuffer = 64 << 20
	DefaultMaxBuffer    = 1 << 30
	DefaultFillBuffer   = 256 << 20
	DefaultFillTimeout  = 30 * time.Minute
	DefaultStaging      = 256 << 20
)

// Config configures an Engine. Zero fields take the defaults.
type Config struct {
	// Hub resolves files and mints read tokens (default: the public Hub).
	Hub *hub.Client
	// CAS queries reconstructions and fetches xorb ranges (default client).
	CAS *casclient.Client
	// BlockSize is the number of file bytes asked per reconstruction
	// query; a large file is read in successive blocks.
	BlockSize int64
	// Parallel bounds the xorb range downloads running ahead of the reader
	// in one stream. The download the reader is waiting for always runs.
	Parallel int
	// StreamBuffer bounds the decoded bytes one stream holds ahead of its
	// reader; MaxBuffer bounds them for all streams of the engine.
	StreamBuffer int64
	MaxBuffer    int64
	// Logger gets debug events and cache warnings (default: discard).
	Logger *slog.Logger

	// Cache, if not nil, holds decoded chunks by content (see cache.go):
	// xorb ranges are looked up before they are fetched, and fetched ranges
	// are filled into it by detached, single-flighted fills. Close closes
	// it when it has a Close method.
	Cache cache.Store
	// Staging holds the chunks a whole-file read fetched without a proof
	// (no manifest of their xorb) until its file hash checks; they are
	// then promoted to Cache. It must be private to this process and be
	// emptied at start (a disk directory wiped by the caller). nil: a
	// memory store of DefaultStaging bytes. See proof.go.
	Staging cache.Store
	// NoSendfile writes disk cache hits from the checked copy in memory
	// instead of sending them from their file (sendfile.go): for a cache
	// directory that something else than this process might write in
	// place while its bytes are being sent.
	NoSendfile bool
	// FillBuffer bounds the decoded bytes all cache fills hold in memory
	// between decoding and their Put (default 256 MiB).
	FillBuffer int64
	// FillTimeout bounds one fill, which runs detached from the request
	// that started it (default 30 minutes; upstream stalls are caught sooner
	// by the CAS client's progress check).
	FillTimeout time.Duration
	// AuthTTL is how long positive upstream answers (resolve, file size,
	// reconstruction) are reused for the same user token, repo and
	// revision. 0 disables the memo: every request asks upstream.
	AuthTTL time.Duration

	// Terms, if not nil, keeps the terms of every file read whole and
	// verified, for OpenCached (offline.go). Without it, or without a
	// Cache, OpenCached always answers ErrNotCached.
	Terms TermStore

	// HashListMax bounds the work of StatHash: the entries (files and
	// directories) it lists in a repo to find a Xet hash (default
	// DefaultHashListMax). A larger repo is ErrListingTooLarge.
	HashListMax int
	// HashListTTL is how long StatHash keeps what a listing found, for
	// lookups of any hash by the same token in the same repo and revision,
	// found or not (default DefaultHashListTTL).
	HashListTTL time.Duration
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.BlockSize < 0 || c.Parallel < 0 || c.StreamBuffer < 0 || c.MaxBuffer < 0 ||
		c.FillBuffer < 0 || c.FillTimeout < 0 || c.AuthTTL < 0 ||
		c.HashListMax < 0 || c.HashListTTL < 0 {
		return errors.New("proxy: negative size in config")
	}
	if c.BlockSize != 0 && c.BlockSize < 1<<20 {
		return errors.New("proxy: block size under 1 MiB")
	}
	return nil
}

// Engine downloads Xet files: it resolves them on the Hub, queries their
// reconstruction from the CAS in blocks, fetches the xorb ranges in
// parallel under a byte budget, decodes and checks every chunk, and
// streams the bytes in order. Files not stored in Xet are streamed from
// the Hub. Safe for concurrent use; one Engine serves many streams.
type Engine struct {
	hub       *hub.Client
	cas       *casclient.Client
	blockSize uint64
	parallel  int
	streamBuf int64
	budget    *budget // shared by all streams
	sendfile  bool    // disk hits may be sent from their files (NoSendfile)
	log       *slog.Logger

	source      chunkSource // upstream, or the cache around it
	cache       cache.Store // nil: no cache
	staging     cache.Store // nil: unproven chunks are not kept
	manifests   *manifestTable
	bg          bgTracker // promotions in flight
	fills       *fillTable
	xorbFlights *xorbFlights // nil without a cache (xetflight.go)
	xorbStall   time.Duration
	fillBudget  *budget
	kept        keptList // fill segments kept in memory for their readers (retain.go)
	fillTimeout time.Duration
	memo        *memo     // nil: disabled
	terms       TermStore // nil: OpenCached serves nothing
	hashes      *hashIndexes
	hashListMax int
	stats       counters
	streams     atomic.Uint64  // numbers streams
	segLocks    [64]sync.Mutex // serialise the Puts of partial segments (putSegment)
	pieces      pieceTable     // parts of segments stored, for putSegment

	closeOnce sync.Once
}

// New returns an Engine.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		hub: cfg.Hub, cas: cfg.CAS, blockSize: uint64(cfg.BlockSize), parallel: cfg.Parallel,
		streamBuf: cfg.StreamBuffer, log: cfg.Logger,
	}
	if e.hub == nil {
		e.hub = hub.NewClient("")
	}
	if e.cas == nil {
		c, err := casclient.New(casclient.Config{})
		if err != nil {
			return nil, err
		}
		e.cas = c
	}
	if e.blockSize == 0 {
		e.blockSize = DefaultBlockSize
	}
	if e.parallel == 0 {
		e.parallel = DefaultParallel
	}
	if e.streamBuf == 0 {
		e.streamBuf = DefaultStreamBuffer
	}
	maxBuf := cfg.MaxBuffer
	if maxBuf == 0 {
		maxBuf = DefaultMaxBuffer
	}
	e.budget = newBudget(maxBuf)
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.manifests = newManifestTable()
	e.sendfile = !cfg.NoSendfile
	e.source = upstreamSource{}
	if cfg.Cache != nil {
		e.cache = cfg.Cache
		e.source = cacheSource{next: upstreamSource{}}
		e.staging = cfg.Staging
		if e.staging == nil {
			m, err := cache.NewMemory(DefaultStaging)
			if err != nil {
				return nil, err
			}
			e.staging = m
		}
		e.fills = newFillTable()
		e.xorbFlights, e.xorbStall = newXorbFlights(), defaultXorbStall
		fb := cfg.FillBuffer
		if fb == 0 {
			fb = DefaultFillBuffer
		}
		e.fillBudget = newBudget(fb)
		e.fillTimeout = cfg.FillTimeout
		if e.fillTimeout == 0 {
			e.fillTimeout = DefaultFillTimeout
		}
	}
	e.terms = cfg.Terms
	if cfg.AuthTTL > 0 {
		e.memo = newMemo(cfg.AuthTTL)
	}
	e.hashListMax = cfg.HashListMax
	if e.hashListMax == 0 {
		e.hashListMax = DefaultHashListMax
	}
	ttl := cfg.HashListTTL
	if ttl == 0 {
		ttl = DefaultHashListTTL
	}
	e.hashes = newHashIndexes(ttl, e.hashListMax)
	return e, nil
}

// Hub returns the engine's Hub client.
func (e *Engine) Hub() *hub.Client { return e.hub }

// Stat resolves path at revision in repo as the user holding token ("" =
// anonymous). Hub answers (not found, auth) come back as *hub.Error.
func (e *Engine) Stat(ctx context.Context, token string, repo hub.Repo, revision, path string) (*hub.FileMeta, error) {
	key := e.memo.key(token, repo, revision, "resolve", path)
	if v, ok := e.memo.get(key); ok {
		m := *v.(*hub.FileMeta)
		return &m, nil
	}
	m, err := e.hub.Resolve(ctx, token, repo, revision, path)
	if err != nil {
		return nil, upstream("resolve", path, err)
	}
	c := *m
	e.memo.put(key, &c)
	return m, nil
}

// StatHash describes the Xet file with hash h as a file of repo at
// revision. The CAS binds a read token to a repo but does not check that a
// hash belongs to it, so the hash is looked up in the repo's file listing,
// fetched with the caller's credentials: a caller cannot read a file it
// knows only by hash through some other repo it can read. The listing also
// gives the size and the sha256 ETag.
//
// The work is bounded and shared (see hashIndexes): one listing of at most
// Config.HashListMax entries per (token, repo, revision), shared by
// concurrent lookups and kept for Config.HashListTTL, so that lookups of
// other hashes, found or not, ask the Hub nothing more. A repo listing
// more entries is ErrListingTooLarge.
func (e *Engine) StatHash(ctx context.Context, token string, repo hub.Repo, revision string, h merklehash.Hash) (*hub.FileMeta, error) {
	files, err := e.hashes.files(ctx, hashIndexKey(token, repo, revision), func(ctx context.Context) (map[merklehash.Hash]hashFile, error) {
		return e.listXetFiles(ctx, token, repo, revision, e.hashListMax)
	})
	if err != nil {
		return nil, err
	}
	f, ok := files[h]
	if !ok {
		return nil, fmt.Errorf("xet file %s in %s@%s: %w", h, repo.ID, revision, ErrNotFound)
	}
	return &hub.FileMeta{Repo: repo, Revision: revision, Path: f.path, XetHash: &h, Size: f.size, ETag: f.etag}, nil
}

// ErrNotFound: a Xet hash that names no file of the repo.
var ErrNotFound = errors.New("not found")

// auth returns the casclient.Auth of a user for the repo of m.
func (e *Engine) auth(token string, m *hub.FileMeta) casclient.Auth {
	return func(ctx context.Context, rejected string) (string, string, error) {
		if rejected != "" {
			e.hub.ForgetToken(token, m.Repo, m.TokenRevision(), rejected)
		}
		t, err := e.hub.ReadToken(ctx, token, m.Repo, m.TokenRevision())
		if err != nil {
			return "", "", err
		}
		return t.CASURL, t.AccessToken, nil
	}
}

// Open returns the bytes [offset, offset+length) of the file meta
// describes (length < 0: to the end; a length past the end is cut at the
// end). offset at or past the end of a non-empty file is
// ErrRangeNotSatisfiable.
//
// Open does the first reconstruction query itself, so a missing file, a
// refused token or an unreachable CAS is its error; what fails later is a
// Read error. The reader yields exactly the requested bytes and then
// io.EOF, or an error: never an early clean EOF. A read of the whole file
// is checked against the Xet file hash (or, for other files, the sha256
// or git blob sha1 of the ETag) before io.EOF. The caller must Close the
// reader; closing it, or cancelling ctx, stops every transfer.
func (e *Engine) Open(ctx context.Context, token string, meta *hub.FileMeta, offset, length int64) (io.ReadCloser, error) {
	length, err := clampRange(meta.Size, offset, length)
	if err != nil {
		return nil, err
	}
	whole := offset == 0 && length == meta.Size
	if meta.XetHash == nil {
		return e.openPlain(ctx, token, meta, offset, length, whole)
	}
	if length == 0 {
		if whole && !meta.XetHash.IsZero() {
			return nil, &IntegrityError{File: meta.XetHash.String(), Err: errors.New("an empty file has the zero hash")}
		}
		return io.NopCloser(emptyReader{}), nil
	}
	return e.openXet(ctx, token, meta, uint64(offset), uint64(length), whole)
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, io.EOF }

// clampRange checks offset against a file of size bytes and cuts length
// (negative: to the end) to what the file holds.
func clampRange(size, offset, length int64) (int64, error) {
	switch {
	case offset < 0 || size < 0:
		return 0, fmt.Errorf("proxy: bad offset %d or size %d", offset, size)
	case offset > size || (offset == size && size > 0):
		return 0, fmt.Errorf("offset %d of a %d-byte file: %w", offset, size, ErrRangeNotSatisfiable)
	}
	if length < 0 || length > size-offset {
		length = size - offset
	}
	return length, nil
}
