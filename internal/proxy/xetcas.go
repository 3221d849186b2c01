package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// Serving Xet to Xet clients (the server's /cas routes): the engine
// answers reconstructions with the caller's own upstream Xet token, lays
// out the xorb bytes it will serve, and serves them from the chunk cache
// or from upstream (see the package doc, "Xet clients").

// UpstreamCAS is a caller's upstream CAS credential: the CAS base URL and
// the Xet read token the Hub minted for that caller.
type UpstreamCAS struct {
	URL   string
	Token string
}

// Layout is how the engine lays out the bytes it serves for a xorb range.
type Layout uint8

const (
	// LayoutUpstream serves the upstream's stored bytes verbatim (chunk
	// records as the CAS stores them, compressed or not): the served
	// range is the upstream range.
	LayoutUpstream Layout = 0
	// LayoutRecords serves uncompressed chunk records (an 8-byte header
	// with scheme none, then the chunk) at the offsets they would have in
	// an uncompressed copy of the whole xorb. It needs the xorb's manifest
	// (every chunk size) and lets the chunk cache answer without upstream.
	LayoutRecords Layout = 1
)

// CASRange is one chunk range of a xorb as served: the bytes the client
// fetches (end-inclusive) and where they are stored upstream.
type CASRange struct {
	Chunks   reconstruction.ChunkRange
	Served   reconstruction.ByteRange
	Upstream reconstruction.ByteRange
}

// CASFetch is what one upstream fetch entry of a reconstruction becomes:
// the ranges of one upstream URL, all in one layout.
type CASFetch struct {
	Xorb        merklehash.Hash
	UpstreamURL string
	Layout      Layout
	Ranges      []CASRange
}

// CASAnswer is a reconstruction as the proxy serves it: the upstream's
// terms unchanged, its fetch entries laid out by the engine.
type CASAnswer struct {
	OffsetIntoFirstRange uint64
	Terms                []reconstruction.Term
	Fetches              []CASFetch // sorted by xorb, then in the upstream's order
}

// ErrStaleURL: a xorb URL can no longer be served as its reconstruction
// described it (the upstream URL expired, the manifest its layout needs is
// gone); the client should query the reconstruction again (HTTP 403).
var ErrStaleURL = errors.New("xorb url is stale")

// XetReadToken returns the upstream Xet read token of the caller holding
// token ("" = anonymous) for repo at revision: the Hub's own answer, so
// the Hub's access decision (private, gated, bad token) is the caller's.
func (e *Engine) XetReadToken(ctx context.Context, token string, repo hub.Repo, revision string) (*hub.CASToken, error) {
	t, err := e.hub.ReadToken(ctx, token, repo, revision)
	if err != nil {
		return nil, upstream("read token", repo.String(), err)
	}
	return t, nil
}

