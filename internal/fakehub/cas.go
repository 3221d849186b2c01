package fakehub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/shard"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// Upload body caps: a xorb holds at most xorb.MaxBytes of chunk data, and
// a hostile writer may expand every chunk up to the format's limit.
const (
	maxXorbUpload  = 2*xorb.MaxBytes + xorb.MaxChunks*(xorb.HeaderSize+48) + (1 << 20)
	maxShardUpload = shard.MaxShardSize
)

// routeCAS routes the CAS (paths under /cas: versioned /v1 and /v2 and the
// old unversioned forms), presigned xorb URLs, the bridge and basic LFS
// uploads. A nil handler means "not a CAS path".
func (h *Hub) routeCAS(r *http.Request, segs []string) (Class, handlerFunc) {
	version := ""
	if segs[0] == "v1" || segs[0] == "v2" {
		version, segs = segs[0], segs[1:]
	}
	if len(segs) == 0 {
		return ClassOther, nil
	}
	v2 := version == "v2"
	switch {
	case segs[0] == "reconstructions" && len(segs) == 1 && !v2:
		return ClassReconstruction, h.batchReconstruction
	case segs[0] == "reconstructions" && len(segs) == 2:
		id := segs[1]
		return ClassReconstruction, func(w *recorder, r *http.Request) { h.reconstruction(w, r, id, v2) }
	case segs[0] == "xorbs" && len(segs) == 3 && !v2:
		id := segs[2]
		return ClassXorbUpload, func(w *recorder, r *http.Request) { h.xorbUpload(w, r, id) }
	case segs[0] == "shards" && len(segs) == 1:
		return ClassShardUpload, func(w *recorder, r *http.Request) { h.shardUpload(w, r, v2) }
	case segs[0] == "chunks" && len(segs) == 3 && !v2:
		id := segs[2]
		return ClassDedup, func(w *recorder, r *http.Request) { h.dedupQuery(w, r, id) }
	case segs[0] == "files" && len(segs) == 2 && !v2:
		id := segs[1]
		return ClassOther, func(w *recorder, r *http.Request) { h.fileHead(w, r, id) }
	case version == "" && segs[0] == "transfer" && len(segs) == 2:
		id := segs[1]
		return ClassXorb, func(w *recorder, r *http.Request) { h.transfer(w, r, id) }
	case version == "" && segs[0] == "bridge" && len(segs) == 2:
		id := segs[1]
		return ClassBridge, func(w *recorder, r *http.Request) { h.bridge(w, r, id) }
	case version == "" && segs[0] == "lfs" && len(segs) == 2:
		oid := segs[1]
		return ClassCommit, func(w *recorder, r *http.Request) { h.lfsUpload(w, r, oid) }
	}
	if version != "" {
		return ClassOther, notFound
	}
	return ClassOther, nil
}

// casError answers a CAS error: plain text, as the CAS does.
func casError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// casAuth checks the CAS token of a request: 401 missing, malformed or
// expired; 403 when a write is attempted with a read token.
func (h *Hub) casAuth(w http.ResponseWriter, r *http.Request, scope string) bool {
	_, ok := h.casAuthToken(w, r, scope)
	return ok
}

// casAuthToken is casAuth that also returns the token's content.
func (h *Hub) casAuthToken(w http.ResponseWriter, r *http.Request, scope string) (casToken, bool) {
	t, err := h.checkToken(bearer(r))
	if err != nil {
		casError(w, http.StatusUnauthorized, err.Error())
		return t, false
	}
	if scope == scopeWrite && t.Scope != scopeWrite {
		casError(w, http.StatusForbidden, errTokenScope.Error())
		return t, false
	}
	return t, true
}

// grantFiles lets the tokens of repo key k read the files of an uploaded
// shard before a commit names them (the uploader checks its upload).
func (h *Hub) grantFiles(k string, sh *shard.Shard) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rp := h.repos[k]
	if rp == nil {
		return
	}
	if rp.xetFiles == nil {
		rp.xetFiles = make(map[merklehash.Hash]bool)
	}
	for _, f := range sh.Files {
		rp.xetFiles[f.Hash] = true
	}
}

// tokenReaches reports whether a CAS token may read file: as the Hub's
// tokens are bound to a repo, only files some commit of that repo holds.
func (h *Hub) tokenReaches(t casToken, file merklehash.Hash) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	rp := h.repos[t.Repo]
	return rp != nil && rp.xetFiles[file]
}

