package shard_test

import (
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/shard"
)

var le = binary.LittleEndian

type genOpts struct {
	files, xorbs int
	maxTerms     int
	verification bool // every file carries verification hashes
	metadata     bool // every file carries a SHA-256
	mixed        bool // pick verification/metadata per file at random
	maxChunks    int
}

func randHash(r *rand.Rand) merklehash.Hash {
	var h merklehash.Hash
	for i := 0; i < 4; i++ {
		le.PutUint64(h[i*8:], r.Uint64())
	}
	return h
}

// genShard builds a random but well-formed shard. Terms reference the
// generated xorbs when there are any, otherwise random hashes.
func genShard(r *rand.Rand, o genOpts) *shard.Shard {
	s := &shard.Shard{}
	for i := 0; i < o.xorbs; i++ {
		n := r.IntN(o.maxChunks + 1)
		leaves := make([]merklehash.Leaf, n)
		for j := range leaves {
			leaves[j] = merklehash.Leaf{Hash: randHash(r), Size: uint64(1 + r.IntN(128<<10))}
		}
		x, err := shard.NewXorb(randHash(r), leaves, uint32(r.IntN(1<<20)))
		if err != nil {
			panic(err)
		}
		x.Flags = uint32(r.IntN(2))
		for j := range x.Chunks {
			if r.IntN(4) == 0 {
				x.Chunks[j].Flags = shard.ChunkFlagGlobalDedup
			}
		}
		s.Xorbs = append(s.Xorbs, x)
	}
	for i := 0; i < o.files; i++ {
		f := shard.File{Hash: randHash(r)}
		n := r.IntN(o.maxTerms + 1)
		for j := 0; j < n; j++ {
			start := uint32(r.IntN(1000))
			t := shard.Term{XorbHash: randHash(r), UnpackedBytes: r.Uint32(), ChunkStart: start, ChunkEnd: start + 1 + uint32(r.IntN(100))}
			if len(s.Xorbs) > 0 {
				t.XorbHash = s.Xorbs[r.IntN(len(s.Xorbs))].Hash
			}
			f.Terms = append(f.Terms, t)
		}
		verification, metadata := o.verification, o.metadata
		if o.mixed {
			verification, metadata = r.IntN(2) == 0, r.IntN(2) == 0
		}
		if verification {
			f.Verification = make([]merklehash.Hash, n)
			for j := range f.Verification {
				f.Verification[j] = randHash(r)
			}
		}
		if metadata {
			d := [32]byte(randHash(r))
			f.SHA256 = &d
		}
		s.Files = append(s.Files, f)
	}
	return s
}

func roundTripCases() []genOpts {
	return []genOpts{
		{},
		{files: 3},
		{xorbs: 3, maxChunks: 5},
		{files: 1, maxTerms: 1, verification: true, metadata: true, xorbs: 1, maxChunks: 1},
		{files: 20, maxTerms: 40, verification: true, metadata: true, xorbs: 10, maxChunks: 200},
		{files: 20, maxTerms: 40, xorbs: 10, maxChunks: 50},
		{files: 50, maxTerms: 30, mixed: true, xorbs: 5, maxChunks: 30},
		{files: 2, maxTerms: 3000, verification: true, xorbs: 2, maxChunks: 8192},
		{files: 200, maxTerms: 2, mixed: true},
	}
}

func footerInputsEqual(a, b *shard.Footer) bool {
	return a.HMACKey == b.HMACKey && a.Created == b.Created && a.Expiry == b.Expiry
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i, o := range roundTripCases() {
		for _, withFooter := range []bool{false, true} {
			s := genShard(r, o)
			if withFooter {
				s.Footer = &shard.Footer{HMACKey: randHash(r), Created: r.Uint64(), Expiry: r.Uint64()}
			}
			b, err := s.MarshalBinary()
			if err != nil {
				t.Fatalf("case %d footer %v: marshal: %v", i, withFooter, err)
			}
			back, err := shard.Parse(b)
			if err != nil {
				t.Fatalf("case %d footer %v: parse: %v", i, withFooter, err)
			}
			if !reflect.DeepEqual(back.Files, s.Files) {
				t.Errorf("case %d footer %v: files differ", i, withFooter)
			}
			if !reflect.DeepEqual(back.Xorbs, s.Xorbs) {
				t.Errorf("case %d footer %v: xorbs differ", i, withFooter)
			}
			if (back.Footer != nil) != withFooter {
				t.Fatalf("case %d: footer presence %v, want %v", i, back.Footer != nil, withFooter)
			}
			if withFooter {
				if !footerInputsEqual(back.Footer, s.Footer) {
					t.Errorf("case %d: footer %+v, want %+v", i, back.Footer, s.Footer)
				}
				checkFooterSums(t, s, back.Footer, len(b))
			}
			again, err := back.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(b) {
				t.Errorf("case %d footer %v: re-marshal differs", i, withFooter)
			}
		}
	}
}

