package xorb

import (
	"encoding/binary"
	"sync"

	"github.com/pierrec/lz4/v4"
)

// LZ4 frame format (lz4_Frame_format.md), as far as this file needs it:
//
//	magic 04 22 4D 18 | FLG | BD | [content size u64] | [dict id u32] | HC
//	blocks: size u32 (bit 31 = stored raw) | data | [block checksum u32]
//	end mark 00 00 00 00 | [content checksum u32]
//
// FLG: bits 7-6 version (01), bit 5 independent blocks, bit 4 block
// checksums, bit 3 content size, bit 2 content checksum, bit 1 reserved,
// bit 0 dictionary id. BD: bits 6-4 block maximum size (4..7 = 64 KiB,
// 256 KiB, 1 MiB, 4 MiB), other bits reserved. HC is the second byte of the
// xxh32 of FLG..dict id. Skippable frames (magic 50..5F 2A 4D 18, u32 size,
// data) may appear between frames.

const (
	lz4Magic        = 0x184D2204
	lz4SkipMagic    = 0x184D2A50 // low nibble free
	lz4LinkedWindow = 64 << 10   // how far back a linked block may reach

	flgVersionMask  = 0xC0
	flgVersion1     = 0x40
	flgIndependent  = 0x20
	flgBlockSum     = 0x10
	flgContentSize  = 0x08
	flgContentSum   = 0x04
	flgReserved     = 0x02
	flgDictID       = 0x01
	bdReservedMask  = 0x8F
	bdBlockSizeBits = 4

	blockRawFlag = 1 << 31

	// Frames we write: independent blocks, no checksums (chunk hashes cover
	// the data), 256 KiB blocks so that every chunk is one block.
	writeFLG = flgVersion1 | flgIndependent
	writeBD  = 5 << bdBlockSizeBits
	// lz4FrameOverhead is magic, FLG, BD, HC, one block size and the end mark.
	lz4FrameOverhead = 4 + 3 + 4 + 4
)

var writeHC = byte(xxh32([]byte{writeFLG, writeBD}) >> 8)

var compressors = sync.Pool{New: func() any { return new(lz4.Compressor) }}

// appendLZ4Frame appends one LZ4 frame holding src to dst if that frame is at
// most limit bytes long; otherwise it returns dst unchanged and false. src
// must be at most MaxChunkSize bytes.
func appendLZ4Frame(dst, src []byte, limit int) ([]byte, bool) {
	maxBlock := limit - lz4FrameOverhead
	if maxBlock <= 0 || len(src) == 0 {
		// An empty frame (11 bytes) never beats an empty chunk.
		return dst, false
	}
	start := len(dst)
	dst = grow(dst, limit)
	frame := dst[start : start+limit]
	binary.LittleEndian.PutUint32(frame[0:4], lz4Magic)
	frame[4], frame[5], frame[6] = writeFLG, writeBD, writeHC
	c := compressors.Get().(*lz4.Compressor)
	n, err := c.CompressBlock(src, frame[11:11+maxBlock])
	compressors.Put(c)
	if err != nil || n == 0 {
		// Incompressible, or the block does not fit within limit.
		return dst[:start], false
	}
	binary.LittleEndian.PutUint32(frame[7:11], uint32(n))
	binary.LittleEndian.PutUint32(frame[11+n:15+n], 0)
	return dst[:start+n+lz4FrameOverhead], true
}

// grow makes room for n more bytes after len(dst).
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	bigger := make([]byte, len(dst), 2*cap(dst)+n)
	copy(bigger, dst)
	return bigger
}

// decodeLZ4 decodes the LZ4 frames in src (skippable frames allowed between
// them) into out, which must be exactly as long as the expected output.
// Output beyond len(out) is an error, never a write. Errors are *FormatError
// with offsets into src.
func decodeLZ4(out, src []byte) error {
	out = out[:len(out):len(out)]
	pos, in, frames := 0, 0, 0
	for in < len(src) {
		if len(src)-in < 4 {
			return formatErr(int64(in), "lz4: truncated frame magic")
		}
		magic := binary.LittleEndian.Uint32(src[in:])
		if magic&^0xF == lz4SkipMagic {
			if len(src)-in < 8 {
				return formatErr(int64(in), "lz4: truncated skippable frame")
			}
			size := binary.LittleEndian.Uint32(src[in+4:])
			if uint64(size) > uint64(len(src)-in-8) {
				return formatErr(int64(in+4), "lz4: skippable frame of %d bytes overruns the payload", size)
			}
			in += 8 + int(size)
			continue
		}
		if magic != lz4Magic {
			return formatErr(int64(in), "lz4: bad frame magic %#08x", magic)
		}
		n, next, err := decodeLZ4Frame(out[pos:], src, in)
		if err != nil {
			return err
		}
		pos += n
		in = next
		frames++
	}
	if frames == 0 {
		return formatErr(0, "lz4: payload holds no frame")
	}
	if pos != len(out) {
		return formatErr(int64(len(src)), "lz4: decoded %d bytes, chunk header says %d", pos, len(out))
	}
	return nil
}