// parseHTTPRange parses one "bytes=a-b" or "bytes=a-" range; ok is false
// for anything else (suffix ranges, lists, garbage).
func parseHTTPRange(s string) (start uint64, end uint64, open bool, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(s), "bytes=")
	if !found {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(spec, "-")
	if !found || strings.Contains(b, ",") {
		return 0, 0, false, false
	}
	start, err := strconv.ParseUint(strings.TrimSpace(a), 10, 64)
	if err != nil {
		return 0, 0, false, false
	}
	b = strings.TrimSpace(b)
	if b == "" {
		return start, 0, true, true
	}
	end, err = strconv.ParseUint(b, 10, 64)
	if err != nil || end < start {
		return 0, 0, false, false
	}
	return start, end, false, true
}

// reconstruction answers GET /v1|v2/reconstructions/{file_id} with an
// optional Range (inclusive end, clamped to the file; 416 past the end).
func (h *Hub) reconstruction(w *recorder, r *http.Request, id string, v2 bool) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r)
		return
	}
	if v2 && h.knobs.v2Disabled() {
		casError(w, http.StatusNotFound, "not found")
		return
	}
	tok, ok := h.casAuthToken(w, r, scopeRead)
	if !ok {
		return
	}
	hash, err := merklehash.Parse(id)
	if err != nil {
		casError(w, http.StatusBadRequest, "invalid file id")
		return
	}
	f, ok := h.store.file(hash)
	if !ok || !h.tokenReaches(tok, hash) {
		casError(w, http.StatusNotFound, "file not found")
		return
	}
	var a, b uint64
	if f.size > 0 {
		b = f.size - 1
	}
	if rh := r.Header.Get("Range"); rh != "" {
		start, end, open, ok := parseHTTPRange(rh)
		if !ok {
			casError(w, http.StatusBadRequest, "invalid range")
			return
		}
		if start >= f.size && !(f.size == 0 && start == 0) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", f.size))
			casError(w, http.StatusRequestedRangeNotSatisfiable, "range not satisfiable")
			return
		}
		a = start
		if !open && end < b {
			b = end
		}
	}
	var p *plan
	if f.size == 0 {
		p = &plan{}
	} else if p, err = h.store.plan(f, a, b); err != nil {
		casError(w, http.StatusInternalServerError, err.Error())
		return
	}
	terms := p.terms
	if terms == nil {
		terms = []reconstruction.Term{}
	}
	cas := h.casBase(r)
	if v2 {
		resp := reconstruction.ResponseV2{OffsetIntoFirstRange: p.offset, Terms: terms,
			Xorbs: make(map[merklehash.Hash][]reconstruction.XorbFetch, len(p.xorbs))}
		per := h.knobs.rangesPerURL()
		for x, frs := range p.xorbs {
			for len(frs) > 0 {
				n := len(frs)
				if per > 0 && n > per {
					n = per
				}
				group := frs[:n]
				frs = frs[n:]
				fetch := reconstruction.XorbFetch{URL: h.xorbURL(cas, x, group)}
				for _, fr := range group {
					fetch.Ranges = append(fetch.Ranges, reconstruction.RangeV2{Chunks: fr.chunks, Bytes: fr.bytes})
				}
				resp.Xorbs[x] = append(resp.Xorbs[x], fetch)
			}
		}
		jsonAnswer(w, http.StatusOK, resp)
		return
	}
	resp := reconstruction.ResponseV1{OffsetIntoFirstRange: p.offset, Terms: terms,
		FetchInfo: make(map[merklehash.Hash][]reconstruction.FetchInfo, len(p.xorbs))}
	for x, frs := range p.xorbs {
		for _, fr := range frs {
			resp.FetchInfo[x] = append(resp.FetchInfo[x], reconstruction.FetchInfo{
				Range: fr.chunks, URL: h.xorbURL(cas, x, []fetchRange{fr}), URLRange: fr.bytes})
		}
	}
	jsonAnswer(w, http.StatusOK, resp)
}

