package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// Serving without upstream (OpenCached):
//
//	a whole-file stream whose file hash checks -> its reconstruction answers,
//	    merged into the file's terms (offset 0, URLs dropped), go to the
//	    TermStore under the file's Xet hash
//	OpenCached(meta, offset, length):
//	    terms of meta.XetHash from the TermStore, else ErrNotCached
//	    each block's answer is cut from the terms (no CAS query)
//	    every segment of every fetch must be in the cache (or, for a whole
//	    file, in staging), else ErrNotCached, before Open returns
//	    fetches read the cache only (cachedOnly): a miss is ErrNotCached,
//	    never a fill; the proofs are those of any stream (a manifest checks
//	    every chunk; a whole file is held back until its hash checks)

// ErrNotCached: OpenCached was asked for bytes the engine cannot serve
// without upstream (no stored terms, or chunks missing from the cache).
var ErrNotCached = errors.New("not in the cache")

// TermStore keeps byte values by key for the engine: the terms of files
// read whole, so that they can be served again without asking the CAS.
// Implementations bound their size; a lost value only costs a CAS query.
type TermStore interface {
	// Get returns the value stored under key, if any.
	Get(key string) ([]byte, bool)
	// Put stores v under key, replacing any earlier value.
	Put(key string, v []byte)
}

func termsKey(h merklehash.Hash) string { return "terms/" + h.String() }

// keepTerms records the terms of a whole-file stream whose hash checked.
func (e *Engine) keepTerms(s *stream) {
	if e.terms == nil || len(s.answers) == 0 || s.start != 0 {
		return
	}
	r, err := mergeAnswers(s.answers, s.end)
	if err != nil {
		e.log.Debug("terms not kept", "file", s.fileName(), "err", err)
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	if old, ok := e.terms.Get(termsKey(s.file)); ok && bytes.Equal(old, b) {
		return // a file's terms rarely change: spare the store a write per download
	}
	e.terms.Put(termsKey(s.file), b)
}

// storedURL stands for the presigned URLs of stored terms: a URL no HTTP
// client can fetch (cachedOnly never fetches one; a plan needs one).
const storedURL = "xetproxy-stored:"

// mergeAnswers joins the answers of consecutive blocks that cover bytes
// [0, size) of a file into one answer for all of it. A block that starts
// inside a term repeats that term (with offset_into_first_range past its
// start): it is kept once. URLs are replaced by storedURL: they expire,
// and an answer served from the store is only read from the cache.
func mergeAnswers(rs []*reconstruction.ResponseV2, size uint64) (*reconstruction.ResponseV2, error) {
	out := &reconstruction.ResponseV2{Xorbs: map[merklehash.Hash][]reconstruction.XorbFetch{}}
	if rs[0].OffsetIntoFirstRange != 0 {
		return nil, errors.New("first answer does not start at a term")
	}
	var total uint64
	for i, r := range rs {
		terms := r.Terms
		if i > 0 && r.OffsetIntoFirstRange > 0 {
			if len(terms) == 0 || len(out.Terms) == 0 || terms[0] != out.Terms[len(out.Terms)-1] {
				return nil, errors.New("blocks do not join on a shared term")
			}
			terms = terms[1:]
		}
		for _, t := range terms {
			out.Terms = append(out.Terms, t)
			total += uint64(t.UnpackedLength)
		}
		for x, fs := range r.Xorbs {
			for _, f := range fs {
				out.Xorbs[x] = append(out.Xorbs[x], reconstruction.XorbFetch{URL: storedURL, Ranges: f.Ranges})
			}
		}
	}
	if total < size {
		return nil, fmt.Errorf("terms cover %d of %d bytes", total, size)
	}
	return out, nil
}

// cutAnswer is the part of a whole-file answer that covers rng: the terms
// from the one holding rng.Start to the one holding rng.End.
func cutAnswer(all *reconstruction.ResponseV2, rng reconstruction.ByteRange) (*reconstruction.ResponseV2, error) {
	out := &reconstruction.ResponseV2{Xorbs: all.Xorbs}
	var off uint64
	for _, t := range all.Terms {
		end := off + uint64(t.UnpackedLength)
		if end > rng.Start && off <= rng.End {
			if len(out.Terms) == 0 {
				out.OffsetIntoFirstRange = rng.Start - off
			}
			out.Terms = append(out.Terms, t)
		}
		if end > rng.End {
			break
		}
		off = end
	}
	if len(out.Terms) == 0 {
		return nil, fmt.Errorf("bytes %d-%d: %w", rng.Start, rng.End, ErrNotCached)
	}
	return out, nil
}

// OpenCached is Open without upstream: the file's terms come from the
// TermStore and its chunks from the cache alone. It checks, before it
// returns, that every chunk the range needs is there; otherwise it is
// ErrNotCached. The reader keeps Open's guarantees: exact bytes or an
// error, a whole file checked against its Xet hash before its last chunk.
// Access is the caller's business: OpenCached asks nobody.
func (e *Engine) OpenCached(ctx context.Context, meta *hub.FileMeta, offset, length int64) (io.ReadCloser, error) {
	length, err := clampRange(meta.Size, offset, length)
	if err != nil {
		return nil, err
	}
	whole := offset == 0 && length == meta.Size
	if meta.XetHash == nil || e.cache == nil || e.terms == nil {
		return nil, fmt.Errorf("%s: %w", meta.Path, ErrNotCached)
	}
	if length == 0 {
		if whole && !meta.XetHash.IsZero() {
			return nil, &IntegrityError{File: meta.XetHash.String(), Err: errors.New("an empty file has the zero hash")}
		}
		return io.NopCloser(emptyReader{}), nil
	}
	plans, err := e.storedPlans(meta)
	if err != nil {
		return nil, err
	}
	if err := e.checkCached(ctx, plans, uint64(offset), uint64(offset+length), whole); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	s := e.newStream(sctx, cancel, nil, "", *meta.XetHash, uint64(offset), uint64(length), whole)
	s.src, s.plans = cachedOnly{}, plans
	first, err := s.planBlock(s.ctx, s.start, 0)
	if err != nil {
		cancel()
		return nil, err
	}
	s.g.Go(func() error { return s.schedule(first) })
	return s, nil
}

// storedPlans returns the reconstruction answers of meta's file cut from
// its stored terms.
func (e *Engine) storedPlans(meta *hub.FileMeta) (func(reconstruction.ByteRange) (*reconstruction.ResponseV2, error), error) {
	b, ok := e.terms.Get(termsKey(*meta.XetHash))
	if !ok {
		return nil, fmt.Errorf("xet file %s: no stored terms: %w", meta.XetHash, ErrNotCached)
	}
	var all reconstruction.ResponseV2
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, fmt.Errorf("xet file %s: stored terms unreadable: %w", meta.XetHash, ErrNotCached)
	}
	return func(rng reconstruction.ByteRange) (*reconstruction.ResponseV2, error) { return cutAnswer(&all, rng) }, nil
}

