package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// testEntry builds chunks [start, end) of a fake xorb with chunk i sized
// 1 + (i*7919 % maxChunk). (cachetest cannot be imported here: it imports
// this package.)
func testEntry(xorb byte, start, end uint32, maxChunk int) *Entry {
	e := &Entry{Start: start, End: end, Offsets: []uint32{0}}
	e.Xorb[0] = xorb
	for i := start; i < end; i++ {
		c := xettest.SplitMix64(uint64(xorb)<<32|uint64(i), 1+int(i*7919)%maxChunk)
		e.Data = append(e.Data, c...)
		e.Offsets = append(e.Offsets, uint32(len(e.Data)))
		e.Hashes = append(e.Hashes, merklehash.ChunkHash(c))
	}
	return e
}

func sameEntry(got, want *Entry) error {
	if got.Key() != want.Key() || fmt.Sprint(got.Offsets) != fmt.Sprint(want.Offsets) ||
		fmt.Sprint(got.Hashes) != fmt.Sprint(want.Hashes) || !bytes.Equal(got.Data, want.Data) {
		return fmt.Errorf("got %s (%d bytes), want %s (%d bytes)", got.Key(), len(got.Data), want.Key(), len(want.Data))
	}
	return got.Validate()
}

// countingReader records the reads made of a stored entry.
type countingReader struct {
	r     *bytes.Reader
	reads [][2]int64 // offset, length
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.reads = append(c.reads, [2]int64{off, int64(len(p))})
	return c.r.ReadAt(p, off)
}

func TestFormatRoundTrip(t *testing.T) {
	for _, e := range []*Entry{
		testEntry(1, 0, 1, 100),
		testEntry(2, 7, 19, 5000),
		testEntry(3, 100, 164, 64<<10), // over wholeReadBytes
	} {
		b := encode(e)
		if len(b) != headerSize(e.End-e.Start)+len(e.Data) || int64(len(b)) != encodedSize(e) {
			t.Fatalf("%s: encoded %d bytes", e.Key(), len(b))
		}
		for _, r := range [][2]uint32{{e.Start, e.End}, {e.Start, e.Start + 1}, {e.End - 1, e.End}, {(e.Start + e.End) / 2, e.End}} {
			cr := &countingReader{r: bytes.NewReader(b)}
			got, err := readEntry(cr, int64(len(b)), e.Key(), r[0], r[1])
			if err != nil {
				t.Fatalf("%s [%d, %d): %v", e.Key(), r[0], r[1], err)
			}
			want, _ := e.Slice(r[0], r[1])
			if err := sameEntry(got, want); err != nil {
				t.Fatalf("%s [%d, %d): %v", e.Key(), r[0], r[1], err)
			}
			// Reads: one for small entries and whole requests, otherwise
			// the header and exactly the requested data.
			whole := len(b) <= wholeReadBytes || (r[0] == e.Start && r[1] == e.End)
			if whole && len(cr.reads) != 1 {
				t.Errorf("%s [%d, %d): %d reads, want 1", e.Key(), r[0], r[1], len(cr.reads))
			}
			if !whole {
				hl := int64(headerSize(e.End - e.Start))
				wantReads := [][2]int64{{0, hl}, {hl + int64(e.Offsets[r[0]-e.Start]), int64(len(want.Data))}}
				if fmt.Sprint(cr.reads) != fmt.Sprint(wantReads) {
					t.Errorf("%s [%d, %d): reads %v, want %v", e.Key(), r[0], r[1], cr.reads, wantReads)
				}
			}
		}
	}
}

// Every single-bit flip of a stored entry is caught when the whole entry is
// read, and every header flip on any read.
func TestFormatDetectsEveryBitFlip(t *testing.T) {
	e := testEntry(4, 3, 9, 300)
	b := encode(e)
	hl := headerSize(e.End - e.Start)
	for i := range b {
		for bit := range 8 {
			c := bytes.Clone(b)
			c[i] ^= 1 << bit
			_, err := readEntry(bytes.NewReader(c), int64(len(c)), e.Key(), e.Start, e.End)
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("flip of bit %d at %d: err %v", bit, i, err)
			}
			if i < hl {
				_, err := readEntry(bytes.NewReader(c), int64(len(c)), e.Key(), e.Start+1, e.Start+2)
				if !errors.Is(err, errCorrupt) {
					t.Fatalf("header flip of bit %d at %d on a sub-range read: err %v", bit, i, err)
				}
			}
		}
	}
}