// CASReconstruct asks the upstream CAS how to rebuild bytes r (nil: all)
// of file, with the caller's credential up, and lays out each fetch entry:
// LayoutRecords when the engine has a cache and knows the xorb's manifest
// (the cache can answer, and every chunk is checked), else LayoutUpstream. An answer upstream
// refused comes back as its casclient error (ErrNotFound, ErrUnauthorized,
// ErrForbidden, ErrRangeNotSatisfiable), wrapped.
func (e *Engine) CASReconstruct(ctx context.Context, up UpstreamCAS, file merklehash.Hash, r *reconstruction.ByteRange) (*CASAnswer, error) {
	resp, err := e.cas.Reconstruct(ctx, casclient.StaticAuth(up.URL, up.Token), file, r)
	if err != nil {
		return nil, upstream("reconstruction", file.String(), err)
	}
	// The planner checks the answer's numbers (term lengths, that every
	// term lies in a fetch range) before anything trusts them.
	if _, err := reconstruction.NewPlan(resp, math.MaxUint64); err != nil {
		return nil, upstream("reconstruction", file.String(), fmt.Errorf("%w: %w", casclient.ErrBadResponse, err))
	}
	out := &CASAnswer{OffsetIntoFirstRange: resp.OffsetIntoFirstRange, Terms: resp.Terms}
	xorbs := make([]merklehash.Hash, 0, len(resp.Xorbs))
	for x := range resp.Xorbs {
		xorbs = append(xorbs, x)
	}
	slices.SortFunc(xorbs, merklehash.Hash.Compare)
	for _, x := range xorbs {
		var offs []uint64 // served offset of every chunk of x, when the manifest is known
		// Records only pay off with a cache to serve them from. A
		// one-chunk manifest does not prove its size (cache.Manifest):
		// its size is taken only when a term of this answer, which
		// upstream gave for this caller, says the same.
		if m := e.manifest(ctx, x); e.cache != nil && m != nil && (m.Len() > 1 || oneChunkSizeAgrees(resp.Terms, m)) {
			offs = make([]uint64, m.Len()+1)
			for i, s := range m.Sizes {
				offs[i+1] = offs[i] + xorb.HeaderSize + uint64(s)
			}
		}
		for _, xf := range resp.Xorbs[x] {
			f := CASFetch{Xorb: x, UpstreamURL: xf.URL, Layout: LayoutUpstream}
			if offs != nil && allWithin(xf.Ranges, uint32(len(offs)-1)) {
				f.Layout = LayoutRecords
			}
			for _, rg := range xf.Ranges {
				cr := CASRange{Chunks: rg.Chunks, Served: rg.Bytes, Upstream: rg.Bytes}
				if f.Layout == LayoutRecords {
					cr.Served = reconstruction.ByteRange{Start: offs[rg.Chunks.Start], End: offs[rg.Chunks.End] - 1}
				}
				f.Ranges = append(f.Ranges, cr)
			}
			out.Fetches = append(out.Fetches, f)
		}
	}
	return out, nil
}

// oneChunkSizeAgrees reports whether a term of terms covers the only
// chunk of m's xorb with the size m gives it.
func oneChunkSizeAgrees(terms []reconstruction.Term, m *cache.Manifest) bool {
	if m.Len() != 1 {
		return false
	}
	for _, t := range terms {
		if t.Hash == m.Xorb && t.Range.Start == 0 && t.Range.End == 1 && t.UnpackedLength == m.Sizes[0] {
			return true
		}
	}
	return false
}

func allWithin(rs []reconstruction.RangeV2, n uint32) bool {
	for _, r := range rs {
		if r.Chunks.End > n || r.Chunks.Start >= r.Chunks.End {
			return false
		}
	}
	return true
}

// XorbRange is one range of a xorb URL, as a reconstruction laid it out.
type XorbRange struct {
	Xorb        merklehash.Hash
	UpstreamURL string
	Layout      Layout
	Range       CASRange
}

// OpenXorbRange returns the served bytes window (inside src.Range.Served)
// of a xorb range. Chunks come from the chunk cache when the layout allows
// (LayoutRecords), else from upstream, decoded as they pass: every chunk
// is checked against the xorb's manifest when it is known, and fills the
// cache (proven chunks) or the staging store (unproven ones, promoted when
// the range turns out to be the whole xorb). The first chunk is produced
// before OpenXorbRange returns, so an upstream refusal is its error; later
// failures are Read errors, never a clean early EOF.
func (e *Engine) OpenXorbRange(ctx context.Context, src XorbRange, window reconstruction.ByteRange) (io.ReadCloser, error) {
	rg := src.Range
	if rg.Chunks.Start >= rg.Chunks.End || rg.Served.End < rg.Served.Start || window.Start < rg.Served.Start ||
		window.End > rg.Served.End || window.End < window.Start {
		return nil, fmt.Errorf("proxy: window %d-%d outside the served range %d-%d", window.Start, window.End, rg.Served.Start, rg.Served.End)
	}
	xr := &xorbReader{e: e, ctx: ctx, src: src, window: window, pos: rg.Served.Start, c: rg.Chunks.Start,
		m: e.manifest(ctx, src.Xorb)}
	if src.Layout == LayoutRecords && xr.m == nil {
		return nil, fmt.Errorf("the manifest of xorb %s is gone: %w", src.Xorb, ErrStaleURL)
	}
	xr.learn = xr.m == nil && rg.Chunks.Start == 0
	if err := xr.advance(); err != nil {
		xr.Close()
		return nil, err
	}
	return xr, nil
}

