package shard_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/shard"
)

// smallShard has a fixed layout:
//
//	0 header | 48 file | 96 term0 | 144 term1 | 192 verif0 | 240 verif1 | 288 meta | 336 bookend
//	384 xorb | 432 chunk0 | 480 chunk1 | 528 chunk2 | 576 bookend
//	stored only: 624 file table | 636 xorb table | 648 chunk table (3×16) | 696 footer | 896 end
func smallShard(withFooter bool) *shard.Shard {
	h := func(s string) merklehash.Hash { return merklehash.ChunkHash([]byte(s)) }
	digest := [32]byte(h("sha"))
	s := &shard.Shard{
		Files: []shard.File{{
			Hash: h("file"),
			Terms: []shard.Term{
				{XorbHash: h("xorb"), UnpackedBytes: 30, ChunkStart: 0, ChunkEnd: 2},
				{XorbHash: h("xorb"), UnpackedBytes: 30, ChunkStart: 1, ChunkEnd: 3},
			},
			Verification: []merklehash.Hash{h("v0"), h("v1")},
			SHA256:       &digest,
		}},
		Xorbs: []shard.Xorb{{Hash: h("xorb"), BytesInXorb: 60, Chunks: []shard.XorbChunk{
			{Hash: h("c0"), Offset: 0, Size: 10},
			{Hash: h("c1"), Offset: 10, Size: 20},
			{Hash: h("c2"), Offset: 30, Size: 30},
		}}},
	}
	if withFooter {
		s.Footer = &shard.Footer{Created: 1, Expiry: shard.NoExpiry}
	}
	return s
}

func mustMarshal(t testing.TB, s *shard.Shard) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSmallShardLayout(t *testing.T) {
	if n := len(mustMarshal(t, smallShard(false))); n != 624 {
		t.Fatalf("upload body %d bytes, want 624", n)
	}
	if n := len(mustMarshal(t, smallShard(true))); n != 896 {
		t.Fatalf("stored shard %d bytes, want 896", n)
	}
}

