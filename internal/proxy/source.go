package proxy

import (
	"context"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// chunkSource delivers the decoded chunks of one planned fetch of a
// stream, from chunk from of the fetch on, in order, each checked as far
// as a proof allows (proof.go); tr checks the terms and has seen the
// chunks before from. An engine has one: upstreamSource, or a cacheSource
// around it.
type chunkSource interface {
	fetch(s *stream, f *fetch, tr *reconstruction.Tracker, from uint32) error
}

// upstreamSource fetches from the CAS, through the one decode loop.
type upstreamSource struct{}

func (upstreamSource) fetch(s *stream, f *fetch, tr *reconstruction.Tracker, from uint32) error {
	return s.downloadUpstream(f, tr, from)
}

var (
	_ chunkSource = upstreamSource{}
	_ chunkSource = cacheSource{}
)

// downloadUpstream fetches f's xorb range itself, for this stream only,
// and delivers its chunks from chunk number from on (the earlier ones were
// delivered from the cache and are only skipped over). tr has seen the
// chunks before from.
func (s *stream) downloadUpstream(f *fetch, tr *reconstruction.Tracker, from uint32) error {
	fe := &f.blk.plan.Fetches[f.i]
	// With the xorb's manifest every chunk is checked, ranged reads
	// included; a fetch of chunks [0, n) may prove the xorb and teach it.
	m := s.e.manifest(s.ctx, fe.Xorb)
	rr := rangeRead{
		fe: fe, url: f.currentURL(), file: s.fileName(), from: from, m: m,
		refresh: func(ctx context.Context) (string, error) { return s.refreshURL(ctx, f) },
	}
	if _, err := s.e.decodeRange(s.ctx, rr, &fetchSink{s: s, f: f, tr: tr, proven: m != nil}); err != nil {
		return err
	}
	if err := tr.Finish(); err != nil {
		return &IntegrityError{File: s.fileName(), Err: err}
	}
	return nil
}

// fetchSink puts the chunks of a stream's own fetch into its slots: the
// chunks some piece writes from in pooled buffers under the byte budget,
// the others nowhere (decodeRange decodes them into scratch).
type fetchSink struct {
	s      *stream
	f      *fetch
	tr     *reconstruction.Tracker
	proven bool // a manifest checks every chunk
}

func (k *fetchSink) next(i uint32, size uint32) ([]byte, bool, error) {
	s, f := k.s, k.f
	last, err := k.tr.Add(size)
	if err != nil {
		return nil, false, &IntegrityError{File: s.fileName(), Err: err}
	}
	sl := &f.slots[i]
	sl.size, sl.lastUse, sl.src = size, last, srcUpstream
	if last < 0 {
		return nil, false, nil
	}
	cost := bufCost(int(size))
	if err := s.acquire(f, int(i), cost); err != nil {
		return nil, false, err
	}
	buf := getBuf(int(size))
	sl.pooled, sl.data, sl.cost = buf, *buf, cost
	return *buf, s.verify, nil
}

func (k *fetchSink) done(i uint32, _ []byte, h merklehash.Hash) error {
	sl := &k.f.slots[i]
	sl.hash, sl.proven = h, k.proven
	k.f.publish(int(i))
	k.s.firstChunk()
	return nil
}

func (k *fetchSink) abandon(i uint32) { k.s.free(&k.f.slots[i]) } // not delivered: nobody else will
