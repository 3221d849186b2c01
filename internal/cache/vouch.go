package cache

import (
	"os"
	"syscall"
	"time"
)

// Re-reading a disk entry costs a read and a CRC-32C pass; proving it
// against its xorb's manifest costs a BLAKE3 pass on top, about three
// times as much. The proof only needs to run once per stored file: the
// caller proves an entry and calls Entry.MarkProven, and the disk store
// remembers, in memory only, the identity of the file the entry was read
// from. A later Get that reads the same file, unchanged, returns an entry
// whose Proven reports true, and the caller may skip the BLAKE3 pass.
//
// "Unchanged" is the file's device, inode, size, modification time and
// status-change time (ctime), taken before and after the read. Any write,
// truncation, rename over, or timestamp change through the file system
// sets ctime to the current time, and no unprivileged call can set it
// back, so a consistent rewrite of the file (data, hashes and CRCs all
// redone) is caught. Damage below the file system (bit rot) leaves ctime
// alone; the per-chunk CRC-32C, still checked on every read, catches it.
// A file whose ctime is younger than vouchMinAge at the time of the proof
// is not remembered: on a file system with coarse timestamps a write in
// the same clock tick as the last change would not move ctime.
// Restarting the process forgets every proof.

// vouchMinAge: see above. A variable so that tests need not wait.
var vouchMinAge = 2 * time.Second

// fileID is what must not change between a proof and a read that relies
// on it.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

// idOf returns the identity of an open file, and false when the platform
// does not report one (then nothing is remembered).
func idOf(info os.FileInfo) (fileID, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{
		dev:   uint64(st.Dev),
		ino:   uint64(st.Ino),
		size:  st.Size,
		mtime: time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)).UnixNano(),
		ctime: time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec)).UnixNano(),
	}, true
}

// origin ties an entry read from a disk file to that file, for MarkProven
// and Proven.
type origin struct {
	d      *Disk
	it     *item[diskItem]
	id     fileID
	proven bool // the store vouches: the file is the one a proof saw
}

// Proven reports whether the store vouches that e's bytes are those of a
// stored file whose every chunk an earlier caller proved (MarkProven), and
// that the file has not changed since. Entries of other stores, and
// entries read from files not yet proven, report false.
func (e *Entry) Proven() bool { return e.from != nil && e.from.proven }

// MarkProven tells the store that produced e that every chunk of e was
// checked against its xorb's manifest. Only entries that cover the whole
// stored file are remembered; for other entries, and other stores, it
// does nothing.
func (e *Entry) MarkProven() {
	o := e.from
	if o == nil || o.proven || e.Key() != o.it.key {
		return
	}
	if time.Since(time.Unix(0, o.id.ctime)) < vouchMinAge {
		return
	}
	o.d.mu.Lock()
	defer o.d.mu.Unlock()
	if o.d.idx.byKey[o.it.key] == o.it {
		o.it.val.proven, o.it.val.provenID = true, o.id
	}
}

// vouched reports whether the file of it, read as id, is the one a proof
// saw.
func (d *Disk) vouched(it *item[diskItem], id fileID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return it.val.proven && it.val.provenID == id
}
