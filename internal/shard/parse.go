package shard

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Parse decodes a shard of any flavour: an upload body with or without
// footer, a stored shard with lookup tables, or a global-dedup answer.
//
// It never reads more than MaxShardSize bytes (ErrTooLarge) and returns a
// *FormatError for anything malformed: a wrong tag or version, a footer_size
// other than 0 or 200, a section without bookend, a count larger than the
// bytes that remain, unknown file flags, an empty term range, chunk offsets
// that are not cumulative, a non-zero reserved byte, trailing bytes, footer
// offsets that disagree with the sections, or lookup tables that are
// unsorted or point at the wrong records. Lookup tables may be absent
// (count 0, as huggingface.js and zig-xet write them); when present each
// must list every file, xorb or chunk exactly once. The footer's byte sums
// are reported as written and not checked, since some clients leave them 0.
// The result does not alias data.
func Parse(data []byte) (*Shard, error) {
	if len(data) > MaxShardSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	if len(data) < HeaderSize {
		return nil, formatErr(0, "%d bytes, shorter than the %d-byte header", len(data), HeaderSize)
	}
	if !bytes.Equal(data[:32], headerTag[:]) {
		return nil, formatErr(0, "not a shard: wrong header tag")
	}
	if v := le.Uint64(data[32:]); v != HeaderVersion {
		return nil, formatErr(32, "header version %d, want %d", v, HeaderVersion)
	}
	end := len(data)
	switch fs := le.Uint64(data[40:]); fs {
	case 0:
	case FooterSize:
		if len(data) < HeaderSize+FooterSize {
			return nil, formatErr(0, "%d bytes, too short for header and footer", len(data))
		}
		end -= FooterSize
	default:
		return nil, formatErr(40, "footer_size %d, want 0 or %d", fs, FooterSize)
	}

	p := parser{data: data, end: end}
	if err := p.scan(); err != nil {
		return nil, err
	}
	s, err := p.decode()
	if err != nil {
		return nil, err
	}
	if end == len(data) {
		if p.xorbEnd != len(data) {
			return nil, formatErr(p.xorbEnd, "%d trailing bytes after the xorb section of a shard without footer",
				len(data)-p.xorbEnd)
		}
		return s, nil
	}
	if s.Footer, err = p.footer(s); err != nil {
		return nil, err
	}
	return s, nil
}

// parser walks the sections twice: scan checks the structure and counts
// records so decode can allocate exactly once per kind.
type parser struct {
	data []byte
	end  int // end of the section area (start of the footer, or len(data))

	// set by scan
	files, terms, verifications, sha256s int
	xorbs, chunks                        int
	xorbStart, xorbEnd                   int // xorb section start; offset after its bookend
}

// record returns the 48-byte record at off; scan has checked the bounds.
func (p *parser) record(off int) []byte { return p.data[off : off+RecordSize] }

// bookend reports whether the record at off is a bookend, and checks its
// reserved bytes.
func (p *parser) bookend(off int) (bool, error) {
	r := p.record(off)
	if !bytes.Equal(r[:32], bookendHash[:]) {
		return false, nil
	}
	if !allZero(r[32:]) {
		return true, formatErr(off+32, "bookend with non-zero trailing bytes")
	}
	return true, nil
}

func (p *parser) scan() error {
	off := HeaderSize
	for {
		if p.end-off < RecordSize {
			return formatErr(off, "file section not terminated by a bookend")
		}
		if ok, err := p.bookend(off); ok || err != nil {
			if err != nil {
				return err
			}
			off += RecordSize
			break
		}
		r := p.record(off)
		flags, n := le.Uint32(r[32:]), uint64(le.Uint32(r[36:]))
		if flags&^knownFileFlags != 0 {
			return formatErr(off+32, "unknown file flags %#08x", flags)
		}
		records := 1 + n
		if flags&FileFlagVerification != 0 {
			records += n
			p.verifications += int(n)
		}
		if flags&FileFlagMetadataExt != 0 {
			records++
			p.sha256s++
		}
		if records > uint64(p.end-off)/RecordSize {
			return formatErr(off+36, "file block of %d records runs past the file section (%d bytes left)",
				records, p.end-off)
		}
		p.files++
		p.terms += int(n)
		off += int(records) * RecordSize
	}

	p.xorbStart = off
	for {
		if p.end-off < RecordSize {
			return formatErr(off, "xorb section not terminated by a bookend")
		}
		if ok, err := p.bookend(off); ok || err != nil {
			if err != nil {
				return err
			}
			off += RecordSize
			break
		}
		n := uint64(le.Uint32(p.record(off)[36:]))
		if 1+n > uint64(p.end-off)/RecordSize {
			return formatErr(off+36, "xorb block of %d chunks runs past the xorb section (%d bytes left)",
				n, p.end-off)
		}
		p.xorbs++
		p.chunks += int(n)
		off += int(1+n) * RecordSize
	}
	p.xorbEnd = off
	return nil
}