func TestFormatWrongKeyOrSize(t *testing.T) {
	e := testEntry(5, 0, 4, 200)
	b := encode(e)
	other := e.Key()
	other.Xorb[31] ^= 1
	if _, err := readEntry(bytes.NewReader(b), int64(len(b)), other, 0, 4); !errors.Is(err, errCorrupt) {
		t.Errorf("other xorb: %v", err)
	}
	shifted := Key{Xorb: e.Xorb, Start: 1, End: 5}
	if _, err := readEntry(bytes.NewReader(b), int64(len(b)), shifted, 1, 5); !errors.Is(err, errCorrupt) {
		t.Errorf("other range: %v", err)
	}
	for _, size := range []int64{0, 10, int64(len(b)) - 1, int64(len(b)) + 1, 1 << 40} {
		if _, err := readEntry(bytes.NewReader(b), size, e.Key(), 0, 4); !errors.Is(err, errCorrupt) {
			t.Errorf("size %d of %d: %v", size, len(b), err)
		}
	}
	if _, err := readEntry(bytes.NewReader(b), int64(len(b)), e.Key(), 2, 6); !errors.Is(err, ErrInvalidRange) {
		t.Errorf("range outside the entry: %v", err)
	}
}

// An entry of any other format version (1: written by releases that could
// store unproven chunks) is corrupt even with a consistent header checksum.
func TestFormatRejectsOtherVersions(t *testing.T) {
	e := testEntry(6, 0, 3, 100)
	hl := headerSize(e.End - e.Start)
	for _, v := range []byte{0, 1, formatVersion + 1, 0xff} {
		b := encode(e)
		b[7] = v
		binary.LittleEndian.PutUint32(b[hl-4:], crc32.Checksum(b[:hl-4], castagnoli))
		if _, err := readEntry(bytes.NewReader(b), int64(len(b)), e.Key(), 0, 3); !errors.Is(err, errCorrupt) {
			t.Errorf("version %d: %v, want a corrupt entry", v, err)
		}
	}
	if b := encode(e); b[7] != 2 {
		t.Errorf("entries are written with version %d, want 2", b[7])
	}
}

// FuzzReadEntry feeds arbitrary stored bytes and ranges to the reader: it
// must never panic, and whatever it accepts must be a valid entry for the
// range asked.
func FuzzReadEntry(f *testing.F) {
	for _, e := range []*Entry{testEntry(0, 0, 1, 10), testEntry(0, 2, 6, 100), testEntry(0, 0, 3, 1)} {
		f.Add(encode(e), e.Start, e.End, e.Start, e.End)
		f.Add(encode(e), e.Start, e.End, e.End-1, e.End)
	}
	f.Fuzz(func(t *testing.T, b []byte, ks, ke, s, e uint32) {
		k := Key{Start: ks, End: ke}
		got, err := readEntry(bytes.NewReader(b), int64(len(b)), k, s, e)
		if err != nil {
			if got != nil {
				t.Fatal("entry returned with an error")
			}
			return
		}
		if got.Start != s || got.End != e || got.Validate() != nil {
			t.Fatalf("accepted %s for [%d, %d): %v", got.Key(), s, e, got.Validate())
		}
	})
}

func TestEntryValidate(t *testing.T) {
	if err := testEntry(1, 0, 5, 100).Validate(); err != nil {
		t.Fatal(err)
	}
	big := &Entry{Start: 0, End: 1, Offsets: []uint32{0, MaxEntryBytes + 1}, Hashes: make([]merklehash.Hash, 1), Data: make([]byte, MaxEntryBytes+1)}
	if err := big.Validate(); !errors.Is(err, ErrInvalidEntry) {
		t.Errorf("oversized entry: %v", err)
	}
}