// xorbReader produces the served bytes of one xorb range, one chunk
// record at a time, and hands out the part of each inside the window.
type xorbReader struct {
	e      *Engine
	ctx    context.Context
	src    XorbRange
	window reconstruction.ByteRange
	m      *cache.Manifest

	c       uint32 // next chunk to produce
	pos     uint64 // served offset of pending[0]
	pending []byte // the current record's bytes not handed out yet
	rest    []byte // and those after pending (a record's chunk after its header)
	hdr     [xorb.HeaderSize]byte
	ent     *cache.Entry
	entHeld int64 // what ent holds of the engine's budget (xetmem.go)
	decHeld int64 // what the upstream decoder's buffers hold of it

	body   io.ReadCloser // upstream, opened at the first chunk the cache lacks
	closed bool          // body closed
	tap    *tap
	cs     *chunkStream
	chunk  *[]byte // decode buffer
	learn  bool
	leaves []merklehash.Leaf
	fill   xorbFill
	// single flight (xetflight.go): the flight this reader leads; as a
	// follower, whether a flight it waited for has stored the chunks it
	// looks up (since its last cache hit), how often it looked again
	// because flights moved, how many flights it waited for ended
	// early, and whether it fetches on its own from now on
	flight   *xorbFlight
	passed   bool
	retries  int
	orphaned int
	solo     bool

	done bool // window handed out
	err  error
}

// tap records the bytes read through it, so that a chunk's stored record
// can be handed out verbatim once it decoded and checked.
type tap struct {
	r   io.Reader
	buf []byte
	off bool // not recording (skipping chunks)
}

func (t *tap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if !t.off {
		t.buf = append(t.buf, p[:n]...)
	}
	return n, err
}

func (xr *xorbReader) Read(p []byte) (int, error) {
	for {
		if xr.err != nil {
			return 0, xr.err
		}
		if xr.done {
			return 0, io.EOF
		}
		if len(xr.pending) == 0 && len(xr.rest) > 0 {
			xr.pending, xr.rest = xr.rest, nil
			continue
		}
		if len(xr.pending) == 0 {
			if err := xr.advance(); err != nil {
				if err == io.EOF { // the chunks ended before the window did
					err = xr.integrity(errors.New("fewer bytes than the range served"))
				}
				xr.err = err
				xr.endFlight() // its followers fetch on their own
				return 0, err
			}
			continue
		}
		// cut the record to the window
		if end := xr.pos + uint64(len(xr.pending)); end <= xr.window.Start {
			xr.pos, xr.pending = end, nil
			continue
		}
		if xr.pos < xr.window.Start {
			xr.pending = xr.pending[xr.window.Start-xr.pos:]
			xr.pos = xr.window.Start
		}
		n := copy(p, xr.pending[:min(uint64(len(xr.pending)), xr.window.End+1-xr.pos)])
		xr.pending = xr.pending[n:]
		xr.pos += uint64(n)
		xr.e.stats.casServed.Add(int64(n))
		if xr.pos == xr.window.End+1 {
			xr.done = true
			if xr.window.End == xr.src.Range.Served.End {
				// the whole range was produced: its end must be the
				// end of its chunks, and the fill can finish
				if err := xr.advance(); err != io.EOF {
					if err == nil {
						err = xr.integrity(errors.New("more bytes than the range served"))
					}
					xr.err = err
					return n, err
				}
			}
			// nothing more is read: the memory goes back now, not
			// when the caller gets round to Close
			xr.free()
		}
		return n, nil
	}
}

