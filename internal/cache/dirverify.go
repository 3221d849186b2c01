package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// VerifyOptions configures VerifyDir.
type VerifyOptions struct {
	// Delete removes every file that fails (default: report only).
	Delete bool
	// OnFailure, when set, is called for each failure as it is found, in
	// the order of VerifyReport.Failures.
	OnFailure func(VerifyFailure)
}

// Checks that VerifyDir reports in VerifyFailure.Check.
const (
	// CheckStored: the stored form of an entry (magic, version, header
	// CRC-32C, key, offsets, sizes, per-chunk CRC-32C) or of a manifest
	// (its structure and its proof of the xorb hash that names it).
	CheckStored = "stored form"
	// CheckChunkHash: a chunk whose data does not hash to its stored
	// chunk hash.
	CheckChunkHash = "chunk hash"
	// CheckManifest: an entry whose chunks (hashes recomputed from the
	// data, and sizes) disagree with its xorb's verified manifest.
	CheckManifest = "manifest"
	// CheckRead: the file could not be read (permissions, I/O error); it
	// is not deleted.
	CheckRead = "read"
)

// VerifyFailure is one file that failed VerifyDir.
type VerifyFailure struct {
	File    DirFile
	Check   string // one of the Check* constants
	Err     error
	Deleted bool // removed (VerifyOptions.Delete)
}

// VerifyReport counts what VerifyDir checked.
type VerifyReport struct {
	Entries   int   // entry files checked, failed ones included
	Manifests int   // manifest files checked, failed ones included
	Chunks    int64 // chunks of the entries that passed
	Bytes     int64 // decoded bytes of the entries that passed
	// WithManifest counts the entries that passed and were checked chunk
	// by chunk against their xorb's manifest: the strong check. The
	// others passed their own checksums and hashes only, which someone
	// able to write the directory can recompute.
	WithManifest int
	// Vanished counts files removed by someone else (a server's eviction)
	// between the listing and their check; they are neither passed nor
	// failed.
	Vanished int
	Failures []VerifyFailure
}

// Failed reports whether any file failed.
func (r *VerifyReport) Failed() bool { return len(r.Failures) > 0 }

// VerifyDir reads every entry and manifest of the cache directory dir and
// checks everything that can be checked:
//
//   - a manifest must parse and prove the xorb hash that names it
//     (ParseManifest), so a forged one fails;
//   - an entry must pass the checks of every read (header and per-chunk
//     CRC-32C, key, offsets), and each chunk's data must hash to its stored
//     chunk hash;
//   - an entry of a xorb whose manifest passed must agree with it chunk by
//     chunk (hash and size), which catches an entry rewritten with
//     consistent hashes and checksums. For a one-chunk xorb, whose manifest
//     proves the chunk hash but not its size (see Manifest), a chunk that
//     hashes to the xorb hash proves a differing manifest size wrong: the
//     manifest fails, not the entry.
//
// Files are read one at a time, a xorb's manifest before its entries, so
// memory stays within one entry and one manifest. With opt.Delete a failed
// file is removed, unless it was replaced since it was read (a server wrote
// the key again). It is safe while servers use the directory: a file they
// evict meanwhile is counted as Vanished, and a file deleted under a server
// is a miss for it. The error is for the scan itself, or ctx; failures of
// files are in the report.
func VerifyDir(ctx context.Context, dir string, opt VerifyOptions) (*VerifyReport, error) {
	scan, err := ScanDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	r := &VerifyReport{}
	fail := func(f DirFile, check string, err error, info os.FileInfo) {
		vf := VerifyFailure{File: f, Check: check, Err: err}
		if opt.Delete && check != CheckRead {
			vf.Deleted, vf.Err = removeIfSame(f.Path, info, err)
		}
		r.Failures = append(r.Failures, vf)
		if opt.OnFailure != nil {
			opt.OnFailure(vf)
		}
	}

	// Walk the xorbs in order, each manifest before the entries of its
	// xorb: both lists are sorted by xorb hash text.
	ents, mans := scan.Entries, scan.Manifests
	for len(ents) > 0 || len(mans) > 0 {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		var xorb merklehash.Hash
		if len(ents) == 0 || (len(mans) > 0 && keyLess(mans[0].Key, ents[0].Key)) {
			xorb = mans[0].Key.Xorb
		} else {
			xorb = ents[0].Key.Xorb
		}
		var (
			m     *Manifest
			mf    DirFile
			minfo os.FileInfo
		)
		if len(mans) > 0 && mans[0].Key.Xorb == xorb {
			mf = mans[0]
			mans = mans[1:]
			m, minfo, err = verifyManifestFile(mf)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				r.Vanished++
			case err == nil:
				r.Manifests++
			case errors.Is(err, errCorrupt):
				r.Manifests++
				fail(mf, CheckStored, err, minfo)
			default:
				r.Manifests++
				fail(mf, CheckRead, err, minfo)
			}
		}
		for ; len(ents) > 0 && ents[0].Key.Xorb == xorb; ents = ents[1:] {
			if err := ctx.Err(); err != nil {
				return r, err
			}
			f := ents[0]
			e, info, check, err := verifyEntryFile(f, m)
			var wrongSize *oneChunkSizeError
			if errors.As(err, &wrongSize) {
				// The entry is the whole xorb, proven by its hash: the
				// manifest's unproven size is what is wrong.
				fail(mf, CheckStored, wrongSize, minfo)
				m, err = nil, nil
			}
			switch {
			case errors.Is(err, fs.ErrNotExist):
				r.Vanished++
				continue
			case err != nil:
				fail(f, check, err, info)
			default:
				r.Chunks += int64(f.Key.Len())
				r.Bytes += int64(len(e.Data))
				if m != nil {
					r.WithManifest++
				}
			}
			r.Entries++
		}
	}
	return r, nil
}