func TestEntrySliceAndChunk(t *testing.T) {
	e := testEntry(2, 10, 20, 1000)
	s, err := e.Slice(12, 15)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for i := uint32(12); i < 15; i++ {
		if !bytes.Equal(s.Chunk(i), e.Chunk(i)) || s.Hashes[i-12] != e.Hashes[i-10] {
			t.Fatalf("chunk %d differs in the slice", i)
		}
	}
	if len(s.Data) != int(e.Offsets[5]-e.Offsets[2]) {
		t.Errorf("slice holds %d bytes", len(s.Data))
	}
	for _, r := range [][2]uint32{{9, 12}, {12, 21}, {15, 15}, {16, 14}} {
		if _, err := e.Slice(r[0], r[1]); !errors.Is(err, ErrInvalidRange) {
			t.Errorf("Slice(%d, %d) = %v", r[0], r[1], err)
		}
	}
	// Appending to a returned chunk must not overwrite the next one.
	c := s.Chunk(12)
	_ = append(c, 0xff)
	if !bytes.Equal(s.Chunk(13), e.Chunk(13)) {
		t.Error("append to a chunk overwrote its neighbour")
	}
}

// Verify against a known-answer vector: the chunk boundaries and hashes come
// from the vector file.
func TestEntryVerifyVector(t *testing.T) {
	v := xettest.MustLoad().DataVectors[2]
	input := xettest.DataVectorInput(2)
	e := &Entry{End: uint32(len(v.Chunks)), Offsets: []uint32{0}, Data: input}
	for _, c := range v.Chunks {
		h, err := merklehash.Parse(c.Hash)
		if err != nil {
			t.Fatal(err)
		}
		e.Offsets = append(e.Offsets, uint32(c.EndOffset))
		e.Hashes = append(e.Hashes, h)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	e.Data = bytes.Clone(input)
	last := e.End - 1
	e.Data[e.Offsets[last]] ^= 1
	var mm *MismatchError
	if err := e.Verify(); !errors.As(err, &mm) || mm.Chunk != last || mm.Want != e.Hashes[last] {
		t.Fatalf("Verify of a damaged last chunk = %v", err)
	}
}

func TestEntryNames(t *testing.T) {
	k := Key{Xorb: merklehash.ChunkHash([]byte("x")), Start: 7, End: 4096}
	name := entryName(k)
	if got, ok := parseEntryName(name); !ok || got != k {
		t.Fatalf("parseEntryName(%q) = %v, %v", name, got, ok)
	}
	h := k.Xorb.String()
	for _, bad := range []string{
		h, h + ".7", h + ".7-", h + ".07-4096", h + ".7-4096.tmp", h + ".4096-7", h + ".7-7",
		h + ".0-8193", h[:63] + ".7-4096", h + ".+7-4096", strings.ToUpper(h) + ".7-4096",
	} {
		if _, ok := parseEntryName(bad); ok {
			t.Errorf("parseEntryName(%q) accepted", bad)
		}
	}
	if got, ok := parseRange(k.Xorb, "7-4096"); !ok || got != k {
		t.Errorf("parseRange = %v, %v", got, ok)
	}
	for _, bad := range []string{"7-4096/x", "7", "-", "a-b", "07-4096", "9-3"} {
		if _, ok := parseRange(k.Xorb, bad); ok {
			t.Errorf("parseRange(%q) accepted", bad)
		}
	}
}

func TestIndexCoveringAndRemove(t *testing.T) {
	x := newIndex[int]()
	var h merklehash.Hash
	a := x.add(Key{Xorb: h, Start: 0, End: 20}, 20, 1)
	b := x.add(Key{Xorb: h, Start: 15, End: 25}, 10, 2)
	if got := x.covering(h, 16, 18); got != b {
		t.Errorf("covering [16,18) = %v, want the 10-chunk entry", got.key)
	}
	if got := x.covering(h, 5, 18); got != a {
		t.Errorf("covering [5,18) = %v", got)
	}
	if got := x.covering(h, 5, 22); got != nil {
		t.Errorf("covering [5,22) = %v, want none", got.key)
	}
	if x.oldest() != a || x.size != 30 {
		t.Errorf("oldest %v, size %d", x.oldest().key, x.size)
	}
	x.touch(a)
	if x.oldest() != b {
		t.Error("touch did not refresh")
	}
	if !x.remove(b) || x.remove(b) {
		t.Error("remove not exactly once")
	}
	if len(x.covered(Key{Xorb: h, Start: 0, End: 30})) != 1 || x.len() != 1 || x.size != 20 {
		t.Errorf("after remove: len %d, size %d", x.len(), x.size)
	}
	x.remove(a)
	if len(x.byXorb) != 0 || x.oldest() != nil {
		t.Error("empty index keeps state")
	}
}
