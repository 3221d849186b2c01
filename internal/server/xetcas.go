package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/castoken"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// maxTicketRanges bounds the ranges one xorb URL carries, so that URLs
// stay short; an upstream entry with more becomes several v2 entries.
const maxTicketRanges = 32

// serveCAS answers the CAS routes (rest is the escaped path after /cas/):
// v1 and v2 reconstructions (also the old unversioned path) and xorb
// ranges. Everything else under /cas is 404.
func (s *Server) serveCAS(w http.ResponseWriter, r *http.Request, rest string) {
	segs := strings.Split(rest, "/")
	switch {
	case len(segs) == 3 && (segs[0] == "v1" || segs[0] == "v2") && segs[1] == "reconstructions":
		s.casReconstruction(w, r, segs[2], segs[0] == "v2")
	case len(segs) == 2 && segs[0] == "reconstructions":
		s.casReconstruction(w, r, segs[1], false)
	case len(segs) == 2 && segs[0] == "xorbs":
		s.casXorb(w, r, segs[1])
	default:
		setRoute(r, "cas_other")
		writeError(w, r, newAPIError(http.StatusNotFound, "NotFound", "no such CAS route; this CAS is read-only"))
	}
}

// casFail answers an error of a CAS route: what the upstream CAS refused
// keeps its status; the rest goes through the server's error table.
func (s *Server) casFail(w http.ResponseWriter, r *http.Request, d *download, err error) {
	switch proxy.CASRefusal(err) {
	case 401:
		err = &apiError{Status: 401, Code: "InvalidCASToken", Message: "upstream refused the Xet token behind this CAS token; get a new one", Size: -1, cause: err}
	case 403:
		err = &apiError{Status: 403, Code: "Forbidden", Message: "refused; query the reconstruction again", Size: -1, cause: err}
	case 404:
		err = &apiError{Status: 404, Code: "NotFound", Message: "file not found", Size: -1, cause: err}
	case 416:
		err = &apiError{Status: 416, Code: "RangeNotSatisfiable", Message: "range starts past the end of the file", Size: -1, cause: err}
	}
	s.fail(w, r, d, err)
}

// casReconstruction answers GET /cas/v1|v2/reconstructions/{file}: the
// caller's upstream reconstruction with the proxy's xorb URLs.
func (s *Server) casReconstruction(w http.ResponseWriter, r *http.Request, id string, v2 bool) {
	setRoute(r, "cas_reconstruction")
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, r, newAPIError(http.StatusMethodNotAllowed, "MethodNotAllowed", "only GET is allowed here"))
		return
	}
	bearer, _ := bearerToken(r.Header.Get("Authorization"))
	at, err := s.xet.sealer.OpenAccess(bearer, time.Now())
	if err != nil {
		writeError(w, r, errCASToken(err))
		return
	}
	if aerr := s.repoAllowed(at.RepoType, at.RepoID); aerr != nil {
		writeError(w, r, aerr)
		return
	}
	file, err := merklehash.Parse(id)
	if err != nil {
		writeError(w, r, badRequest("InvalidHash", "malformed file hash: want 64 hexadecimal digits"))
		return
	}
	var rng *reconstruction.ByteRange
	if h := r.Header.Get("Range"); h != "" {
		br, ok := parseCASRange(h)
		if !ok {
			writeError(w, r, badRequest("InvalidRange", "want Range: bytes=start-end"))
			return
		}
		rng = &br
	}
	d := s.newDownload(r)
	defer d.cancel(nil)
	ans, err := s.xet.engine.CASReconstruct(d.ctx, proxy.UpstreamCAS{URL: at.UpstreamURL, Token: at.UpstreamToken}, file, rng)
	if err != nil {
		s.casFail(w, r, d, err)
		return
	}
	d.timer.Stop()
	exp := time.Now().Add(s.xet.urlTTL)
	if at.Exp.Before(exp) {
		exp = at.Exp
	}
	base := requestOrigin(r) + "/cas/xorbs/"
	ticketURL := func(f *proxy.CASFetch, rs []proxy.CASRange) string {
		tk := &castoken.Ticket{Exp: exp, Caller: at.Caller, Xorb: f.Xorb, Layout: uint8(f.Layout), UpstreamURL: f.UpstreamURL}
		for _, cr := range rs {
			tk.Ranges = append(tk.Ranges, castoken.Range{Chunks: cr.Chunks, Served: cr.Served, Upstream: cr.Upstream})
		}
		return base + f.Xorb.String() + "?t=" + s.xet.sealer.SealTicket(tk)
	}
	terms := ans.Terms
	if terms == nil {
		terms = []reconstruction.Term{}
	}
	if v2 {
		out := reconstruction.ResponseV2{OffsetIntoFirstRange: ans.OffsetIntoFirstRange, Terms: terms,
			Xorbs: make(map[merklehash.Hash][]reconstruction.XorbFetch)}
		for i := range ans.Fetches {
			f := &ans.Fetches[i]
			for rs := f.Ranges; len(rs) > 0; {
				n := min(len(rs), maxTicketRanges)
				xf := reconstruction.XorbFetch{URL: ticketURL(f, rs[:n])}
				for _, cr := range rs[:n] {
					xf.Ranges = append(xf.Ranges, reconstruction.RangeV2{Chunks: cr.Chunks, Bytes: cr.Served})
				}
				out.Xorbs[f.Xorb] = append(out.Xorbs[f.Xorb], xf)
				rs = rs[n:]
			}
		}
		writeCASJSON(w, r, out)
		return
	}
	out := reconstruction.ResponseV1{OffsetIntoFirstRange: ans.OffsetIntoFirstRange, Terms: terms,
		FetchInfo: make(map[merklehash.Hash][]reconstruction.FetchInfo)}
	for i := range ans.Fetches {
		f := &ans.Fetches[i]
		for _, cr := range f.Ranges {
			out.FetchInfo[f.Xorb] = append(out.FetchInfo[f.Xorb], reconstruction.FetchInfo{
				Range: cr.Chunks, URL: ticketURL(f, []proxy.CASRange{cr}), URLRange: cr.Served})
		}
	}
	writeCASJSON(w, r, out)
}