func checkFooterSums(t *testing.T, s *shard.Shard, f *shard.Footer, size int) {
	t.Helper()
	var materialized, stored, onDisk uint64
	chunks := 0
	for _, file := range s.Files {
		for _, term := range file.Terms {
			materialized += uint64(term.UnpackedBytes)
		}
	}
	for _, x := range s.Xorbs {
		stored += uint64(x.BytesInXorb)
		onDisk += uint64(x.BytesOnDisk)
		chunks += len(x.Chunks)
	}
	if f.MaterializedBytes != materialized || f.StoredBytes != stored || f.StoredBytesOnDisk != onDisk {
		t.Errorf("sums %d/%d/%d, want %d/%d/%d", f.MaterializedBytes, f.StoredBytes, f.StoredBytesOnDisk,
			materialized, stored, onDisk)
	}
	if f.FooterOffset != uint64(size-shard.FooterSize) || f.FileInfoOffset != shard.HeaderSize {
		t.Errorf("footer offset %d file info %d", f.FooterOffset, f.FileInfoOffset)
	}
	if f.FileLookupEntries != uint64(len(s.Files)) || f.XorbLookupEntries != uint64(len(s.Xorbs)) ||
		f.ChunkLookupEntries != uint64(chunks) {
		t.Errorf("table sizes %d/%d/%d", f.FileLookupEntries, f.XorbLookupEntries, f.ChunkLookupEntries)
	}
}

// TestLookupTables reads the tables straight from the bytes, independently
// of Parse, and checks they are sorted and point at the right records.
func TestLookupTables(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	s := genShard(r, genOpts{files: 40, maxTerms: 8, mixed: true, xorbs: 12, maxChunks: 40})
	// Truncated-hash collisions: same first word, different rest.
	s.Files[1].Hash = s.Files[0].Hash
	s.Files[1].Hash[31] ^= 1
	s.Xorbs[1].Hash = s.Xorbs[0].Hash
	s.Xorbs[1].Hash[20] ^= 1
	for len(s.Xorbs[2].Chunks) < 2 {
		s.Xorbs[2].Chunks = append(s.Xorbs[2].Chunks, shard.XorbChunk{Hash: randHash(r), Offset: s.Xorbs[2].BytesInXorb, Size: 7})
		s.Xorbs[2].BytesInXorb += 7
	}
	s.Xorbs[2].Chunks[1].Hash = s.Xorbs[2].Chunks[0].Hash
	s.Xorbs[2].Chunks[1].Hash[9] ^= 1
	s.Footer = &shard.Footer{Expiry: shard.NoExpiry}

	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ft := b[len(b)-shard.FooterSize:]
	u := func(i int) int { return int(le.Uint64(ft[i:])) }
	fileInfo, xorbInfo := u(8), u(16)
	fileOff, fileN, xorbOff, xorbN, chunkOff, chunkN := u(24), u(32), u(40), u(48), u(56), u(64)
	if fileInfo != shard.HeaderSize || fileN != len(s.Files) || xorbN != len(s.Xorbs) {
		t.Fatalf("footer: file info %d, %d files, %d xorbs", fileInfo, fileN, xorbN)
	}
	if xorbOff != fileOff+12*fileN || chunkOff != xorbOff+12*xorbN || u(192) != chunkOff+16*chunkN || u(192) != len(b)-shard.FooterSize {
		t.Fatalf("tables not contiguous: %d %d %d footer %d", fileOff, xorbOff, chunkOff, u(192))
	}
	hashAt := func(off int) merklehash.Hash { return merklehash.Hash(b[off : off+32]) }

	var files []merklehash.Hash
	prev := uint64(0)
	for i := 0; i < fileN; i++ {
		e := b[fileOff+12*i:]
		key, rec := le.Uint64(e), int(le.Uint32(e[8:]))
		if key < prev {
			t.Fatalf("file table unsorted at %d", i)
		}
		prev = key
		h := hashAt(fileInfo + rec*shard.RecordSize)
		if h.Word(0) != key {
			t.Errorf("file entry %d: key %#x, record %d holds %s", i, key, rec, h)
		}
		files = append(files, h)
	}
	var wantFiles []merklehash.Hash
	for _, f := range s.Files {
		wantFiles = append(wantFiles, f.Hash)
	}
	sortHashes(files)
	sortHashes(wantFiles)
	if !slices.Equal(files, wantFiles) {
		t.Errorf("file table does not cover every file once")
	}

	var xorbs []merklehash.Hash
	prev = 0
	for i := 0; i < xorbN; i++ {
		e := b[xorbOff+12*i:]
		key, rec := le.Uint64(e), int(le.Uint32(e[8:]))
		if key < prev {
			t.Fatalf("xorb table unsorted at %d", i)
		}
		prev = key
		h := hashAt(xorbInfo + rec*shard.RecordSize)
		if h.Word(0) != key {
			t.Errorf("xorb entry %d: key %#x, record %d holds %s", i, key, rec, h)
		}
		xorbs = append(xorbs, h)
	}
	var wantXorbs []merklehash.Hash
	var wantChunks []merklehash.Hash
	for _, x := range s.Xorbs {
		wantXorbs = append(wantXorbs, x.Hash)
		for _, c := range x.Chunks {
			wantChunks = append(wantChunks, c.Hash)
		}
	}
	sortHashes(xorbs)
	sortHashes(wantXorbs)
	if !slices.Equal(xorbs, wantXorbs) {
		t.Errorf("xorb table does not cover every xorb once")
	}

	var chunks []merklehash.Hash
	prev = 0
	for i := 0; i < chunkN; i++ {
		e := b[chunkOff+16*i:]
		key, rec, c := le.Uint64(e), int(le.Uint32(e[8:])), int(le.Uint32(e[12:]))
		if key < prev {
			t.Fatalf("chunk table unsorted at %d", i)
		}
		prev = key
		header := xorbInfo + rec*shard.RecordSize
		if n := int(le.Uint32(b[header+36:])); c >= n {
			t.Fatalf("chunk entry %d: chunk %d of a xorb with %d", i, c, n)
		}
		h := hashAt(header + (1+c)*shard.RecordSize)
		if h.Word(0) != key {
			t.Errorf("chunk entry %d: key %#x, record %d+%d holds %s", i, key, rec, c, h)
		}
		chunks = append(chunks, h)
	}
	sortHashes(chunks)
	sortHashes(wantChunks)
	if !slices.Equal(chunks, wantChunks) {
		t.Errorf("chunk table does not cover every chunk once")
	}
}

