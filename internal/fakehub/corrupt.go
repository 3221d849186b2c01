package fakehub

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// StoredChunk is where one chunk of a Xet file is stored: its xorb, its
// place there, and its stored header (compression scheme and lengths).
type StoredChunk struct {
	Index      int   // in the file, from 0
	FileOffset int64 // of its first byte in the file
	Size       int   // uncompressed bytes

	Xorb       merklehash.Hash
	XorbIndex  int         // in the xorb, from 0
	XorbChunks int         // chunks in the xorb
	Offset     int64       // of its header in the stored xorb object
	Header     xorb.Header // as stored
}

// PayloadOffset is the offset of the chunk's payload in the stored xorb.
func (c StoredChunk) PayloadOffset() int64 { return c.Offset + xorb.HeaderSize }

// FileChunks lists the chunks of the Xet file with this hash in file order,
// as its reconstruction names them. A chunk repeated in a file is stored
// once: its entries then name the same stored bytes.
func (h *Hub) FileChunks(file merklehash.Hash) ([]StoredChunk, error) {
	f, err := h.store.restoreFile(file)
	if err != nil {
		return nil, err
	}
	var out []StoredChunk
	var off int64
	for _, t := range f.terms {
		rec, ok := h.store.xorb(t.xorb)
		if !ok {
			return nil, fmt.Errorf("%w: xorb %s", ErrNotFound, t.xorb)
		}
		src, closer, err := rec.open()
		if err != nil {
			return nil, fmt.Errorf("fakehub: %w", err)
		}
		for i := t.start; i < t.end; i++ {
			c := StoredChunk{Index: len(out), FileOffset: off, Size: int(rec.chunks[i].Size),
				Xorb: rec.hash, XorbIndex: int(i), XorbChunks: len(rec.chunks)}
			if i > 0 {
				c.Offset = int64(rec.ends[i-1])
			}
			var hdr [xorb.HeaderSize]byte
			if _, err := src.ReadAt(hdr[:], c.Offset); err != nil {
				closer.Close()
				return nil, fmt.Errorf("fakehub: reading chunk header: %w", err)
			}
			if c.Header, err = xorb.ParseHeader(hdr[:]); err != nil {
				closer.Close()
				return nil, err
			}
			out = append(out, c)
			off += int64(c.Size)
		}
		closer.Close()
	}
	return out, nil
}

// Corruption is one byte that CorruptChunk flips in the stored xorb
// whenever it is served, until Heal.
type Corruption struct {
	Chunk StoredChunk
	// Offset is the flipped byte in the stored xorb object, inside the
	// chunk's payload.
	Offset int64
	// Decodes reports that the chunk still decodes to its declared length,
	// with different bytes: the damage only a hash can reveal. For a
	// chunk stored with SchemeNone it always does.
	Decodes bool
	// FirstWrong is the file offset of the first byte the damaged chunk
	// decodes to differently, or -1 when it does not decode.
	FirstWrong int64

	h  *Hub
	id uint64
}

// Heal stops this corruption; the others stay.
func (c *Corruption) Heal() {
	k := &c.h.knobs
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, o := range k.corrupt {
		if o.id == c.id {
			k.corrupt = append(k.corrupt[:i:i], k.corrupt[i+1:]...)
			return
		}
	}
}

// CorruptChunk flips (XOR 0xff) one byte of the payload of chunk k of the
// Xet file with this hash whenever its xorb is served, the stored data
// staying intact (ClearFaults or Corruption.Heal end it). It picks, from
// the middle of the payload on, the first byte whose flip still lets the
// chunk decode to its declared length with different bytes (a raw chunk's
// middle byte; an LZ4 literal), so that only a hash can tell; when no
// byte among the first 4096 tried does, the middle byte (Decodes false).
func (h *Hub) CorruptChunk(file merklehash.Hash, k int) (*Corruption, error) {
	chunks, err := h.FileChunks(file)
	if err != nil {
		return nil, err
	}
	if k < 0 || k >= len(chunks) {
		return nil, fmt.Errorf("fakehub: chunk %d of a file of %d chunks", k, len(chunks))
	}
	c := chunks[k]
	if c.Header.CompressedLen == 0 {
		return nil, errors.New("fakehub: an empty chunk has no payload to corrupt")
	}
	rec, _ := h.store.xorb(c.Xorb)
	src, closer, err := rec.open()
	if err != nil {
		return nil, fmt.Errorf("fakehub: %w", err)
	}
	payload := make([]byte, c.Header.CompressedLen)
	_, err = src.ReadAt(payload, c.PayloadOffset())
	closer.Close()
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("fakehub: reading chunk payload: %w", err)
	}
	clean, err := xorb.DecodePayload(nil, c.Header, payload)
	if err != nil {
		return nil, fmt.Errorf("fakehub: stored chunk does not decode: %w", err)
	}

	// A raw chunk takes the first try; compressed ones a few, but a bound
	// keeps a chunk where no flip decodes from costing 10^5 decodes.
	n := len(payload)
	pick, first := n/2, -1
	var out []byte
	for j := range min(n, 4096) {
		p := (n/2 + j) % n
		payload[p] ^= 0xff
		out, err = xorb.DecodePayload(out[:0], c.Header, payload)
		payload[p] ^= 0xff
		if err != nil || bytes.Equal(out, clean) {
			continue
		}
		pick = p
		for i := range out {
			if out[i] != clean[i] {
				first = i
				break
			}
		}
		break
	}
	corr := &Corruption{Chunk: c, Offset: c.PayloadOffset() + int64(pick), Decodes: first >= 0, FirstWrong: -1, h: h}
	if first >= 0 {
		corr.FirstWrong = c.FileOffset + int64(first)
	}
	h.knobs.mu.Lock()
	defer h.knobs.mu.Unlock()
	h.knobs.seq++
	corr.id = h.knobs.seq
	h.knobs.corrupt = append(h.knobs.corrupt, corruption{xorb: c.Xorb, offset: corr.Offset, n: 1, id: corr.id})
	return corr, nil
}
