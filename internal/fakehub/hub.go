package fakehub

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/xorb"
)

// Config describes a Hub. The zero value is a working in-memory Hub.
type Config struct {
	// Dir keeps xorbs on disk under Dir/xorbs (with a small JSON sidecar
	// each) instead of in memory; what is found there is reused. Empty
	// means everything stays in memory.
	Dir string

	// Compression is the xorb compression policy of ingestion: "auto"
	// (default), "none", "lz4" or "bg4".
	Compression string

	// PublicURL is the scheme://host[:port] used in absolute links
	// (Link headers, tree pagination, redirects, casUrl). Empty means the
	// Host of each request, over http. SetPublicURL changes it later.
	PublicURL string
	// CASURL is the scheme://host[:port] of the server that answers CAS
	// requests (this same handler, mounted elsewhere); casUrl is CASURL
	// followed by /cas. Empty means the Hub's own base URL.
	CASURL string

	// SmallFileThreshold: files smaller than this are plain git files
	// whatever their content (0 = no size rule, as on the Hub).
	SmallFileThreshold int64
	// TextFileThreshold: text files (no NUL, valid UTF-8 in their first
	// 512 bytes, not matched by an LFS rule of .gitattributes) smaller than
	// this are plain git files. Default 10 MiB, the Hub's limit.
	TextFileThreshold int64

	// MaxXorbBytes and MaxXorbChunks cut xorbs during ingestion before the
	// format limits (xorb.MaxBytes, xorb.MaxChunks); small values spread
	// test files over many xorbs.
	MaxXorbBytes  int
	MaxXorbChunks int

	// TreePageSize is the page size of tree listings (default 1000).
	TreePageSize int

	// TokenTTL and URLTTL are the lifetimes of CAS access tokens and of
	// presigned URLs (default 1 h each). SetTokenTTL/SetURLTTL change them.
	TokenTTL time.Duration
	URLTTL   time.Duration

	// Secret keys every HMAC (tokens, URLs). Random when empty.
	Secret []byte

	// LogSize is the number of requests kept by Requests (default 10000).
	LogSize int

	// Logger receives one debug line per request; nil discards.
	Logger *slog.Logger
}

// Hub is a local Hugging Face Hub with its Xet CAS. It is an http.Handler;
// every method is safe for concurrent use.
type Hub struct {
	cfg    Config
	policy xorb.Policy
	secret []byte
	log    *slog.Logger

	store   *store
	regions sync.Pool // *[]byte xorb region buffers of ingestion
	knobs   knobs
	stats   stats

	baseURL atomic.Pointer[string]
	casURL  atomic.Pointer[string]

	mu    sync.RWMutex
	repos map[string]*repo // key: repoKey(type, id)
	valid map[string]bool  // Hub tokens registered with AddToken

	reqSeq atomic.Uint64
}

