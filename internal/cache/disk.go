package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

const (
	// diskLayout is the sub-directory of the cache directory that holds
	// entries in the current layout and format.
	diskLayout = "chunks-v2"
	// manifestLayout is the sub-directory that holds manifests.
	manifestLayout = "manifests-v1"
	tempPrefix     = ".tmp-"
	// staleTemp is the age after which a leftover temporary file (from a
	// crashed writer, perhaps in another process) is removed at startup.
	staleTemp = time.Hour
	// touchEvery bounds how often a hit refreshes a file's modification
	// time, which orders entries when the index is rebuilt.
	touchEvery = time.Hour
	// getAttempts bounds the covering entries one Get tries when files
	// vanish or fail their checks under it.
	getAttempts = 3
)

// oldLayouts are entry directories of earlier releases. Their entries are
// never read (a chunks-v1 entry may hold chunks that were never proven);
// NewDisk removes them in the background.
var oldLayouts = []string{"chunks-v1"}

// DiskConfig configures a Disk store.
type DiskConfig struct {
	// Dir is the cache directory; it is created (mode 0700) if missing.
	// Entries live under Dir/chunks-v2, manifests under Dir/manifests-v1.
	Dir string
	// MaxBytes bounds the total size of the entry and manifest files.
	MaxBytes int64
	// Sync makes every write fsync the entry file before renaming it into
	// place. Without it a crash can leave a renamed but incomplete file,
	// which the checksums catch on the next read.
	Sync bool
	// Logger receives corrupt-entry and I/O warnings; nil discards them.
	Logger *slog.Logger
}

// Validate checks the configuration.
func (c DiskConfig) Validate() error {
	if c.Dir == "" {
		return errors.New("cache: disk cache directory not set")
	}
	if c.MaxBytes <= 0 {
		return fmt.Errorf("cache: disk cache size %d, want > 0", c.MaxBytes)
	}
	return nil
}

// Disk is a Store that keeps one file per entry under a directory, bounded by
// bytes with least-recently-used eviction. The index (keys, sizes, recency)
// lives in memory and is rebuilt from the directory when a Disk is opened;
// every read is checked against the entry's checksums.
//
// Several processes may share a directory: files appear by atomic rename and
// a file that vanishes is a miss. Each process bounds only what it knows of,
// so together they may hold more than one MaxBytes.
//
// Disk is also a ManifestStore: one file per xorb holds its manifest in the
// stored form of Manifest.MarshalBinary. Manifest files count against
// MaxBytes and are evicted with the entries, least recently used first.
// GetManifest reads the file whether or not the index knows it, so a
// manifest another process wrote is found at once.
type Disk struct {
	cfg   DiskConfig
	root  string // entries
	mroot string // manifests
	log   *slog.Logger

	mu  sync.Mutex
	idx *index[diskItem]

	c counters
}

type diskItem struct {
	touched time.Time // last modification-time refresh of the file
	// proven: provenID is the file a caller proved (see vouch.go).
	proven   bool
	provenID fileID
}

var (
	_ Store         = (*Disk)(nil)
	_ ManifestStore = (*Disk)(nil)
	_ StatsReporter = (*Disk)(nil)
)