func (p *parser) decode() (*Shard, error) {
	s := &Shard{}
	if p.files > 0 {
		s.Files = make([]File, 0, p.files)
	}
	terms := make([]Term, p.terms)
	verifications := make([]merklehash.Hash, p.verifications)
	sha256s := make([][32]byte, p.sha256s)

	off := HeaderSize
	for off < p.xorbStart-RecordSize {
		r := p.record(off)
		f := File{Hash: merklehash.Hash(r[:32])}
		flags, n := le.Uint32(r[32:]), int(le.Uint32(r[36:]))
		if !allZero(r[40:48]) {
			return nil, formatErr(off+40, "file %s: non-zero reserved bytes in header", f.Hash)
		}
		off += RecordSize
		if n > 0 {
			f.Terms, terms = terms[:n:n], terms[n:]
		}
		for i := range f.Terms {
			r := p.record(off)
			t := &f.Terms[i]
			t.XorbHash = merklehash.Hash(r[:32])
			t.Flags = le.Uint32(r[32:])
			t.UnpackedBytes = le.Uint32(r[36:])
			t.ChunkStart = le.Uint32(r[40:])
			t.ChunkEnd = le.Uint32(r[44:])
			if t.ChunkStart >= t.ChunkEnd {
				return nil, formatErr(off+40, "file %s term %d: empty chunk range [%d,%d)",
					f.Hash, i, t.ChunkStart, t.ChunkEnd)
			}
			off += RecordSize
		}
		if flags&FileFlagVerification != 0 {
			f.Verification, verifications = verifications[:n:n], verifications[n:]
			for i := range f.Verification {
				r := p.record(off)
				if !allZero(r[32:]) {
					return nil, formatErr(off+32, "file %s verification %d: non-zero reserved bytes", f.Hash, i)
				}
				f.Verification[i] = merklehash.Hash(r[:32])
				off += RecordSize
			}
		}
		if flags&FileFlagMetadataExt != 0 {
			r := p.record(off)
			if !allZero(r[32:]) {
				return nil, formatErr(off+32, "file %s metadata: non-zero reserved bytes", f.Hash)
			}
			sha256s[0] = reverseWords([32]byte(r[:32]))
			f.SHA256, sha256s = &sha256s[0], sha256s[1:]
			off += RecordSize
		}
		s.Files = append(s.Files, f)
	}

	if p.xorbs > 0 {
		s.Xorbs = make([]Xorb, 0, p.xorbs)
	}
	chunks := make([]XorbChunk, p.chunks)
	off = p.xorbStart
	for off < p.xorbEnd-RecordSize {
		header := off
		r := p.record(off)
		x := Xorb{
			Hash:        merklehash.Hash(r[:32]),
			Flags:       le.Uint32(r[32:]),
			BytesInXorb: le.Uint32(r[40:]),
			BytesOnDisk: le.Uint32(r[44:]),
		}
		n := int(le.Uint32(r[36:]))
		off += RecordSize
		if n > 0 {
			x.Chunks, chunks = chunks[:n:n], chunks[n:]
		}
		var sum uint64
		for i := range x.Chunks {
			r := p.record(off)
			c := &x.Chunks[i]
			c.Hash = merklehash.Hash(r[:32])
			c.Offset = le.Uint32(r[32:])
			c.Size = le.Uint32(r[36:])
			c.Flags = le.Uint32(r[40:])
			if !allZero(r[44:48]) {
				return nil, formatErr(off+44, "xorb %s chunk %d: non-zero reserved bytes", x.Hash, i)
			}
			if uint64(c.Offset) != sum {
				return nil, formatErr(off+32, "xorb %s chunk %d at offset %d, want %d", x.Hash, i, c.Offset, sum)
			}
			sum += uint64(c.Size)
			off += RecordSize
		}
		if sum != uint64(x.BytesInXorb) {
			return nil, formatErr(header+40, "xorb %s: chunks sum to %d bytes, header says %d",
				x.Hash, sum, x.BytesInXorb)
		}
		s.Xorbs = append(s.Xorbs, x)
	}
	return s, nil
}

