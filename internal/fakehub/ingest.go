package fakehub

import (
	"context"
	"fmt"
	"io"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/shard"
	"github.com/xetproxy/xetproxy/internal/xethash"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// ingested describes a file streamed into the CAS.
type ingested struct {
	hash      merklehash.Hash
	size      int64
	sha256    [32]byte
	chunks    int
	newXorbs  int   // xorbs this file added to the store
	newBytes  int64 // stored bytes (chunk regions + footers) it added
	dedupHits int   // chunks found already stored
}

// ingest streams r through the upload path of the format core: chunk,
// hash, deduplicate against every stored chunk, pack new chunks into xorbs
// (compressed by the Hub's policy), store them with their footer, then
// build a shard for the file and register it exactly as an uploaded shard.
//
// Chunking, chunk hashing, the file hash and the SHA-256 are the pipeline
// of xethash; its chunk callback packs each chunk in order (see doc.go).
// Memory stays bounded by the hasher's blocks and one xorb under
// construction.
func (h *Hub) ingest(ctx context.Context, r io.Reader) (*ingested, error) {
	return h.ingestWith(ctx, r, h.policy)
}

// ingestWith is ingest with the compression policy of the file's new
// chunks.
func (h *Hub) ingestWith(ctx context.Context, r io.Reader, policy xorb.Policy) (*ingested, error) {
	p := newPacker(h, policy)
	sum, err := xethash.HashReader(ctx, r, xethash.Options{
		SHA256:  true,
		OnChunk: func(c xethash.Chunk) error { p.add(c.Data, c.Hash); return nil },
	})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("fakehub: reading file: %w", err)
	}
	out, err := p.finish()
	if err != nil {
		return nil, err
	}
	out.hash, out.size, out.sha256 = sum.FileHash, int64(sum.Size), sum.SHA256
	sha := out.sha256
	body, err := p.shardFor(out, &sha).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("fakehub: building shard: %w", err)
	}
	if _, err := h.store.registerShard(body); err != nil {
		return nil, fmt.Errorf("fakehub: registering ingested file: %w", err)
	}
	if err := h.store.saveShard(out.hash, body); err != nil {
		return nil, err
	}
	return out, nil
}

// regionBuf returns an empty buffer large enough for a whole xorb under
// construction (headers, chunks stored raw at worst) plus its footer, so
// that it never grows and the store can keep it.
func (h *Hub) regionBuf() []byte {
	if b, ok := h.regions.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	n := h.cfg.MaxXorbBytes + h.cfg.MaxXorbChunks*(xorb.HeaderSize+40) + 96
	return make([]byte, 0, n)
}

// xorbRef names the xorb of a term: a stored xorb, or the one the packer is
// building (pending, whose hash is not known yet).
type xorbRef struct {
	hash    merklehash.Hash
	pending int // serial of the pending xorb, or -1
}

type openTerm struct {
	ref        xorbRef
	start, end uint32
	unpacked   uint32
	hashes     []merklehash.Hash
}

// packer turns the ordered chunks of one file into xorbs and terms. Full
// xorbs are stored by a writer goroutine (one at a time) while packing
// goes on in a fresh buffer.
type packer struct {
	h      *Hub
	policy xorb.Policy // compression of the file's new chunks

	chunks  int
	hits    int
	terms   []shard.Term
	verif   []merklehash.Hash
	refs    []xorbRef // parallel to terms until resolved
	cur     *openTerm
	serial  int
	region  []byte
	infos   []xorb.ChunkInfo
	leaves  []merklehash.Leaf
	rawSize int
	// local holds the chunks this file added: in the pending xorb, or in
	// one already handed to the writer (and maybe not stored yet).
	local map[merklehash.Hash]chunkRef

	writes  chan *xorb.Xorb
	written chan struct{}
	werr    error        // first store error (read after written is closed)
	newX    []shard.Xorb // xorbs the writer inserted
	newB    int64        // their stored bytes
}

type chunkRef struct {
	ref xorbRef
	idx uint32
}

func newPacker(h *Hub, policy xorb.Policy) *packer {
	p := &packer{h: h, policy: policy, local: make(map[merklehash.Hash]chunkRef),
		writes: make(chan *xorb.Xorb), written: make(chan struct{})}
	go p.writer()
	return p
}

