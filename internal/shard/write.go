package shard

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

var le = binary.LittleEndian

// MarshalBinary serialises the shard. With Footer nil it writes an upload
// body (footer_size 0, no lookup tables); otherwise a stored shard with
// lookup tables and footer. Files and xorbs are written in slice order; call
// SortByHash first for xet-core's order. The content is validated first:
// verification records one per term, non-empty term ranges, xorb chunk
// offsets cumulative from 0 and summing to BytesInXorb, no all-0xff hash, and
// a total size within MaxShardSize.
func (s *Shard) MarshalBinary() ([]byte, error) {
	fileRecords, xorbRecords, chunks, err := s.validate()
	if err != nil {
		return nil, err
	}
	size := HeaderSize + (fileRecords+1)*RecordSize + (xorbRecords+1)*RecordSize
	if s.Footer != nil {
		size += len(s.Files)*fileLookupEntrySize + len(s.Xorbs)*xorbLookupEntrySize +
			chunks*chunkLookupEntrySize + FooterSize
	}
	if size > MaxShardSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}

	b := make([]byte, 0, size)
	b = append(b, headerTag[:]...)
	b = le.AppendUint64(b, HeaderVersion)
	if s.Footer != nil {
		b = le.AppendUint64(b, FooterSize)
	} else {
		b = le.AppendUint64(b, 0)
	}

	fileInfoOffset := len(b)
	var materialized uint64
	for i := range s.Files {
		f := &s.Files[i]
		flags := uint32(0)
		if f.Verification != nil {
			flags |= FileFlagVerification
		}
		if f.SHA256 != nil {
			flags |= FileFlagMetadataExt
		}
		b = appendRecord(b, f.Hash, flags, uint32(len(f.Terms)), 0, 0)
		for _, t := range f.Terms {
			b = appendRecord(b, t.XorbHash, t.Flags, t.UnpackedBytes, t.ChunkStart, t.ChunkEnd)
			materialized += uint64(t.UnpackedBytes)
		}
		for _, v := range f.Verification {
			b = appendRecord(b, v, 0, 0, 0, 0)
		}
		if f.SHA256 != nil {
			b = appendRecord(b, reverseWords(*f.SHA256), 0, 0, 0, 0)
		}
	}
	b = appendRecord(b, bookendHash, 0, 0, 0, 0)

	xorbInfoOffset := len(b)
	var stored, storedOnDisk uint64
	for _, x := range s.Xorbs {
		b = appendRecord(b, x.Hash, x.Flags, uint32(len(x.Chunks)), x.BytesInXorb, x.BytesOnDisk)
		for _, c := range x.Chunks {
			b = appendRecord(b, c.Hash, c.Offset, c.Size, c.Flags, 0)
		}
		stored += uint64(x.BytesInXorb)
		storedOnDisk += uint64(x.BytesOnDisk)
	}
	b = appendRecord(b, bookendHash, 0, 0, 0, 0)

	if s.Footer == nil {
		return b, nil
	}

	type entry struct {
		key    uint64
		record uint32
		chunk  uint32
	}
	byKey := func(a, b entry) int { // ties (equal truncated hashes) in record order
		if a.key != b.key {
			return cmp.Compare(a.key, b.key)
		}
		if a.record != b.record {
			return cmp.Compare(a.record, b.record)
		}
		return cmp.Compare(a.chunk, b.chunk)
	}
	fileTable := make([]entry, 0, len(s.Files))
	record := uint32(0)
	for _, f := range s.Files {
		fileTable = append(fileTable, entry{key: f.Hash.Word(0), record: record})
		record += uint32(fileBlockRecords(&f))
	}
	xorbTable := make([]entry, 0, len(s.Xorbs))
	chunkTable := make([]entry, 0, chunks)
	record = 0
	for _, x := range s.Xorbs {
		xorbTable = append(xorbTable, entry{key: x.Hash.Word(0), record: record})
		for j, c := range x.Chunks {
			chunkTable = append(chunkTable, entry{key: c.Hash.Word(0), record: record, chunk: uint32(j)})
		}
		record += 1 + uint32(len(x.Chunks))
	}
	slices.SortFunc(fileTable, byKey)
	slices.SortFunc(xorbTable, byKey)
	slices.SortFunc(chunkTable, byKey)

	fileLookupOffset := len(b)
	for _, e := range fileTable {
		b = le.AppendUint64(b, e.key)
		b = le.AppendUint32(b, e.record)
	}
	xorbLookupOffset := len(b)
	for _, e := range xorbTable {
		b = le.AppendUint64(b, e.key)
		b = le.AppendUint32(b, e.record)
	}
	chunkLookupOffset := len(b)
	for _, e := range chunkTable {
		b = le.AppendUint64(b, e.key)
		b = le.AppendUint32(b, e.record)
		b = le.AppendUint32(b, e.chunk)
	}

	footerOffset := len(b)
	ft := s.Footer
	for _, v := range []uint64{
		FooterVersion,
		uint64(fileInfoOffset), uint64(xorbInfoOffset),
		uint64(fileLookupOffset), uint64(len(fileTable)),
		uint64(xorbLookupOffset), uint64(len(xorbTable)),
		uint64(chunkLookupOffset), uint64(len(chunkTable)),
	} {
		b = le.AppendUint64(b, v)
	}
	b = append(b, ft.HMACKey[:]...)
	b = le.AppendUint64(b, ft.Created)
	b = le.AppendUint64(b, ft.Expiry)
	b = append(b, make([]byte, 48)...)
	b = le.AppendUint64(b, storedOnDisk)
	b = le.AppendUint64(b, materialized)
	b = le.AppendUint64(b, stored)
	b = le.AppendUint64(b, uint64(footerOffset))
	return b, nil
}