// footer decodes the footer at p.end and checks its offsets and lookup
// tables against the decoded sections.
func (p *parser) footer(s *Shard) (*Footer, error) {
	fo := p.end
	b := p.data[fo:]
	u := func(i int) uint64 { return le.Uint64(b[i:]) }
	if v := u(0); v != FooterVersion {
		return nil, formatErr(fo, "footer version %d, want %d", v, FooterVersion)
	}
	f := &Footer{
		FileInfoOffset:     u(8),
		XorbInfoOffset:     u(16),
		FileLookupOffset:   u(24),
		FileLookupEntries:  u(32),
		XorbLookupOffset:   u(40),
		XorbLookupEntries:  u(48),
		ChunkLookupOffset:  u(56),
		ChunkLookupEntries: u(64),
		HMACKey:            merklehash.Hash(b[72:104]),
		Created:            u(104),
		Expiry:             u(112),
		StoredBytesOnDisk:  u(168),
		MaterializedBytes:  u(176),
		StoredBytes:        u(184),
		FooterOffset:       u(192),
	}
	switch {
	case f.FooterOffset != uint64(fo):
		return nil, formatErr(fo+192, "footer_offset %d, footer is at %d", f.FooterOffset, fo)
	case f.FileInfoOffset != HeaderSize:
		return nil, formatErr(fo+8, "file_info_offset %d, want %d", f.FileInfoOffset, HeaderSize)
	case f.XorbInfoOffset != uint64(p.xorbStart):
		return nil, formatErr(fo+16, "xorb_info_offset %d, xorb section starts at %d", f.XorbInfoOffset, p.xorbStart)
	case !allZero(b[120:168]):
		return nil, formatErr(fo+120, "non-zero reserved footer bytes")
	}

	tables := []lookupTable{
		{name: "file", field: 24, off: f.FileLookupOffset, n: f.FileLookupEntries, size: fileLookupEntrySize, want: len(s.Files)},
		{name: "xorb", field: 40, off: f.XorbLookupOffset, n: f.XorbLookupEntries, size: xorbLookupEntrySize, want: len(s.Xorbs)},
		{name: "chunk", field: 56, off: f.ChunkLookupOffset, n: f.ChunkLookupEntries, size: chunkLookupEntrySize, want: p.chunks},
	}
	gap := uint64(fo - p.xorbEnd) // bytes between the xorb bookend and the footer
	var used uint64
	for i := range tables {
		t := &tables[i]
		if t.n == 0 {
			// Writers without tables put 0 or a position inside the gap.
			if t.off != 0 && (t.off < uint64(p.xorbEnd) || t.off > uint64(fo)) {
				return nil, formatErr(fo+t.field, "empty %s lookup table at offset %d outside [%d,%d]",
					t.name, t.off, p.xorbEnd, fo)
			}
			continue
		}
		if t.n != uint64(t.want) {
			return nil, formatErr(fo+t.field+8, "%s lookup table has %d entries, shard has %d", t.name, t.n, t.want)
		}
		if t.off < uint64(p.xorbEnd) || t.off > uint64(fo) || t.n > (uint64(fo)-t.off)/t.size {
			return nil, formatErr(fo+t.field, "%s lookup table [%d, +%d×%d) outside [%d,%d)",
				t.name, t.off, t.n, t.size, p.xorbEnd, fo)
		}
		used += t.n * t.size
	}
	if used != gap {
		return nil, formatErr(p.xorbEnd, "%d bytes between xorb section and footer, lookup tables cover %d", gap, used)
	}
	present := slices.DeleteFunc(slices.Clone(tables), func(t lookupTable) bool { return t.n == 0 })
	slices.SortFunc(present, func(a, b lookupTable) int { return cmp.Compare(a.off, b.off) })
	for i := 1; i < len(present); i++ {
		prev := present[i-1]
		if prev.off+prev.n*prev.size > present[i].off {
			return nil, formatErr(int(present[i].off), "%s lookup table overlaps the %s table", present[i].name, prev.name)
		}
	}

	if err := p.checkFileTable(s, tables[0]); err != nil {
		return nil, err
	}
	if err := p.checkXorbTables(s, tables[1], tables[2]); err != nil {
		return nil, err
	}
	return f, nil
}

