package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

// Engine is what the server needs of the download engine. *proxy.Engine
// implements it; tests may substitute their own.
type Engine interface {
	// Stat resolves path at revision of repo with the caller's token.
	Stat(ctx context.Context, token string, repo hub.Repo, revision, path string) (*hub.FileMeta, error)
	// StatHash describes the file with Xet hash h, after checking that the
	// token can read repo at revision.
	StatHash(ctx context.Context, token string, repo hub.Repo, revision string, h merklehash.Hash) (*hub.FileMeta, error)
	// Open returns exactly length bytes of the file from offset; a failure
	// surfaces as a Read error, never as an early clean EOF.
	Open(ctx context.Context, token string, meta *hub.FileMeta, offset, length int64) (io.ReadCloser, error)
}

var _ Engine = (*proxy.Engine)(nil)

// copyBufSize is the size of the buffers bytes travel through from the
// engine to the client.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

func hubRepo(typ, id string) hub.Repo { return hub.Repo{Type: hub.RepoType(typ), ID: id} }

// serveFile answers a download of ref (the /download and resolve routes).
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, ref *fileRef, disposition string) {
	dl, ok := s.beginDownload(w, r, ref.repoType, ref.repoID, ref.revision, ref.path, "")
	if !ok {
		return
	}
	token, _, aerr := s.auth.upstreamToken(r)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	dl.tokenUsed = token != ""
	d := s.newDownload(r)
	defer d.cancel(nil)
	meta, err := s.engine.Stat(d.ctx, token, hubRepo(ref.repoType, ref.repoID), ref.revision, ref.path)
	if err != nil {
		s.fail(w, r, d, err)
		return
	}
	if s.xet != nil && meta.XetHash != nil && s.xetResolve(w, r, d, ref, meta) {
		return
	}
	s.deliver(w, r, d, token, meta, path.Base(ref.path), disposition)
}

// serveHash answers /download-hash.
func (s *Server) serveHash(w http.ResponseWriter, r *http.Request, ref *hashRef) {
	dl, ok := s.beginDownload(w, r, ref.repoType, ref.repoID, ref.revision, ref.filename, ref.hash.String())
	if !ok {
		return
	}
	token, _, aerr := s.auth.upstreamToken(r)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	dl.tokenUsed = token != ""
	d := s.newDownload(r)
	defer d.cancel(nil)
	meta, err := s.statHash(d.ctx, token, hubRepo(ref.repoType, ref.repoID), ref.revision, ref.hash)
	if err != nil {
		s.fail(w, r, d, err)
		return
	}
	s.deliver(w, r, d, token, meta, ref.filename, "attachment")
}

// download is the upstream side of one request: a context that ends with
// the client, and a timer that cancels it with errUpstreamTimeout if the
// first upstream step takes too long.
type download struct {
	start  time.Time
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
}

func (s *Server) newDownload(r *http.Request) *download {
	ctx, cancel := context.WithCancelCause(r.Context())
	d := &download{start: time.Now(), ctx: ctx, cancel: cancel}
	d.timer = time.AfterFunc(s.cfg.UpstreamTimeout, func() { cancel(errUpstreamTimeout) })
	return d
}

// fail answers err before the status line was sent.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, d *download, err error) {
	d.timer.Stop()
	if r.Context().Err() == nil && errors.Is(context.Cause(d.ctx), errUpstreamTimeout) {
		err = fmt.Errorf("%w: %w", errUpstreamTimeout, err)
	}
	writeError(w, r, classify(r.Context(), err))
}