// NewDisk opens (creating if needed) a disk store and rebuilds its index by
// scanning the directory. Entries beyond MaxBytes are evicted, oldest
// modification time first, and stale temporary files are removed. The entry
// directories of earlier releases (chunks-v1), if any, are removed by a
// background goroutine, so that a large old cache does not hold up startup;
// they are not counted against MaxBytes.
func NewDisk(cfg DiskConfig) (*Disk, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Disk{
		cfg:   cfg,
		root:  filepath.Join(cfg.Dir, diskLayout),
		mroot: filepath.Join(cfg.Dir, manifestLayout),
		log:   cfg.Logger,
		idx:   newIndex[diskItem](),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(d.root, 0o700); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if err := d.scan(); err != nil {
		return nil, err
	}
	d.removeOldLayouts()
	return d, nil
}

// removeOldLayouts starts removing the directories of oldLayouts that exist.
// Nothing reads them, so removal may take its time (or be cut short by the
// process exiting: the next NewDisk goes on with it).
func (d *Disk) removeOldLayouts() {
	var old []string
	for _, name := range oldLayouts {
		p := filepath.Join(d.cfg.Dir, name)
		if _, err := os.Lstat(p); err == nil {
			old = append(old, p)
		}
	}
	if len(old) == 0 {
		return
	}
	go func() {
		for _, p := range old {
			if err := os.RemoveAll(p); err != nil {
				d.log.Warn("cache: removing an old cache layout", "dir", p, "err", err)
				continue
			}
			d.log.Info("cache: removed an old cache layout", "dir", p)
		}
	}()
}

// entryName is the file name of k: "<xorb hash>.<start>-<end>".
func entryName(k Key) string {
	return k.Xorb.String() + "." + strconv.FormatUint(uint64(k.Start), 10) + "-" + strconv.FormatUint(uint64(k.End), 10)
}

// parseEntryName is the inverse of entryName; it accepts only the canonical
// form.
func parseEntryName(name string) (Key, bool) {
	var k Key
	hs, rng, ok := strings.Cut(name, ".")
	if !ok {
		return k, false
	}
	ss, es, ok := strings.Cut(rng, "-")
	if !ok {
		return k, false
	}
	h, err := merklehash.Parse(hs)
	if err != nil {
		return k, false
	}
	s, err1 := strconv.ParseUint(ss, 10, 32)
	e, err2 := strconv.ParseUint(es, 10, 32)
	if err1 != nil || err2 != nil {
		return k, false
	}
	k = Key{Xorb: h, Start: uint32(s), End: uint32(e)}
	if checkRange(k.Start, k.End) != nil || entryName(k) != name {
		return k, false
	}
	return k, true
}

// path is where k's file lives: a fan-out directory named by the first two
// characters of the xorb hash string, then the entry name.
func (d *Disk) path(k Key) string {
	name := entryName(k)
	return filepath.Join(d.root, name[:2], name)
}

// manifestPath is where the manifest of xorb lives: a fan-out directory
// named by the first two characters of the xorb hash string, then the hash.
func (d *Disk) manifestPath(xorb merklehash.Hash) string {
	name := xorb.String()
	return filepath.Join(d.mroot, name[:2], name)
}

// parseManifestName accepts the canonical file name of a manifest: a xorb
// hash string.
func parseManifestName(name string) (merklehash.Hash, bool) {
	h, err := merklehash.Parse(name)
	return h, err == nil && h.String() == name
}

// itemPath is the file of an index item.
func (d *Disk) itemPath(it *item[diskItem]) string {
	if it.manifest {
		return d.manifestPath(it.key.Xorb)
	}
	return d.path(it.key)
}

// scan rebuilds the index from the entry and manifest directories.
func (d *Disk) scan() error {
	type found struct {
		key      Key
		manifest bool
		size     int64
		mtime    time.Time
	}
	var all []found
	err := scanFiles(d.root, func(fan, name string, info fs.FileInfo) {
		if k, ok := parseEntryName(name); ok && name[:2] == fan {
			all = append(all, found{k, false, info.Size(), info.ModTime()})
		}
	})
	if err != nil {
		return err
	}
	err = scanFiles(d.mroot, func(fan, name string, info fs.FileInfo) {
		if h, ok := parseManifestName(name); ok && name[:2] == fan {
			all = append(all, found{Key{Xorb: h}, true, info.Size(), info.ModTime()})
		}
	})
	if err != nil {
		return err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	d.mu.Lock()
	for _, f := range all {
		if f.manifest {
			d.idx.addManifest(f.key.Xorb, f.size, diskItem{touched: f.mtime})
		} else {
			d.idx.add(f.key, f.size, diskItem{touched: f.mtime})
		}
	}
	evict := d.evictLocked()
	d.mu.Unlock()
	d.c.evictions.Add(uint64(len(evict)))
	d.removeItems(evict)
	return nil
}

// scanFiles calls add for every regular file in the two-character fan-out
// directories under root, except temporary files, which it removes when
// they are stale. A missing root holds nothing.
func scanFiles(root string, add func(fan, name string, info fs.FileInfo)) error {
	now := time.Now()
	return listFiles(root, func(fan string, info fs.FileInfo) {
		path := filepath.Join(root, fan, info.Name())
		if strings.HasPrefix(info.Name(), tempPrefix) {
			if now.Sub(info.ModTime()) > staleTemp {
				_ = os.Remove(path)
			}
			return
		}
		add(fan, info.Name(), info)
	})
}

// listFiles calls fn for every regular file, temporary files included, in
// the two-character fan-out directories under root, and changes nothing. A
// missing root holds nothing; a file that vanishes meanwhile is skipped.
func listFiles(root string, fn func(fan string, info fs.FileInfo)) error {
	dirs, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	for _, dir := range dirs {
		if !dir.IsDir() || len(dir.Name()) != 2 {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, dir.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		for _, f := range files {
			info, err := f.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue // vanished meanwhile, or not ours
			}
			fn(dir.Name(), info)
		}
	}
	return nil
}

// evictLocked drops least recently used items from the index until it is
// within MaxBytes and returns them; the caller holds d.mu and removes their
// files (removeItems) once it has released it.
func (d *Disk) evictLocked() []*item[diskItem] {
	var out []*item[diskItem]
	for d.idx.size > d.cfg.MaxBytes {
		it := d.idx.oldest()
		d.idx.remove(it)
		out = append(out, it)
	}
	return out
}

func (d *Disk) removeItems(items []*item[diskItem]) {
	for _, it := range items {
		d.removeFile(d.itemPath(it))
	}
}

func (d *Disk) removeFiles(keys []Key) {
	for _, k := range keys {
		d.removeFile(d.path(k))
	}
}

func (d *Disk) removeFile(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.log.Warn("cache: removing a cache file", "path", path, "err", err)
	}
}

// Get implements Store.
func (d *Disk) Get(ctx context.Context, xorb merklehash.Hash, start, end uint32) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkRange(start, end); err != nil {
		return nil, err
	}
	for range getAttempts {
		d.mu.Lock()
		it := d.idx.covering(xorb, start, end)
		if it == nil {
			d.mu.Unlock()
			break
		}
		d.idx.touch(it)
		k := it.key
		refresh := time.Since(it.val.touched) > touchEvery
		if refresh {
			it.val.touched = time.Now()
		}
		d.mu.Unlock()

		e, err := d.read(it, k, start, end, lendFiles(ctx))
		switch {
		case err == nil:
			if refresh {
				now := time.Now()
				_ = os.Chtimes(d.path(k), now, now)
			}
			d.c.hit(len(e.Data))
			return e, nil
		case errors.Is(err, fs.ErrNotExist):
			// Evicted meanwhile, possibly by another process.
			d.forget(it)
		case errors.Is(err, errCorrupt):
			d.log.Warn("cache: deleting corrupt entry", "key", k.String(), "err", err)
			d.c.corrupt.Add(1)
			if d.forget(it) {
				d.removeFiles([]Key{k})
			}
		default:
			d.c.errors.Add(1)
			return nil, fmt.Errorf("cache: reading %s: %w", k, err)
		}
	}
	d.c.misses.Add(1)
	return nil, fmt.Errorf("%w: %s", ErrNotFound, Key{Xorb: xorb, Start: start, End: end})
}

