package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// rangeSink receives the chunks of one xorb range as decodeRange reads
// them, in order. k counts the chunks of the range from 0.
type rangeSink interface {
	// next is told the decoded size of chunk k before it is decoded. It
	// returns the buffer to decode into (exactly size bytes), or nil when
	// no one needs the bytes (they are decoded into scratch all the same:
	// the size must be proven); and whether the chunk must be hashed.
	next(k uint32, size uint32) (buf []byte, hash bool, err error)
	// done is told that chunk k decoded into buf (nil for scratch), with
	// its hash when one was computed. A manifest check has passed.
	done(k uint32, buf []byte, h merklehash.Hash) error
	// abandon is told that chunk k, given a buffer by next, failed.
	abandon(k uint32)
}

// rangeRead is one fetch of a xorb range from upstream.
type rangeRead struct {
	fe      *reconstruction.Fetch
	url     string
	refresh func(context.Context) (string, error)
	file    string // for errors
	from    uint32 // chunks [0, from) are skipped without decoding
	// m, when known, checks every chunk decoded; without it, a read of
	// chunks [0, n) from the first may teach the xorb's manifest.
	m *cache.Manifest
}

// decodeRange is the one loop that turns upstream bytes into chunks: it
// fetches a xorb range, checks every chunk header against the format's
// caps, decodes each chunk into the buffer its sink gives, hashes it when
// asked (always with a manifest, which then checks it), and checks that
// the range holds exactly its chunks. A read of the whole xorb without a
// manifest learns it. The sinks (a stream's fetch, a cache fill) decide
// where chunks go and check the terms.
//
// It returns the manifest it learnt, if any.
func (e *Engine) decodeRange(ctx context.Context, rr rangeRead, sink rangeSink) (*cache.Manifest, error) {
	fe := rr.fe
	body, err := e.cas.FetchRange(ctx, rr.url, fe.Bytes, rr.refresh)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	m := rr.m
	learn := m == nil && fe.Chunks.Start == 0 && rr.from == 0
	var leaves []merklehash.Leaf
	cs := &chunkStream{r: body, ahead: true}
	defer cs.release()
	var scratch *[]byte
	defer func() {
		if scratch != nil {
			putBuf(scratch)
		}
	}()
	where := func(err error) error {
		return &IntegrityError{File: rr.file, Err: fmt.Errorf("xorb %s chunks %d-%d (bytes %d-%d): %w",
			fe.Xorb, fe.Chunks.Start, fe.Chunks.End, fe.Bytes.Start, fe.Bytes.End, err)}
	}
	decodeErr := func(err error) error {
		var fmtErr *xorb.FormatError
		switch {
		case err == io.ErrUnexpectedEOF:
			return where(errTruncatedChunk)
		case errors.As(err, &fmtErr):
			return where(err)
		}
		return err
	}
	n := fe.Chunks.Len()
	var k uint32
	for ; ; k++ {
		h, err := cs.header()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, decodeErr(err)
		}
		if k >= n {
			return nil, where(fmt.Errorf("more than the %d chunks of the range", n))
		}
		size := h.UncompressedLen
		if size == 0 {
			return nil, where(errors.New("empty chunk"))
		}
		if k < rr.from {
			if err := cs.skip(h); err != nil {
				return nil, decodeErr(err)
			}
			continue
		}
		buf, hash, err := sink.next(k, size)
		if err != nil {
			return nil, err
		}
		dst := buf
		if dst == nil {
			if scratch == nil {
				scratch = getBuf(maxChunk)
			}
			dst = (*scratch)[:size]
		}
		if err := cs.body(h, dst); err != nil {
			if buf != nil {
				sink.abandon(k)
			}
			return nil, decodeErr(err)
		}
		var ch merklehash.Hash
		if hash || m != nil || learn {
			ch = merklehash.ChunkHash(dst)
			c := fe.Chunks.Start + k
			if m != nil && !m.Check(c, ch, size) {
				if buf != nil {
					sink.abandon(k)
				}
				e.stats.proofFailures.Add(1)
				return nil, where(fmt.Errorf("chunk %d does not match the xorb's manifest", c))
			}
			if learn {
				leaves = append(leaves, merklehash.Leaf{Hash: ch, Size: uint64(size)})
			}
		}
		if err := sink.done(k, buf, ch); err != nil {
			return nil, err
		}
	}
	if k != n {
		return nil, where(fmt.Errorf("%d of the %d chunks of the range: %w", k, n, io.ErrUnexpectedEOF))
	}
	if learn {
		return e.learnManifest(ctx, fe.Xorb, leaves), nil
	}
	return nil, nil
}