func sortHashes(h []merklehash.Hash) {
	slices.SortFunc(h, func(a, b merklehash.Hash) int { return a.Compare(b) })
}

func TestSortByHash(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	s := genShard(r, genOpts{files: 30, maxTerms: 2, xorbs: 30, maxChunks: 2})
	s.SortByHash()
	for i := 1; i < len(s.Files); i++ {
		if s.Files[i-1].Hash.Compare(s.Files[i].Hash) > 0 {
			t.Fatalf("files not sorted at %d", i)
		}
	}
	for i := 1; i < len(s.Xorbs); i++ {
		if s.Xorbs[i-1].Hash.Compare(s.Xorbs[i].Hash) > 0 {
			t.Fatalf("xorbs not sorted at %d", i)
		}
	}
	// Word order, not byte order: word 0 decides even when byte 0 disagrees.
	a := merklehash.Hash{0: 0xff}          // word 0 = 0xff
	b := merklehash.Hash{7: 0x01, 8: 0x00} // word 0 = 1<<56
	s = &shard.Shard{Xorbs: []shard.Xorb{{Hash: b}, {Hash: a}}}
	s.SortByHash()
	if s.Xorbs[0].Hash != a {
		t.Errorf("sorted by bytes instead of u64 words")
	}
}

func TestDedupResponseRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	plain := genShard(r, genOpts{xorbs: 4, maxChunks: 60})
	key := randHash(r)
	s := &shard.Shard{Footer: &shard.Footer{HMACKey: key, Created: 1_760_000_000, Expiry: 1_760_003_600}}
	for _, x := range plain.Xorbs {
		s.Xorbs = append(s.Xorbs, x.Keyed(key))
	}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Empty file section: the bookend straight after the header.
	if got := b[shard.HeaderSize : shard.HeaderSize+32]; string(got) != string(slices.Repeat([]byte{0xff}, 32)) {
		t.Fatalf("file section does not start with a bookend: %x", got)
	}
	back, err := shard.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Files) != 0 || back.Footer == nil || back.Footer.HMACKey != key ||
		back.Footer.Created != 1_760_000_000 || back.Footer.Expiry != 1_760_003_600 {
		t.Fatalf("parsed %d files, footer %+v", len(back.Files), back.Footer)
	}
	if !reflect.DeepEqual(back.Xorbs, s.Xorbs) {
		t.Fatal("keyed xorbs differ")
	}

	ix := shard.NewChunkIndex(back)
	for i, x := range plain.Xorbs {
		for j, c := range x.Chunks {
			if back.Xorbs[i].Chunks[j].Hash == c.Hash {
				t.Fatalf("chunk %d/%d stored unkeyed", i, j)
			}
			want := shard.ChunkRef{Xorb: i, Chunk: j}
			if ref, ok := ix.Find(c.Hash); !ok || ref != want {
				t.Errorf("Find(%s) = %v %v, want %v", c.Hash, ref, ok, want)
			}
			if ref, ok := back.FindChunk(c.Hash); !ok || ref != want {
				t.Errorf("FindChunk(%s) = %v %v, want %v", c.Hash, ref, ok, want)
			}
			// The keyed form is what is stored, not what clients ask with.
			if _, ok := ix.Find(back.Xorbs[i].Chunks[j].Hash); ok {
				t.Errorf("Find matched an already keyed hash")
			}
		}
	}
	if _, ok := ix.Find(randHash(r)); ok {
		t.Error("Find matched a random hash")
	}
}

