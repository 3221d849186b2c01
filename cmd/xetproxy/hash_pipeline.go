package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/xetproxy/xetproxy/internal/chunking"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// The hash pipeline runs one stream through three or four goroutines joined
// by short channels, so that reading, chunking and hashing overlap on
// separate cores:
//
//	reader:   fill pooled blocks of blockSize bytes from r (the read
//	          syscalls and the copy out of the page cache)
//	   │ block
//	chunker:  chunking.Boundaries on each block. Every boundary before the end
//	          of a block is final; the bytes after the last one are carried
//	          into the next block's first chunk through a small stitch buffer
//	   │ block + chunk offsets (+ the stitched chunk)
//	sha256:   (only when the digest is wanted) the block bytes in order
//	   │
//	hasher:   BLAKE3 chunk hashes straight from the block, streaming Merkle
//	          root, onChunk; then the buffers go back to their pools
//
// Chunks are hashed where they lie in the block; only a chunk that spans two
// blocks is copied (at most MaxSize bytes per block). At most
// pipelineDepth messages wait in each channel, so a stream of any length
// holds about (3*pipelineDepth+4) blocks: 10 MiB with the defaults.

const (
	defaultBlockSize = 1 << 20
	pipelineDepth    = 2
)

var (
	// blocks recycles read blocks of defaultBlockSize bytes.
	blocks = sync.Pool{New: func() any {
		b := make([]byte, defaultBlockSize)
		return &b
	}}
	// stitches recycles buffers for chunks that span two blocks and for
	// the chunks after the last full block.
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
	err     error // the read error that ended the input; nothing else is set
}

// streamSum is what hashing one stream produces.
type streamSum struct {
	size     uint64
	fileHash merklehash.Hash
	sha256   [sha256.Size]byte // zero unless asked for
}

// streamOptions selects the optional work of hashStream.
type streamOptions struct {
	sha256 bool
	// onChunk, if set, is called for every chunk in order, from the
	// goroutine that called hashStream. An error stops hashing.
	onChunk func(offset uint64, length int, h merklehash.Hash) error
	// blockSize overrides defaultBlockSize (tests use small blocks so that
	// many chunks span two); it is raised to chunking.MaxSize if smaller.
	blockSize int
}

// hashStream chunks and hashes r. It returns when r is exhausted, r fails,
// onChunk fails or ctx is done. On an early return the stage goroutines
// exit as soon as they next try to pass data on (the reader, if blocked
// inside r.Read, when that read returns).
func hashStream(ctx context.Context, r io.Reader, opt streamOptions) (streamSum, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	bs := opt.blockSize
	if bs == 0 {
		bs = defaultBlockSize
	}
	// chunkBlock needs every block but the last to hold MaxSize bytes.
	bs = max(bs, chunking.MaxSize)
	getBlock := func() *[]byte {
		if bs == defaultBlockSize {
			return blocks.Get().(*[]byte)
		}
		b := make([]byte, bs)
		return &b
	}
	putBlock := func(b *[]byte) {
		if b != nil && len(*b) == defaultBlockSize {
			blocks.Put(b)
		}
	}
	putBatch := func(b batch) {
		putBlock(b.block)
		if b.pre != nil {
			stitches.Put(b.pre)
		}
	}
	send := func(ch chan<- batch, b batch) bool {
		select {
		case ch <- b:
			return true
		case <-ctx.Done():
			putBatch(b)
			return false
		}
	}

	read := make(chan batch, pipelineDepth)
	go func() {
		defer close(read)
		for ctx.Err() == nil {
			buf := getBlock()
			n, err := io.ReadFull(r, *buf)
			if n > 0 && !send(read, batch{block: buf, n: n}) {
				return
			}
			if n == 0 {
				putBlock(buf)
			}
			switch err {
			case nil:
			case io.EOF, io.ErrUnexpectedEOF:
				return
			default:
				send(read, batch{err: err})
				return
			}
		}
	}()

	chunked := make(chan batch, pipelineDepth)
	go func() {
		defer close(chunked)
		// tail is the start of the next chunk, carried over from the
		// blocks read so far: never more than MaxSize bytes.
		tail := make([]byte, 0, chunking.MaxSize)
		for b := range read {
			if b.err == nil {
				tail = chunkBlock(&b, tail)
			}
			if !send(chunked, b) {
				return
			}
			if b.err != nil {
				return
			}
		}
		if ctx.Err() == nil && len(tail) > 0 {
			// End of input: the tail holds the last chunks.
			pre := stitches.Get().(*[]byte)
			n := copy(*pre, tail)
			send(chunked, batch{pre: pre, preEnds: chunking.Boundaries((*pre)[:n])})
		}
	}()

	src := chunked
	var digest [sha256.Size]byte
	if opt.sha256 {
		summed := make(chan batch, pipelineDepth)
		go func() {
			defer close(summed)
			h := sha256.New()
			for b := range chunked {
				if b.block != nil {
					h.Write((*b.block)[:b.n])
				}
				if !send(summed, b) {
					return
				}
			}
			// Written before close(summed), read after the hasher sees it
			// closed: the channel orders the two.
			h.Sum(digest[:0])
		}()
		src = summed
	}

	var (
		sum streamSum
		mb  merklehash.Builder
	)
	chunk := func(data []byte) error {
		h := merklehash.ChunkHash(data)
		mb.Add(h, uint64(len(data)))
		if opt.onChunk != nil {
			if err := opt.onChunk(sum.size, len(data), h); err != nil {
				return err
			}
		}
		sum.size += uint64(len(data))
		return nil
	}
	for {
		var b batch
		var ok bool
		select {
		case b, ok = <-src:
		case <-ctx.Done():
			return streamSum{}, ctx.Err()
		}
		if !ok {
			break
		}
		if b.err != nil {
			return streamSum{}, b.err
		}
		err := forEachChunk(b, chunk)
		putBatch(b)
		if err != nil {
			return streamSum{}, err
		}
	}
	// The stages also stop when ctx is done; their channels then close
	// early, which must not pass for the end of the input.
	if err := ctx.Err(); err != nil {
		return streamSum{}, err
	}
	sum.fileHash = mb.FileHash()
	sum.sha256 = digest
	return sum, nil
}