// deliver answers with the file described by meta: the representation
// headers, the conditional requests and Range, then the bytes.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, d *download, token string, meta *hub.FileMeta, name, disposition string) {
	dl := downloadAudit(r)
	if dl != nil {
		dl.commit = meta.Commit
	}
	size := meta.Size
	etag := quoteETag(meta.ETag)
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", etag)
	if meta.Commit != "" {
		h.Set("X-Repo-Commit", meta.Commit)
	}
	s.markOffline(h)
	if isSHA256(meta.ETag) {
		// what the Hub sends for LFS/Xet files; clients key their caches on it
		h.Set("X-Linked-Etag", etag)
		h.Set("X-Linked-Size", itoa(size))
	}
	setRepresentation(h, name, disposition)

	cond := checkConditions(r.Header, r.Method, etag)
	switch cond {
	case condNotModified:
		d.timer.Stop()
		h.Del("Content-Type")
		h.Del("Content-Disposition")
		w.WriteHeader(http.StatusNotModified)
		return
	case condFailed:
		s.fail(w, r, d, newAPIError(http.StatusPreconditionFailed, "PreconditionFailed", "If-Match did not match the current file"))
		return
	}
	sp, status := span{0, size}, http.StatusOK
	if cond != condIgnoreRange {
		got, kind := parseRange(r.Header.Get("Range"), size)
		switch kind {
		case rangeSingle:
			sp, status = got, http.StatusPartialContent
			h.Set("Content-Range", contentRange(sp, size))
		case rangeUnsatisfiable, rangeInvalid:
			e := newAPIError(http.StatusRequestedRangeNotSatisfiable, "RangeNotSatisfiable", "requested range not satisfiable ("+kind.String()+")")
			e.Size = size
			s.fail(w, r, d, e)
			return
		}
	}
	h.Set("Content-Length", itoa(sp.length))
	if r.Method == http.MethodHead {
		if err := s.checkOffline(d.ctx, meta); err != nil {
			s.fail(w, r, d, err)
			return
		}
	}
	if r.Method == http.MethodHead || sp.length == 0 {
		d.timer.Stop()
		w.WriteHeader(status)
		return
	}

	release, err := s.admit(d, sp.length)
	if err != nil {
		s.fail(w, r, d, err)
		return
	}
	defer release()
	body, err := s.engine.Open(d.ctx, token, meta, sp.start, sp.length)
	if err != nil {
		s.fail(w, r, d, err)
		return
	}
	defer func() { body.Close() }()

	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	n, rerr := readSome(body, buf)
	var ie *proxy.IntegrityError
	if n == 0 && errors.As(rerr, &ie) {
		// Nothing has gone out yet: the bad copy (a cache entry, a
		// transfer) is purged by now, so one more try may fetch the truth.
		s.log.Warn("integrity check failed before the first byte; trying once more", "err", rerr)
		body.Close()
		if body, err = s.engine.Open(d.ctx, token, meta, sp.start, sp.length); err != nil {
			s.fail(w, r, d, err)
			return
		}
		n, rerr = readSome(body, buf)
	}
	if n == 0 {
		if rerr == nil || rerr == io.EOF {
			rerr = io.ErrUnexpectedEOF
		}
		s.fail(w, r, d, rerr)
		return
	}
	if !d.timer.Stop() && d.ctx.Err() != nil {
		s.fail(w, r, d, context.Cause(d.ctx))
		return
	}
	// Where the bytes came from is only known at the end: it is sent as
	// trailers, to clients that accept them (TE: trailers). Those get a
	// chunked body instead of Content-Length, as HTTP/1.1 requires.
	src, _ := body.(proxy.SourceReporter)
	if dl != nil {
		dl.src = src
	}
	if src != nil && acceptsTrailers(r) {
		h.Del("Content-Length")
		h.Set("Trailer", trailerCacheBytes+", "+trailerSharedBytes)
	} else {
		src = nil
	}
	s.metrics.firstByte.Observe(time.Since(d.start).Seconds())
	w.WriteHeader(status)

	info := infoFrom(r.Context())
	rc := http.NewResponseController(w)
	out := &bodyWriter{w: w, rc: rc, stall: s.cfg.StallTimeout, left: sp.length}
	defer func() {
		s.metrics.servedBytes.WithLabelValues(info.route).Add(float64(out.n))
		if dl != nil {
			dl.written = out.n
		}
	}()
	if _, werr := out.Write(buf[:n]); werr == nil && rerr == nil {
		if wt, ok := body.(io.WriterTo); ok {
			// The engine writes straight to the answer; from a mapped
			// cache file it may send without a copy (bodyWriter.ReadFrom).
			var dst io.Writer = out
			if !sendsFiles(w) {
				dst = writerOnly{out} // no sendfile to gain: write from memory
			}
			if _, rerr = wt.WriteTo(dst); rerr == nil {
				rerr = io.EOF
			}
		} else {
			for rerr == nil && out.err == nil && !out.over {
				if n, rerr = body.Read(buf); n > 0 {
					_, _ = out.Write(buf[:n])
				}
			}
		}
	}
	written := out.n
	switch {
	case out.err != nil:
		reason := "client"
		if errors.Is(out.err, errStalled) {
			reason = "stall"
		} else {
			info.status = StatusClientClosedRequest
		}
		s.abort(r, info, reason, out.err)
	case out.over:
		s.abort(r, info, "upstream", errTooLong)
	case rerr != io.EOF:
		reason := "upstream"
		if r.Context().Err() != nil {
			reason = "client"
			info.status = StatusClientClosedRequest
		}
		s.abort(r, info, reason, rerr)
	}
	if written != sp.length {
		s.abort(r, info, "upstream", fmt.Errorf("engine ended after %d of %d bytes", written, sp.length))
	}
	if src != nil {
		from := src.Sources()
		h.Set(trailerCacheBytes, strconv.FormatInt(from.Cache, 10))
		h.Set(trailerSharedBytes, strconv.FormatInt(from.Shared, 10))
	}
	_ = rc.SetWriteDeadline(time.Time{})
}

// Trailers of a download sent to clients that ask for trailers: how many
// bytes of the body were read from the chunk cache, and how many another
// request was fetching from upstream at the same time (joined fill). The
// rest was fetched from upstream for this request.
const (
	trailerCacheBytes  = "X-Xetproxy-Cache-Bytes"
	trailerSharedBytes = "X-Xetproxy-Shared-Bytes"
)

// acceptsTrailers reports whether the request lists "trailers" in TE.
func acceptsTrailers(r *http.Request) bool {
	for _, v := range r.Header.Values("TE") {
		for _, t := range strings.Split(v, ",") {
			t, _, _ = strings.Cut(t, ";")
			if strings.EqualFold(strings.TrimSpace(t), "trailers") {
				return true
			}
		}
	}
	return false
}

// abort ends an answer whose status line is out: the connection is cut so
// the client sees a truncated transfer.
func (s *Server) abort(r *http.Request, info *reqInfo, reason string, err error) {
	info.err = err
	s.metrics.aborted.WithLabelValues(reason).Inc()
	panic(http.ErrAbortHandler)
}

// readSome reads until it has at least one byte or an error.
func readSome(r io.Reader, buf []byte) (int, error) {
	for i := 0; i < 100; i++ {
		n, err := r.Read(buf)
		if n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// isSHA256 reports whether an etag is a bare sha256 hex digest.
func isSHA256(etag string) bool {
	if len(etag) != 64 {
		return false
	}
	for i := 0; i < len(etag); i++ {
		c := etag[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
