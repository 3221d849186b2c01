package xorb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/pierrec/lz4/v4"
)

func TestXXH32(t *testing.T) {
	// Published xxh32 values (seed 0).
	for _, c := range []struct {
		in   string
		want uint32
	}{
		{"", 0x02CC5D05},
		{"a", 0x550D7456},
		{"abc", 0x32D153FF},
		{"Nobody inspects the spammish repetition", 0xE2293B2F},
	} {
		if got := xxh32([]byte(c.in)); got != c.want {
			t.Errorf("xxh32(%q) = %#08x, want %#08x", c.in, got, c.want)
		}
	}
}

// Frames written by pierrec's writer with every combination of options must
// decode: this also checks xxh32 against its header, block and content
// checksums on inputs of many lengths.
func TestDecodeLZ4FrameVariants(t *testing.T) {
	inputs := map[string][]byte{
		"empty":  nil,
		"one":    {42},
		"text":   textBytes(1, 100_000),
		"floats": floatBytes(2, MaxChunkSize),
		"random": randomBytes(3, 70_001),
		"zeros":  make([]byte, MaxChunkSize),
	}
	for name, data := range inputs {
		for _, bs := range []lz4.BlockSize{lz4.Block64Kb, lz4.Block256Kb, lz4.Block1Mb, lz4.Block4Mb} {
			for _, blockSum := range []bool{false, true} {
				for _, contentSum := range []bool{false, true} {
					for _, withSize := range []bool{false, true} {
						opts := []lz4.Option{lz4.BlockSizeOption(bs), lz4.BlockChecksumOption(blockSum), lz4.ChecksumOption(contentSum)}
						if withSize {
							opts = append(opts, lz4.SizeOption(uint64(len(data))))
						}
						frame := pierrecFrame(t, data, opts...)
						out := make([]byte, len(data))
						if err := decodeLZ4(out, frame); err != nil {
							t.Fatalf("%s %v blockSum=%v contentSum=%v size=%v: %v", name, bs, blockSum, contentSum, withSize, err)
						}
						if !bytes.Equal(out, data) {
							t.Fatalf("%s %v: decoded bytes differ", name, bs)
						}
					}
				}
			}
		}
	}
}

// linkedFrame builds a frame of dependent blocks by hand (pierrec's writer
// only writes independent ones): a raw block, then compressed blocks whose
// matches reach back into the earlier blocks, one of them overlapping its
// own output.
func linkedFrame(t testing.TB, contentSum bool) (frame, want []byte) {
	t.Helper()
	block1 := []byte("abcdefghijklmnopqrstuvwxyz012345")
	// Block 2: no literals, match 16 bytes at offset 32 (start of block 1);
	// then 5 literals.
	block2 := []byte{0x0C, 32, 0, 0x50, 'V', 'W', 'X', 'Y', 'Z'}
	// Block 3: 2 literals, match of 19 bytes at offset 4 (overlaps both the
	// previous block and its own output), then 5 literals.
	block3 := []byte{0x2F, '!', '?', 4, 0, 0, 0x50, 'e', 'n', 'd', '.', '\n'}
	want = append(want, block1...)
	want = append(want, block1[:16]...)
	want = append(want, "VWXYZ"...)
	want = append(want, "!?"...)
	for i := 0; i < 19; i++ {
		want = append(want, want[len(want)-4])
	}
	want = append(want, "end.\n"...)

	flg := byte(flgVersion1) // linked blocks
	if contentSum {
		flg |= flgContentSum
	}
	bd := byte(4 << bdBlockSizeBits)
	frame = binary.LittleEndian.AppendUint32(nil, lz4Magic)
	frame = append(frame, flg, bd, byte(xxh32([]byte{flg, bd})>>8))
	frame = binary.LittleEndian.AppendUint32(frame, uint32(len(block1))|blockRawFlag)
	frame = append(frame, block1...)
	frame = binary.LittleEndian.AppendUint32(frame, uint32(len(block2)))
	frame = append(frame, block2...)
	frame = binary.LittleEndian.AppendUint32(frame, uint32(len(block3)))
	frame = append(frame, block3...)
	frame = binary.LittleEndian.AppendUint32(frame, 0)
	if contentSum {
		frame = binary.LittleEndian.AppendUint32(frame, xxh32(want))
	}
	return frame, want
}

func TestDecodeLZ4LinkedBlocks(t *testing.T) {
	for _, sum := range []bool{false, true} {
		frame, want := linkedFrame(t, sum)
		// The reference reader agrees on what the frame holds.
		ref, err := pierrecDecode(frame, MaxChunkSize)
		if err != nil || !bytes.Equal(ref, want) {
			t.Fatalf("pierrec reader: %q, %v; want %q", ref, err, want)
		}
		out := make([]byte, len(want))
		if err := decodeLZ4(out, frame); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("decoded %q, want %q", out, want)
		}
	}
}

func TestDecodeLZ4SkippableAndConcatenated(t *testing.T) {
	a, b := textBytes(4, 5000), floatBytes(5, 7000)
	skip := binary.LittleEndian.AppendUint32(nil, lz4SkipMagic|7)
	skip = binary.LittleEndian.AppendUint32(skip, 3)
	skip = append(skip, "xyz"...)
	var payload []byte
	payload = append(payload, skip...)
	payload = append(payload, pierrecFrame(t, a)...)
	payload = append(payload, skip...)
	payload = append(payload, pierrecFrame(t, b, lz4.BlockSizeOption(lz4.Block64Kb))...)
	payload = append(payload, skip...)
	want := append(append([]byte(nil), a...), b...)
	out := make([]byte, len(want))
	if err := decodeLZ4(out, payload); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, want) {
		t.Fatal("decoded bytes differ")
	}
}

