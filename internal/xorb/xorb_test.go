package xorb

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"testing"
	"testing/iotest"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustHash(t testing.TB, s string) merklehash.Hash {
	t.Helper()
	h, err := merklehash.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// X1: the xorb of the single chunk "Hello World!", stored uncompressed.
func TestVectorX1HelloWorld(t *testing.T) {
	v := xettest.MustLoad().XorbHelloWorld
	region := mustHex(t, v.ChunkRegionHex)
	footer := mustHex(t, v.FooterHex)
	stored := append(append([]byte(nil), region...), footer...)
	if len(stored) != 156 || len(region) != 20 {
		t.Fatalf("vector sizes %d/%d, want 156/20", len(stored), len(region))
	}
	if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != "6c3a10baf9a500e87e0dc79f33835b491e60a21f5297575b1e56295f57db3e8b" {
		t.Fatalf("vector bytes do not match their SHA-256")
	}
	want := mustHash(t, v.XorbHash)

	x := buildXorb(t, PolicyNone, [][]byte{[]byte("Hello World!")})
	if x.Hash != want {
		t.Errorf("hash %s, want %s", x.Hash, want)
	}
	if got := x.Bytes(false); !bytes.Equal(got, region) {
		t.Errorf("upload body\n got %x\nwant %x", got, region)
	}
	if got := x.Bytes(true); !bytes.Equal(got, stored) {
		t.Errorf("stored object\n got %x\nwant %x", got, stored)
	}
	if got := x.Footer(); !bytes.Equal(got, footer) {
		t.Errorf("footer\n got %x\nwant %x", got, footer)
	}
	// Auto stores a 12-byte chunk raw as well: compression cannot pay.
	if got := buildXorb(t, PolicyAuto, [][]byte{[]byte("Hello World!")}).Bytes(true); !bytes.Equal(got, stored) {
		t.Errorf("auto policy: stored object differs")
	}

	for name, in := range map[string][]byte{"upload body": region, "stored object": stored} {
		p, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%s): %v", name, err)
		}
		wantChunks := []ChunkInfo{{Hash: want, Size: 12, End: 20, UnpackedEnd: 12}}
		if p.Hash != want || len(p.Chunks) != 1 || p.Chunks[0] != wantChunks[0] || !bytes.Equal(p.Region, region) {
			t.Errorf("Parse(%s) = %+v", name, p)
		}
		if first, last := p.ByteRange(0, 1); first != 0 || last != 19 {
			t.Errorf("ByteRange(0, 1) = %d-%d, want 0-19", first, last)
		}
	}
}

// X2: the xorb of the two chunks of 204800 bytes of i mod 256, uncompressed.
func TestVectorX2IMod256(t *testing.T) {
	vs := xettest.MustLoad()
	v := vs.XorbIMod256
	data := xettest.DataVectorInput(3)
	dv := vs.DataVectors[3]
	if dv.Length != len(data) || len(dv.ChunkEndOffsets) != 2 {
		t.Fatalf("data vector 3 is %q, not the i mod 256 input", dv.Description)
	}
	var chunks [][]byte
	start := 0
	for _, end := range dv.ChunkEndOffsets {
		chunks = append(chunks, data[start:end])
		start = end
	}
	x := buildXorb(t, PolicyNone, chunks)
	want := mustHash(t, v.XorbHash)
	if x.Hash != want {
		t.Errorf("hash %s, want %s", x.Hash, want)
	}
	if strconv.Itoa(len(x.Region)) != v.ChunkRegionLen {
		t.Errorf("region of %d bytes, want %s", len(x.Region), v.ChunkRegionLen)
	}
	if got := hex.EncodeToString(x.Footer()); got != v.FooterHex {
		t.Errorf("footer\n got %s\nwant %s", got, v.FooterHex)
	}
	stored := x.Bytes(true)
	if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != v.SHA256 {
		t.Errorf("stored object SHA-256 %x, want %s", sum, v.SHA256)
	}
	for i, c := range x.Chunks {
		if c.Hash.String() != dv.Chunks[i].Hash {
			t.Errorf("chunk %d hash %s, want %s", i, c.Hash, dv.Chunks[i].Hash)
		}
	}
	for _, p := range allPolicies {
		y := buildXorb(t, p, chunks)
		if y.Hash != want {
			t.Errorf("%v: hash %s, want %s", p, y.Hash, want)
		}
		z, err := Parse(y.Bytes(true))
		if err != nil || z.Hash != want {
			t.Errorf("%v: Parse: %v", p, err)
		}
		t.Logf("%v: %d stored bytes", p, len(y.Region))
	}
}