func (d *Disk) forget(it *item[diskItem]) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idx.remove(it)
}

// read reads chunks [start, end) of it's file and notes where they came
// from (see vouch.go): the file's identity when it is the same before and
// after the read. With lend (WithLentFiles) the entry keeps the file open
// (lent.go).
func (d *Disk) read(it *item[diskItem], k Key, start, end uint32, lend bool) (*Entry, error) {
	f, err := os.Open(d.path(k))
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	e, off, err := readEntryPooled(f, info.Size(), k, start, end, true)
	if err != nil {
		f.Close()
		return nil, err
	}
	if lend {
		e.lent = &lent{f: f, base: off}
		lentFiles.Add(1)
	} else {
		defer f.Close()
	}
	before, ok := idOf(info)
	if !ok {
		return e, nil
	}
	if info, err = f.Stat(); err != nil {
		return e, nil
	}
	if after, ok := idOf(info); ok && after == before {
		e.from = &origin{d: d, it: it, id: after, proven: d.vouched(it, after)}
	}
	return e, nil
}

// Put implements Store. The file is written under a temporary name in its
// final directory and renamed into place, so readers never see a partial
// entry under its real name.
func (d *Disk) Put(ctx context.Context, e *Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.Validate(); err != nil {
		return err
	}
	k := e.Key()
	size := encodedSize(e)
	if size > d.cfg.MaxBytes {
		return fmt.Errorf("%w: %s is %d bytes, capacity %d", ErrTooLarge, k, size, d.cfg.MaxBytes)
	}
	d.mu.Lock()
	if it := d.idx.covering(k.Xorb, k.Start, k.End); it != nil {
		d.idx.touch(it)
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()

	if err := d.writeFile(d.path(k), appendHeader(nil, e), e.Data); err != nil {
		d.c.errors.Add(1)
		return fmt.Errorf("cache: writing %s: %w", k, err)
	}

	d.record(k, size, len(e.Data), time.Now())
	return nil
}

// record indexes the entry file just put in place for k (size bytes on
// disk, dataLen of them data). A concurrent Put may have won: of the same
// key (its file and ours are equal, and ours replaced it), or of a wider
// range, which makes our file redundant. Otherwise k supersedes the
// entries it covers, and the store evicts down to its capacity.
func (d *Disk) record(k Key, size int64, dataLen int, touched time.Time) {
	var drop []*item[diskItem]
	d.mu.Lock()
	if it := d.idx.covering(k.Xorb, k.Start, k.End); it != nil {
		d.idx.touch(it)
		d.mu.Unlock()
		if it.key != k {
			d.removeFiles([]Key{k})
		}
		return
	}
	for _, it := range d.idx.covered(k) {
		d.idx.remove(it) // superseded by the new, wider entry
		drop = append(drop, it)
	}
	d.idx.add(k, size, diskItem{touched: touched})
	evicted := d.evictLocked()
	d.mu.Unlock()
	d.c.put(dataLen)
	d.c.evictions.Add(uint64(len(evicted)))
	d.removeItems(append(drop, evicted...))
}

// writeFile writes the concatenation of parts to final atomically: to a
// temporary file in final's directory, then renamed into place.
func (d *Disk) writeFile(final string, parts ...[]byte) (err error) {
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	for _, p := range parts {
		if _, err := f.Write(p); err != nil {
			return err
		}
	}
	if d.cfg.Sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), final)
}