// batchReconstruction answers GET /v1/reconstructions?file_id=H1&file_id=H2
// (xet-core) and POST /v1/reconstructions with [{"prefix":..,"hash":..}]
// (hub-docs): whole files, v1 fetch entries merged over all of them.
func (h *Hub) batchReconstruction(w *recorder, r *http.Request) {
	var ids []string
	switch r.Method {
	case http.MethodGet:
		ids = r.URL.Query()["file_id"]
	case http.MethodPost:
		var keys []struct {
			Prefix string `json:"prefix"`
			Hash   string `json:"hash"`
		}
		if !h.casAuth(w, r, scopeRead) {
			return
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&keys); err != nil {
			casError(w, http.StatusBadRequest, "invalid body")
			return
		}
		for _, k := range keys {
			ids = append(ids, k.Hash)
		}
	default:
		methodNotAllowed(w, r)
		return
	}
	if r.Method == http.MethodGet && !h.casAuth(w, r, scopeRead) {
		return
	}
	files := map[string][]reconstruction.Term{}
	ranges := map[merklehash.Hash][]reconstruction.ChunkRange{}
	for _, id := range ids {
		hash, err := merklehash.Parse(id)
		if err != nil {
			casError(w, http.StatusBadRequest, "invalid file id")
			return
		}
		f, ok := h.store.file(hash)
		if tok, _ := h.checkToken(bearer(r)); !ok || !h.tokenReaches(tok, hash) {
			casError(w, http.StatusNotFound, "file not found: "+id)
			return
		}
		terms := []reconstruction.Term{}
		if f.size > 0 {
			p, err := h.store.plan(f, 0, f.size-1)
			if err != nil {
				casError(w, http.StatusInternalServerError, err.Error())
				return
			}
			terms = p.terms
			for x, frs := range p.xorbs {
				for _, fr := range frs {
					ranges[x] = append(ranges[x], fr.chunks)
				}
			}
		}
		files[hash.String()] = terms
	}
	cas := h.casBase(r)
	fetch := map[merklehash.Hash][]reconstruction.FetchInfo{}
	for x, rs := range ranges {
		rec, _ := h.store.xorb(x)
		for _, cr := range mergeChunkRanges(rs) {
			fr := fetchRange{chunks: cr, bytes: rec.byteRange(cr.Start, cr.End)}
			fetch[x] = append(fetch[x], reconstruction.FetchInfo{Range: cr, URL: h.xorbURL(cas, x, []fetchRange{fr}), URLRange: fr.bytes})
		}
	}
	jsonAnswer(w, http.StatusOK, map[string]any{"files": files, "fetch_info": fetch})
}

// xorbURL signs a URL for exactly the byte ranges of frs of xorb x.
func (h *Hub) xorbURL(cas string, x merklehash.Hash, frs []fetchRange) string {
	var b strings.Builder
	b.WriteString("bytes=")
	for i, fr := range frs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d-%d", fr.bytes.Start, fr.bytes.End)
	}
	ranges := b.String()
	exp := itoa(h.urlExpiry())
	hs := x.String()
	return fmt.Sprintf("%s/transfer/%s?X-Xet-Signed-Range=%s&Expires=%s&Signature=%s",
		cas, hs, strings.ReplaceAll(ranges, "=", "%3D"), exp, h.mac("xorb", hs, ranges, exp))
}

// byteRange is an inclusive range of a stored object.
type byteRange struct{ start, end int64 }

func (br byteRange) len() int64 { return br.end - br.start + 1 }

// parseRangeList parses "bytes=a-b,c-d,..." (closed and open ranges) for an
// object of size n.
func parseRangeList(s string, n int64) ([]byteRange, bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(s), "bytes=")
	if !found || spec == "" {
		return nil, false
	}
	var out []byteRange
	for _, part := range strings.Split(spec, ",") {
		a, b, found := strings.Cut(strings.TrimSpace(part), "-")
		if !found || a == "" {
			return nil, false
		}
		start, err := strconv.ParseInt(a, 10, 64)
		if err != nil || start < 0 {
			return nil, false
		}
		end := max(n-1, start) // an open range past the end: caller answers 416
		if b != "" {
			if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
				return nil, false
			}
		}
		out = append(out, byteRange{start, end})
	}
	return out, true
}