// decodeAll runs a Decoder over stream and returns the chunks up to the
// first error, which must be io.EOF.
func decodeAll(t testing.TB, stream []byte) [][]byte {
	t.Helper()
	d := NewDecoder(bytes.NewReader(stream))
	var out [][]byte
	for {
		c, err := d.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("after %d chunks: %v", len(out), err)
		}
		out = append(out, append([]byte(nil), c...))
	}
}

func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 8191, 8192, MaxChunkSize}
	for _, p := range allPolicies {
		for kind, gen := range map[string]func(uint64, int) []byte{"random": randomBytes, "text": textBytes, "floats": floatBytes} {
			var chunks [][]byte
			for i, n := range sizes {
				chunks = append(chunks, gen(uint64(i), n))
			}
			x := buildXorb(t, p, chunks)
			var leaves []merklehash.Leaf
			for _, c := range chunks {
				leaves = append(leaves, merklehash.Leaf{Hash: merklehash.ChunkHash(c), Size: uint64(len(c))})
			}
			if want := merklehash.XorbHash(leaves); x.Hash != want {
				t.Fatalf("%v/%s: hash %s, want %s", p, kind, x.Hash, want)
			}
			for _, withFooter := range []bool{false, true} {
				y, err := Parse(x.Bytes(withFooter))
				if err != nil {
					t.Fatalf("%v/%s footer=%v: %v", p, kind, withFooter, err)
				}
				if y.Hash != x.Hash || len(y.Chunks) != len(x.Chunks) || !bytes.Equal(y.Region, x.Region) {
					t.Fatalf("%v/%s footer=%v: parsed xorb differs", p, kind, withFooter)
				}
				for i := range x.Chunks {
					if y.Chunks[i] != x.Chunks[i] {
						t.Fatalf("%v/%s: chunk %d: %+v, want %+v", p, kind, i, y.Chunks[i], x.Chunks[i])
					}
				}
			}
			got := decodeAll(t, x.Region)
			if len(got) != len(chunks) {
				t.Fatalf("%v/%s: decoded %d chunks, want %d", p, kind, len(got), len(chunks))
			}
			for i := range chunks {
				if !bytes.Equal(got[i], chunks[i]) {
					t.Fatalf("%v/%s: chunk %d differs", p, kind, i)
				}
			}
		}
	}
}

func TestByteRangeDecodesThoseChunks(t *testing.T) {
	chunks := mixedChunks(1, 9)
	chunks = append(chunks, []byte("tail"), make([]byte, MaxChunkSize))
	for _, p := range allPolicies {
		x := buildXorb(t, p, chunks)
		for s := 0; s < len(chunks); s++ {
			for e := s + 1; e <= len(chunks); e++ {
				first, last := x.ByteRange(uint32(s), uint32(e))
				got := decodeAll(t, x.Region[first:last+1])
				if len(got) != e-s {
					t.Fatalf("%v [%d,%d): %d chunks", p, s, e, len(got))
				}
				for i := range got {
					if !bytes.Equal(got[i], chunks[s+i]) {
						t.Fatalf("%v [%d,%d): chunk %d differs", p, s, e, s+i)
					}
				}
			}
		}
	}
	x := buildXorb(t, PolicyNone, chunks[:2])
	for _, r := range [][2]uint32{{1, 1}, {2, 1}, {0, 3}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ByteRange(%d, %d) did not panic", r[0], r[1])
				}
			}()
			x.ByteRange(r[0], r[1])
		}()
	}
}

