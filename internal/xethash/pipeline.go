package xethash

import (
	"context"
	"crypto/sha256"
	"sync"

	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

const (
	defaultBlockSize = 1 << 20
	pipelineDepth    = 2
)

var (
	// blocks recycles input blocks of defaultBlockSize bytes.
	blocks = sync.Pool{New: func() any {
		b := make([]byte, defaultBlockSize)
		return &b
	}}
	// stitches recycles MaxSize buffers: the chunker's carried tail, the
	// chunks that span two blocks and the chunks after the last block.
	stitches = sync.Pool{New: func() any {
		b := make([]byte, chunking.MaxSize)
		return &b
	}}
)

// batch is the unit that travels from the chunker to the hasher: the
// chunks that end in one block, in input order. pre holds the chunks that
// began in an earlier block (at most one, or after the last block the
// chunks of the carried tail); then come the block's own chunks,
// block[start:ends[0]], block[ends[0]:ends[1]], ...
type batch struct {
	block   *[]byte // nil in the final batch
	n       int     // bytes of block that belong to the input
	pre     *[]byte // nil if no chunk comes before the block's own
	preEnds []int   // chunk end offsets in pre
	start   int
	ends    []int
}

func (h *Hasher) getBlock() *[]byte {
	if h.bs == defaultBlockSize {
		return blocks.Get().(*[]byte)
	}
	b := make([]byte, h.bs)
	return &b
}

func (h *Hasher) putBlock(b *[]byte) {
	if b != nil && len(*b) == defaultBlockSize {
		blocks.Put(b)
	}
}

func (h *Hasher) putBatch(b batch) {
	h.putBlock(b.block)
	if b.pre != nil {
		stitches.Put(b.pre)
	}
}

// send passes b on, or drops it when the pipeline is stopping.
func (h *Hasher) send(ch chan<- batch, b batch) bool {
	select {
	case ch <- b:
		return true
	case <-h.ctx.Done():
		h.putBatch(b)
		return false
	}
}

// recv takes the next batch; false at the end of the input or when the
// pipeline is stopping.
func (h *Hasher) recv(ch <-chan batch) (batch, bool) {
	select {
	case b, ok := <-ch:
		return b, ok
	case <-h.ctx.Done():
		return batch{}, false
	}
}

// start starts the pipeline, once.
func (h *Hasher) start() {
	if h.in != nil {
		return
	}
	h.in = make(chan batch, pipelineDepth)
	chunked := make(chan batch, pipelineDepth)
	h.wg.Add(2)
	go h.chunkStage(h.in, chunked)
	src := chunked
	var digest *[sha256.Size]byte
	if h.opt.SHA256 {
		digest = new([sha256.Size]byte)
		summed := make(chan batch, pipelineDepth)
		h.wg.Add(1)
		go h.shaStage(chunked, summed, digest)
		src = summed
	}
	go h.hashStage(src, digest)
}

func (h *Hasher) chunkStage(in <-chan batch, out chan<- batch) {
	defer h.wg.Done()
	defer close(out)
	// tail is the start of the next chunk, carried over from the blocks
	// chunked so far: never more than MaxSize bytes.
	tb := stitches.Get().(*[]byte)
	defer stitches.Put(tb)
	tail := (*tb)[:0]
	for {
		b, ok := h.recv(in)
		if !ok {
			break
		}
		tail = chunkBlock(&b, tail)
		if !h.send(out, b) {
			return
		}
	}
	if h.ctx.Err() == nil && len(tail) > 0 {
		// End of input: the tail holds the last chunks.
		pre := stitches.Get().(*[]byte)
		n := copy(*pre, tail)
		h.send(out, batch{pre: pre, preEnds: chunking.Boundaries((*pre)[:n])})
	}
}

// shaStage sums the blocks in order and writes the digest before it
// closes out; the hasher reads it after it sees out closed.
func (h *Hasher) shaStage(in <-chan batch, out chan<- batch, digest *[sha256.Size]byte) {
	defer h.wg.Done()
	defer close(out)
	d := sha256.New()
	for {
		b, ok := h.recv(in)
		if !ok {
			break
		}
		if b.block != nil {
			d.Write((*b.block)[:b.n])
		}
		if !h.send(out, b) {
			return
		}
	}
	d.Sum(digest[:0])
}

// hashStage hashes every chunk, builds the Merkle tree, calls OnChunk and
// records the result. The stages before it also stop when the pipeline
// is stopping; their channels then close early, which must not pass for
// the end of the input, hence the check of ctx at the end.
func (h *Hasher) hashStage(src <-chan batch, digest *[sha256.Size]byte) {
	defer h.wg.Done()
	var (
		mb   merklehash.Builder
		size uint64
	)
	chunk := func(data []byte) error {
		c := Chunk{Offset: size, Data: data, Hash: merklehash.ChunkHash(data)}
		mb.Add(c.Hash, uint64(len(data)))
		size += uint64(len(data))
		if h.opt.OnChunk != nil {
			return h.opt.OnChunk(c)
		}
		return nil
	}
	for {
		b, ok := h.recv(src)
		if !ok {
			break
		}
		err := forEachChunk(b, chunk)
		h.putBatch(b)
		if err != nil {
			h.cancel(err)
			break
		}
	}
	if h.ctx.Err() != nil {
		h.sumErr = context.Cause(h.ctx)
		return
	}
	h.sum = Sum{Size: size, FileHash: mb.FileHash()}
	if digest != nil {
		h.sum.SHA256 = *digest
	}
}

// chunkBlock finds the chunks that end in b's block, given the carried
// tail, and records them in b. It returns the new tail (reusing its
// array).
//
// Invariant: the tail holds no boundary before its end, because it is the
// last chunk of a Boundaries call. That needs every block but the last to
// hold at least MaxSize bytes (see the package doc): then a block always
// completes the carried chunk to MaxSize bytes and the cut falls at or
// after its carried part. Only the last block may leave it short; the
// end-of-input flush then cuts the tail with Boundaries as a whole.
func chunkBlock(b *batch, tail []byte) []byte {
	data := (*b.block)[:b.n]
	if len(tail) > 0 {
		// Complete the carried chunk: it needs up to MaxSize bytes.
		carried := len(tail)
		take := min(chunking.MaxSize-carried, len(data))
		tail = append(tail, data[:take]...)
		if len(tail) < chunking.MaxSize {
			// The last, short block: everything waits for the flush.
			b.start = b.n
			return tail
		}
		first := chunking.Boundaries(tail)[0]
		pre := stitches.Get().(*[]byte)
		copy(*pre, tail[:first])
		b.pre, b.preEnds = pre, []int{first}
		b.start = first - carried // >= 0 by the invariant
		tail = tail[:0]
	}
	ends := chunking.Boundaries(data[b.start:])
	if len(ends) == 0 {
		return tail
	}
	last := b.start
	if len(ends) > 1 {
		last += ends[len(ends)-2]
	}
	b.ends = ends[:len(ends)-1]
	for i := range b.ends {
		b.ends[i] += b.start
	}
	return append(tail, data[last:]...)
}

// forEachChunk calls fn for the chunks of b in order.
func forEachChunk(b batch, fn func([]byte) error) error {
	prev := 0
	for _, e := range b.preEnds {
		if err := fn((*b.pre)[prev:e]); err != nil {
			return err
		}
		prev = e
	}
	prev = b.start
	for _, e := range b.ends {
		if err := fn((*b.block)[prev:e]); err != nil {
			return err
		}
		prev = e
	}
	return nil
}