// transfer serves a presigned xorb URL: no Authorization allowed (400, so
// that tests catch token leaks), HMAC signature over the xorb, the signed
// byte ranges and the expiry (403 otherwise), every requested range inside
// a signed one (403 otherwise). No Range: 200 with the signed ranges; one
// range: 206; several: 206 multipart/byteranges, parts in request order.
func (h *Hub) transfer(w *recorder, r *http.Request, id string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r)
		return
	}
	if r.Header.Get("Authorization") != "" {
		casError(w, http.StatusBadRequest, "presigned URLs must not carry an Authorization header")
		return
	}
	q := r.URL.Query()
	signed, exp, sig := q.Get("X-Xet-Signed-Range"), q.Get("Expires"), q.Get("Signature")
	if !h.verifyMAC(sig, "xorb", id, signed, exp) {
		casError(w, http.StatusForbidden, "signature does not match")
		return
	}
	if e, err := parseInt(exp); err != nil || expired(e) {
		casError(w, http.StatusForbidden, "request has expired")
		return
	}
	hash, err := merklehash.Parse(id)
	if err != nil {
		casError(w, http.StatusBadRequest, "invalid xorb id")
		return
	}
	x, ok := h.store.xorb(hash)
	if !ok {
		casError(w, http.StatusNotFound, "xorb not found")
		return
	}
	allowed, ok := parseRangeList(signed, x.size)
	if !ok {
		casError(w, http.StatusForbidden, "bad signed range")
		return
	}
	if h.knobs.forbidFirst(sig) {
		casError(w, http.StatusForbidden, "request has expired (injected)")
		return
	}
	var want []byteRange
	rh := r.Header.Get("Range")
	if rh == "" {
		want = allowed
	} else if want, ok = parseRangeList(rh, x.size); !ok {
		casError(w, http.StatusBadRequest, "invalid range")
		return
	}
	for _, br := range want {
		if br.start >= x.size {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", x.size))
			casError(w, http.StatusRequestedRangeNotSatisfiable, "range not satisfiable")
			return
		}
		inside := false
		for _, a := range allowed {
			if a.start <= br.start && br.end <= a.end {
				inside = true
				break
			}
		}
		if !inside {
			casError(w, http.StatusForbidden, fmt.Sprintf("range %d-%d is outside the signed ranges", br.start, br.end))
			return
		}
	}
	src, closer, err := x.open()
	if err != nil {
		casError(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer closer.Close()
	out := h.faultyBody(w, ClassXorb, x.hash)
	hdr := w.Header()
	hdr.Set("Accept-Ranges", "bytes")
	switch {
	case rh == "" || len(want) == 1:
		var total int64
		for _, br := range want {
			total += br.len()
		}
		hdr.Set("Content-Type", "application/octet-stream")
		hdr.Set("Content-Length", strconv.FormatInt(total, 10))
		status := http.StatusOK
		if rh != "" {
			status = http.StatusPartialContent
			hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", want[0].start, want[0].end, x.size))
		}
		w.WriteHeader(status)
		if r.Method == http.MethodHead {
			return
		}
		for _, br := range want {
			out.copyRange(x, src, br)
		}
	default:
		boundary := fmt.Sprintf("fakehub%016x", h.reqSeq.Load()^0x5deece66d)
		hdr.Set("Content-Type", "multipart/byteranges; boundary="+boundary)
		var total int64
		for i, br := range want {
			total += int64(len(partHeader(boundary, br, x.size, i == 0))) + br.len()
		}
		total += int64(len("\r\n--" + boundary + "--\r\n"))
		hdr.Set("Content-Length", strconv.FormatInt(total, 10))
		w.WriteHeader(http.StatusPartialContent)
		if r.Method == http.MethodHead {
			return
		}
		for i, br := range want {
			out.write([]byte(partHeader(boundary, br, x.size, i == 0)))
			out.copyRange(x, src, br)
		}
		out.write([]byte("\r\n--" + boundary + "--\r\n"))
	}
	out.finish()
}

func partHeader(boundary string, br byteRange, size int64, first bool) string {
	lead := "\r\n"
	if first {
		lead = ""
	}
	return fmt.Sprintf("%s--%s\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes %d-%d/%d\r\n\r\n",
		lead, boundary, br.start, br.end, size)
}

// body writes a response body honouring the truncation and corruption
// knobs. Without them, ranges are copied straight from the store (memory
// slice or sendfile).
type body struct {
	w       *recorder
	limit   int64 // bytes left before the cut; < 0 = no cut
	corrupt []corruption
	failed  bool
}

func (h *Hub) faultyBody(w *recorder, c Class, x merklehash.Hash) *body {
	b := &body{w: w, limit: h.knobs.truncation(c)}
	if !x.IsZero() {
		b.corrupt = h.knobs.corruptions(x)
	}
	return b
}

func (b *body) write(p []byte) {
	if b.failed {
		return
	}
	if b.limit >= 0 && int64(len(p)) > b.limit {
		p = p[:b.limit]
		b.failed = true
	}
	n, err := b.w.Write(p)
	if b.limit >= 0 {
		b.limit -= int64(n)
	}
	if err != nil {
		b.failed = true
	}
}

func (b *body) copyRange(x *xorbRec, src io.ReaderAt, br byteRange) {
	if b.failed {
		return
	}
	if b.limit < 0 && len(b.corrupt) == 0 {
		var err error
		switch s := src.(type) {
		case *bytes.Reader:
			_, err = b.w.Write(x.data[br.start : br.end+1])
		case io.ReadSeeker:
			if _, err = s.Seek(br.start, io.SeekStart); err == nil {
				_, err = io.CopyN(b.w, s, br.len())
			}
		default:
			_, err = io.Copy(b.w, io.NewSectionReader(src, br.start, br.len()))
		}
		if err != nil {
			b.failed = true
		}
		return
	}
	buf := make([]byte, 256<<10)
	for off := br.start; off <= br.end && !b.failed; {
		n := min(int64(len(buf)), br.end-off+1)
		p := buf[:n]
		if _, err := src.ReadAt(p, off); err != nil {
			b.failed = true
			return
		}
		for _, c := range b.corrupt {
			for i := max(c.offset, off); i < min(c.offset+c.n, off+n); i++ {
				p[i-off] ^= 0xff
			}
		}
		b.write(p)
		off += n
	}
}

// finish aborts the connection when the body was cut, so that the client
// sees a truncated response rather than a clean end. What was written is
// flushed first: a connection closed before any response byte makes
// clients retry the request transparently.
func (b *body) finish() {
	if b.failed {
		b.w.cut = b.limit == 0
		b.w.Flush()
		panic(http.ErrAbortHandler)
	}
}

// bridge serves the whole file behind a resolve redirect, with Range.
func (h *Hub) bridge(w *recorder, r *http.Request, id string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r)
		return
	}
	q := r.URL.Query()
	exp := q.Get("Expires")
	if !h.verifyMAC(q.Get("Signature"), "bridge", id, exp) {
		casError(w, http.StatusForbidden, "signature does not match")
		return
	}
	if e, err := parseInt(exp); err != nil || expired(e) {
		casError(w, http.StatusForbidden, "request has expired")
		return
	}
	hash, err := merklehash.Parse(id)
	if err != nil {
		casError(w, http.StatusBadRequest, "invalid file id")
		return
	}
	f, ok := h.store.file(hash)
	if !ok {
		casError(w, http.StatusNotFound, "file not found")
		return
	}
	fr := h.store.openFile(f)
	defer fr.Close()
	if f.sha256 != nil {
		w.Header().Set("ETag", fmt.Sprintf(`"%x"`, f.sha256[:]))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	limit := h.knobs.truncation(ClassBridge)
	if limit < 0 {
		http.ServeContent(w, r, "", time.Time{}, fr)
		return
	}
	cw := &cutWriter{recorder: w, left: limit}
	http.ServeContent(cw, r, "", time.Time{}, fr)
	if cw.cut {
		w.cut = true
		w.Flush()
		panic(http.ErrAbortHandler)
	}
}