func writeCASJSON(w http.ResponseWriter, r *http.Request, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", itoa(int64(len(b))))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// parseCASRange reads the Range of a reconstruction query: bytes=a-b
// (inclusive; b may pass the end, upstream clamps) or bytes=a-.
func parseCASRange(h string) (reconstruction.ByteRange, bool) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok {
		return reconstruction.ByteRange{}, false
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return reconstruction.ByteRange{}, false
	}
	start, err := strconv.ParseUint(strings.TrimSpace(a), 10, 63)
	if err != nil {
		return reconstruction.ByteRange{}, false
	}
	end := uint64(1<<62 - 1)
	if b = strings.TrimSpace(b); b != "" {
		if end, err = strconv.ParseUint(b, 10, 63); err != nil || end < start {
			return reconstruction.ByteRange{}, false
		}
	}
	return reconstruction.ByteRange{Start: start, End: end}, true
}

// casXorb answers GET /cas/xorbs/{xorb}?t={ticket} with the byte ranges
// the ticket grants: one range as a 206, several as multipart/byteranges.
// A ticket that is missing, foreign, expired or for another xorb, and a
// Range outside what it grants, are 403: clients then query the
// reconstruction again.
func (s *Server) casXorb(w http.ResponseWriter, r *http.Request, id string) {
	setRoute(r, "cas_xorb")
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, r, newAPIError(http.StatusMethodNotAllowed, "MethodNotAllowed", "only GET is allowed here"))
		return
	}
	forbidden := func(msg string, cause error) {
		e := newAPIError(http.StatusForbidden, "Forbidden", msg)
		e.cause = cause
		writeError(w, r, e)
	}
	x, err := merklehash.Parse(id)
	if err != nil {
		writeError(w, r, newAPIError(http.StatusNotFound, "NotFound", "no such xorb"))
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil || len(q["t"]) != 1 {
		forbidden("missing or malformed xorb ticket", err)
		return
	}
	tk, err := s.xet.sealer.OpenTicket(q.Get("t"), time.Now())
	if err != nil {
		forbidden("invalid or expired xorb URL; query the reconstruction again", err)
		return
	}
	if tk.Xorb != x {
		forbidden("this URL is for another xorb", nil)
		return
	}
	specs, ok := parseByteRanges(r.Header.Get("Range"))
	if !ok {
		forbidden("a Range inside the ranges of this URL is required", nil)
		return
	}
	// Each range may cost an upstream transfer: ascending, disjoint and
	// at most two per granted range, so a URL cannot be made to fetch
	// much more than it grants.
	if len(specs) > 2*len(tk.Ranges) {
		forbidden("too many ranges for this URL", nil)
		return
	}
	for i := 1; i < len(specs); i++ {
		if specs[i].Start <= specs[i-1].End {
			forbidden("ranges must be ascending and disjoint", nil)
			return
		}
	}
	parts := make([]proxy.XorbRange, len(specs))
	var total int64
	for i, sp := range specs {
		j := grantedRange(tk.Ranges, sp)
		if j < 0 {
			forbidden(fmt.Sprintf("bytes %d-%d are not granted by this URL", sp.Start, sp.End), nil)
			return
		}
		g := tk.Ranges[j]
		parts[i] = proxy.XorbRange{Xorb: x, UpstreamURL: tk.UpstreamURL, Layout: proxy.Layout(tk.Layout),
			Range: proxy.CASRange{Chunks: g.Chunks, Served: g.Served, Upstream: g.Upstream}}
		total += int64(sp.Len())
	}
	d := s.newDownload(r)
	defer d.cancel(nil)
	release, err := s.admit(d, total)
	if err != nil {
		s.fail(w, r, d, err)
		return
	}
	defer release()
	body, err := s.xet.engine.OpenXorbRange(d.ctx, parts[0], specs[0])
	if err != nil {
		s.casFail(w, r, d, err)
		return
	}
	if !d.timer.Stop() && d.ctx.Err() != nil {
		body.Close()
		s.fail(w, r, d, context.Cause(d.ctx))
		return
	}
	h := w.Header()
	info := infoFrom(r.Context())
	var written int64
	defer func() { s.metrics.servedBytes.WithLabelValues(info.route).Add(float64(written)) }()
	if len(specs) == 1 {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Range", xorbContentRange(specs[0]))
		h.Set("Content-Length", itoa(int64(specs[0].Len())))
		w.WriteHeader(http.StatusPartialContent)
		s.copyXorb(w, r, info, body, specs[0].Len(), &written)
		return
	}
	var rb [12]byte
	_, _ = rand.Read(rb[:])
	boundary := "xetproxy-" + hex.EncodeToString(rb[:])
	h.Set("Content-Type", "multipart/byteranges; boundary="+boundary)
	w.WriteHeader(http.StatusPartialContent)
	for i, sp := range specs {
		if i > 0 {
			if body, err = s.xet.engine.OpenXorbRange(d.ctx, parts[i], sp); err != nil {
				s.abort(r, info, "upstream", err)
			}
		}
		head := "\r\n--" + boundary + "\r\nContent-Type: application/octet-stream\r\nContent-Range: " + xorbContentRange(sp) + "\r\n\r\n"
		if i == 0 {
			head = head[2:]
		}
		if _, err := io.WriteString(w, head); err != nil {
			info.status = StatusClientClosedRequest
			s.abort(r, info, "client", err)
		}
		s.copyXorb(w, r, info, body, sp.Len(), &written)
	}
	if _, err := io.WriteString(w, "\r\n--"+boundary+"--\r\n"); err != nil {
		s.abort(r, info, "client", err)
	}
}