// decodeLZ4Frame decodes the frame starting at src[start] (its magic already
// checked) into out. It returns the decoded length and the offset just past
// the frame.
func decodeLZ4Frame(out, src []byte, start int) (n, next int, err error) {
	in := start + 4
	if len(src)-in < 3 {
		return 0, 0, formatErr(int64(in), "lz4: truncated frame descriptor")
	}
	flg, bd := src[in], src[in+1]
	descLen := 2
	if flg&flgContentSize != 0 {
		descLen += 8
	}
	if flg&flgDictID != 0 {
		descLen += 4
	}
	if len(src)-in < descLen+1 {
		return 0, 0, formatErr(int64(in), "lz4: truncated frame descriptor")
	}
	desc := src[in : in+descLen]
	if hc := src[in+descLen]; hc != byte(xxh32(desc)>>8) {
		return 0, 0, formatErr(int64(in+descLen), "lz4: frame descriptor checksum mismatch")
	}
	switch {
	case flg&flgVersionMask != flgVersion1:
		return 0, 0, formatErr(int64(in), "lz4: frame version %d, want 1", flg>>6)
	case flg&flgReserved != 0 || bd&bdReservedMask != 0:
		return 0, 0, formatErr(int64(in), "lz4: reserved frame descriptor bits set")
	case flg&flgDictID != 0:
		return 0, 0, formatErr(int64(in), "lz4: frame needs a dictionary")
	}
	bsIndex := bd >> bdBlockSizeBits
	if bsIndex < 4 {
		return 0, 0, formatErr(int64(in+1), "lz4: invalid block size index %d", bsIndex)
	}
	blockMax := 1 << (8 + 2*int(bsIndex)) // 4 → 64 KiB … 7 → 4 MiB
	contentSize := uint64(0)
	if flg&flgContentSize != 0 {
		contentSize = binary.LittleEndian.Uint64(desc[2:])
		if contentSize > uint64(len(out)) {
			return 0, 0, formatErr(int64(in+2), "lz4: frame content size %d exceeds the %d bytes left in the chunk", contentSize, len(out))
		}
	}
	in += descLen + 1
	linked := flg&flgIndependent == 0
	blockSums := flg&flgBlockSum != 0

	pos := 0
	for {
		if len(src)-in < 4 {
			return 0, 0, formatErr(int64(in), "lz4: truncated block size")
		}
		word := binary.LittleEndian.Uint32(src[in:])
		in += 4
		if word == 0 {
			break // end mark
		}
		size := int(word &^ blockRawFlag)
		if size > blockMax {
			return 0, 0, formatErr(int64(in-4), "lz4: block of %d bytes exceeds the frame's %d", size, blockMax)
		}
		if size > len(src)-in {
			return 0, 0, formatErr(int64(in-4), "lz4: block of %d bytes overruns the payload", size)
		}
		data := src[in : in+size]
		in += size
		if blockSums {
			if len(src)-in < 4 {
				return 0, 0, formatErr(int64(in), "lz4: truncated block checksum")
			}
			if binary.LittleEndian.Uint32(src[in:]) != xxh32(data) {
				return 0, 0, formatErr(int64(in), "lz4: block checksum mismatch")
			}
			in += 4
		}
		limit := min(len(out), pos+blockMax)
		if word&blockRawFlag != 0 {
			if size > limit-pos {
				return 0, 0, formatErr(int64(in-size), "lz4: output longer than the chunk header says")
			}
			pos += copy(out[pos:limit], data)
			continue
		}
		if limit == pos {
			// No room left: any compressed block would overrun the chunk
			// (encoders never emit empty blocks), and pierrec's assembly
			// decoder must not be handed an empty destination.
			return 0, 0, formatErr(int64(in-size), "lz4: output longer than the chunk header says")
		}
		var k int
		var err error
		if linked && pos > 0 {
			dict := out[max(0, pos-lz4LinkedWindow):pos:pos]
			k, err = lz4.UncompressBlockWithDict(data, out[pos:limit:limit], dict)
		} else {
			k, err = lz4.UncompressBlock(data, out[pos:limit:limit])
		}
		if err != nil {
			return 0, 0, formatErr(int64(in-size), "lz4: corrupt block, or output longer than the chunk header says")
		}
		pos += k
	}
	if flg&flgContentSum != 0 {
		if len(src)-in < 4 {
			return 0, 0, formatErr(int64(in), "lz4: truncated content checksum")
		}
		if binary.LittleEndian.Uint32(src[in:]) != xxh32(out[:pos]) {
			return 0, 0, formatErr(int64(in), "lz4: content checksum mismatch")
		}
		in += 4
	}
	if flg&flgContentSize != 0 && uint64(pos) != contentSize {
		return 0, 0, formatErr(int64(start+6), "lz4: frame decoded to %d bytes, its descriptor says %d", pos, contentSize)
	}
	return pos, in, nil
}
