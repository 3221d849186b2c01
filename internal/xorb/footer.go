package xorb

import (
	"encoding/binary"
	"fmt"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Footer (XorbObjectInfo) layout; see the package documentation.
const (
	footerIdent     = "XETBLOB"
	hashesIdent     = "XBLBHSH"
	boundariesIdent = "XBLBBND"

	footerVersionV0   = 0
	footerVersionV1   = 1
	hashesVersion     = 0
	boundariesVersion = 1

	footerBufferSize = 16
)

// footerLenV1 is the length of a V1 footer for n chunks, without the
// trailing u32 info_length.
func footerLenV1(n int) int { return 92 + 40*n }

// footerLenV0 is the same for the legacy V0 footer.
func footerLenV0(n int) int { return 60 + 36*n }

// appendFooter appends the V1 footer of chunks and the trailing info_length.
// The uniqueness nonce is left zero.
func appendFooter(dst []byte, hash merklehash.Hash, chunks []ChunkInfo) []byte {
	n := len(chunks)
	le := binary.LittleEndian
	dst = append(dst, footerIdent...)
	dst = append(dst, footerVersionV1)
	dst = append(dst, hash[:]...)

	dst = append(dst, hashesIdent...)
	dst = append(dst, hashesVersion)
	dst = le.AppendUint32(dst, uint32(n))
	for i := range chunks {
		dst = append(dst, chunks[i].Hash[:]...)
	}

	dst = append(dst, boundariesIdent...)
	dst = append(dst, boundariesVersion)
	dst = le.AppendUint32(dst, uint32(n))
	for i := range chunks {
		dst = le.AppendUint32(dst, chunks[i].End)
	}
	for i := range chunks {
		dst = le.AppendUint32(dst, chunks[i].UnpackedEnd)
	}

	dst = le.AppendUint32(dst, uint32(n))
	dst = le.AppendUint32(dst, uint32(52+40*n)) // hashes section to end of footer
	dst = le.AppendUint32(dst, uint32(40+8*n))  // boundaries section to end of footer
	dst = append(dst, make([]byte, footerBufferSize)...)
	return le.AppendUint32(dst, uint32(footerLenV1(n)))
}

// checkFooter validates the footer f (from "XETBLOB" to the end of the
// object, info_length included) against the chunks decoded from the region
// and their xorb hash. It reads no length from f before comparing it with
// what the chunks imply, so it allocates nothing. Offsets in errors are
// relative to f.
func checkFooter(f []byte, hash merklehash.Hash, chunks []ChunkInfo) error {
	if len(f) < len(footerIdent)+1 {
		return formatErr(0, "footer truncated")
	}
	n := len(chunks)
	switch v := f[len(footerIdent)]; v {
	case footerVersionV1:
		return checkFooterV1(f, hash, chunks, n)
	case footerVersionV0:
		return checkFooterV0(f, hash, chunks, n)
	default:
		return formatErr(int64(len(footerIdent)), "unsupported footer version %d", v)
	}
}

func checkFooterV1(f []byte, hash merklehash.Hash, chunks []ChunkInfo, n int) error {
	le := binary.LittleEndian
	flen := footerLenV1(n)
	if len(f) != flen+4 {
		return footerLenErr(f, 48, flen, n)
	}
	if err := checkXorbHash(f[8:40], hash); err != nil {
		return err
	}
	// Hashes section.
	at := 40
	if string(f[at:at+7]) != hashesIdent || f[at+7] != hashesVersion {
		return formatErr(int64(at), "bad footer hashes section ident or version")
	}
	if err := checkCount(f, at+8, n); err != nil {
		return err
	}
	hashes := at + 12
	if err := checkHashes(f, hashes, chunks); err != nil {
		return err
	}
	// Boundaries section.
	at = hashes + 32*n
	if string(f[at:at+7]) != boundariesIdent || f[at+7] != boundariesVersion {
		return formatErr(int64(at), "bad footer boundaries section ident or version")
	}
	if err := checkCount(f, at+8, n); err != nil {
		return err
	}
	ends := at + 12
	unpacked := ends + 4*n
	for i := range chunks {
		if got := le.Uint32(f[ends+4*i:]); got != chunks[i].End {
			return formatErr(int64(ends+4*i), "footer boundary of chunk %d is %d, the chunk ends at %d", i, got, chunks[i].End)
		}
		if got := le.Uint32(f[unpacked+4*i:]); got != chunks[i].UnpackedEnd {
			return formatErr(int64(unpacked+4*i), "footer unpacked offset of chunk %d is %d, want %d", i, got, chunks[i].UnpackedEnd)
		}
	}
	// Trailer: n, the two section offsets, the buffer (ignored), info_length.
	at = unpacked + 4*n
	if err := checkCount(f, at, n); err != nil {
		return err
	}
	if got := le.Uint32(f[at+4:]); got != uint32(52+40*n) {
		return formatErr(int64(at+4), "footer hashes section offset %d, want %d", got, 52+40*n)
	}
	if got := le.Uint32(f[at+8:]); got != uint32(40+8*n) {
		return formatErr(int64(at+8), "footer boundaries section offset %d, want %d", got, 40+8*n)
	}
	return checkInfoLength(f, flen)
}

func checkFooterV0(f []byte, hash merklehash.Hash, chunks []ChunkInfo, n int) error {
	le := binary.LittleEndian
	flen := footerLenV0(n)
	if len(f) != flen+4 {
		return footerLenErr(f, 40, flen, n)
	}
	if err := checkXorbHash(f[8:40], hash); err != nil {
		return err
	}
	if err := checkCount(f, 40, n); err != nil {
		return err
	}
	ends := 44
	for i := range chunks {
		if got := le.Uint32(f[ends+4*i:]); got != chunks[i].End {
			return formatErr(int64(ends+4*i), "footer boundary of chunk %d is %d, the chunk ends at %d", i, got, chunks[i].End)
		}
	}
	if err := checkHashes(f, ends+4*n, chunks); err != nil {
		return err
	}
	return checkInfoLength(f, flen)
}

// footerLenErr reports a footer whose length does not fit the chunks before
// it, naming the chunk count the footer claims (at countAt) if it has one.
func footerLenErr(f []byte, countAt, want, n int) error {
	claim := ""
	if len(f) >= countAt+4 {
		claim = fmt.Sprintf(" (the footer claims %d)", binary.LittleEndian.Uint32(f[countAt:]))
	}
	return formatErr(0, "footer and length field of %d bytes, want %d for the %d chunks before it%s", len(f), want+4, n, claim)
}

func checkXorbHash(b []byte, hash merklehash.Hash) error {
	if string(b) != string(hash[:]) {
		var got merklehash.Hash
		copy(got[:], b)
		return formatErr(8, "footer xorb hash %s, the chunks hash to %s", got, hash)
	}
	return nil
}

func checkCount(f []byte, at, n int) error {
	if got := binary.LittleEndian.Uint32(f[at:]); got != uint32(n) {
		return formatErr(int64(at), "footer chunk count %d, the region holds %d chunks", got, n)
	}
	return nil
}

func checkHashes(f []byte, at int, chunks []ChunkInfo) error {
	for i := range chunks {
		if string(f[at+32*i:at+32*i+32]) != string(chunks[i].Hash[:]) {
			return formatErr(int64(at+32*i), "footer hash of chunk %d does not match the chunk", i)
		}
	}
	return nil
}

func checkInfoLength(f []byte, flen int) error {
	if got := binary.LittleEndian.Uint32(f[flen:]); got != uint32(flen) {
		return formatErr(int64(flen), "footer length field %d, want %d", got, flen)
	}
	return nil
}