// xorbContentRange is the Content-Range of a served xorb range; the total
// is not told (the served layout is the proxy's, not a stored object).
func xorbContentRange(b reconstruction.ByteRange) string {
	return "bytes " + strconv.FormatUint(b.Start, 10) + "-" + strconv.FormatUint(b.End, 10) + "/*"
}

// grantedRange returns the index of the ticket range holding sp, or -1.
func grantedRange(rs []castoken.Range, sp reconstruction.ByteRange) int {
	for i, g := range rs {
		if g.Served.Start <= sp.Start && sp.End <= g.Served.End {
			return i
		}
	}
	return -1
}

// parseByteRanges reads a Range header of absolute byte ranges
// (bytes=a-b,c-d; a-b inclusive). Suffix and open ranges are refused: a
// xorb URL serves ranges a reconstruction named exactly.
func parseByteRanges(h string) ([]reconstruction.ByteRange, bool) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok {
		return nil, false
	}
	var out []reconstruction.ByteRange
	for _, p := range strings.Split(spec, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(p), "-")
		if !ok {
			return nil, false
		}
		start, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 63)
		end, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 63)
		if err1 != nil || err2 != nil || end < start || len(out) >= castoken.MaxRanges {
			return nil, false
		}
		out = append(out, reconstruction.ByteRange{Start: start, End: end})
	}
	return out, len(out) > 0
}

// copyXorb copies exactly n bytes of body to the client and closes body;
// any failure cuts the connection.
func (s *Server) copyXorb(w http.ResponseWriter, r *http.Request, info *reqInfo, body io.ReadCloser, n uint64, written *int64) {
	defer body.Close()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	left := n
	for left > 0 {
		m, err := body.Read(buf[:min(uint64(len(buf)), left)])
		if m > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.StallTimeout))
			k, werr := w.Write(buf[:m])
			*written += int64(k)
			left -= uint64(k)
			if werr != nil {
				reason := "client"
				if errors.Is(werr, os.ErrDeadlineExceeded) {
					reason, werr = "stall", fmt.Errorf("%w: %w", errStalled, werr)
				} else {
					info.status = StatusClientClosedRequest
				}
				s.abort(r, info, reason, werr)
			}
		}
		if err == io.EOF && left > 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			reason := "upstream"
			if r.Context().Err() != nil {
				reason = "client"
				info.status = StatusClientClosedRequest
			}
			s.abort(r, info, reason, err)
		}
	}
	_ = rc.SetWriteDeadline(time.Time{})
}