func TestBuilderLimits(t *testing.T) {
	b := NewBuilder(PolicyNone)
	if b.Finish() != nil {
		t.Fatal("Finish of an empty builder returned a xorb")
	}
	if b.Add(make([]byte, MaxChunkSize+1)) || b.Len() != 0 {
		t.Fatal("an oversize chunk was added")
	}
	one := []byte{1}
	for i := 0; i < MaxChunks; i++ {
		if !b.Add(one) {
			t.Fatalf("chunk %d refused", i)
		}
	}
	if b.Add(one) || b.Len() != MaxChunks {
		t.Fatalf("chunk %d added", MaxChunks+1)
	}
	x := b.Finish()
	if len(x.Chunks) != MaxChunks || b.Len() != 0 || b.UnpackedLen() != 0 {
		t.Fatalf("Finish: %d chunks, builder left with %d", len(x.Chunks), b.Len())
	}
	if y, err := Parse(x.Bytes(true)); err != nil || y.Hash != x.Hash {
		t.Fatalf("Parse of a full xorb: %v", err)
	}
	// One more chunk in the region: too many for any xorb.
	over := AppendChunk(append([]byte(nil), x.Region...), one, PolicyNone)
	if _, err := Parse(over); !isFormatError(err) {
		t.Fatalf("Parse of %d chunks: %v", MaxChunks+1, err)
	}

	// MaxBytes, white-box: start just below the limit instead of packing
	// 64 MiB.
	b.unpacked = MaxBytes - MaxChunkSize - 1
	big := make([]byte, MaxChunkSize)
	if !b.Add(big) || b.UnpackedLen() != MaxBytes-1 {
		t.Fatalf("a chunk up to MaxBytes-1 was refused (%d)", b.UnpackedLen())
	}
	if b.Add([]byte{1, 2}) || !b.Add(one) || b.UnpackedLen() != MaxBytes {
		t.Fatalf("limit at MaxBytes not exact (%d)", b.UnpackedLen())
	}
	if b.Add(one) {
		t.Fatal("a byte past MaxBytes was added")
	}
	if !b.Add(nil) {
		t.Fatal("an empty chunk was refused by a builder at MaxBytes")
	}
}

func TestParseV0Footer(t *testing.T) {
	x := buildXorb(t, PolicyAuto, mixedChunks(2, 4))
	le := binary.LittleEndian
	v0 := append([]byte(nil), x.Region...)
	v0 = append(v0, footerIdent...)
	v0 = append(v0, footerVersionV0)
	v0 = append(v0, x.Hash[:]...)
	v0 = le.AppendUint32(v0, uint32(len(x.Chunks)))
	for _, c := range x.Chunks {
		v0 = le.AppendUint32(v0, c.End)
	}
	for _, c := range x.Chunks {
		v0 = append(v0, c.Hash[:]...)
	}
	v0 = append(v0, make([]byte, footerBufferSize)...)
	v0 = le.AppendUint32(v0, uint32(footerLenV0(len(x.Chunks))))
	y, err := Parse(v0)
	if err != nil || y.Hash != x.Hash {
		t.Fatalf("Parse(V0): %v", err)
	}
	// Every byte of a V0 footer outside its buffer is checked.
	footer := len(x.Region)
	for i := footer; i < len(v0); i++ {
		if i >= len(v0)-4-footerBufferSize && i < len(v0)-4 {
			continue
		}
		bad := append([]byte(nil), v0...)
		bad[i] ^= 0x01
		if _, err := Parse(bad); err == nil {
			t.Fatalf("V0 footer byte %d flipped: accepted", i-footer)
		}
	}
}

// interesting returns the positions of stored worth corrupting or cutting
// at: all of them for a small object, else the bytes around every chunk
// boundary and header, a sample of payload bytes, and the whole footer.
func interesting(y *Xorb, stored []byte) []int {
	if len(stored) <= 4096 {
		pos := make([]int, len(stored)+1)
		for i := range pos {
			pos[i] = i
		}
		return pos
	}
	var pos []int
	start := 0
	for _, c := range y.Chunks {
		for i := start; i < start+HeaderSize+2; i++ {
			pos = append(pos, i)
		}
		for i := start + HeaderSize + 2; i < int(c.End)-2; i += 1009 {
			pos = append(pos, i)
		}
		pos = append(pos, int(c.End)-2, int(c.End)-1)
		start = int(c.End)
	}
	for i := len(y.Region); i <= len(stored); i++ {
		pos = append(pos, i)
	}
	return pos
}

