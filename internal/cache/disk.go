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
	tempPrefix = ".tmp-"
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
	// Entries live under Dir/chunks-v2.
	Dir string
	// MaxBytes bounds the total size of the entry files.
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
type Disk struct {
	cfg  DiskConfig
	root string
	log  *slog.Logger

	mu  sync.Mutex
	idx *index[diskItem]

	c counters
}

type diskItem struct {
	touched time.Time // last modification-time refresh of the file
}

var (
	_ Store         = (*Disk)(nil)
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
		cfg:  cfg,
		root: filepath.Join(cfg.Dir, diskLayout),
		log:  cfg.Logger,
		idx:  newIndex[diskItem](),
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

// scan rebuilds the index from the directory.
func (d *Disk) scan() error {
	type found struct {
		key   Key
		size  int64
		mtime time.Time
	}
	var all []found
	dirs, err := os.ReadDir(d.root)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	now := time.Now()
	for _, dir := range dirs {
		if !dir.IsDir() || len(dir.Name()) != 2 {
			continue
		}
		sub := filepath.Join(d.root, dir.Name())
		files, err := os.ReadDir(sub)
		if err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		for _, f := range files {
			info, err := f.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue // vanished meanwhile, or not ours
			}
			if strings.HasPrefix(f.Name(), tempPrefix) {
				if now.Sub(info.ModTime()) > staleTemp {
					_ = os.Remove(filepath.Join(sub, f.Name()))
				}
				continue
			}
			k, ok := parseEntryName(f.Name())
			if !ok || f.Name()[:2] != dir.Name() {
				continue
			}
			all = append(all, found{k, info.Size(), info.ModTime()})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	var evict []Key
	d.mu.Lock()
	for _, f := range all {
		d.idx.add(f.key, f.size, diskItem{touched: f.mtime})
	}
	for d.idx.size > d.cfg.MaxBytes {
		it := d.idx.oldest()
		d.idx.remove(it)
		evict = append(evict, it.key)
	}
	d.mu.Unlock()
	d.c.evictions.Add(uint64(len(evict)))
	d.removeFiles(evict)
	return nil
}

func (d *Disk) removeFiles(keys []Key) {
	for _, k := range keys {
		if err := os.Remove(d.path(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("cache: removing entry", "key", k.String(), "err", err)
		}
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

		e, err := d.read(k, start, end)
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

func (d *Disk) read(k Key, start, end uint32) (*Entry, error) {
	f, err := os.Open(d.path(k))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return readEntry(f, info.Size(), k, start, end)
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

	if err := d.write(k, e); err != nil {
		d.c.errors.Add(1)
		return fmt.Errorf("cache: writing %s: %w", k, err)
	}

	var drop []Key
	d.mu.Lock()
	if it := d.idx.covering(k.Xorb, k.Start, k.End); it != nil {
		// A concurrent Put won: of the same key (its file and ours are
		// equal, and ours replaced it), or of a wider range, which makes
		// our file redundant.
		d.idx.touch(it)
		d.mu.Unlock()
		if it.key != k {
			d.removeFiles([]Key{k})
		}
		return nil
	}
	for _, it := range d.idx.covered(k) {
		d.idx.remove(it) // superseded by the new, wider entry
		drop = append(drop, it.key)
	}
	d.idx.add(k, size, diskItem{touched: time.Now()})
	evicted := 0
	for d.idx.size > d.cfg.MaxBytes {
		it := d.idx.oldest()
		d.idx.remove(it)
		drop = append(drop, it.key)
		evicted++
	}
	d.mu.Unlock()
	d.c.put(len(e.Data))
	d.c.evictions.Add(uint64(evicted))
	d.removeFiles(drop)
	return nil
}

func (d *Disk) write(k Key, e *Entry) (err error) {
	final := d.path(k)
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
	if _, err := f.Write(appendHeader(nil, e)); err != nil {
		return err
	}
	if _, err := f.Write(e.Data); err != nil {
		return err
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
	s.Entries, s.Size = int64(d.idx.len()), d.idx.size
	d.mu.Unlock()
	s.Capacity = d.cfg.MaxBytes
	return s
}