// Delete implements Store. Besides the entries in its index it removes the
// overlapping files of xorb that other processes sharing the directory
// wrote, by reading the xorb's fan-out directory.
func (d *Disk) Delete(ctx context.Context, xorb merklehash.Hash, start, end uint32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkRange(start, end); err != nil {
		return err
	}
	want := Key{Xorb: xorb, Start: start, End: end}
	var drop []Key
	d.mu.Lock()
	for _, it := range d.idx.overlapping(want) {
		d.idx.remove(it)
		drop = append(drop, it.key)
	}
	d.mu.Unlock()
	d.removeFiles(drop)

	fan := filepath.Dir(d.path(want))
	files, err := os.ReadDir(fan)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		d.c.errors.Add(1)
		return fmt.Errorf("cache: %w", err)
	}
	prefix := xorb.String() + "."
	for _, f := range files {
		if !strings.HasPrefix(f.Name(), prefix) {
			continue
		}
		if k, ok := parseEntryName(f.Name()); ok && k.Overlaps(want) {
			if err := os.Remove(filepath.Join(fan, f.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				d.c.errors.Add(1)
				return fmt.Errorf("cache: %w", err)
			}
		}
	}
	return nil
}

// Stats implements StatsReporter.
func (d *Disk) Stats() Stats {
	s := d.c.snapshot()
	d.mu.Lock()
	s.Entries, s.Manifests, s.Size = int64(d.idx.len()), int64(d.idx.manifestCount()), d.idx.size
	d.mu.Unlock()
	s.Capacity = d.cfg.MaxBytes
	return s
}