func (xr *xorbReader) integrity(err error) error {
	rg := xr.src.Range
	return &IntegrityError{File: "xorb " + xr.src.Xorb.String(), Err: fmt.Errorf("chunks %d-%d: %w", rg.Chunks.Start, rg.Chunks.End, err)}
}

// advance makes the next chunk's record pending; io.EOF after the last.
func (xr *xorbReader) advance() error {
	rg := xr.src.Range
	xr.pos += uint64(len(xr.pending) + len(xr.rest))
	xr.pending, xr.rest = nil, nil
	if xr.c == rg.Chunks.End {
		return xr.finish()
	}
	if xr.src.Layout == LayoutRecords && xr.body == nil && xr.e.cache != nil {
		for xr.ent == nil || xr.c >= xr.ent.End {
			mark := xr.e.xorbFlights.mark()
			if err := xr.nextEntry(); err != nil {
				return err
			}
			if xr.ent != nil {
				xr.passed, xr.retries = false, 0
				break
			}
			// a miss: wait for a flight that will store these
			// chunks, or fetch them (xetflight.go)
			again, err := xr.missed(mark, min(segmentEnd(xr.c), rg.Chunks.End))
			if err != nil {
				return err
			}
			if !again {
				break
			}
		}
		if xr.ent != nil {
			data := xr.ent.Chunk(xr.c)
			if !xr.m.Check(xr.c, merklehash.ChunkHash(data), uint32(len(data))) {
				xr.e.stats.proofFailures.Add(1)
				xr.e.purge(xr.ctx, []cache.Key{xr.ent.Key()})
				xr.dropEntry() // and fetch from upstream instead
			} else {
				xr.record(data)
				xr.e.stats.casFromCache.Add(int64(len(data)))
				xr.c++
				return nil
			}
		}
	}
	return xr.fromUpstream()
}

// record makes an uncompressed chunk record of data pending: a header,
// then data itself, which stays put until the next advance (no copy, and
// no record buffer to charge).
func (xr *xorbReader) record(data []byte) {
	xorb.Header{Scheme: xorb.SchemeNone, CompressedLen: uint32(len(data)), UncompressedLen: uint32(len(data))}.Put(xr.hdr[:])
	xr.pending, xr.rest = xr.hdr[:], data
}

