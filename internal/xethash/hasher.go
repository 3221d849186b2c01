package xethash

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"sync"

	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// ErrClosed is returned by a Hasher used after Sum or Close.
var ErrClosed = errors.New("xethash: hasher closed")

// Chunk is one chunk of the input, as Options.OnChunk sees it.
type Chunk struct {
	Offset uint64 // in the input
	// Data aliases the Hasher's buffers: it is valid only during the
	// OnChunk call and must not be modified.
	Data []byte
	Hash merklehash.Hash // merklehash.ChunkHash(Data)
}

// Options selects the optional work of a Hasher. The zero value computes
// the size and the file hash only.
type Options struct {
	// SHA256 also computes the SHA-256 of the input (Sum.SHA256), in a
	// pipeline stage of its own.
	SHA256 bool
	// OnChunk, if set, is called for every chunk in input order, from one
	// goroutine of the Hasher (never two calls at once, never from the
	// caller's goroutine). An error stops hashing: the Write in progress
	// or the next one, and Sum, return it.
	OnChunk func(Chunk) error

	// blockSize overrides defaultBlockSize (tests use small blocks so that
	// many chunks span two); it is raised to chunking.MaxSize if smaller.
	blockSize int
}

// Sum is the result of hashing one input.
type Sum struct {
	Size     uint64
	FileHash merklehash.Hash   // all zero for an empty input
	SHA256   [sha256.Size]byte // zero unless Options.SHA256
}

// Hasher computes the Xet file hash of the bytes written to it, however
// the writes split them. Its pipeline goroutines start with the first
// full block (or with Sum); call Sum, or Close to give up, to end them.
// A Hasher is not safe for concurrent use.
type Hasher struct {
	opt Options
	bs  int

	cur *[]byte // block being filled; nil before the first byte
	n   int     // bytes in cur

	ctx    context.Context
	cancel context.CancelCauseFunc
	in     chan batch // to the chunker; nil until the pipeline starts
	wg     sync.WaitGroup

	// Written by the last stage before it returns, read after wg.Wait.
	sum    Sum
	sumErr error

	ended bool // Sum or Close called
	done  bool // the pipeline has been waited for
}

// New returns a Hasher.
func New(opt Options) *Hasher {
	bs := opt.blockSize
	if bs == 0 {
		bs = defaultBlockSize
	}
	// chunkBlock needs every block but the last to hold MaxSize bytes.
	bs = max(bs, chunking.MaxSize)
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Hasher{opt: opt, bs: bs, ctx: ctx, cancel: cancel}
}

// HashReader hashes everything r delivers. It returns when r is
// exhausted, r fails, OnChunk fails or ctx is done; on an early return the
// pipeline goroutines have ended, except that a read blocked inside r
// finishes first.
func HashReader(ctx context.Context, r io.Reader, opt Options) (Sum, error) {
	h := New(opt)
	defer h.Close()
	stop := context.AfterFunc(ctx, func() { h.cancel(context.Cause(ctx)) })
	defer stop()
	if _, err := h.ReadFrom(ctxReader{ctx, r}); err != nil {
		return Sum{}, err
	}
	return h.Sum()
}

// Write adds p to the input. It fails only once hashing has failed
// (OnChunk returned an error) or the Hasher has been ended.
func (h *Hasher) Write(p []byte) (int, error) {
	if err := h.usable(); err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		if h.cur == nil {
			h.cur, h.n = h.getBlock(), 0
		}
		c := copy((*h.cur)[h.n:], p)
		h.n += c
		written += c
		p = p[c:]
		if h.n == len(*h.cur) {
			if err := h.pass(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// ReadFrom adds everything r delivers to the input, reading straight into
// the Hasher's blocks (io.Copy uses it). It returns nil at io.EOF; r's
// other errors are returned as they are, and the Hasher stays usable.
func (h *Hasher) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if err := h.usable(); err != nil {
			return total, err
		}
		if h.cur == nil {
			h.cur, h.n = h.getBlock(), 0
		}
		m, err := io.ReadFull(r, (*h.cur)[h.n:])
		h.n += m
		total += int64(m)
		if h.n == len(*h.cur) {
			if err := h.pass(); err != nil {
				return total, err
			}
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return total, nil
		default:
			return total, err
		}
	}
}

// Sum ends the input, waits for the pipeline and returns the result. It
// may be called again and returns the same result; after it, Write fails.
func (h *Hasher) Sum() (Sum, error) {
	if h.done {
		return h.sum, h.sumErr
	}
	if h.ended {
		return Sum{}, ErrClosed
	}
	h.ended = true
	if h.ctx.Err() == nil && h.cur != nil && h.n > 0 {
		h.pass() // a failure shows in sumErr
	}
	h.start()
	close(h.in)
	h.wait()
	return h.sum, h.sumErr
}

// Close gives up on the input: it stops the pipeline and waits for its
// goroutines. After Sum it does nothing. It always returns nil.
func (h *Hasher) Close() error {
	if h.done {
		return nil
	}
	h.ended = true
	h.cancel(ErrClosed)
	if h.in != nil {
		h.wait()
	} else {
		h.putBlock(h.cur)
		h.cur = nil
	}
	h.done = true
	h.sum, h.sumErr = Sum{}, ErrClosed
	return nil
}

// usable reports why the Hasher takes no more input, if it does not.
func (h *Hasher) usable() error {
	if h.ended {
		return ErrClosed
	}
	if h.ctx.Err() != nil {
		return context.Cause(h.ctx)
	}
	return nil
}

// pass hands the current block to the chunker.
func (h *Hasher) pass() error {
	h.start()
	b := batch{block: h.cur, n: h.n}
	h.cur, h.n = nil, 0
	select {
	case h.in <- b:
		return nil
	case <-h.ctx.Done():
		h.putBlock(b.block)
		return context.Cause(h.ctx)
	}
}

// wait waits for the pipeline's goroutines. Blocks still queued in a
// channel after a failure are left to the garbage collector.
func (h *Hasher) wait() {
	h.wg.Wait()
	h.putBlock(h.cur)
	h.cur = nil
	h.done = true
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}
