package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Stored form of an entry, shared by the disk files and the object-store
// objects (all integers little-endian, n = End - Start):
//
//	offset     size    field
//	0          7       magic "XPCACHE"
//	7          1       format version (2)
//	8          32      xorb hash, raw bytes
//	40         4       Start
//	44         4       End
//	48         4       data length in bytes
//	52         4       reserved, zero
//	56         4(n+1)  chunk offsets into the data
//	60+4n      32n     chunk hashes, raw bytes
//	60+36n     4n      CRC-32C of each chunk's data
//	60+40n     4       CRC-32C of every header byte before it
//	64+40n             data
//
// The header checksum guards the offsets and hashes and the per-chunk
// checksums guard the data, so a reader can fetch the header and only the
// chunks it needs and still verify everything it returns.
const (
	formatMagic = "XPCACHE"
	// formatVersion is 2 since entries hold only chunks proven against
	// their xorb (see Manifest). Version 1 entries, from earlier releases,
	// may hold chunks that were never proven: readers reject every other
	// version as corrupt, so such an entry is deleted, never served.
	formatVersion  = 2
	headerFixed    = 64
	perChunkHeader = 40
	// wholeReadBytes: stored entries up to this size are read in one go
	// even for a sub-range.
	wholeReadBytes = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a stored entry that fails its checks. Stores delete such
// an entry and report a miss.
var errCorrupt = errors.New("cache: corrupt entry")

func corruptf(k Key, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", errCorrupt, k, fmt.Sprintf(format, args...))
}

// headerSize is the size of the stored header of an n-chunk entry.
func headerSize(n uint32) int { return headerFixed + perChunkHeader*int(n) }

// encodedSize is the stored size of e.
func encodedSize(e *Entry) int64 { return int64(headerSize(e.End-e.Start)) + int64(len(e.Data)) }

// appendHeader appends the stored header of the valid entry e to dst.
func appendHeader(dst []byte, e *Entry) []byte {
	n := e.End - e.Start
	start := len(dst)
	dst = append(dst, formatMagic...)
	dst = append(dst, formatVersion)
	dst = append(dst, e.Xorb[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, e.Start)
	dst = binary.LittleEndian.AppendUint32(dst, e.End)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.Data)))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	for _, o := range e.Offsets {
		dst = binary.LittleEndian.AppendUint32(dst, o)
	}
	for _, h := range e.Hashes {
		dst = append(dst, h[:]...)
	}
	for i := uint32(0); i < n; i++ {
		dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(e.Data[e.Offsets[i]:e.Offsets[i+1]], castagnoli))
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// encode returns the whole stored form of the valid entry e.
func encode(e *Entry) []byte {
	buf := make([]byte, 0, encodedSize(e))
	return append(appendHeader(buf, e), e.Data...)
}

// header is a parsed, checked stored header.
type header struct {
	key     Key
	dataLen uint32
	offsets []uint32
	raw     []byte // the header bytes, for hashes and chunk checksums
}

func (h *header) hash(i uint32) (out merklehash.Hash) {
	n := h.key.Len()
	p := 56 + 4*int(n+1) + 32*int(i)
	copy(out[:], h.raw[p:p+32])
	return out
}

func (h *header) chunkCRC(i uint32) uint32 {
	n := h.key.Len()
	p := 56 + 36*int(n) + 4 + 4*int(i)
	return binary.LittleEndian.Uint32(h.raw[p:])
}

// parseHeader checks b, which must be exactly headerSize(k.Len()) bytes, as
// the stored header of the entry named k.
func parseHeader(b []byte, k Key) (*header, error) {
	n := k.Len()
	if k.Start >= k.End || n > MaxEntryChunks {
		return nil, fmt.Errorf("%w: %s", ErrInvalidRange, k)
	}
	if len(b) != headerSize(n) {
		return nil, corruptf(k, "header is %d bytes, want %d", len(b), headerSize(n))
	}
	if string(b[:7]) != formatMagic {
		return nil, corruptf(k, "bad magic")
	}
	if b[7] != formatVersion {
		return nil, corruptf(k, "format version %d, want %d", b[7], formatVersion)
	}
	body := len(b) - 4
	if got, want := crc32.Checksum(b[:body], castagnoli), binary.LittleEndian.Uint32(b[body:]); got != want {
		return nil, corruptf(k, "header checksum %08x, want %08x", got, want)
	}
	var got Key
	copy(got.Xorb[:], b[8:40])
	got.Start = binary.LittleEndian.Uint32(b[40:])
	got.End = binary.LittleEndian.Uint32(b[44:])
	if got != k {
		return nil, corruptf(k, "header names %s", got)
	}
	h := &header{key: k, dataLen: binary.LittleEndian.Uint32(b[48:]), raw: b}
	if h.dataLen > MaxEntryBytes {
		return nil, corruptf(k, "data length %d over limit", h.dataLen)
	}
	if binary.LittleEndian.Uint32(b[52:]) != 0 {
		return nil, corruptf(k, "reserved field set")
	}
	h.offsets = make([]uint32, n+1)
	for i := range h.offsets {
		h.offsets[i] = binary.LittleEndian.Uint32(b[56+4*i:])
	}
	if h.offsets[0] != 0 || h.offsets[n] != h.dataLen {
		return nil, corruptf(k, "offsets span [%d, %d), data length %d", h.offsets[0], h.offsets[n], h.dataLen)
	}
	for i := uint32(0); i < n; i++ {
		if lo, hi := h.offsets[i], h.offsets[i+1]; hi <= lo || hi-lo > MaxChunkSize {
			return nil, corruptf(k, "chunk %d spans [%d, %d)", k.Start+i, lo, hi)
		}
	}
	return h, nil
}

