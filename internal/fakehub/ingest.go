package fakehub

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/shard"
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

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 0, xorb.MaxChunkSize); return &b }}
var encBufs = sync.Pool{New: func() any { b := make([]byte, 0, xorb.HeaderSize+xorb.MaxChunkSize); return &b }}

type chunkJob struct {
	seq  int
	data *[]byte
}

type chunkResult struct {
	seq  int
	data *[]byte
	hash merklehash.Hash
	enc  *[]byte // nil when the chunk was already stored
}

// ingest streams r through the upload path of the format core: chunk,
// hash, deduplicate against every stored chunk, pack new chunks into xorbs
// (compressed by the Hub's policy), store them with their footer, then
// build a shard for the file and register it exactly as an uploaded shard.
func (h *Hub) ingest(ctx context.Context, r io.Reader) (*ingested, error) {
	return h.ingestWith(ctx, r, h.policy)
}

// ingestWith is ingest with the compression policy of the file's new
// chunks.
//
// It runs as a pipeline: one goroutine chunks (and computes the SHA-256),
// GOMAXPROCS workers hash and compress chunks, and the caller's goroutine
// packs them in order. Memory stays bounded by the in-flight window and one
// xorb under construction.
func (h *Hub) ingestWith(ctx context.Context, r io.Reader, policy xorb.Policy) (*ingested, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan chunkJob, 2*workers)
	results := make(chan chunkResult, 2*workers)
	window := make(chan struct{}, 4*workers) // chunks in flight between chunker and packer

	sum := sha256.New()
	var readErr error // written before jobs is closed
	go func() {
		defer close(jobs)
		c := chunking.New(io.TeeReader(r, sum))
		for seq := 0; ; seq++ {
			data, err := c.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				readErr = err
				return
			}
			buf := chunkBufs.Get().(*[]byte)
			*buf = append((*buf)[:0], data...)
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- chunkJob{seq: seq, data: buf}:
			case <-ctx.Done():
				return
			}
		}
	}()

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				res := chunkResult{seq: j.seq, data: j.data, hash: merklehash.ChunkHash(*j.data)}
				if _, known := h.store.chunk(res.hash); !known {
					enc := encBufs.Get().(*[]byte)
					*enc = xorb.AppendChunk((*enc)[:0], *j.data, policy)
					res.enc = enc
				}
				select {
				case results <- res:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	p := newPacker(h, policy)
	early := make(map[int]chunkResult)
	next := 0
	var err error
	for res := range results {
		if err != nil {
			continue // draining after a failure
		}
		early[res.seq] = res
		for {
			res, ok := early[next]
			if !ok {
				break
			}
			delete(early, next)
			next++
			<-window
			err = p.add(res)
			chunkBufs.Put(res.data)
			if res.enc != nil {
				encBufs.Put(res.enc)
			}
			if err == nil {
				err = ctx.Err()
			}
			if err != nil {
				cancel()
				break
			}
		}
	}
	if err == nil && readErr != nil {
		err = fmt.Errorf("fakehub: reading file: %w", readErr)
	}
	if err != nil {
		p.close()
		return nil, err
	}
	out, err := p.finish()
	if err != nil {
		return nil, err
	}
	copy(out.sha256[:], sum.Sum(nil))
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
	policy xorb.Policy

	file    merklehash.Builder
	size    int64
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

func (p *packer) add(res chunkResult) error {
	data := *res.data
	size := uint32(len(data))
	p.file.Add(res.hash, uint64(size))
	p.size += int64(size)
	p.chunks++

	var ref xorbRef
	var idx uint32
	if l, ok := p.local[res.hash]; ok {
		ref, idx = l.ref, l.idx
		p.hits++
	} else if loc, ok := p.h.store.chunk(res.hash); ok {
		ref, idx = xorbRef{hash: loc.xorb, pending: -1}, loc.index
		p.hits++
	} else {
		if len(p.infos)+1 > p.h.cfg.MaxXorbChunks || p.rawSize+int(size) > p.h.cfg.MaxXorbBytes {
			p.flush()
		}
		var enc []byte
		if res.enc != nil {
			enc = *res.enc
		} else {
			enc = xorb.AppendChunk(nil, data, p.policy)
		}
		if p.region == nil {
			p.region = p.h.regionBuf()
		}
		p.region = append(p.region, enc...)
		p.rawSize += int(size)
		idx = uint32(len(p.infos))
		p.infos = append(p.infos, xorb.ChunkInfo{Hash: res.hash, Size: size, End: uint32(len(p.region)), UnpackedEnd: uint32(p.rawSize)})
		p.leaves = append(p.leaves, merklehash.Leaf{Hash: res.hash, Size: uint64(size)})
		ref = xorbRef{pending: p.serial}
		p.local[res.hash] = chunkRef{ref: ref, idx: idx}
	}

	if c := p.cur; c != nil && c.ref == ref && c.end == idx {
		c.end++
		c.unpacked += size
		c.hashes = append(c.hashes, res.hash)
		return nil
	}
	p.closeTerm()
	p.cur = &openTerm{ref: ref, start: idx, end: idx + 1, unpacked: size, hashes: append([]merklehash.Hash(nil), res.hash)}
	return nil
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

func (p *packer) finish() (*ingested, error) {
	p.closeTerm()
	if err := p.close(); err != nil {
		return nil, err
	}
	return &ingested{
		hash:      p.file.FileHash(),
		size:      p.size,
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
