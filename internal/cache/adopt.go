package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Promotion of staged entries. A staged entry is stored in the very form a
// proven entry takes (format.go), under the same cache directory, so once
// its chunks are proven it can become a cache entry by a rename: no read
// of its data, no second checksum pass, no second write. Copying it (Get
// from the staging store, Put in the cache) costs a read, a CRC pass and a
// write of every byte, more than the whole fill otherwise adds to a
// download.

// Adopter is implemented by stores that can take over an entry of a
// Staging store without copying it: Disk (by renaming its file) and Tiered
// over a Disk (which also queues the shared write, as Put does).
type Adopter interface {
	// Adopt moves the entry named k from st into the store, provided st
	// holds exactly that key and its stored chunk hashes are hashes (what
	// the caller proved). It returns the decoded bytes of the entry and
	// true when the store holds k afterwards (moved, or already covered);
	// false with a nil error when it could not take the entry as is (st
	// holds no entry of exactly k, or one with other hashes, or another
	// file system): the caller then copies what it can (Get, Put). The
	// staged entry is gone from st when Adopt reports true.
	Adopt(ctx context.Context, st *Staging, k Key, hashes []merklehash.Hash) (int, bool, error)
}

var (
	_ Adopter = (*Disk)(nil)
	_ Adopter = (*Tiered)(nil)
)

// Adopt implements Adopter. The staged file is hard-linked under a
// temporary name of this call's own in the entry's final directory and
// checked there: magic, version, header checksum, the key, the stored
// size, and the chunk hashes. Files are never written in place (every
// write makes a new file and renames it), so the linked file cannot change
// after the check, and the bytes that become the entry are the ones
// checked; it is then renamed to the entry's name, and the staged name
// removed. The entry is therefore in the cache before it leaves staging,
// so a reader looking in staging and then in the cache always finds it,
// and a crash at any point leaves a staged file (removed with its staging
// folder) or a temporary file (ignored, removed when stale), never an
// unproven entry. The chunk data is not read: its per-chunk CRC-32C,
// written with it, is checked on every read of the entry, as for any
// other. A file system without hard links makes Adopt report false.
func (d *Disk) Adopt(ctx context.Context, st *Staging, k Key, hashes []merklehash.Hash) (int, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	if checkRange(k.Start, k.End) != nil || len(hashes) != int(k.Len()) || st == nil || st.Disk == d {
		return 0, false, nil
	}
	src := st.Disk
	src.mu.Lock()
	sit := src.idx.byKey[k]
	src.mu.Unlock()
	if sit == nil {
		return 0, false, nil
	}
	d.mu.Lock()
	if it := d.idx.covering(k.Xorb, k.Start, k.End); it != nil {
		d.mu.Unlock()
		// Stored already (the same bytes, or a wider entry): nothing
		// to move; a Get here reads the header and the chunk CRCs,
		// which the caller's copy would do too.
		return 0, false, nil
	}
	d.mu.Unlock()
	final := d.path(k)
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		d.c.errors.Add(1)
		return 0, false, fmt.Errorf("cache: adopting %s: %w", k, err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf("%s%d-%d-%d", tempPrefix, os.Getpid(), adoptSeq.Add(1), rand.Uint32()))
	staged := src.path(k)
	if err := os.Link(staged, tmp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			src.forget(sit)
		}
		// Gone, another file system, no hard links, a name taken:
		// the caller copies what it can.
		return 0, false, nil
	}
	dataLen, size, err := d.checkAdopted(tmp, k, hashes)
	if err != nil {
		os.Remove(tmp)
		if errors.Is(err, errCorrupt) {
			d.log.Warn("cache: staged entry not promoted", "key", k.String(), "err", err)
			return 0, false, nil
		}
		d.c.errors.Add(1)
		return 0, false, fmt.Errorf("cache: adopting %s: %w", k, err)
	}
	if size > d.cfg.MaxBytes {
		os.Remove(tmp)
		return 0, false, fmt.Errorf("%w: %s is %d bytes, capacity %d", ErrTooLarge, k, size, d.cfg.MaxBytes)
	}
	// The modification time orders entries when the index is rebuilt:
	// the entry is new now, not when it was staged.
	now := time.Now()
	_ = os.Chtimes(tmp, now, now)
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		d.c.errors.Add(1)
		return 0, false, fmt.Errorf("cache: adopting %s: %w", k, err)
	}
	if src.forget(sit) {
		src.removeFile(staged)
	}
	d.record(k, size, dataLen, now)
	return dataLen, true, nil
}

// adoptSeq numbers Adopt's temporary names.
var adoptSeq atomic.Uint64

// checkAdopted checks the header of the entry file at path as the entry
// named k holding chunks whose hashes are want, and its size; it returns
// the data length and the file size. With DiskConfig.Sync it also syncs
// the file, as writeFile would have.
func (d *Disk) checkAdopted(path string, k Key, want []merklehash.Hash) (int, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	hb := make([]byte, headerSize(k.Len()))
	if err := readAtFull(f, hb, 0, k); err != nil {
		return 0, 0, err
	}
	h, err := parseHeader(hb, k)
	if err != nil {
		return 0, 0, err
	}
	if size := int64(len(hb)) + int64(h.dataLen); info.Size() != size {
		return 0, 0, corruptf(k, "stored size %d, header says %d", info.Size(), size)
	}
	for i, w := range want {
		if h.hash(uint32(i)) != w {
			return 0, 0, corruptf(k, "chunk %d: staged hash %s, proven %s", k.Start+uint32(i), h.hash(uint32(i)), w)
		}
	}
	if d.cfg.Sync {
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
	}
	return int(h.dataLen), info.Size(), nil
}

// Adopt implements Adopter when the local tier is the Spool disk and
// shared writes are queued: the local tier adopts the entry and the
// shared write is queued by key, read back from the disk when it runs, as
// for a Put. Otherwise it reports false and the caller copies.
func (t *Tiered) Adopt(ctx context.Context, st *Staging, k Key, hashes []merklehash.Hash) (int, bool, error) {
	local, ok := t.local.(*Disk)
	if !ok || t.cfg.SyncShared || t.cfg.Spool != local {
		return 0, false, nil
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return 0, false, ErrClosed
	}
	n, ok, err := local.Adopt(ctx, st, k, hashes)
	if err != nil && ctx.Err() == nil && !errors.Is(err, ErrTooLarge) {
		t.warn("cache: local tier adopt failed", "key", k.String(), "err", err)
		t.c.errors.Add(1)
	}
	if !ok {
		return 0, false, err
	}
	t.enqueue(ctx, queuedEntry{key: k, size: int64(n), hashes: hashesDigest(hashes)})
	t.c.put(n)
	return n, true, nil
}