func TestChunkIndexUnkeyedFirstWins(t *testing.T) {
	h := merklehash.ChunkHash([]byte("dup"))
	s := &shard.Shard{Xorbs: []shard.Xorb{
		{Hash: merklehash.ChunkHash([]byte("x0")), BytesInXorb: 3, Chunks: []shard.XorbChunk{{Hash: merklehash.ChunkHash([]byte("a")), Size: 1}, {Hash: h, Offset: 1, Size: 2}}},
		{Hash: merklehash.ChunkHash([]byte("x1")), BytesInXorb: 2, Chunks: []shard.XorbChunk{{Hash: h, Size: 2}}},
	}}
	ix := shard.NewChunkIndex(s)
	if ref, ok := ix.Find(h); !ok || ref != (shard.ChunkRef{Xorb: 0, Chunk: 1}) {
		t.Errorf("Find = %v %v", ref, ok)
	}
	if ix.Len() != 2 {
		t.Errorf("Len = %d, want 2", ix.Len())
	}
}

// appendJSFooter appends a footer the way huggingface.js (and, with zero
// sums, zig-xet) write upload bodies: no lookup tables, offsets 0.
func appendJSFooter(body []byte, created, onDisk, unpacked uint64) []byte {
	b := append([]byte(nil), body...)
	le.PutUint64(b[40:], shard.FooterSize)
	xorbInfo := shard.HeaderSize
	for { // skip the file section to find the xorb section
		if string(b[xorbInfo:xorbInfo+32]) == string(slices.Repeat([]byte{0xff}, 32)) {
			xorbInfo += shard.RecordSize
			break
		}
		xorbInfo += shard.RecordSize
	}
	footerOffset := len(b)
	b = le.AppendUint64(b, 1)
	b = le.AppendUint64(b, shard.HeaderSize)
	b = le.AppendUint64(b, uint64(xorbInfo))
	b = append(b, make([]byte, 48+32)...) // lookup fields, HMAC key
	b = le.AppendUint64(b, created)
	b = le.AppendUint64(b, 0) // expiry
	b = append(b, make([]byte, 48)...)
	b = le.AppendUint64(b, onDisk)
	b = le.AppendUint64(b, 0) // materialized: huggingface.js never adds to it
	b = le.AppendUint64(b, unpacked)
	return le.AppendUint64(b, uint64(footerOffset))
}

func TestParseClientFooters(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	s := genShard(r, genOpts{files: 5, maxTerms: 6, verification: true, metadata: true, xorbs: 3, maxChunks: 9})
	body, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var onDisk, unpacked uint64
	for _, x := range s.Xorbs {
		onDisk += uint64(x.BytesOnDisk)
		unpacked += uint64(x.BytesInXorb)
	}

	// xet-core's minimal serializer: table offsets = footer_offset, 0 entries.
	minimal := appendJSFooter(body, 0, 0, 0)
	fo := uint64(len(body))
	for _, field := range []int{24, 40, 56} {
		le.PutUint64(minimal[len(body)+field:], fo)
	}

	for name, data := range map[string][]byte{
		"huggingface.js": appendJSFooter(body, 1_760_000_000, onDisk, unpacked),
		"zig-xet":        appendJSFooter(body, 0, 0, 0),
		"xet-core":       minimal,
	} {
		back, err := shard.Parse(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(back.Files, s.Files) || !reflect.DeepEqual(back.Xorbs, s.Xorbs) {
			t.Errorf("%s: content differs", name)
		}
		if back.Footer == nil || back.Footer.FooterOffset != fo || back.Footer.XorbInfoOffset == 0 ||
			back.Footer.FileLookupEntries != 0 || back.Footer.ChunkLookupEntries != 0 {
			t.Errorf("%s: footer %+v", name, back.Footer)
		}
	}
}