// New returns a Hub for cfg.
func New(cfg Config) (*Hub, error) {
	if cfg.Compression == "" {
		cfg.Compression = "auto"
	}
	policy, err := xorb.ParsePolicy(cfg.Compression)
	if err != nil {
		return nil, fmt.Errorf("fakehub: %w", err)
	}
	if cfg.TextFileThreshold == 0 {
		cfg.TextFileThreshold = 10 << 20
	}
	if cfg.MaxXorbBytes <= 0 || cfg.MaxXorbBytes > xorb.MaxBytes {
		cfg.MaxXorbBytes = xorb.MaxBytes
	}
	if cfg.MaxXorbChunks <= 0 || cfg.MaxXorbChunks > xorb.MaxChunks {
		cfg.MaxXorbChunks = xorb.MaxChunks
	}
	if cfg.TreePageSize <= 0 {
		cfg.TreePageSize = 1000
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.URLTTL == 0 {
		cfg.URLTTL = time.Hour
	}
	if cfg.LogSize <= 0 {
		cfg.LogSize = 10000
	}
	secret := cfg.Secret
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("fakehub: %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := newStore(cfg.Dir)
	if err != nil {
		return nil, err
	}
	h := &Hub{
		cfg:    cfg,
		policy: policy,
		secret: secret,
		log:    log,
		store:  st,
		repos:  make(map[string]*repo),
		valid:  make(map[string]bool),
	}
	h.knobs.init(cfg.TokenTTL, cfg.URLTTL)
	h.stats.init(cfg.LogSize)
	if cfg.PublicURL != "" {
		h.SetPublicURL(cfg.PublicURL)
	}
	if cfg.CASURL != "" {
		h.SetCASURL(cfg.CASURL)
	}
	return h, nil
}

// SetPublicURL sets the scheme://host[:port] used in absolute links, e.g.
// the URL of the httptest.Server the Hub runs in.
func (h *Hub) SetPublicURL(u string) {
	u = strings.TrimRight(u, "/")
	h.baseURL.Store(&u)
}

// base is the absolute URL prefix of the Hub for links in answers to r.
func (h *Hub) base(r *http.Request) string {
	if p := h.baseURL.Load(); p != nil && *p != "" {
		return *p
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// SetCASURL sets the scheme://host[:port] of the server answering CAS
// requests (this same handler served on another listener, e.g. a second
// httptest.Server); casUrl becomes u + "/cas". Empty means the Hub's base.
func (h *Hub) SetCASURL(u string) {
	u = strings.TrimRight(u, "/")
	h.casURL.Store(&u)
}

// casBase is casUrl as given to clients.
func (h *Hub) casBase(r *http.Request) string {
	if p := h.casURL.Load(); p != nil && *p != "" {
		return *p + "/cas"
	}
	return h.base(r) + "/cas"
}

// AddToken registers a Hub token as valid (an authenticated user who may
// read public repos). Tokens named in a repo's Readers or Writers are valid
// as well; any other token gets 401.
func (h *Hub) AddToken(token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.valid[token] = true
}

// Close releases what the Hub holds open. In-memory Hubs need no Close.
func (h *Hub) Close() error { return nil }

// ServeHTTP routes a request to the Hub or the CAS, applying the knobs and
// recording the request.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	id := fmt.Sprintf("fakehub-%d", h.reqSeq.Add(1))
	rec.Header().Set("X-Request-Id", id)
	body := &countingReader{r: r.Body}
	if r.Body != nil {
		r.Body = body
	}
	class, handle := h.route(r)
	defer func() {
		h.stats.record(class, r, rec, body.n, time.Since(start))
		h.log.Debug("fakehub", "id", id, "method", r.Method, "path", r.URL.EscapedPath(),
			"class", string(class), "status", rec.status(), "bytes", rec.n)
	}()
	if d := h.knobs.latency(class); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			rec.WriteHeader(499)
			return
		}
	}
	if f, ok := h.knobs.fault(class); ok {
		if f.RetryAfter > 0 {
			rec.Header().Set("Retry-After", fmt.Sprint(int((f.RetryAfter+time.Second-1)/time.Second)))
		}
		msg := fmt.Sprintf("injected fault (%s)", class)
		rec.Header().Set("X-Error-Message", msg)
		http.Error(rec, msg, f.Status)
		return
	}
	handle(rec, r)
}

type handlerFunc func(w *recorder, r *http.Request)

// route picks the endpoint class and handler of r. It routes on the escaped
// path so that percent-encoded revisions (refs%2Fpr%2F1) stay one segment.
func (h *Hub) route(r *http.Request) (Class, handlerFunc) {
	segs := splitPath(r.URL.EscapedPath())
	if len(segs) >= 2 && segs[0] == "cas" {
		if c, f := h.routeCAS(r, segs[1:]); f != nil {
			return c, f
		}
	}
	if len(segs) >= 1 && segs[0] == "api" {
		return h.routeAPI(r, segs[1:])
	}
	return h.routeFiles(r, segs)
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func notFound(w *recorder, r *http.Request) {
	hubError(w, http.StatusNotFound, "", "Not Found")
}

func methodNotAllowed(w *recorder, r *http.Request) {
	hubError(w, http.StatusMethodNotAllowed, "", "Method Not Allowed")
}

// errBadRequest marks input errors answered with 400.
var errBadRequest = errors.New("bad request")