// chunkBlock finds the chunks that end in b's block, given the carried
// tail, and records them in b. It returns the new tail (reusing its
// array).
//
// Boundaries treats its input as a whole stream, so its last chunk may
// only end there because the data does; every earlier boundary depends on
// nothing after it and is final (see chunking.Boundaries). The last chunk
// is therefore never emitted here but carried as the tail, and cut again
// once MaxSize bytes from its start are known or the input has ended.
//
// Invariant: the tail holds no boundary before its end, because it is the
// last chunk of a Boundaries call. That needs every block but the last to
// hold at least MaxSize bytes (hashStream sees to it): then a block always
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

// chunkRecord is one chunk of a spooled chunk list; offsets follow from the
// lengths.
type chunkRecord struct {
	length uint32
	hash   merklehash.Hash
}

const chunkRecordSize = 4 + merklehash.Size

// defaultSpoolLimit is how many chunk records a chunkSpool keeps in memory
// (2.25 MiB, the chunks of about 4.5 GiB of input) before it moves them to
// a temporary file.
const defaultSpoolLimit = 1 << 16

// chunkSpool holds the chunk list of one file until the file hash, which is
// printed first, is known: in memory up to limit records, beyond that in a
// temporary file, so that a file of any size costs bounded memory.
type chunkSpool struct {
	limit int
	mem   []chunkRecord
	file  *os.File
	w     *bufio.Writer
	spilt int // records in file
}

func (s *chunkSpool) add(length int, h merklehash.Hash) error {
	s.mem = append(s.mem, chunkRecord{length: uint32(length), hash: h})
	if len(s.mem) < s.limit {
		return nil
	}
	if s.file == nil {
		f, err := os.CreateTemp("", "xetproxy-chunks-*")
		if err != nil {
			return fmt.Errorf("spool chunk list: %w", err)
		}
		s.file = f
		s.w = bufio.NewWriterSize(f, 64<<10)
	}
	var b [chunkRecordSize]byte
	for _, r := range s.mem {
		binary.LittleEndian.PutUint32(b[:4], r.length)
		copy(b[4:], r.hash[:])
		if _, err := s.w.Write(b[:]); err != nil {
			return fmt.Errorf("spool chunk list: %w", err)
		}
	}
	s.spilt += len(s.mem)
	s.mem = s.mem[:0]
	return nil
}

// each calls fn for every record in order with its offset.
func (s *chunkSpool) each(fn func(offset uint64, r chunkRecord) error) error {
	var off uint64
	if s.file != nil {
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("spool chunk list: %w", err)
		}
		if _, err := s.file.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("spool chunk list: %w", err)
		}
		br := bufio.NewReaderSize(s.file, 64<<10)
		var b [chunkRecordSize]byte
		for range s.spilt {
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return fmt.Errorf("read spooled chunk list: %w", err)
			}
			r := chunkRecord{length: binary.LittleEndian.Uint32(b[:4])}
			copy(r.hash[:], b[4:])
			if err := fn(off, r); err != nil {
				return err
			}
			off += uint64(r.length)
		}
	}
	for _, r := range s.mem {
		if err := fn(off, r); err != nil {
			return err
		}
		off += uint64(r.length)
	}
	return nil
}

// close removes the temporary file, if any.
func (s *chunkSpool) close() error {
	if s.file == nil {
		return nil
	}
	name := s.file.Name()
	err := errors.Join(s.file.Close(), os.Remove(name))
	s.file, s.w = nil, nil
	return err
}