// cutWriter stops writing after left bytes.
type cutWriter struct {
	*recorder
	left int64
	cut  bool
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		n, _ := c.recorder.Write(p[:c.left])
		c.left = 0
		c.cut = true
		return n, errors.New("fakehub: body cut")
	}
	n, err := c.recorder.Write(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutWriter) ReadFrom(src io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{c}, src)
}

// xorbUpload answers POST and HEAD /v1/xorbs/{prefix}/{hash}.
func (h *Hub) xorbUpload(w *recorder, r *http.Request, id string) {
	switch r.Method {
	case http.MethodHead:
		if !h.casAuth(w, r, scopeRead) {
			return
		}
		hash, err := merklehash.Parse(id)
		if err != nil {
			casError(w, http.StatusBadRequest, "invalid xorb id")
			return
		}
		x, ok := h.store.xorb(hash)
		if !ok {
			casError(w, http.StatusNotFound, "xorb not found")
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(x.size, 10))
		w.WriteHeader(http.StatusOK)
		return
	case http.MethodPost:
	default:
		methodNotAllowed(w, r)
		return
	}
	if !h.casAuth(w, r, scopeWrite) {
		return
	}
	hash, err := merklehash.Parse(id)
	if err != nil {
		casError(w, http.StatusBadRequest, "invalid xorb id")
		return
	}
	if r.ContentLength > maxXorbUpload {
		casError(w, http.StatusRequestEntityTooLarge, "xorb too large")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxXorbUpload))
	if err != nil {
		casError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	x, err := xorb.Parse(data)
	if err != nil {
		casError(w, http.StatusBadRequest, "invalid xorb: "+err.Error())
		return
	}
	if x.Hash != hash {
		casError(w, http.StatusBadRequest, fmt.Sprintf("xorb hash mismatch: body hashes to %s", x.Hash))
		return
	}
	inserted, _, err := h.store.putXorb(x, true)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, errBadRequest) {
			status = http.StatusBadRequest
		}
		casError(w, status, err.Error())
		return
	}
	jsonAnswer(w, http.StatusOK, map[string]bool{"was_inserted": inserted})
}

