package xorb

import "encoding/binary"

// BG4 regrouping, both directions, 32 input bytes per step.
//
// A step loads input bytes 0..31 as four little-endian words a, b, c, d and
// sees the byte at index i (5 bits: word w = i>>3, byte i&7) as element i of
// a 4×8 byte matrix. Its output, 8 bytes for each group, is the same matrix
// with index bits rotated right by two: group g = i&3 becomes the word and
// i>>2 the byte. That rotation is four exchanges of one word-index bit with
// one byte-index bit, each a delta swap between two pairs of words (5 ALU
// operations per pair, no byte loads):
//
//	word bit 0 ↔ byte bit 1, word bit 0 ↔ byte bit 2,
//	word bit 0 ↔ byte bit 0, word bit 1 ↔ byte bit 2
//
// Every exchange is its own inverse, so joining runs them in reverse order.

const (
	bytesBit0 = 0x00FF00FF00FF00FF // bytes whose index has bit 0 clear
	bytesBit1 = 0x0000FFFF0000FFFF // … bit 1 clear
	bytesBit2 = 0x00000000FFFFFFFF // … bit 2 clear
)

// xswap exchanges the bytes of y selected by m with the bytes of x that sit
// s bits higher.
func xswap(x, y uint64, s uint, m uint64) (uint64, uint64) {
	t := (x>>s ^ y) & m
	return x ^ t<<s, y ^ t
}

// bg4Offsets returns where groups 1, 2 and 3 start in a grouped buffer of n
// bytes (group 0 starts at 0).
func bg4Offsets(n int) (o1, o2, o3 int) {
	q, r := n/4, n%4
	o1 = q
	if r > 0 {
		o1++
	}
	o2 = o1 + q
	if r > 1 {
		o2++
	}
	o3 = o2 + q
	if r > 2 {
		o3++
	}
	return o1, o2, o3
}

// bg4Split writes the BG4-grouped form of src to dst[:len(src)].
func bg4Split(dst, src []byte) {
	n := len(src)
	dst = dst[:n]
	o1, o2, o3 := bg4Offsets(n)
	// The fast loop fills the first m bytes of every group, 8 per step.
	// Slicing each group to exactly m bytes and counting j up to m lets the
	// compiler drop the bounds checks and keep most of the loop in
	// registers.
	m := n / 32 * 8
	g0, g1, g2, g3 := dst[:m:m], dst[o1:o1+m:o1+m], dst[o2:o2+m:o2+m], dst[o3:o3+m:o3+m]
	s := src[: 4*m : 4*m]
	le := binary.LittleEndian
	for j := 8; j <= m; j += 8 {
		in := s[4*j-32 : 4*j]
		a, b := le.Uint64(in[0:8]), le.Uint64(in[8:16])
		c, d := le.Uint64(in[16:24]), le.Uint64(in[24:32])
		a, b = xswap(a, b, 16, bytesBit1)
		c, d = xswap(c, d, 16, bytesBit1)
		a, b = xswap(a, b, 32, bytesBit2)
		c, d = xswap(c, d, 32, bytesBit2)
		a, b = xswap(a, b, 8, bytesBit0)
		c, d = xswap(c, d, 8, bytesBit0)
		a, c = xswap(a, c, 32, bytesBit2)
		b, d = xswap(b, d, 32, bytesBit2)
		le.PutUint64(g0[j-8:j], a)
		le.PutUint64(g1[j-8:j], b)
		le.PutUint64(g2[j-8:j], c)
		le.PutUint64(g3[j-8:j], d)
	}
	// The tail: fewer than 32 bytes, groups possibly of unequal length.
	off := [4]int{0, o1, o2, o3}
	for i := 4 * m; i < n; i++ {
		dst[off[i&3]+i>>2] = src[i]
	}
}

// bg4Join writes the inverse of bg4Split of src to dst[:len(src)].
func bg4Join(dst, src []byte) {
	n := len(src)
	dst = dst[:n]
	o1, o2, o3 := bg4Offsets(n)
	m := n / 32 * 8
	g0, g1, g2, g3 := src[:m:m], src[o1:o1+m:o1+m], src[o2:o2+m:o2+m], src[o3:o3+m:o3+m]
	d := dst[: 4*m : 4*m]
	le := binary.LittleEndian
	for j := 8; j <= m; j += 8 {
		a, b := le.Uint64(g0[j-8:j]), le.Uint64(g1[j-8:j])
		c, e := le.Uint64(g2[j-8:j]), le.Uint64(g3[j-8:j])
		b, e = xswap(b, e, 32, bytesBit2)
		a, c = xswap(a, c, 32, bytesBit2)
		c, e = xswap(c, e, 8, bytesBit0)
		a, b = xswap(a, b, 8, bytesBit0)
		c, e = xswap(c, e, 32, bytesBit2)
		a, b = xswap(a, b, 32, bytesBit2)
		c, e = xswap(c, e, 16, bytesBit1)
		a, b = xswap(a, b, 16, bytesBit1)
		out := d[4*j-32 : 4*j]
		le.PutUint64(out[0:8], a)
		le.PutUint64(out[8:16], b)
		le.PutUint64(out[16:24], c)
		le.PutUint64(out[24:32], e)
	}
	off := [4]int{0, o1, o2, o3}
	for i := 4 * m; i < n; i++ {
		dst[i] = src[off[i&3]+i>>2]
	}
}
