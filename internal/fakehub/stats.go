package fakehub

import (
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Class is an endpoint class: the unit of counters, latency and faults.
type Class string

// Endpoint classes.
const (
	ClassResolve        Class = "resolve"        // GET/HEAD .../resolve/... and .../raw/...
	ClassBridge         Class = "bridge"         // the whole-file bridge URL resolve redirects to
	ClassAPI            Class = "api"            // repo info, revision, tree, paths-info
	ClassToken          Class = "token"          // xet-read-token, xet-write-token
	ClassReconstruction Class = "reconstruction" // /v1|v2/reconstructions
	ClassXorb           Class = "xorb"           // presigned xorb range fetches
	ClassDedup          Class = "dedup"          // GET /v1/chunks
	ClassXorbUpload     Class = "xorb-upload"    // POST/HEAD /v1/xorbs
	ClassShardUpload    Class = "shard-upload"   // POST /v1|v2/shards
	ClassCommit         Class = "commit"         // preupload, LFS batch and basic upload, commit
	ClassOther          Class = "other"          // anything else (404s, HEAD /v1/files)
)

// Classes lists every class.
var Classes = []Class{ClassResolve, ClassBridge, ClassAPI, ClassToken, ClassReconstruction, ClassXorb,
	ClassDedup, ClassXorbUpload, ClassShardUpload, ClassCommit, ClassOther}

// Counter counts the requests of one class.
type Counter struct {
	Requests int64 // requests answered
	Errors   int64 // answered with a status >= 400
	BytesOut int64 // response body bytes written
	BytesIn  int64 // request body bytes read
	Cut      int64 // bodies cut short by TruncateBodies (connection aborted)
}

// Stats maps each class to its counter; missing classes are zero.
type Stats map[Class]Counter

// Total sums the counters of every class.
func (s Stats) Total() Counter {
	var t Counter
	for _, c := range s {
		t.Requests += c.Requests
		t.Errors += c.Errors
		t.BytesOut += c.BytesOut
		t.BytesIn += c.BytesIn
		t.Cut += c.Cut
	}
	return t
}

// Request is one entry of the request log.
type Request struct {
	Time     time.Time
	Class    Class
	Method   string
	Path     string      // escaped path and query, signatures and tokens redacted
	Header   http.Header // request headers; Authorization and Cookie values redacted
	HasAuth  bool        // an Authorization header was present
	Status   int
	BytesOut int64
	BytesIn  int64
	Duration time.Duration
}

type stats struct {
	mu       sync.Mutex
	counters map[Class]*Counter
	log      []Request
	next     int // ring position once log is full
	size     int
}

func (s *stats) init(size int) {
	s.counters = make(map[Class]*Counter)
	s.size = size
}

func (s *stats) record(c Class, r *http.Request, rec *recorder, in int64, d time.Duration) {
	status := rec.status()
	entry := Request{
		Time:     time.Now(),
		Class:    c,
		Method:   r.Method,
		Path:     redactQuery(r),
		Header:   redactHeader(r.Header),
		HasAuth:  r.Header.Get("Authorization") != "",
		Status:   status,
		BytesOut: rec.n,
		BytesIn:  in,
		Duration: d,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ctr := s.counters[c]
	if ctr == nil {
		ctr = new(Counter)
		s.counters[c] = ctr
	}
	ctr.Requests++
	if status >= 400 {
		ctr.Errors++
	}
	ctr.BytesOut += rec.n
	ctr.BytesIn += in
	if rec.cut {
		ctr.Cut++
	}
	if len(s.log) < s.size {
		s.log = append(s.log, entry)
	} else {
		s.log[s.next] = entry
		s.next = (s.next + 1) % s.size
	}
}

// Stats returns a snapshot of the per-class counters.
func (h *Hub) Stats() Stats {
	h.stats.mu.Lock()
	defer h.stats.mu.Unlock()
	out := make(Stats, len(h.stats.counters))
	for c, v := range h.stats.counters {
		out[c] = *v
	}
	return out
}

// Requests returns the request log, oldest first (at most Config.LogSize
// entries).
func (h *Hub) Requests() []Request {
	h.stats.mu.Lock()
	defer h.stats.mu.Unlock()
	out := make([]Request, 0, len(h.stats.log))
	out = append(out, h.stats.log[h.stats.next:]...)
	out = append(out, h.stats.log[:h.stats.next]...)
	return out
}

// ResetStats clears the counters and the request log.
func (h *Hub) ResetStats() {
	h.stats.mu.Lock()
	defer h.stats.mu.Unlock()
	h.stats.counters = make(map[Class]*Counter)
	h.stats.log = nil
	h.stats.next = 0
}

var secretHeaders = []string{"Authorization", "Cookie", "X-Xet-Access-Token"}

func redactHeader(in http.Header) http.Header {
	out := in.Clone()
	for _, k := range secretHeaders {
		if _, ok := out[k]; ok {
			out[k] = []string{"REDACTED"}
		}
	}
	return out
}

var secretParams = map[string]bool{"Signature": true, "sig": true, "token": true}

func redactQuery(r *http.Request) string {
	p := r.URL.EscapedPath()
	if r.URL.RawQuery == "" {
		return p
	}
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, v := range q[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			if secretParams[k] {
				v = "REDACTED"
			}
			b.WriteString(k + "=" + v)
		}
	}
	return p + "?" + b.String()
}

// recorder wraps a ResponseWriter to count status and body bytes. It keeps
// io.ReaderFrom (sendfile) and http.Flusher working.
type recorder struct {
	http.ResponseWriter
	code int
	n    int64
	cut  bool // the body was cut by a truncation knob
}

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *recorder) ReadFrom(src io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, src)
	}
	w.n += n
	return n, err
}

func (w *recorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *recorder) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }
