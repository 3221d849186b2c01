package fakehub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/shard"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// xorbRec is what the CAS knows of a stored xorb.
type xorbRec struct {
	hash   merklehash.Hash
	chunks []shard.XorbChunk // plain chunk hashes, uncompressed offsets and sizes
	ends   []uint32          // end of chunk i in the chunk region, headers included
	size   int64             // stored object: chunk region + footer + info length
	data   []byte            // memory mode: the stored object
	path   string            // disk mode: file holding the stored object
}

func (x *xorbRec) numChunks() uint32 { return uint32(len(x.chunks)) }

// unpackedStart is the uncompressed offset of chunk i (i may be numChunks).
func (x *xorbRec) unpackedStart(i uint32) uint64 {
	if int(i) == len(x.chunks) {
		last := x.chunks[len(x.chunks)-1]
		return uint64(last.Offset) + uint64(last.Size)
	}
	return uint64(x.chunks[i].Offset)
}

// byteRange is the stored bytes of chunks [s,e), end-inclusive.
func (x *xorbRec) byteRange(s, e uint32) reconstruction.ByteRange {
	var start uint64
	if s > 0 {
		start = uint64(x.ends[s-1])
	}
	return reconstruction.ByteRange{Start: start, End: uint64(x.ends[e-1]) - 1}
}

// open returns a reader of the stored object.
func (x *xorbRec) open() (io.ReaderAt, io.Closer, error) {
	if x.data != nil {
		return bytes.NewReader(x.data), io.NopCloser(nil), nil
	}
	f, err := os.Open(x.path)
	if err != nil {
		return nil, nil, err
	}
	return f, f, nil
}

// fileRec is a registered file reconstruction.
type fileRec struct {
	hash   merklehash.Hash
	size   uint64
	sha256 *[32]byte
	terms  []termRec
}

type termRec struct {
	xorb       merklehash.Hash
	start, end uint32
	unpacked   uint32
	offset     uint64 // file offset of the term's first byte
}

type chunkLoc struct {
	xorb  merklehash.Hash
	index uint32
}

// store is the CAS: xorbs, file reconstructions and the indexes over them.
type store struct {
	dir string // "" = memory

	mu      sync.RWMutex
	xorbs   map[merklehash.Hash]*xorbRec
	chunks  map[merklehash.Hash]chunkLoc        // every stored chunk, first location wins
	dedup   map[merklehash.Hash]merklehash.Hash // global-dedup eligible chunk → xorb
	files   map[merklehash.Hash]*fileRec
	bySHA   map[[32]byte]merklehash.Hash
	hmacKey merklehash.Hash
	shards  int // shards registered
}

func newStore(dir string) (*store, error) {
	s := &store{
		dir:    dir,
		xorbs:  make(map[merklehash.Hash]*xorbRec),
		chunks: make(map[merklehash.Hash]chunkLoc),
		dedup:  make(map[merklehash.Hash]merklehash.Hash),
		files:  make(map[merklehash.Hash]*fileRec),
		bySHA:  make(map[[32]byte]merklehash.Hash),
	}
	s.hmacKey = merklehash.ChunkHash([]byte(fmt.Sprintf("fakehub dedup key %d", time.Now().UnixNano())))
	if dir != "" {
		if err := os.MkdirAll(filepath.Join(dir, "xorbs"), 0o755); err != nil {
			return nil, fmt.Errorf("fakehub: %w", err)
		}
	}
	return s, nil
}

func (s *store) xorbPath(h merklehash.Hash) string {
	return filepath.Join(s.dir, "xorbs", h.String()+".xorb")
}

// xorb returns the record of a stored xorb, loading it from disk when the
// store has a directory.
func (s *store) xorb(h merklehash.Hash) (*xorbRec, bool) {
	s.mu.RLock()
	x, ok := s.xorbs[h]
	s.mu.RUnlock()
	if ok || s.dir == "" {
		return x, ok
	}
	x, err := s.loadSidecar(h)
	if err != nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.xorbs[h]; ok {
		return old, true
	}
	s.indexLocked(x)
	return x, true
}

// xorbChunks adapts the store to shard.XorbChunks.
func (s *store) xorbChunks(h merklehash.Hash) ([]shard.XorbChunk, bool) {
	x, ok := s.xorb(h)
	if !ok {
		return nil, false
	}
	return x.chunks, true
}

// indexLocked adds x to the maps; s.mu must be held.
func (s *store) indexLocked(x *xorbRec) {
	s.xorbs[x.hash] = x
	for i, c := range x.chunks {
		if _, ok := s.chunks[c.Hash]; !ok {
			s.chunks[c.Hash] = chunkLoc{xorb: x.hash, index: uint32(i)}
		}
		if merklehash.GlobalDedupEligible(c.Hash, false) {
			if _, ok := s.dedup[c.Hash]; !ok {
				s.dedup[c.Hash] = x.hash
			}
		}
	}
}

// chunk looks a chunk up in the stored xorbs.
func (s *store) chunk(h merklehash.Hash) (chunkLoc, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.chunks[h]
	return l, ok
}

func recordOf(x *xorb.Xorb) *xorbRec {
	rec := &xorbRec{
		hash:   x.Hash,
		chunks: make([]shard.XorbChunk, len(x.Chunks)),
		ends:   make([]uint32, len(x.Chunks)),
	}
	var off uint32
	for i, c := range x.Chunks {
		rec.chunks[i] = shard.XorbChunk{Hash: c.Hash, Offset: off, Size: c.Size}
		rec.ends[i] = c.End
		off += c.Size
	}
	return rec
}

// putXorb stores a xorb (already verified) unless it is known; inserted
// reports whether it was new. When owned, the store may keep x.Region's
// memory (in memory mode, when the footer fits in its spare capacity and the
// region fills at least a quarter of it); kept reports whether it did, in
// which case the caller must not reuse the buffer.
func (s *store) putXorb(x *xorb.Xorb, owned bool) (inserted, kept bool, err error) {
	if len(x.Chunks) == 0 {
		return false, false, fmt.Errorf("%w: xorb without chunks", errBadRequest)
	}
	if _, ok := s.xorb(x.Hash); ok {
		return false, false, nil
	}
	rec := recordOf(x)
	footer := x.Footer()
	rec.size = int64(len(x.Region) + len(footer))
	if s.dir == "" {
		if owned && cap(x.Region)-len(x.Region) >= len(footer) && len(x.Region) >= cap(x.Region)/4 {
			rec.data = append(x.Region, footer...)
			kept = true
		} else {
			rec.data = make([]byte, 0, rec.size)
			rec.data = append(append(rec.data, x.Region...), footer...)
		}
	} else {
		rec.path = s.xorbPath(x.Hash)
		if err := writeFileAtomic(rec.path, x.Region, footer); err != nil {
			return false, false, err
		}
		if err := s.writeSidecar(rec); err != nil {
			return false, false, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.xorbs[x.Hash]; ok {
		return false, kept, nil
	}
	s.indexLocked(rec)
	return true, kept, nil
}

func writeFileAtomic(path string, parts ...[]byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("fakehub: %w", err)
	}
	tmp := f.Name()
	for _, p := range parts {
		if _, err = f.Write(p); err != nil {
			break
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fakehub: %w", err)
	}
	return nil
}

// sidecar is the JSON kept next to a xorb on disk: what the store needs to
// serve it without reading it.
type sidecar struct {
	Hash   merklehash.Hash   `json:"hash"`
	Size   int64             `json:"size"`
	Chunks []merklehash.Hash `json:"chunks"`
	Sizes  []uint32          `json:"sizes"`
	Ends   []uint32          `json:"ends"`
}

func (s *store) writeSidecar(x *xorbRec) error {
	sc := sidecar{Hash: x.hash, Size: x.size, Ends: x.ends}
	for _, c := range x.chunks {
		sc.Chunks = append(sc.Chunks, c.Hash)
		sc.Sizes = append(sc.Sizes, c.Size)
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return fmt.Errorf("fakehub: %w", err)
	}
	return writeFileAtomic(s.xorbPath(x.hash)+".json", b)
}

func (s *store) loadSidecar(h merklehash.Hash) (*xorbRec, error) {
	b, err := os.ReadFile(s.xorbPath(h) + ".json")
	if err != nil {
		return nil, err
	}
	var sc sidecar
	if err := json.Unmarshal(b, &sc); err != nil {
		return nil, err
	}
	n := len(sc.Chunks)
	if sc.Hash != h || n == 0 || len(sc.Sizes) != n || len(sc.Ends) != n {
		return nil, errors.New("fakehub: bad sidecar")
	}
	st, err := os.Stat(s.xorbPath(h))
	if err != nil || st.Size() != sc.Size {
		return nil, errors.New("fakehub: xorb size differs from its sidecar")
	}
	x := &xorbRec{hash: h, size: sc.Size, ends: sc.Ends, path: s.xorbPath(h), chunks: make([]shard.XorbChunk, n)}
	var off uint32
	for i := range sc.Chunks {
		x.chunks[i] = shard.XorbChunk{Hash: sc.Chunks[i], Offset: off, Size: sc.Sizes[i]}
		off += sc.Sizes[i]
	}
	return x, nil
}

// saveShard keeps the upload shard of an ingested file on disk (dir mode),
// so that a later Hub on the same directory can restore the file without
// reading it again.
func (s *store) saveShard(file merklehash.Hash, body []byte) error {
	if s.dir == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "shards"), 0o755); err != nil {
		return fmt.Errorf("fakehub: %w", err)
	}
	return writeFileAtomic(filepath.Join(s.dir, "shards", file.String()+".shard"), body)
}

// restoreFile registers a file from the shard saveShard kept; the xorbs it
// names must be on disk.
func (s *store) restoreFile(file merklehash.Hash) (*fileRec, error) {
	if f, ok := s.file(file); ok {
		return f, nil
	}
	if s.dir == "" {
		return nil, fmt.Errorf("%w: file %s", ErrNotFound, file)
	}
	body, err := os.ReadFile(filepath.Join(s.dir, "shards", file.String()+".shard"))
	if err != nil {
		return nil, fmt.Errorf("fakehub: %w", err)
	}
	if _, err := s.registerShard(body); err != nil {
		return nil, err
	}
	f, ok := s.file(file)
	if !ok {
		return nil, fmt.Errorf("fakehub: shard of %s does not describe it", file)
	}
	return f, nil
}

// file returns a registered file.
func (s *store) file(h merklehash.Hash) (*fileRec, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f, ok := s.files[h]
	return f, ok
}

// fileBySHA returns the file whose contents have this SHA-256.
func (s *store) fileBySHA(sum [32]byte) (*fileRec, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.bySHA[sum]
	if !ok {
		return nil, false
	}
	f, ok := s.files[h]
	return f, ok
}

// registerShard validates an uploaded shard against the stored xorbs (PROTOCOL
// §4.6) and registers its files. inserted counts the new files.
func (s *store) registerShard(data []byte) (inserted int, err error) {
	sh, err := shard.Parse(data)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return s.registerParsed(sh)
}

func (s *store) registerParsed(sh *shard.Shard) (inserted int, err error) {
	if err := sh.ValidateXorbs(s.xorbChunks); err != nil {
		return 0, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	if err := sh.ValidateFiles(s.xorbChunks, true); err != nil {
		return 0, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	recs := make([]*fileRec, 0, len(sh.Files))
	for i := range sh.Files {
		f := &sh.Files[i]
		rec := &fileRec{hash: f.Hash, sha256: f.SHA256, terms: make([]termRec, len(f.Terms))}
		for j, t := range f.Terms {
			rec.terms[j] = termRec{xorb: t.XorbHash, start: t.ChunkStart, end: t.ChunkEnd,
				unpacked: t.UnpackedBytes, offset: rec.size}
			rec.size += uint64(t.UnpackedBytes)
		}
		recs = append(recs, rec)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shards++
	for _, rec := range recs {
		if old, ok := s.files[rec.hash]; ok {
			if old.sha256 == nil && rec.sha256 != nil {
				old.sha256 = rec.sha256
				s.bySHA[*rec.sha256] = rec.hash
			}
			continue
		}
		s.files[rec.hash] = rec
		inserted++
		if rec.sha256 != nil {
			s.bySHA[*rec.sha256] = rec.hash
		}
		if len(rec.terms) > 0 {
			t := rec.terms[0]
			if x, ok := s.xorbs[t.xorb]; ok {
				first := x.chunks[t.start].Hash
				if _, ok := s.dedup[first]; !ok {
					s.dedup[first] = t.xorb
				}
			}
		}
	}
	return inserted, nil
}

// dedupShard answers a global-dedup query: a shard with a footer listing
// the xorb holding chunk h, chunk hashes keyed with the store's HMAC key.
func (s *store) dedupShard(h merklehash.Hash) ([]byte, bool, error) {
	s.mu.RLock()
	xh, ok := s.dedup[h]
	var x *xorbRec
	if ok {
		x = s.xorbs[xh]
	}
	var chunks []shard.XorbChunk
	var inXorb uint32
	if x != nil {
		chunks = make([]shard.XorbChunk, len(x.chunks))
		for i, c := range x.chunks {
			chunks[i] = shard.XorbChunk{Hash: merklehash.KeyedChunkHash(s.hmacKey, c.Hash), Offset: c.Offset, Size: c.Size}
			if _, ok := s.dedup[c.Hash]; ok {
				chunks[i].Flags = shard.ChunkFlagGlobalDedup
			}
			inXorb += c.Size
		}
	}
	key := s.hmacKey
	s.mu.RUnlock()
	if x == nil {
		return nil, false, nil
	}
	now := time.Now()
	sh := &shard.Shard{
		Xorbs: []shard.Xorb{{Hash: x.hash, BytesInXorb: inXorb, BytesOnDisk: uint32(x.size), Chunks: chunks}},
		Footer: &shard.Footer{
			HMACKey: key,
			Created: uint64(now.Unix()),
			Expiry:  uint64(now.Add(24 * time.Hour).Unix()),
		},
	}
	b, err := sh.MarshalBinary()
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// counts reports the sizes of the store, for tests.
func (s *store) counts() (xorbs, files, chunks int, xorbBytes int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, x := range s.xorbs {
		xorbBytes += x.size
	}
	return len(s.xorbs), len(s.files), len(s.chunks), xorbBytes
}