func TestDecodeLZ4Rejects(t *testing.T) {
	data := textBytes(6, 40_000)
	good := pierrecFrame(t, data, lz4.BlockChecksumOption(true), lz4.ChecksumOption(true), lz4.SizeOption(uint64(len(data))))
	// Offsets into good: magic 0..3, FLG 4, BD 5, content size 6..13, HC 14,
	// first block size 15..18, block data from 19.
	mut := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	withHC := func(b []byte) []byte { b[14] = byte(xxh32(b[4:14]) >> 8); return b }
	legacy := binary.LittleEndian.AppendUint32(nil, 0x184C2102)
	legacy = append(legacy, good[15:]...)
	noFrame := binary.LittleEndian.AppendUint32(nil, lz4SkipMagic)
	noFrame = binary.LittleEndian.AppendUint32(noFrame, 0)

	cases := []struct {
		name    string
		payload []byte
		outLen  int
	}{
		{"empty payload", nil, 0},
		{"only a skippable frame", noFrame, 0},
		{"bad magic", mut(func(b []byte) []byte { b[0] ^= 1; return b }), len(data)},
		{"legacy frame", legacy, len(data)},
		{"descriptor checksum", mut(func(b []byte) []byte { b[14] ^= 1; return b }), len(data)},
		{"version 0", mut(func(b []byte) []byte { b[4] &^= 0x40; return withHC(b) }), len(data)},
		{"reserved FLG bit", mut(func(b []byte) []byte { b[4] |= flgReserved; return withHC(b) }), len(data)},
		{"reserved BD bit", mut(func(b []byte) []byte { b[5] |= 0x01; return withHC(b) }), len(data)},
		{"block size index 3", mut(func(b []byte) []byte { b[5] = 3 << 4; return withHC(b) }), len(data)},
		{"content size too big", mut(func(b []byte) []byte { b[6]++; return withHC(b) }), len(data)},
		{"content size too small", mut(func(b []byte) []byte { b[6]--; return withHC(b) }), len(data)},
		{"block checksum", mut(func(b []byte) []byte { b[20] ^= 0x80; return b }), len(data)},
		{"content checksum", mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), len(data)},
		{"truncated", good[:len(good)-5], len(data)},
		{"trailing byte", append(append([]byte(nil), good...), 0), len(data)},
		{"output longer than header", good, len(data) - 1},
		{"output shorter than header", good, len(data) + 1},
		{"compressed block longer than header", pierrecFrame(t, data), len(data) - 1},
		{"raw block longer than header", pierrecFrame(t, randomBytes(1, 1000)), 999},
	}
	// A frame with a dictionary ID.
	dict := []byte{0, 0, 0, 0, flgVersion1 | flgIndependent | flgDictID, 4 << 4, 1, 2, 3, 4, 0}
	binary.LittleEndian.PutUint32(dict, lz4Magic)
	dict[10] = byte(xxh32(dict[4:10]) >> 8)
	dict = binary.LittleEndian.AppendUint32(dict, 0)
	cases = append(cases, struct {
		name    string
		payload []byte
		outLen  int
	}{"dictionary", dict, 0})
	// A raw block larger than the frame's block size.
	big := []byte{0, 0, 0, 0, flgVersion1 | flgIndependent, 4 << 4, 0}
	binary.LittleEndian.PutUint32(big, lz4Magic)
	big[6] = byte(xxh32(big[4:6]) >> 8)
	big = binary.LittleEndian.AppendUint32(big, (64<<10+1)|blockRawFlag)
	big = append(big, make([]byte, 64<<10+1)...)
	big = binary.LittleEndian.AppendUint32(big, 0)
	cases = append(cases, struct {
		name    string
		payload []byte
		outLen  int
	}{"raw block over block size", big, 64<<10 + 1})

	for _, c := range cases {
		out := make([]byte, c.outLen)
		err := decodeLZ4(out, c.payload)
		if err == nil {
			t.Errorf("%s: decoded without error", c.name)
			continue
		}
		if !isFormatError(err) {
			t.Errorf("%s: error %v is not a *FormatError", c.name, err)
		}
		t.Logf("%s: %v", c.name, err)
	}
}

func TestAppendLZ4FrameIsStandard(t *testing.T) {
	for _, n := range []int{200, 8192, MaxChunkSize} {
		data := textBytes(uint64(n), n)
		frame, ok := appendLZ4Frame(nil, data, n-1)
		if !ok {
			t.Fatalf("n=%d: text did not compress", n)
		}
		ref, err := pierrecDecode(frame, MaxChunkSize)
		if err != nil || !bytes.Equal(ref, data) {
			t.Fatalf("n=%d: pierrec reader: %v", n, err)
		}
	}
	// Incompressible input, or a limit the frame cannot meet, is refused
	// without touching dst.
	dst := []byte("keep")
	if out, ok := appendLZ4Frame(dst, randomBytes(1, 4096), 4095); ok || string(out) != "keep" {
		t.Fatalf("random input: ok=%v out=%q", ok, out)
	}
	if out, ok := appendLZ4Frame(dst, textBytes(1, 4096), 20); ok || string(out) != "keep" {
		t.Fatalf("tight limit: ok=%v out=%q", ok, out)
	}
}

func ExamplePolicy() {
	for _, s := range []string{"auto", "none", "lz4", "bg4-lz4"} {
		p, _ := ParsePolicy(s)
		fmt.Println(p)
	}
	// Output:
	// auto
	// none
	// lz4
	// bg4
}
