package shard

import (
	"errors"
	"fmt"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// XorbChunks returns the chunk listing (plain hashes, xorb order) of a xorb
// the server already holds; ok is false when the xorb is unknown.
type XorbChunks func(h merklehash.Hash) (chunks []XorbChunk, ok bool)

// Conditions ValidateFiles and ValidateXorbs report, wrapped in a
// *FileError or *XorbError.
var (
	ErrUnknownXorb         = errors.New("shard: unknown xorb")
	ErrChunkRange          = errors.New("shard: term chunk range outside its xorb")
	ErrUnpackedSize        = errors.New("shard: term unpacked size differs from its chunks")
	ErrVerification        = errors.New("shard: term verification hash mismatch")
	ErrMissingVerification = errors.New("shard: verification entries on some files only")
	ErrFileHash            = errors.New("shard: file hash differs from its chunks")
	ErrXorbListingMismatch = errors.New("shard: xorb listing differs from the stored xorb")
)

// FileError reports a file of an uploaded shard that does not agree with
// the xorbs it references.
type FileError struct {
	File   int             // index in Shard.Files
	Hash   merklehash.Hash // the file's hash
	Term   int             // index in File.Terms, or -1 for the file as a whole
	Err    error           // one of the Err* conditions above
	Detail string
}

func (e *FileError) Error() string {
	where := fmt.Sprintf("file %d (%s)", e.File, e.Hash)
	if e.Term >= 0 {
		where += fmt.Sprintf(" term %d", e.Term)
	}
	return fmt.Sprintf("%v: %s: %s", e.Err, where, e.Detail)
}

func (e *FileError) Unwrap() error { return e.Err }

// XorbError reports a xorb block of an uploaded shard that does not agree
// with the stored xorb.
type XorbError struct {
	Xorb   int // index in Shard.Xorbs
	Hash   merklehash.Hash
	Chunk  int // chunk index, or -1 for the block as a whole
	Err    error
	Detail string
}

func (e *XorbError) Error() string {
	where := fmt.Sprintf("xorb %d (%s)", e.Xorb, e.Hash)
	if e.Chunk >= 0 {
		where += fmt.Sprintf(" chunk %d", e.Chunk)
	}
	return fmt.Sprintf("%v: %s: %s", e.Err, where, e.Detail)
}

func (e *XorbError) Unwrap() error { return e.Err }

// ValidateFiles checks the file section of an uploaded shard the way the CAS
// does (§4.6): either every file carries verification entries or none does;
// every term names a known xorb, its chunk range lies inside that xorb, its
// unpacked size equals the sum of the chunk sizes, and its verification hash
// (if present) is the verification hash of those chunks. With checkFileHash
// it also recomputes each file hash from the chunks of its terms.
// The first problem found is returned as a *FileError.
func (s *Shard) ValidateFiles(known XorbChunks, checkFileHash bool) error {
	withVerification := 0
	for i := range s.Files {
		if s.Files[i].Verification != nil {
			withVerification++
		}
	}
	mixed := withVerification != 0 && withVerification != len(s.Files)

	var hashes []merklehash.Hash
	for i := range s.Files {
		f := &s.Files[i]
		fail := func(term int, err error, format string, args ...any) error {
			return &FileError{File: i, Hash: f.Hash, Term: term, Err: err, Detail: fmt.Sprintf(format, args...)}
		}
		if mixed && f.Verification == nil {
			return fail(-1, ErrMissingVerification, "%d of %d files carry verification entries, this one does not",
				withVerification, len(s.Files))
		}
		if f.Verification != nil && len(f.Verification) != len(f.Terms) {
			return fail(-1, ErrVerification, "%d verification hashes for %d terms", len(f.Verification), len(f.Terms))
		}
		var b merklehash.Builder
		for j, t := range f.Terms {
			chunks, ok := known(t.XorbHash)
			if !ok {
				return fail(j, ErrUnknownXorb, "xorb %s", t.XorbHash)
			}
			if t.ChunkStart >= t.ChunkEnd || uint64(t.ChunkEnd) > uint64(len(chunks)) {
				return fail(j, ErrChunkRange, "chunks [%d,%d) of xorb %s with %d chunks",
					t.ChunkStart, t.ChunkEnd, t.XorbHash, len(chunks))
			}
			span := chunks[t.ChunkStart:t.ChunkEnd]
			var size uint64
			hashes = hashes[:0]
			for _, c := range span {
				size += uint64(c.Size)
				hashes = append(hashes, c.Hash)
				if checkFileHash {
					b.Add(c.Hash, uint64(c.Size))
				}
			}
			if size != uint64(t.UnpackedBytes) {
				return fail(j, ErrUnpackedSize, "term says %d bytes, chunks [%d,%d) of xorb %s hold %d",
					t.UnpackedBytes, t.ChunkStart, t.ChunkEnd, t.XorbHash, size)
			}
			if f.Verification != nil {
				if got := merklehash.VerificationHash(hashes); got != f.Verification[j] {
					return fail(j, ErrVerification, "shard has %s, chunks give %s", f.Verification[j], got)
				}
			}
		}
		if checkFileHash {
			if got := b.FileHash(); got != f.Hash {
				return fail(-1, ErrFileHash, "chunks of the %d terms give %s", len(f.Terms), got)
			}
		}
	}
	return nil
}

// ValidateXorbs checks the xorb section of an uploaded shard: every xorb
// listed must be known and the listing must match the stored chunks (hash,
// offset, size; flags are the server's and not compared), as must
// BytesInXorb. The first problem found is returned as a *XorbError.
func (s *Shard) ValidateXorbs(known XorbChunks) error {
	for i := range s.Xorbs {
		x := &s.Xorbs[i]
		fail := func(chunk int, err error, format string, args ...any) error {
			return &XorbError{Xorb: i, Hash: x.Hash, Chunk: chunk, Err: err, Detail: fmt.Sprintf(format, args...)}
		}
		chunks, ok := known(x.Hash)
		if !ok {
			return fail(-1, ErrUnknownXorb, "not uploaded before the shard")
		}
		if len(chunks) != len(x.Chunks) {
			return fail(-1, ErrXorbListingMismatch, "shard lists %d chunks, stored xorb has %d", len(x.Chunks), len(chunks))
		}
		var size uint64
		for j, c := range x.Chunks {
			k := chunks[j]
			if c.Hash != k.Hash || c.Offset != k.Offset || c.Size != k.Size {
				return fail(j, ErrXorbListingMismatch, "shard lists %s at %d size %d, stored %s at %d size %d",
					c.Hash, c.Offset, c.Size, k.Hash, k.Offset, k.Size)
			}
			size += uint64(k.Size)
		}
		if size != uint64(x.BytesInXorb) {
			return fail(-1, ErrXorbListingMismatch, "BytesInXorb %d, stored chunks hold %d", x.BytesInXorb, size)
		}
	}
	return nil
}