// fromUpstream decodes the next chunk from the upstream range, opening it
// (and skipping the chunks already produced) on first use.
func (xr *xorbReader) fromUpstream() error {
	rg := xr.src.Range
	if xr.body == nil {
		// The cache is done with (this path never goes back to it),
		// and the decoder's buffers are charged before they exist.
		xr.dropEntry()
		if err := xr.chargeDecoder(); err != nil {
			return err
		}
		body, err := xr.e.cas.FetchRange(xr.ctx, xr.src.UpstreamURL, rg.Upstream, nil)
		if err != nil {
			if errors.Is(err, casclient.ErrURLRejected) {
				err = fmt.Errorf("%w: %w", ErrStaleURL, err)
			}
			return upstream("xorb range", "xorb "+xr.src.Xorb.String(), err)
		}
		xr.body = body
		if xr.flight == nil && xr.m != nil && xr.e.xorbFlights != nil {
			// its fill stores proven segments: others may wait for them
			xr.e.xorbFlights.lead(xr, xr.src.Xorb, xr.c, rg.Chunks.End)
		}
		xr.tap = &tap{r: body}
		if xr.src.Layout == LayoutUpstream {
			xr.tap.buf = make([]byte, 0, tapCap)
		}
		xr.cs = &chunkStream{r: xr.tap}
		xr.tap.off = true // the chunks the cache gave: their bytes are not kept
		for k := rg.Chunks.Start; k < xr.c; k++ {
			h, err := xr.cs.header()
			if err == nil {
				err = xr.cs.skip(h)
			}
			if err != nil {
				return xr.decodeErr(err)
			}
			if xr.flight != nil {
				xr.flight.moves.Add(1)
			}
		}
		// A record is new bytes: only the stored ones are kept.
		xr.tap.off = xr.src.Layout == LayoutRecords
		if xr.c != rg.Chunks.Start {
			xr.learn = false
		}
	}
	xr.tap.buf = xr.tap.buf[:0]
	h, err := xr.cs.header()
	if err != nil {
		return xr.decodeErr(err)
	}
	size := h.UncompressedLen
	if size == 0 {
		return xr.integrity(errors.New("empty chunk"))
	}
	dst := xr.fill.buffer(xr, size)
	if dst == nil {
		if xr.chunk == nil {
			xr.chunk = getBuf(maxChunk)
		}
		dst = (*xr.chunk)[:size]
	}
	if err := xr.cs.body(h, dst); err != nil {
		xr.fill.drop(xr)
		return xr.decodeErr(err)
	}
	var ch merklehash.Hash
	if xr.m != nil || xr.learn || xr.fill.active() {
		ch = merklehash.ChunkHash(dst)
		if xr.m != nil && !xr.m.Check(xr.c, ch, size) {
			xr.fill.drop(xr)
			xr.e.stats.proofFailures.Add(1)
			return xr.integrity(fmt.Errorf("chunk %d does not match the xorb's manifest", xr.c))
		}
		if xr.learn {
			xr.leaves = append(xr.leaves, merklehash.Leaf{Hash: ch, Size: uint64(size)})
		}
	}
	if xr.flight != nil {
		xr.flight.moves.Add(1)
	}
	xr.fill.done(xr, size, ch)
	xr.e.stats.casFromUpstream.Add(int64(size))
	if xr.src.Layout == LayoutRecords {
		xr.record(dst)
	} else {
		xr.pending = xr.tap.buf
	}
	xr.c++
	return nil
}

func (xr *xorbReader) decodeErr(err error) error {
	var fe *xorb.FormatError
	switch {
	case err == io.EOF, err == io.ErrUnexpectedEOF:
		return xr.integrity(errTruncatedChunk)
	case errors.As(err, &fe):
		return xr.integrity(err)
	}
	return upstream("xorb range", "xorb "+xr.src.Xorb.String(), err)
}

// finish runs after the last chunk: the upstream range must end there,
// and a range of the whole xorb read without a manifest teaches it.
func (xr *xorbReader) finish() error {
	if xr.body != nil {
		if _, err := xr.cs.header(); err != io.EOF {
			if err == nil {
				return xr.integrity(errors.New("more chunks than the range holds"))
			}
			return xr.decodeErr(err)
		}
	}
	if xr.learn && xr.body != nil {
		xr.learn = false
		ctx, cancel := context.WithTimeout(context.WithoutCancel(xr.ctx), commitTimeout)
		defer cancel()
		if m := xr.e.learnManifest(ctx, xr.src.Xorb, xr.leaves); m != nil && len(xr.fill.staged) > 0 {
			xr.e.promoteAll(ctx, xr.fill.staged)
			xr.fill.staged = nil
		}
	}
	return io.EOF
}

func (xr *xorbReader) Close() error {
	xr.free()
	if xr.err == nil {
		xr.err = errors.New("read after close")
	}
	return nil
}

// free lets go of everything the reader holds: the upstream body, the
// decoder's buffers, the cache entry, the fill segment, and their
// charges. It may run more than once.
func (xr *xorbReader) free() {
	if xr.body != nil && !xr.closed {
		xr.body.Close()
		xr.closed = true
	}
	if xr.cs != nil {
		xr.cs.release()
	}
	if xr.chunk != nil {
		putBuf(xr.chunk)
		xr.chunk = nil
	}
	if xr.tap != nil {
		xr.tap.buf = nil
	}
	xr.pending, xr.rest = nil, nil
	xr.dropEntry()
	xr.releaseDecoder()
	xr.fill.release(xr)
	xr.endFlight()
}