// verifyManifestFile reads and parses a manifest file; info describes the
// file that was read.
func verifyManifestFile(f DirFile) (*Manifest, os.FileInfo, error) {
	file, err := os.Open(f.Path)
	if err != nil {
		return nil, nil, err
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return nil, nil, err
	}
	m, _, err := readStoredManifest(file, info.Size(), f.Key.Xorb)
	return m, info, err
}

// verifyEntryFile reads a whole entry file with the checks of every read,
// re-hashes its chunks and, with m, checks them against the manifest. check
// names the check that failed.
func verifyEntryFile(f DirFile, m *Manifest) (e *Entry, info os.FileInfo, check string, err error) {
	file, err := os.Open(f.Path)
	if err != nil {
		return nil, nil, CheckRead, err
	}
	defer file.Close()
	if info, err = file.Stat(); err != nil {
		return nil, nil, CheckRead, err
	}
	k := f.Key
	e, err = readEntry(file, info.Size(), k, k.Start, k.End)
	switch {
	case errors.Is(err, errCorrupt):
		return nil, info, CheckStored, err
	case err != nil:
		return nil, info, CheckRead, err
	}
	if err := e.Verify(); err != nil {
		return nil, info, CheckChunkHash, err
	}
	if m == nil {
		return e, info, "", nil
	}
	if k.End > m.Len() {
		return nil, info, CheckManifest, fmt.Errorf("cache: %s: chunks up to %d, the manifest has %d", k, k.End, m.Len())
	}
	if m.Len() == 1 && k.Start == 0 && k.End == 1 && e.Hashes[0] == m.Xorb && uint32(len(e.Data)) != m.Sizes[0] {
		return e, info, CheckManifest, &oneChunkSizeError{Xorb: m.Xorb, Manifest: m.Sizes[0], Chunk: uint32(len(e.Data))}
	}
	for i := k.Start; i < k.End; i++ {
		if size := uint32(len(e.Chunk(i))); !m.Check(i, e.Hashes[i-k.Start], size) {
			return nil, info, CheckManifest, fmt.Errorf("cache: %s: chunk %d (hash %s, %d bytes) is not the manifest's (hash %s, %d bytes)",
				k, i, e.Hashes[i-k.Start], size, m.Hashes[i], m.Sizes[i])
		}
	}
	return e, info, "", nil
}

// oneChunkSizeError reports the manifest of a one-chunk xorb whose chunk
// size disagrees with the chunk itself. The Merkle root of one chunk is its
// hash, without its size, so ParseManifest cannot catch a wrong size; an
// entry whose chunk hashes to the xorb hash proves the size wrong.
type oneChunkSizeError struct {
	Xorb            merklehash.Hash
	Manifest, Chunk uint32
}

func (e *oneChunkSizeError) Error() string {
	return fmt.Sprintf("cache: manifest of %s: one chunk of %d bytes, the chunk (which hashes to the xorb hash) is %d bytes", e.Xorb, e.Manifest, e.Chunk)
}

// removeIfSame removes path if it is still the file described by info (a
// server may have written the key again since it was read: that file was
// not checked and stays). It returns whether it removed the file and the
// failure's error, joined with the removal's.
func removeIfSame(path string, info os.FileInfo, failure error) (bool, error) {
	if info == nil {
		return false, failure
	}
	now, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, failure // gone already
	}
	if err != nil {
		return false, errors.Join(failure, err)
	}
	if !os.SameFile(info, now) {
		return false, errors.Join(failure, errors.New("not deleted: the file was replaced since it was read"))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, errors.Join(failure, err)
	}
	return true, failure
}