// readAtFull fills p from r at off. A short read is corruption (the stored
// entry is truncated); other errors are returned as they are.
func readAtFull(r io.ReaderAt, p []byte, off int64, k Key) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptf(k, "truncated: %d of %d bytes at offset %d", n, len(p), off)
	}
	return err
}

// readEntry reads chunks [start, end) of the entry named k from its stored
// form r, which is size bytes long, and verifies the header and the chunks it
// returns. Entries of at most wholeReadBytes, and whole-entry requests, take
// one read; otherwise the header and the needed data are read separately.
func readEntry(r io.ReaderAt, size int64, k Key, start, end uint32) (*Entry, error) {
	e, _, err := readEntryPooled(r, size, k, start, end, false)
	return e, err
}

// readEntryPooled is readEntry, reading a whole entry into a pooled buffer
// when pool is set (see readbuf.go); off is the offset in r of the
// entry's first byte of data.
func readEntryPooled(r io.ReaderAt, size int64, k Key, start, end uint32, pool bool) (_ *Entry, off int64, err error) {
	if start >= end || start < k.Start || end > k.End {
		return nil, 0, fmt.Errorf("%w: [%d, %d) outside %s", ErrInvalidRange, start, end, k)
	}
	hl := headerSize(k.Len())
	if size < int64(hl) || size > int64(hl)+MaxEntryBytes {
		return nil, 0, corruptf(k, "stored size %d", size)
	}
	var (
		h      *header
		data   []byte // the data of chunks [start, end)
		buf    []byte
		pooled *[]byte
	)
	putPooled := func() {
		if pooled != nil {
			putReadBuf(pooled)
			pooled = nil
		}
	}
	defer func() {
		if err != nil {
			putPooled()
		}
	}()
	i, j := start-k.Start, end-k.Start
	if (start == k.Start && end == k.End) || size <= wholeReadBytes {
		if pool {
			pooled = getReadBuf(int(size))
			buf = *pooled
		} else {
			buf = make([]byte, size)
		}
		if err := readAtFull(r, buf, 0, k); err != nil {
			return nil, 0, err
		}
		if h, err = parseHeader(buf[:hl:hl], k); err != nil {
			return nil, 0, err
		}
		if size != int64(hl)+int64(h.dataLen) {
			return nil, 0, corruptf(k, "stored size %d, header says %d", size, int64(hl)+int64(h.dataLen))
		}
		data = buf[hl+int(h.offsets[i]) : hl+int(h.offsets[j])]
	} else {
		hb := make([]byte, hl)
		if err := readAtFull(r, hb, 0, k); err != nil {
			return nil, 0, err
		}
		if h, err = parseHeader(hb, k); err != nil {
			return nil, 0, err
		}
		if size != int64(hl)+int64(h.dataLen) {
			return nil, 0, corruptf(k, "stored size %d, header says %d", size, int64(hl)+int64(h.dataLen))
		}
		n := int(h.offsets[j] - h.offsets[i])
		if pool {
			pooled = getReadBuf(n)
			data = *pooled
		} else {
			data = make([]byte, n)
		}
		if err := readAtFull(r, data, int64(hl)+int64(h.offsets[i]), k); err != nil {
			return nil, 0, err
		}
	}
	e, err := entryFrom(h, data, k, start, end)
	if err != nil {
		return nil, 0, err
	}
	e.pooled = pooled
	return e, int64(hl) + int64(h.offsets[i]), nil
}

// entryFrom returns the entry of chunks [start, end) of the entry named k,
// whose checked header is h and whose data for those chunks is data, after
// checking each chunk's CRC-32C. The entry's Data is data.
func entryFrom(h *header, data []byte, k Key, start, end uint32) (*Entry, error) {
	i, j := start-k.Start, end-k.Start
	e := &Entry{
		Xorb:    k.Xorb,
		Start:   start,
		End:     end,
		Offsets: make([]uint32, j-i+1),
		Hashes:  make([]merklehash.Hash, j-i),
		Data:    data[:len(data):len(data)],
	}
	base := h.offsets[i]
	for c := i; c <= j; c++ {
		e.Offsets[c-i] = h.offsets[c] - base
	}
	for c := i; c < j; c++ {
		e.Hashes[c-i] = h.hash(c)
		chunk := data[h.offsets[c]-base : h.offsets[c+1]-base]
		if got, want := crc32.Checksum(chunk, castagnoli), h.chunkCRC(c); got != want {
			return nil, corruptf(k, "chunk %d checksum %08x, want %08x", k.Start+c, got, want)
		}
	}
	return e, nil
}
