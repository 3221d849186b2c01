package proxy

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Proofs (see the package doc, "Proofs"). Content is proven by one of:
//
//   - a manifest: the (hash, size) list of every chunk of a xorb, whose
//     Merkle root is the xorb hash. It is learnt from any fetch that
//     covers chunks [0, n) of a xorb and hashes to its name, kept in
//     memory and, when the cache can, in the cache; with it every chunk
//     of the xorb is checked on its own, wherever it comes from;
//   - a whole-file read whose Xet file hash checks: it proves the chunks
//     it used, which wait in the staging store until then.
//
// The cache's main store only ever receives proven chunks.

// manifestTableBytes bounds the manifests kept in memory (about 36 bytes a
// chunk: 64 MiB covers some 100 GB of xorbs).
const manifestTableBytes = 64 << 20

// manifestMissTTL is how long a manifest lookup that missed in the store
// is not asked again.
const manifestMissTTL = 30 * time.Second

// commitTimeout bounds the promotion of a verified file's staged chunks.
const commitTimeout = 10 * time.Minute

// manifestTable keeps the manifests the engine learnt or read, and
// remembers recent misses so that a store is not asked for each fetch.
type manifestTable struct {
	mu     sync.Mutex
	m      map[merklehash.Hash]*cache.Manifest
	bytes  int64
	misses map[merklehash.Hash]time.Time
}

func newManifestTable() *manifestTable {
	return &manifestTable{m: make(map[merklehash.Hash]*cache.Manifest), misses: make(map[merklehash.Hash]time.Time)}
}

func (t *manifestTable) get(x merklehash.Hash) (*cache.Manifest, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.m[x]; m != nil {
		return m, true
	}
	exp, missed := t.misses[x]
	if missed && time.Now().After(exp) {
		delete(t.misses, x)
		missed = false
	}
	return nil, missed
}

func (t *manifestTable) put(m *cache.Manifest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[m.Xorb] != nil {
		return
	}
	size := int64(len(m.Hashes)) * 36
	if t.bytes+size > manifestTableBytes {
		// Forgetting costs only a store lookup or a re-learn.
		clear(t.m)
		t.bytes = 0
	}
	t.m[m.Xorb] = m
	t.bytes += size
	delete(t.misses, m.Xorb)
}

func (t *manifestTable) miss(x merklehash.Hash) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.misses) > 65536 {
		clear(t.misses)
	}
	t.misses[x] = time.Now().Add(manifestMissTTL)
}

// manifest returns the proven manifest of xorb x, nil when none is known.
func (e *Engine) manifest(ctx context.Context, x merklehash.Hash) *cache.Manifest {
	m, missed := e.manifests.get(x)
	if m != nil || missed {
		return m
	}
	ms, ok := e.cache.(cache.ManifestStore)
	if !ok {
		return nil
	}
	m, err := ms.GetManifest(ctx, x)
	if err == nil && m.Xorb == x && m.Verify() == nil {
		e.manifests.put(m)
		return m
	}
	if err != nil && !errors.Is(err, cache.ErrNotFound) && ctx.Err() == nil {
		e.warn("cache: manifest lookup failed", "xorb", x.String(), "err", err)
	}
	if ctx.Err() == nil {
		e.manifests.miss(x)
	}
	return nil
}

// learnManifest records the manifest of a xorb whose chunks [0, n) were
// all seen: if they hash to the xorb's name, they are all of it, proven.
// It reports whether they did.
func (e *Engine) learnManifest(ctx context.Context, x merklehash.Hash, leaves []merklehash.Leaf) *cache.Manifest {
	if len(leaves) == 0 || merklehash.XorbHash(leaves) != x {
		return nil
	}
	m := &cache.Manifest{Xorb: x, Hashes: make([]merklehash.Hash, len(leaves)), Sizes: make([]uint32, len(leaves))}
	for i, l := range leaves {
		m.Hashes[i], m.Sizes[i] = l.Hash, uint32(l.Size)
	}
	e.stats.xorbProofs.Add(1)
	e.manifests.put(m)
	if ms, ok := e.cache.(cache.ManifestStore); ok {
		if err := ms.PutManifest(ctx, m); err != nil && ctx.Err() == nil {
			e.warn("cache: manifest write failed", "xorb", x.String(), "err", err)
		}
	}
	return m
}

// unproven is a chunk range a whole-file stream used before any proof:
// from a fill that had none, or from the staging store. Once the stream's
// file hash checks, the staged copy is promoted if it still holds exactly
// these chunks.
type unproven struct {
	key    cache.Key
	hashes []merklehash.Hash
}

// noteUnproven records that s used chunks [lo, lo+len(hashes)) of x
// without a proof. The range lies inside one segment, so inside one
// staged entry.
func (s *stream) noteUnproven(x merklehash.Hash, lo uint32, hashes []merklehash.Hash) {
	if len(hashes) == 0 {
		return
	}
	s.usedMu.Lock()
	defer s.usedMu.Unlock()
	s.unproven = append(s.unproven, unproven{
		key:    cache.Key{Xorb: x, Start: lo, End: lo + uint32(len(hashes))},
		hashes: slices.Clone(hashes),
	})
}