// writer stores the xorbs flush hands it, in order.
func (p *packer) writer() {
	defer close(p.written)
	for x := range p.writes {
		if p.werr != nil {
			continue
		}
		region := x.Region
		inserted, kept, err := p.h.store.putXorb(x, true)
		if !kept {
			p.h.regions.Put(&region)
		}
		if err != nil {
			p.werr = err
			continue
		}
		if !inserted {
			continue
		}
		sx := shard.Xorb{Hash: x.Hash, Chunks: make([]shard.XorbChunk, len(x.Chunks))}
		var off uint32
		for i, c := range x.Chunks {
			sx.Chunks[i] = shard.XorbChunk{Hash: c.Hash, Offset: off, Size: c.Size}
			off += c.Size
		}
		sx.BytesInXorb = off
		if rec, ok := p.h.store.xorb(x.Hash); ok {
			sx.BytesOnDisk = uint32(rec.size)
			p.newB += rec.size
		}
		p.newX = append(p.newX, sx)
	}
}

// add packs the next chunk of the file, whose hash is hash. data is only
// read during the call.
func (p *packer) add(data []byte, hash merklehash.Hash) {
	size := uint32(len(data))
	p.chunks++

	var ref xorbRef
	var idx uint32
	if l, ok := p.local[hash]; ok {
		ref, idx = l.ref, l.idx
		p.hits++
	} else if loc, ok := p.h.store.chunk(hash); ok {
		ref, idx = xorbRef{hash: loc.xorb, pending: -1}, loc.index
		p.hits++
	} else {
		if len(p.infos)+1 > p.h.cfg.MaxXorbChunks || p.rawSize+int(size) > p.h.cfg.MaxXorbBytes {
			p.flush()
		}
		if p.region == nil {
			p.region = p.h.regionBuf()
		}
		p.region = xorb.AppendChunk(p.region, data, p.policy)
		p.rawSize += int(size)
		idx = uint32(len(p.infos))
		p.infos = append(p.infos, xorb.ChunkInfo{Hash: hash, Size: size, End: uint32(len(p.region)), UnpackedEnd: uint32(p.rawSize)})
		p.leaves = append(p.leaves, merklehash.Leaf{Hash: hash, Size: uint64(size)})
		ref = xorbRef{pending: p.serial}
		p.local[hash] = chunkRef{ref: ref, idx: idx}
	}

	if c := p.cur; c != nil && c.ref == ref && c.end == idx {
		c.end++
		c.unpacked += size
		c.hashes = append(c.hashes, hash)
		return
	}
	p.closeTerm()
	p.cur = &openTerm{ref: ref, start: idx, end: idx + 1, unpacked: size, hashes: append([]merklehash.Hash(nil), hash)}
	return
}

func (p *packer) closeTerm() {
	c := p.cur
	if c == nil {
		return
	}
	p.terms = append(p.terms, shard.Term{XorbHash: c.ref.hash, UnpackedBytes: c.unpacked, ChunkStart: c.start, ChunkEnd: c.end})
	p.refs = append(p.refs, c.ref)
	p.verif = append(p.verif, merklehash.VerificationHash(c.hashes))
	p.cur = nil
}

// flush names the pending xorb, resolves the terms and chunks that point
// at it, and hands it to the writer.
func (p *packer) flush() {
	if len(p.infos) == 0 {
		return
	}
	x := &xorb.Xorb{Hash: merklehash.XorbHash(p.leaves), Chunks: p.infos, Region: p.region}
	resolved := xorbRef{hash: x.Hash, pending: -1}
	for i, r := range p.refs {
		if r.pending == p.serial {
			p.refs[i] = resolved
			p.terms[i].XorbHash = x.Hash
		}
	}
	if p.cur != nil && p.cur.ref.pending == p.serial {
		p.cur.ref = resolved
	}
	for i, c := range p.infos {
		p.local[c.Hash] = chunkRef{ref: resolved, idx: uint32(i)}
	}
	p.writes <- x
	p.serial++
	p.region = nil
	p.infos = nil
	p.leaves = p.leaves[:0]
	p.rawSize = 0
}

// close flushes the last xorb and waits for the writer.
func (p *packer) close() error {
	p.flush()
	close(p.writes)
	<-p.written
	return p.werr
}

// finish closes the last term and xorb and waits for the writer. The
// file's hash, size and SHA-256 are the hasher's, filled in by ingest.
func (p *packer) finish() (*ingested, error) {
	p.closeTerm()
	if err := p.close(); err != nil {
		return nil, err
	}
	return &ingested{
		chunks:    p.chunks,
		newXorbs:  len(p.newX),
		newBytes:  p.newB,
		dedupHits: p.hits,
	}, nil
}

// shardFor is the upload shard of the ingested file: its reconstruction with
// verification and SHA-256, and the xorbs it added.
func (p *packer) shardFor(out *ingested, sha *[32]byte) *shard.Shard {
	f := shard.File{Hash: out.hash, Terms: p.terms, Verification: p.verif, SHA256: sha}
	if len(p.terms) == 0 {
		f.Verification = nil
	}
	return &shard.Shard{Files: []shard.File{f}, Xorbs: p.newX}
}