// shardUpload answers POST /v1/shards ({"result":0|1}) and /v2/shards (an
// NDJSON progress stream ending with a result or error event).
func (h *Hub) shardUpload(w *recorder, r *http.Request, v2 bool) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r)
		return
	}
	if v2 && h.knobs.v2Disabled() {
		casError(w, http.StatusNotFound, "not found")
		return
	}
	tok, ok := h.casAuthToken(w, r, scopeWrite)
	if !ok {
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxShardUpload))
	if err != nil {
		casError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if !v2 {
		n, err := h.store.registerShard(data)
		if err != nil {
			casError(w, http.StatusBadRequest, err.Error())
			return
		}
		if sh, err := shard.Parse(data); err == nil {
			h.grantFiles(tok.Repo, sh)
		}
		jsonAnswer(w, http.StatusOK, map[string]int{"result": min(n, 1)})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	sh, err := shard.Parse(data)
	if err == nil {
		enc.Encode(map[string]any{"type": "validating", "verified": 0, "total": len(sh.Files)})
		w.Flush()
		var n int
		n, err = h.store.registerParsed(sh)
		if err == nil {
			h.grantFiles(tok.Repo, sh)
			enc.Encode(map[string]any{"type": "validating", "verified": len(sh.Files), "total": len(sh.Files)})
			enc.Encode(map[string]any{"type": "committing", "stage": "syncing"})
			enc.Encode(map[string]any{"type": "result", "result": min(n, 1)})
			return
		}
	}
	enc.Encode(map[string]any{"type": "error", "message": err.Error(), "retryable": false})
}

// dedupQuery answers GET /v1/chunks/{prefix}/{hash}: a shard naming the
// xorb that holds the chunk, or 404.
func (h *Hub) dedupQuery(w *recorder, r *http.Request, id string) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r)
		return
	}
	if !h.casAuth(w, r, scopeRead) {
		return
	}
	hash, err := merklehash.Parse(id)
	if err != nil {
		casError(w, http.StatusBadRequest, "invalid chunk hash")
		return
	}
	b, ok, err := h.store.dedupShard(hash)
	if err != nil {
		casError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if !ok {
		casError(w, http.StatusNotFound, "chunk not tracked")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("Cache-Control", "private, max-age=3600")
	w.Header().Set("Vary", "Authorization")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// fileHead answers HEAD /v1/files/{file_id}: Content-Length = file size.
func (h *Hub) fileHead(w *recorder, r *http.Request, id string) {
	if r.Method != http.MethodHead {
		methodNotAllowed(w, r)
		return
	}
	if !h.casAuth(w, r, scopeRead) {
		return
	}
	hash, err := merklehash.Parse(id)
	if err != nil {
		casError(w, http.StatusBadRequest, "invalid file id")
		return
	}
	f, ok := h.store.file(hash)
	if !ok {
		casError(w, http.StatusNotFound, "file not found")
		return
	}
	w.Header().Set("Content-Length", strconv.FormatUint(f.size, 10))
	w.WriteHeader(http.StatusOK)
}