type lookupTable struct {
	name  string
	field int    // offset of the table's offset field within the footer
	off   uint64 // as read
	n     uint64
	size  uint64
	want  int // number of entries a complete table has
}

// checkFileTable checks that the file lookup table is sorted and that each
// entry points at the header of a distinct file with that truncated hash.
func (p *parser) checkFileTable(s *Shard, t lookupTable) error {
	if t.n == 0 {
		return nil
	}
	starts := make([]uint32, len(s.Files))
	rec := uint32(0)
	for i := range s.Files {
		starts[i] = rec
		rec += uint32(fileBlockRecords(&s.Files[i]))
	}
	seen := make([]bool, len(s.Files))
	var prev uint64
	for i := 0; i < int(t.n); i++ {
		off := int(t.off) + i*fileLookupEntrySize
		key, idx := le.Uint64(p.data[off:]), le.Uint32(p.data[off+8:])
		if key < prev {
			return formatErr(off, "file lookup table not sorted at entry %d", i)
		}
		prev = key
		j, ok := slices.BinarySearch(starts, idx)
		if !ok || seen[j] || s.Files[j].Hash.Word(0) != key {
			return formatErr(off, "file lookup entry %d (key %#x, record %d) does not name a distinct file with that hash", i, key, idx)
		}
		seen[j] = true
	}
	return nil
}

// checkXorbTables does the same for the xorb and chunk lookup tables.
func (p *parser) checkXorbTables(s *Shard, xt, ct lookupTable) error {
	if xt.n == 0 && ct.n == 0 {
		return nil
	}
	starts := make([]uint32, len(s.Xorbs))
	base := make([]int, len(s.Xorbs)) // index of the xorb's first chunk among all chunks
	rec, nc := uint32(0), 0
	for i := range s.Xorbs {
		starts[i], base[i] = rec, nc
		rec += 1 + uint32(len(s.Xorbs[i].Chunks))
		nc += len(s.Xorbs[i].Chunks)
	}
	if xt.n > 0 {
		seen := make([]bool, len(s.Xorbs))
		var prev uint64
		for i := 0; i < int(xt.n); i++ {
			off := int(xt.off) + i*xorbLookupEntrySize
			key, idx := le.Uint64(p.data[off:]), le.Uint32(p.data[off+8:])
			if key < prev {
				return formatErr(off, "xorb lookup table not sorted at entry %d", i)
			}
			prev = key
			j, ok := slices.BinarySearch(starts, idx)
			if !ok || seen[j] || s.Xorbs[j].Hash.Word(0) != key {
				return formatErr(off, "xorb lookup entry %d (key %#x, record %d) does not name a distinct xorb with that hash", i, key, idx)
			}
			seen[j] = true
		}
	}
	if ct.n > 0 {
		seen := make([]bool, nc)
		var prev uint64
		for i := 0; i < int(ct.n); i++ {
			off := int(ct.off) + i*chunkLookupEntrySize
			key, idx, c := le.Uint64(p.data[off:]), le.Uint32(p.data[off+8:]), le.Uint32(p.data[off+12:])
			if key < prev {
				return formatErr(off, "chunk lookup table not sorted at entry %d", i)
			}
			prev = key
			j, ok := slices.BinarySearch(starts, idx)
			if !ok || uint64(c) >= uint64(len(s.Xorbs[j].Chunks)) || seen[base[j]+int(c)] ||
				s.Xorbs[j].Chunks[c].Hash.Word(0) != key {
				return formatErr(off, "chunk lookup entry %d (key %#x, record %d, chunk %d) does not name a distinct chunk with that hash", i, key, idx, c)
			}
			seen[base[j]+int(c)] = true
		}
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