func TestParseRejectsCorruption(t *testing.T) {
	v := xettest.MustLoad().XorbHelloWorld
	x1 := append(mustHex(t, v.ChunkRegionHex), mustHex(t, v.FooterHex)...)
	mixed := buildXorb(t, PolicyAuto, append(mixedChunks(3, 3), []byte("Hello World!"))).Bytes(true)
	for name, stored := range map[string][]byte{"X1": x1, "mixed": mixed} {
		y, err := Parse(stored)
		if err != nil {
			t.Fatal(err)
		}
		nonce := len(stored) - 4 - footerBufferSize
		positions := interesting(y, stored)
		// With a footer, every flipped bit outside the footer's buffer is an
		// error: the region is covered by the chunk hashes in the footer.
		for _, i := range positions {
			if i == len(stored) || i >= nonce && i < nonce+footerBufferSize {
				continue
			}
			for _, bit := range []byte{0x01, 0x80} {
				bad := append([]byte(nil), stored...)
				bad[i] ^= bit
				if _, err := Parse(bad); err == nil {
					t.Fatalf("%s: byte %d ^ %#x accepted", name, i, bit)
				} else if !isFormatError(err) {
					t.Fatalf("%s: byte %d: %v is not a *FormatError", name, i, err)
				}
			}
		}
		// The buffer (nonce and reserved bytes) is ignored by readers.
		for i := nonce; i < nonce+footerBufferSize; i++ {
			bad := append([]byte(nil), stored...)
			bad[i] = 0xA5
			if z, err := Parse(bad); err != nil || z.Hash != y.Hash {
				t.Fatalf("%s: nonce byte %d: %v", name, i-nonce, err)
			}
		}
		// Every prefix is an error, except the ones that end at a chunk
		// boundary, which are upload bodies of fewer chunks.
		ends := map[int]bool{}
		for _, c := range y.Chunks {
			ends[int(c.End)] = true
		}
		for _, n := range positions {
			if n == len(stored) {
				continue
			}
			z, err := Parse(stored[:n])
			if ends[n] {
				if err != nil {
					t.Fatalf("%s: upload body of %d bytes: %v", name, n, err)
				}
				continue
			}
			if err == nil {
				t.Fatalf("%s: prefix of %d bytes accepted (%d chunks)", name, n, len(z.Chunks))
			}
		}
		// Trailing garbage after the footer.
		if _, err := Parse(append(append([]byte(nil), stored...), 0)); err == nil {
			t.Fatalf("%s: trailing byte accepted", name)
		}
	}
}