// PutManifest implements ManifestStore. The file is written like an entry
// (temporary file, then rename) in the stored form, which is parsed and
// verified before it is written.
func (d *Disk) PutManifest(ctx context.Context, m *Manifest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	if _, err := ParseManifest(m.Xorb, b); err != nil {
		return err
	}
	size := int64(len(b))
	if size > d.cfg.MaxBytes {
		return fmt.Errorf("%w: manifest of %s is %d bytes, capacity %d", ErrTooLarge, m.Xorb, size, d.cfg.MaxBytes)
	}
	d.mu.Lock()
	if it := d.idx.manifest(m.Xorb); it != nil {
		d.idx.touch(it)
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()

	if err := d.writeFile(d.manifestPath(m.Xorb), b); err != nil {
		d.c.errors.Add(1)
		return fmt.Errorf("cache: writing the manifest of %s: %w", m.Xorb, err)
	}

	d.mu.Lock()
	if it := d.idx.manifest(m.Xorb); it != nil {
		// A concurrent PutManifest won; its file and ours are equal.
		d.idx.touch(it)
		d.mu.Unlock()
		return nil
	}
	d.idx.addManifest(m.Xorb, size, diskItem{touched: time.Now()})
	evicted := d.evictLocked()
	d.mu.Unlock()
	d.c.evictions.Add(uint64(len(evicted)))
	d.removeItems(evicted)
	return nil
}

// GetManifest implements ManifestStore. A file that fails ParseManifest is
// deleted and reported as a miss.
func (d *Disk) GetManifest(ctx context.Context, xorb merklehash.Hash) (*Manifest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := d.manifestPath(xorb)
	m, size, err := readManifestFile(path, xorb)
	switch {
	case err == nil:
		var evicted []*item[diskItem]
		now := time.Now()
		refresh := false
		d.mu.Lock()
		if it := d.idx.manifest(xorb); it != nil {
			d.idx.touch(it)
			if refresh = now.Sub(it.val.touched) > touchEvery; refresh {
				it.val.touched = now
			}
		} else {
			// Written by another process sharing the directory, or
			// before a restart and evicted from the index since.
			d.idx.addManifest(xorb, size, diskItem{touched: now})
			evicted = d.evictLocked()
		}
		d.mu.Unlock()
		if refresh {
			_ = os.Chtimes(path, now, now)
		}
		d.c.evictions.Add(uint64(len(evicted)))
		d.removeItems(evicted)
		return m, nil
	case errors.Is(err, fs.ErrNotExist):
		d.forgetManifest(xorb)
	case errors.Is(err, errCorrupt):
		d.log.Warn("cache: deleting corrupt manifest", "xorb", xorb.String(), "err", err)
		d.c.corrupt.Add(1)
		d.forgetManifest(xorb)
		d.removeFile(path)
	default:
		d.c.errors.Add(1)
		return nil, fmt.Errorf("cache: reading the manifest of %s: %w", xorb, err)
	}
	return nil, fmt.Errorf("%w: manifest of %s", ErrNotFound, xorb)
}

// readManifestFile reads and parses the manifest file at path; size is the
// file's size.
func readManifestFile(path string, xorb merklehash.Hash) (m *Manifest, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	m, _, err = readStoredManifest(f, info.Size(), xorb)
	return m, info.Size(), err
}

func (d *Disk) forgetManifest(xorb merklehash.Hash) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if it := d.idx.manifest(xorb); it != nil {
		d.idx.remove(it)
	}
}

// readBack reads chunks [k.Start, k.End) from the entry covering them,
// like Get but as the store's own maintenance: no hit is counted and the
// entry's recency is left alone. Tiered uses it to upload a spooled entry.
func (d *Disk) readBack(ctx context.Context, k Key) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	it := d.idx.covering(k.Xorb, k.Start, k.End)
	var stored Key
	if it != nil {
		stored = it.key
	}
	d.mu.Unlock()
	if it == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, k)
	}
	return d.read(it, stored, k.Start, k.End, false)
}
