package fakehub

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/xetproxy/xetproxy/internal/xorb"
)

// fileReader reads a file by decoding the chunks of its reconstruction. It
// is an io.ReadSeekCloser for http.ServeContent.
type fileReader struct {
	s *store
	f *fileRec

	pos int64

	buf      []byte // decoded chunk holding bytes [bufStart, bufStart+len(buf))
	bufStart int64
	ti       int    // term of the decoded chunk
	ci       uint32 // chunk index of the decoded chunk
	raw      []byte

	x      *xorbRec
	ra     io.ReaderAt
	closer io.Closer
}

func (s *store) openFile(f *fileRec) *fileReader {
	return &fileReader{s: s, f: f, bufStart: -1}
}

func (r *fileReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += int64(r.f.size)
	default:
		return 0, errors.New("fakehub: bad whence")
	}
	if off < 0 {
		return 0, errors.New("fakehub: negative position")
	}
	r.pos = off
	return off, nil
}

func (r *fileReader) Read(p []byte) (int, error) {
	if r.pos >= int64(r.f.size) {
		return 0, io.EOF
	}
	end := r.bufStart + int64(len(r.buf))
	switch {
	case r.bufStart >= 0 && r.pos >= r.bufStart && r.pos < end:
	case r.bufStart >= 0 && r.pos == end:
		ti, ci := r.ti, r.ci+1
		if ci == r.f.terms[ti].end {
			ti++
			ci = r.f.terms[ti].start
		}
		if err := r.decode(ti, ci, end); err != nil {
			return 0, err
		}
	default:
		if err := r.locate(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.pos-r.bufStart:])
	r.pos += int64(n)
	return n, nil
}

// locate decodes the chunk holding r.pos.
func (r *fileReader) locate() error {
	terms := r.f.terms
	pos := uint64(r.pos)
	ti := sort.Search(len(terms), func(i int) bool { return terms[i].offset+uint64(terms[i].unpacked) > pos })
	t := terms[ti]
	x, ok := r.s.xorb(t.xorb)
	if !ok {
		return fmt.Errorf("fakehub: xorb %s missing", t.xorb)
	}
	base := x.unpackedStart(t.start)
	target := base + pos - t.offset
	k := sort.Search(int(t.end-t.start), func(k int) bool { return x.unpackedStart(t.start+uint32(k)+1) > target })
	ci := t.start + uint32(k)
	return r.decode(ti, ci, int64(t.offset+x.unpackedStart(ci)-base))
}

// decode decodes chunk ci of term ti, which starts at file offset at.
func (r *fileReader) decode(ti int, ci uint32, at int64) error {
	t := r.f.terms[ti]
	if r.x == nil || r.x.hash != t.xorb {
		x, ok := r.s.xorb(t.xorb)
		if !ok {
			return fmt.Errorf("fakehub: xorb %s missing", t.xorb)
		}
		if r.closer != nil {
			r.closer.Close()
		}
		ra, c, err := x.open()
		if err != nil {
			return err
		}
		r.x, r.ra, r.closer = x, ra, c
	}
	br := r.x.byteRange(ci, ci+1)
	n := int(br.Len())
	if cap(r.raw) < n {
		r.raw = make([]byte, n)
	}
	raw := r.raw[:n]
	if _, err := r.ra.ReadAt(raw, int64(br.Start)); err != nil {
		return fmt.Errorf("fakehub: reading xorb %s: %w", t.xorb, err)
	}
	h, err := xorb.ParseHeader(raw)
	if err != nil {
		return err
	}
	out, err := xorb.DecodePayload(r.buf[:0], h, raw[xorb.HeaderSize:])
	if err != nil {
		return err
	}
	if uint64(len(out)) != uint64(r.x.chunks[ci].Size) {
		return fmt.Errorf("fakehub: chunk %d of xorb %s decodes to %d bytes, want %d", ci, t.xorb, len(out), r.x.chunks[ci].Size)
	}
	r.buf, r.bufStart, r.ti, r.ci = out, at, ti, ci
	return nil
}

func (r *fileReader) Close() error {
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}