// CheckCached reports whether OpenCached could serve the whole file meta
// describes: nil, or an error wrapping ErrNotCached. (It reads the entries
// to find them, as OpenCached does before it serves.)
func (e *Engine) CheckCached(ctx context.Context, meta *hub.FileMeta) error {
	if meta.XetHash == nil || e.cache == nil || e.terms == nil {
		return fmt.Errorf("%s: %w", meta.Path, ErrNotCached)
	}
	if meta.Size <= 0 {
		return nil
	}
	plans, err := e.storedPlans(meta)
	if err != nil {
		return err
	}
	return e.checkCached(ctx, plans, 0, uint64(meta.Size), true)
}

// checkCached reports ErrNotCached unless every segment of every fetch of
// the blocks of [start, end) is in the cache (staging counts for a whole
// file: its hash check proves it). Entries are read to be found, which
// costs a read of the range before the one that serves it.
func (e *Engine) checkCached(ctx context.Context, plans func(reconstruction.ByteRange) (*reconstruction.ResponseV2, error), start, end uint64, whole bool) error {
	for off := start; off < end; {
		n := min(e.blockSize, end-off)
		rng := reconstruction.ByteRange{Start: off, End: off + n - 1}
		r, err := plans(rng)
		if err != nil {
			return err
		}
		plan, err := reconstruction.NewPlan(r, n)
		if err != nil || plan.Size != n {
			return fmt.Errorf("bytes %d-%d: stored terms do not plan: %w", rng.Start, rng.End, ErrNotCached)
		}
		for _, fe := range plan.Fetches {
			for lo := fe.Chunks.Start; lo < fe.Chunks.End; {
				hi := min(segmentEnd(lo), fe.Chunks.End)
				_, err := e.cache.Get(ctx, fe.Xorb, lo, hi)
				if err != nil && whole {
					_, err = e.staging.Get(ctx, fe.Xorb, lo, hi)
				}
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return fmt.Errorf("chunks %d-%d of xorb %s: %w", lo, hi, fe.Xorb, ErrNotCached)
				}
				lo = hi
			}
		}
		off += n
	}
	return nil
}

// cachedOnly is the chunk source of OpenCached streams: cache entries
// (and staged ones for a whole file), checked as cacheSource checks them;
// a miss is ErrNotCached, never an upstream fetch.
type cachedOnly struct{}

var _ chunkSource = cachedOnly{}

func (cachedOnly) fetch(s *stream, f *fetch, tr *reconstruction.Tracker, from uint32) error {
	fe := &f.blk.plan.Fetches[f.i]
	m := s.e.manifest(s.ctx, fe.Xorb)
	for lo := fe.Chunks.Start + from; lo < fe.Chunks.End; {
		hi := min(segmentEnd(lo), fe.Chunks.End)
		k := lo - fe.Chunks.Start
		// Charged before it is read, as in cacheSource.fetch.
		held, err := s.acquireUpTo(f, int(k), int64(hi-lo)*xorbTargetChunk, int64(min(hi-lo, urgentPiece))*xorbTargetChunk)
		if err != nil {
			return err
		}
		hi = lo + uint32(held/xorbTargetChunk)
		staged := false
		ent := s.cacheGet(fe.Xorb, lo, hi, held)
		if ent == nil && s.verify {
			ent, staged = s.e.stagingGet(s.ctx, fe.Xorb, lo, hi, held), true
		}
		if ent == nil {
			s.releaseBytes(held)
			if err := s.ctx.Err(); err != nil {
				return err
			}
			return fmt.Errorf("chunks %d-%d of xorb %s: %w", lo, hi, fe.Xorb, ErrNotCached)
		}
		held = s.entryHold(held, ent)
		err = s.fromEntry(f, tr, ent, srcCache, m, staged, &held)
		s.releaseBytes(held)
		if err != nil {
			if errors.Is(err, errRecheck) {
				return fmt.Errorf("chunks %d-%d of xorb %s failed their proof: %w", lo, hi, fe.Xorb, ErrNotCached)
			}
			return err
		}
		lo = hi
	}
	if err := tr.Finish(); err != nil {
		return &IntegrityError{File: s.fileName(), Err: err}
	}
	return nil
}