// xorbFill collects the chunks a xorbReader decodes from upstream into
// cache segments (the absolute 64-chunk grid of segments.go): proven
// segments go to the cache, others to the staging store. The memory of a
// segment is taken from the engine's fill budget without waiting: when it
// is spent, the chunks are served but not kept.
type xorbFill struct {
	start  uint32 // first chunk of the segment under construction
	data   []byte
	offs   []uint32
	hashes []merklehash.Hash
	held   int64
	off    bool // this segment is not kept
	staged []unproven
}

func (f *xorbFill) active() bool { return f.data != nil }

// buffer returns where chunk xr.c of size bytes decodes, nil when it is
// not kept.
func (f *xorbFill) buffer(xr *xorbReader, size uint32) []byte {
	e := xr.e
	if e.cache == nil {
		return nil
	}
	if f.data == nil && !f.off {
		hi := min(segmentEnd(xr.c), xr.src.Range.Chunks.End)
		held := int64(hi-xr.c) * maxChunk
		if !e.tryFillBudget(held) {
			f.off = true
			return nil
		}
		f.start, f.held = xr.c, held
		f.data = make([]byte, 0, int(hi-xr.c)*xorbTargetChunk)
		f.offs = []uint32{0}
		f.hashes = nil
	}
	if f.off {
		return nil
	}
	n := len(f.data) + int(size)
	if n > cap(f.data) {
		grown := make([]byte, len(f.data), max(n, cap(f.data)+cap(f.data)/2))
		copy(grown, f.data)
		f.data = grown
	}
	return f.data[len(f.data):n]
}

// done records chunk xr.c (size bytes, hash h) and stores the segment
// when it is complete.
func (f *xorbFill) done(xr *xorbReader, size uint32, h merklehash.Hash) {
	end := segmentEnd(xr.c) == xr.c+1 || xr.c+1 == xr.src.Range.Chunks.End
	if f.active() {
		f.data = f.data[:len(f.data)+int(size)]
		f.offs = append(f.offs, uint32(len(f.data)))
		f.hashes = append(f.hashes, h)
		if end {
			f.put(xr)
		}
	}
	if end {
		f.off = false
		if xr.flight != nil {
			// stored, or not kept: its followers look now
			xr.e.xorbFlights.storedUpTo(xr.flight, xr.c+1)
		}
	}
}

func (f *xorbFill) put(xr *xorbReader) {
	e := xr.e
	ent := &cache.Entry{Xorb: xr.src.Xorb, Start: f.start, End: f.start + uint32(len(f.hashes)),
		Offsets: f.offs, Hashes: f.hashes, Data: f.data}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(xr.ctx), time.Minute)
	defer cancel()
	switch {
	case xr.m != nil:
		e.putSegment(ctx, ent)
	case e.staging != nil:
		if err := e.staging.Put(ctx, ent); err == nil {
			e.stats.staged.Add(uint64(len(ent.Data)))
			f.staged = append(f.staged, unproven{key: ent.Key(), hashes: ent.Hashes})
		}
	}
	f.release(xr)
}

// drop forgets the segment under construction (its chunk failed).
func (f *xorbFill) drop(xr *xorbReader) { f.release(xr); f.off = true }

func (f *xorbFill) release(xr *xorbReader) {
	if f.held > 0 {
		xr.e.fillBudget.release(f.held)
	}
	f.data, f.offs, f.hashes, f.held = nil, nil, nil, 0
}

// CASRefusal returns the status an upstream CAS refused a call with that
// the caller should see as it is (401, 403, 404, 416), 403 for a stale
// xorb URL, or 0 for any other error.
func CASRefusal(err error) int {
	switch {
	case errors.Is(err, ErrStaleURL), errors.Is(err, casclient.ErrURLRejected), errors.Is(err, casclient.ErrForbidden):
		return 403
	case errors.Is(err, casclient.ErrUnauthorized):
		return 401
	case errors.Is(err, casclient.ErrNotFound):
		return 404
	case errors.Is(err, casclient.ErrRangeNotSatisfiable):
		return 416
	}
	return 0
}
