package sample

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Safetensors is a generated safetensors file: an 8-byte little-endian
// header length, a JSON header padded with spaces to 8 bytes, then the
// tensor data. It implements io.Reader and io.ReaderAt.
type Safetensors struct {
	header []byte // length prefix + JSON + padding
	data   int64  // data bytes
	seed   uint64
	pos    int64
}

const rowBytes = 2048 // 1024 bf16 columns

// NewSafetensors lays out bf16 tensors of 1024 columns that fill about
// total bytes (at least one row) and returns the file.
func NewSafetensors(total int64, seed uint64) *Safetensors {
	s := layout(max((total-512)/rowBytes, 1), seed)
	if over := s.Size() - total; over > 0 && s.data > rowBytes {
		// the header took more than guessed: give back whole rows
		s = layout(max((s.data-over)/rowBytes, 1), seed)
	}
	return s
}

func layout(rows int64, seed uint64) *Safetensors {
	const layerRows = 1024 // a [1024, 1024] bf16 tensor is 2 MiB
	var b strings.Builder
	b.WriteString(`{"__metadata__":{"format":"pt","generator":"xetproxy sample"}`)
	var off int64
	for i := 0; rows > 0; i++ {
		n := min(rows, int64(layerRows))
		name := fmt.Sprintf("model.layers.%d.mlp.weight", i)
		if rows <= layerRows {
			name = "lm_head.weight"
		}
		fmt.Fprintf(&b, `,%q:{"dtype":"BF16","shape":[%d,1024],"data_offsets":[%d,%d]}`, name, n, off, off+n*rowBytes)
		off += n * rowBytes
		rows -= n
	}
	b.WriteString("}")
	js := b.String()
	if pad := (8 - len(js)%8) % 8; pad > 0 {
		js += strings.Repeat(" ", pad)
	}
	hdr := make([]byte, 8+len(js))
	binary.LittleEndian.PutUint64(hdr, uint64(len(js)))
	copy(hdr[8:], js)
	return &Safetensors{header: hdr, data: off, seed: seed}
}

// Size is the length of the file in bytes.
func (s *Safetensors) Size() int64 { return int64(len(s.header)) + s.data }

// Read implements io.Reader.
func (s *Safetensors) Read(p []byte) (int, error) {
	n, err := s.ReadAt(p, s.pos)
	s.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// ReadAt implements io.ReaderAt.
func (s *Safetensors) ReadAt(p []byte, off int64) (int, error) {
	size := s.Size()
	if off >= size {
		return 0, io.EOF
	}
	n := 0
	if off < int64(len(s.header)) {
		n = copy(p, s.header[off:])
		off += int64(n)
	}
	want := min(int64(len(p)-n), size-off)
	fillWeights(p[n:n+int(want)], off-int64(len(s.header)), s.seed)
	n += int(want)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fillWeights writes the weight bytes at data offset off into p.
func fillWeights(p []byte, off int64, seed uint64) {
	var w [8]byte
	for len(p) > 0 {
		k := uint64(off) / 8
		in := int(off % 8)
		if in == 0 && len(p) >= 8 {
			binary.LittleEndian.PutUint64(p, weightWord(seed, k))
			p, off = p[8:], off+8
			continue
		}
		binary.LittleEndian.PutUint64(w[:], weightWord(seed, k))
		c := copy(p, w[in:])
		p, off = p[c:], off+int64(c)
	}
}

// weightWord is four bf16 values (little-endian) for data word k. The
// seed is mixed before k is added: with seed + k, the weights of seed s+1
// would be those of seed s one word on, and content-defined chunking
// would find the same chunks in both (files of different seeds deduped).
func weightWord(seed, k uint64) uint64 {
	r := splitmix64(splitmix64(seed) + k)
	var out uint64
	for lane := 0; lane < 4; lane++ {
		v := r >> (16 * lane)
		sign := (v >> 15) & 1
		exp := 118 + (v>>12)&7 // 2^-9 .. 2^-2
		mant := v & 0x7f
		out |= (sign<<15 | exp<<7 | mant) << (16 * lane)
	}
	return out
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