// appendRecord appends a 48-byte record: a hash, then four u32 values.
func appendRecord(b []byte, h merklehash.Hash, a, c, d, e uint32) []byte {
	b = append(b, h[:]...)
	b = le.AppendUint32(b, a)
	b = le.AppendUint32(b, c)
	b = le.AppendUint32(b, d)
	return le.AppendUint32(b, e)
}

// fileBlockRecords is the number of 48-byte records of a file block.
func fileBlockRecords(f *File) int {
	n := 1 + len(f.Terms) + len(f.Verification)
	if f.SHA256 != nil {
		n++
	}
	return n
}

// validate checks what MarshalBinary writes and returns the record counts of
// both sections (without bookends) and the number of chunks.
func (s *Shard) validate() (fileRecords, xorbRecords, chunks int, err error) {
	for i := range s.Files {
		f := &s.Files[i]
		if f.Hash == bookendHash {
			return 0, 0, 0, fmt.Errorf("%w: file %d has the bookend hash", ErrInvalid, i)
		}
		if f.Verification != nil && len(f.Verification) != len(f.Terms) {
			return 0, 0, 0, fmt.Errorf("%w: file %s has %d verification hashes for %d terms",
				ErrInvalid, f.Hash, len(f.Verification), len(f.Terms))
		}
		if len(f.Terms) > math.MaxUint32 {
			return 0, 0, 0, fmt.Errorf("%w: file %s has too many terms", ErrInvalid, f.Hash)
		}
		for j, t := range f.Terms {
			if t.ChunkStart >= t.ChunkEnd {
				return 0, 0, 0, fmt.Errorf("%w: file %s term %d has empty chunk range [%d,%d)",
					ErrInvalid, f.Hash, j, t.ChunkStart, t.ChunkEnd)
			}
		}
		fileRecords += fileBlockRecords(f)
		if fileRecords > MaxShardSize/RecordSize {
			return 0, 0, 0, fmt.Errorf("%w: file section above %d records", ErrTooLarge, MaxShardSize/RecordSize)
		}
	}
	for i := range s.Xorbs {
		x := &s.Xorbs[i]
		if x.Hash == bookendHash {
			return 0, 0, 0, fmt.Errorf("%w: xorb %d has the bookend hash", ErrInvalid, i)
		}
		var off uint64
		for j, c := range x.Chunks {
			if uint64(c.Offset) != off {
				return 0, 0, 0, fmt.Errorf("%w: xorb %s chunk %d at offset %d, want %d",
					ErrInvalid, x.Hash, j, c.Offset, off)
			}
			off += uint64(c.Size)
		}
		if off != uint64(x.BytesInXorb) {
			return 0, 0, 0, fmt.Errorf("%w: xorb %s chunks sum to %d bytes, BytesInXorb is %d",
				ErrInvalid, x.Hash, off, x.BytesInXorb)
		}
		xorbRecords += 1 + len(x.Chunks)
		chunks += len(x.Chunks)
		if xorbRecords > MaxShardSize/RecordSize {
			return 0, 0, 0, fmt.Errorf("%w: xorb section above %d records", ErrTooLarge, MaxShardSize/RecordSize)
		}
	}
	return fileRecords, xorbRecords, chunks, nil
}