// noteFill records a fill without a proof that s, a whole-file stream,
// read from: if its file hash fails, the fill is condemned before the
// purge (verifyTail), so that nothing it stages afterwards survives.
func (s *stream) noteFill(fl *fill) {
	s.usedMu.Lock()
	defer s.usedMu.Unlock()
	if !slices.Contains(s.fills, fl) {
		s.fills = append(s.fills, fl)
	}
}

// condemnFills condemns the fills s read from without a proof.
func (s *stream) condemnFills() {
	s.usedMu.Lock()
	fills := s.fills
	s.usedMu.Unlock()
	for _, fl := range fills {
		fl.condemn()
	}
}

// usedKeys returns the fetch ranges s read through the cache.
func (s *stream) usedKeys() []cache.Key {
	s.usedMu.Lock()
	defer s.usedMu.Unlock()
	return slices.Clone(s.used)
}

// proved runs when s, a whole-file stream, checked its file hash: the
// chunks it used without a proof are proven now, and are promoted from the
// staging store to the cache in the background.
func (e *Engine) proved(s *stream) {
	e.stats.fileProofs.Add(1)
	e.keepTerms(s)
	s.usedMu.Lock()
	recs := s.unproven
	s.unproven = nil
	s.usedMu.Unlock()
	if e.staging == nil || len(recs) == 0 {
		return
	}
	if !e.bg.start() {
		return
	}
	go func() {
		defer e.bg.end()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), commitTimeout)
		defer cancel()
		e.promoteAll(ctx, recs)
	}()
}

// promoteAll moves staged chunks to the cache: each range whose staged
// copy still holds exactly the proven hashes (a later, different fill of
// the same range may have replaced it; that one stays staged). A staged
// segment that is a whole cache entry as it stands is adopted (its file
// renamed into the cache, cache.Adopter); the others (parts of segments,
// to be joined with their neighbours, or a cache that cannot adopt) are
// read back and Put. The staged copies of those are dropped once all are
// promoted: fills of neighbouring ranges can overlap by a chunk, and
// deleting one range deletes what overlaps it.
func (e *Engine) promoteAll(ctx context.Context, recs []unproven) {
	// A stream notes a range once per use, and may use one twice (two
	// terms of the same chunks, or a read again after its fill let go of
	// them): promoting it twice would only redo, and count again, the
	// first.
	seen := make(map[cache.Key]bool, len(recs))
	recs = slices.DeleteFunc(slices.Clone(recs), func(r unproven) bool {
		dup := seen[r.key]
		seen[r.key] = true
		return dup
	})
	var done []cache.Key
	var later []unproven
	ad, _ := e.cache.(cache.Adopter)
	st, _ := e.staging.(*cache.Staging)
	for _, r := range recs {
		if ad != nil && st != nil && e.wholeSegment(r.key) {
			later = append(later, r)
			continue
		}
		if e.promoteCopy(ctx, r) {
			done = append(done, r.key)
		}
	}
	for _, r := range later {
		n, ok, err := ad.Adopt(ctx, st, r.key, r.hashes)
		switch {
		case ok:
			e.stats.puts.Add(1)
			e.stats.putBytes.Add(uint64(n))
			e.stats.promoted.Add(uint64(n))
			e.stats.adopted.Add(uint64(n))
		case err != nil:
			if ctx.Err() == nil {
				e.stats.putErrors.Add(1)
				e.warn("cache: promotion failed", "key", r.key.String(), "err", err)
			}
		default:
			// Staged otherwise (inside a wider staged entry, or with other
			// hashes): the staged copy decides, as for parts.
			if e.promoteCopy(ctx, r) {
				done = append(done, r.key)
			}
		}
	}
	for _, k := range done {
		if err := e.staging.Delete(ctx, k.Xorb, k.Start, k.End); err != nil && ctx.Err() == nil {
			e.warn("cache: staging delete failed", "key", k.String(), "err", err)
		}
	}
}

// promoteCopy reads r back from staging and, if it holds exactly the
// proven hashes, Puts it (joined with the other parts of its segment).
func (e *Engine) promoteCopy(ctx context.Context, r unproven) bool {
	ent, err := e.staging.Get(ctx, r.key.Xorb, r.key.Start, r.key.End)
	if err != nil || ent.Validate() != nil || !slices.Equal(ent.Hashes, r.hashes) {
		return false
	}
	e.putSegment(ctx, ent)
	e.stats.promoted.Add(uint64(len(ent.Data)))
	return true
}

// wholeSegment reports whether k is a whole segment of the 64-chunk grid,
// or the whole last segment of a xorb whose manifest is known: an entry
// putSegment would store as it is, with nothing to join.
func (e *Engine) wholeSegment(k cache.Key) bool {
	if k.Start%segmentChunks != 0 {
		return false
	}
	if k.End == segmentEnd(k.Start) {
		return true
	}
	m, _ := e.manifests.get(k.Xorb)
	return m != nil && k.End == m.Len()
}

// bgTracker counts background work (fills, promotions) so that Flush and
// Close can wait for it.
type bgTracker struct {
	mu     sync.Mutex
	n      int
	idle   []chan struct{}
	closed bool
}

func (t *bgTracker) start() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *bgTracker) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		for _, ch := range t.idle {
			close(ch)
		}
		t.idle = nil
	}
}

func (t *bgTracker) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}

func (t *bgTracker) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	t.idle = append(t.idle, ch)
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