func TestParseRejects(t *testing.T) {
	upload := mustMarshal(t, smallShard(false))
	stored := mustMarshal(t, smallShard(true))
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint32(b[off:], v); return b }
	}
	put64 := func(off int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint64(b[off:], v); return b }
	}
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte { b[off] ^= 0x01; return b }
	}
	cut := func(n int) func([]byte) []byte { return func(b []byte) []byte { return b[:n] } }
	swap := func(a, c, n int) func([]byte) []byte {
		return func(b []byte) []byte {
			tmp := append([]byte(nil), b[a:a+n]...)
			copy(b[a:], b[c:c+n])
			copy(b[c:], tmp)
			return b
		}
	}
	cases := []struct {
		name   string
		stored bool
		mut    func([]byte) []byte
		off    int64 // -1: any
		reason string
	}{
		{"empty", false, cut(0), 0, "shorter"},
		{"short header", false, cut(47), 0, "shorter"},
		{"header only", false, cut(48), 48, "file section not terminated"},
		{"tag", false, flip(3), 0, "tag"},
		{"tag magic", false, flip(31), 0, "tag"},
		{"version", false, put64(32, 3), 32, "header version"},
		{"footer size", false, put64(40, 100), 40, "footer_size"},
		{"footer size 200 on upload", false, put64(40, 200), -1, ""},
		{"unknown file flag", false, put32(48+32, 0xc0000001), 80, "unknown file flags"},
		{"huge term count", false, put32(48+36, 0xffffffff), 84, "runs past"},
		{"term count +1", false, put32(48+36, 3), -1, ""},
		{"empty term range", false, put32(96+44, 0), 136, "empty chunk range"},
		{"reversed term range", false, put32(144+40, 5), 184, "empty chunk range"},
		{"file reserved", false, flip(48 + 44), 88, "reserved"},
		{"verification reserved", false, flip(192 + 40), 224, "reserved"},
		{"metadata reserved", false, flip(288 + 47), 320, "reserved"},
		{"file bookend tail", false, flip(336 + 33), 368, "bookend"},
		{"huge chunk count", false, put32(384+36, 0xffffffff), 420, "runs past"},
		{"chunk offset", false, put32(480+32, 11), 512, "want 10"},
		{"bytes in xorb", false, put32(384+40, 61), 424, "sum"},
		{"chunk reserved", false, flip(528 + 46), 572, "reserved"},
		{"xorb bookend missing", false, cut(576), 576, "xorb section not terminated"},
		{"xorb bookend tail", false, flip(576 + 40), 608, "bookend"},
		{"trailing byte", false, func(b []byte) []byte { return append(b, 0) }, 624, "trailing"},
		{"trailing record", false, func(b []byte) []byte { return append(b, make([]byte, 48)...) }, 624, "trailing"},

		{"stored truncated", true, cut(895), -1, ""},
		{"stored footer cut", true, cut(624), -1, ""},
		{"footer version", true, put64(696, 2), 696, "footer version"},
		{"file info offset", true, put64(696+8, 0), 704, "file_info_offset"},
		{"xorb info offset", true, put64(696+16, 336), 712, "xorb_info_offset"},
		{"footer offset", true, put64(696+192, 695), 888, "footer_offset"},
		{"footer reserved", true, flip(696 + 130), 816, "reserved"},
		{"file table count", true, put64(696+32, 2), 728, "entries"},
		{"chunk table count huge", true, put64(696+64, 1<<62), 760, "entries"},
		{"table outside", true, put64(696+40, 10), 736, "outside"},
		{"tables overlap", true, put64(696+40, 624), -1, ""},
		{"gap not covered", true, put64(696+64, 0), 624, "lookup tables cover"},
		{"file table key", true, flip(624), 624, "file lookup entry"},
		{"file table record", true, put32(624+8, 1), 624, "file lookup entry"},
		{"xorb table record", true, put32(636+8, 1), 636, "xorb lookup entry"},
		{"chunk table chunk index", true, put32(648+12, 3), -1, "chunk lookup entry"},
		{"chunk table record", true, put32(648+8, 1), -1, "chunk lookup entry"},
		{"chunk table unsorted", true, swap(648, 664, 16), -1, "not sorted"},
		{"chunk table duplicate", true, func(b []byte) []byte { copy(b[664:680], b[648:664]); return b }, -1, ""},
		{"empty table offset outside", true, func(b []byte) []byte {
			le.PutUint64(b[696+64:], 0) // drop the chunk table ...
			b = append(b[:648], b[696:]...)
			le.PutUint64(b[648+192:], 648) // ... move the footer up ...
			le.PutUint64(b[648+56:], 5)    // ... and point the empty table at the header
			return b
		}, 704, "empty chunk lookup table"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := upload
			if c.stored {
				base = stored
			}
			data := c.mut(append([]byte(nil), base...))
			s, err := shard.Parse(data)
			if err == nil {
				t.Fatalf("accepted: %+v", s)
			}
			var fe *shard.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			if c.off >= 0 && fe.Offset != c.off {
				t.Errorf("offset %d, want %d (%v)", fe.Offset, c.off, err)
			}
			if !strings.Contains(fe.Reason, c.reason) {
				t.Errorf("reason %q does not mention %q", fe.Reason, c.reason)
			}
			if !strings.HasPrefix(err.Error(), "shard: offset ") {
				t.Errorf("error text %q", err)
			}
		})
	}
	// The unmodified bases parse, so each case above fails for its own reason.
	for _, b := range [][]byte{upload, stored} {
		if _, err := shard.Parse(b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestParseTooLarge(t *testing.T) {
	data := make([]byte, shard.MaxShardSize+1)
	copy(data, mustMarshal(t, smallShard(false)))
	if _, err := shard.Parse(data); !errors.Is(err, shard.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestMarshalRejects(t *testing.T) {
	bookend := merklehash.Hash{}
	for i := range bookend {
		bookend[i] = 0xff
	}
	cases := map[string]func(s *shard.Shard){
		"verification count":   func(s *shard.Shard) { s.Files[0].Verification = s.Files[0].Verification[:1] },
		"verification empty":   func(s *shard.Shard) { s.Files[0].Verification = []merklehash.Hash{} },
		"empty term range":     func(s *shard.Shard) { s.Files[0].Terms[1].ChunkEnd = 1 },
		"chunk offsets":        func(s *shard.Shard) { s.Xorbs[0].Chunks[2].Offset = 29 },
		"bytes in xorb":        func(s *shard.Shard) { s.Xorbs[0].BytesInXorb++ },
		"file bookend hash":    func(s *shard.Shard) { s.Files[0].Hash = bookend },
		"xorb bookend hash":    func(s *shard.Shard) { s.Xorbs[0].Hash = bookend },
		"first offset nonzero": func(s *shard.Shard) { s.Xorbs[0].Chunks = s.Xorbs[0].Chunks[1:]; s.Xorbs[0].BytesInXorb = 50 },
	}
	for name, mut := range cases {
		s := smallShard(true)
		mut(s)
		if _, err := s.MarshalBinary(); !errors.Is(err, shard.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestMarshalTooLarge(t *testing.T) {
	// Xorbs share one 8192-chunk listing so the test itself stays small.
	leaves := make([]merklehash.Leaf, 8192)
	for i := range leaves {
		leaves[i] = merklehash.Leaf{Hash: merklehash.Hash{0: byte(i), 1: byte(i >> 8)}, Size: 1}
	}
	x, err := shard.NewXorb(merklehash.Hash{1}, leaves, 0)
	if err != nil {
		t.Fatal(err)
	}
	records := shard.MaxShardSize / shard.RecordSize / (len(leaves) + 1)
	for _, c := range []struct {
		xorbs  int
		footer bool
	}{
		{records + 1, false}, // the sections alone are too many records
		{records, true},      // the sections fit, the lookup tables do not
	} {
		s := &shard.Shard{Xorbs: make([]shard.Xorb, c.xorbs)}
		for i := range s.Xorbs {
			s.Xorbs[i] = x
		}
		if c.footer {
			s.Footer = &shard.Footer{}
		}
		if _, err := s.MarshalBinary(); !errors.Is(err, shard.ErrTooLarge) {
			t.Errorf("%d xorbs, footer %v: err = %v, want ErrTooLarge", c.xorbs, c.footer, err)
		}
	}
}

// parseAlloc returns the bytes Parse allocated for data.
func parseAlloc(data []byte) (uint64, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := shard.Parse(data)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}

// allocBound is the most Parse may allocate for an input of n bytes: the
// decoded structs are at most about twice the records they come from.
func allocBound(n int) uint64 { return 8*uint64(n) + 64<<10 }

func TestParseAllocationBounded(t *testing.T) {
	hostile := func(off int, v uint32) []byte {
		b := mustMarshal(t, smallShard(false))
		le.PutUint32(b[off:], v)
		return b
	}
	inputs := map[string][]byte{
		"huge term count":  hostile(48+36, 0xffffffff),
		"huge chunk count": hostile(384+36, 0xffffffff),
		"stored":           mustMarshal(t, smallShard(true)),
	}
	// Many empty files: the worst ratio of structs to bytes.
	many := &shard.Shard{Footer: &shard.Footer{}}
	for i := 0; i < 20000; i++ {
		many.Files = append(many.Files, shard.File{Hash: merklehash.Hash{0: byte(i), 1: byte(i >> 8), 2: 1}})
	}
	inputs["many empty files"] = mustMarshal(t, many)
	for name, data := range inputs {
		n, _ := parseAlloc(data)
		if n > allocBound(len(data)) {
			t.Errorf("%s: Parse allocated %d bytes for a %d-byte input", name, n, len(data))
		}
	}
}