func TestParseRejectsHostileFooters(t *testing.T) {
	x := buildXorb(t, PolicyNone, [][]byte{[]byte("Hello World!")})
	le := binary.LittleEndian
	footerAt := len(x.Region)
	cases := map[string]func(b []byte) []byte{
		"version 2":          func(b []byte) []byte { b[footerAt+7] = 2; return b },
		"count 2^32-1":       func(b []byte) []byte { le.PutUint32(b[footerAt+48:], 0xFFFFFFFF); return b },
		"second count":       func(b []byte) []byte { le.PutUint32(b[footerAt+92:], 8192); return b },
		"no footer body":     func(b []byte) []byte { return b[:footerAt+8] },
		"footer of 2 chunks": func(b []byte) []byte { return append(b, make([]byte, 40)...) },
		"info length":        func(b []byte) []byte { le.PutUint32(b[len(b)-4:], 0xFFFFFFFF); return b },
		"only a footer":      func(b []byte) []byte { return b[footerAt:] },
	}
	for name, f := range cases {
		bad := f(x.Bytes(true))
		var err error
		if n := allocatedBy(func() { _, err = Parse(bad) }); n > allocLimit(len(bad)) {
			t.Errorf("%s: allocated %d bytes", name, n)
		}
		if err == nil || !isFormatError(err) {
			t.Errorf("%s: Parse = %v, want a *FormatError", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestDecoderErrors(t *testing.T) {
	chunks := [][]byte{textBytes(1, 30_000), floatBytes(2, 20_000), randomBytes(3, 10_000)}
	x := buildXorb(t, PolicyAuto, chunks)
	region := x.Region

	// Truncation: a clean io.EOF exactly at chunk boundaries, else
	// io.ErrUnexpectedEOF after the whole chunks before the cut.
	ends := map[int]int{0: 0}
	for i, c := range x.Chunks {
		ends[int(c.End)] = i + 1
	}
	for n := 0; n <= len(region); n += 37 {
		d := NewDecoder(bytes.NewReader(region[:n]))
		got := 0
		var err error
		for {
			if _, err = d.Next(); err != nil {
				break
			}
			got++
		}
		if whole, ok := ends[n]; ok {
			if err != io.EOF || got != whole {
				t.Fatalf("cut at %d: %d chunks, %v; want %d, io.EOF", n, got, err, whole)
			}
		} else if err != io.ErrUnexpectedEOF {
			t.Fatalf("cut at %d: %v, want io.ErrUnexpectedEOF", n, err)
		}
		if _, again := d.Next(); again != err {
			t.Fatalf("cut at %d: error not sticky: %v then %v", n, err, again)
		}
	}

	// Garbage: a *FormatError with the offset of the bad chunk.
	second := int(x.Chunks[0].End)
	for name, f := range map[string]func(b []byte){
		"version": func(b []byte) { b[second] = 1 },
		"scheme":  func(b []byte) { b[second+4] = 7 },
		"payload": func(b []byte) { b[second+HeaderSize] ^= 0xFF }, // LZ4 frame magic
		"length mismatch": func(b []byte) {
			b[second+5]++ // uncompressed length one more than the frame holds
		},
		"footer": func(b []byte) { copy(b[second:], footerIdent) },
	} {
		bad := append([]byte(nil), region...)
		f(bad)
		d := NewDecoder(bytes.NewReader(bad))
		if _, err := d.Next(); err != nil {
			t.Fatalf("%s: first chunk: %v", name, err)
		}
		_, err := d.Next()
		var fe *FormatError
		if !errors.As(err, &fe) || fe.Offset < int64(second) || fe.Offset > int64(x.Chunks[1].End) {
			t.Fatalf("%s: %v, want a *FormatError inside chunk 1 [%d, %d]", name, err, second, x.Chunks[1].End)
		}
		t.Logf("%s: %v", name, err)
	}

	// Reader errors pass through unchanged.
	boom := errors.New("boom")
	d := NewDecoder(io.MultiReader(bytes.NewReader(region[:second+3]), errReader{boom}))
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Next(); err != boom {
		t.Fatalf("reader error: %v", err)
	}

	// A hostile header costs no more than the pooled buffers.
	hostile := make([]byte, HeaderSize)
	Header{SchemeLZ4, MaxCompressedSize, MaxChunkSize}.Put(hostile)
	var err error
	if n := allocatedBy(func() { _, err = NewDecoder(bytes.NewReader(hostile)).Next() }); n > allocLimit(len(hostile)) {
		t.Errorf("hostile header: %d bytes allocated", n)
	}
	if err != io.ErrUnexpectedEOF {
		t.Errorf("hostile header: %v", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestDecoderReuse(t *testing.T) {
	chunks := mixedChunks(4, 6)
	x := buildXorb(t, PolicyAuto, chunks)
	d := NewDecoder(bytes.NewReader(x.Region))
	r := bytes.NewReader(x.Region)
	allocs := testing.AllocsPerRun(10, func() {
		r.Reset(x.Region)
		d.Reset(r)
		for i := 0; ; i++ {
			c, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil || !bytes.Equal(c, chunks[i]) {
				t.Fatalf("chunk %d: %v", i, err)
			}
			if d.Header().UncompressedLen != uint32(len(c)) || d.Offset() != int64(x.Chunks[i].End) {
				t.Fatalf("chunk %d: header %+v, offset %d", i, d.Header(), d.Offset())
			}
		}
	})
	if allocs > 0 && !raceEnabled { // sync.Pool drops items under the race detector
		t.Errorf("%v allocations per xorb", allocs)
	}
}

func TestParsePolicy(t *testing.T) {
	for s, want := range map[string]Policy{"auto": PolicyAuto, "none": PolicyNone, "LZ4": PolicyLZ4, "bg4": PolicyBG4, "bg4-lz4": PolicyBG4, " auto ": PolicyAuto} {
		if p, err := ParsePolicy(s); err != nil || p != want {
			t.Errorf("ParsePolicy(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "zstd", "bg2"} {
		if _, err := ParsePolicy(s); err == nil {
			t.Errorf("ParsePolicy(%q) accepted", s)
		}
	}
}

// Readers that return one byte at a time, or the final bytes together with
// io.EOF, must not change what the Decoder sees.
func TestDecoderSmallReads(t *testing.T) {
	chunks := append(mixedChunks(5, 3), []byte("x"), nil)
	x := buildXorb(t, PolicyAuto, chunks)
	for name, r := range map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(x.Region)),
		"data+EOF": iotest.DataErrReader(bytes.NewReader(x.Region)),
		"halves":   iotest.HalfReader(bytes.NewReader(x.Region)),
	} {
		d := NewDecoder(r)
		for i := range chunks {
			c, err := d.Next()
			if err != nil || !bytes.Equal(c, chunks[i]) {
				t.Fatalf("%s: chunk %d: %v", name, i, err)
			}
		}
		if _, err := d.Next(); err != io.EOF {
			t.Fatalf("%s: %v after the last chunk", name, err)
		}
	}
}
