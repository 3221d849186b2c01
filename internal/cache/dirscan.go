package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// This file and dirverify.go, dirprune.go are the operator's view of a
// Disk store's directory (xetproxy cache du|ls|verify|prune): they read
// the directory itself, not a Disk's index, so they see what every process
// sharing it wrote, and they work while a server uses it.

// StagingDirName is the folder under a cache directory that holds the
// staging stores of running servers: one sub-folder per process, named
// "<pid>-<random>", whose ".lock" file the process holds an exclusive
// flock(2) on while it runs.
const StagingDirName = "staging"

// stagingLockName is the lock file of a staging folder.
const stagingLockName = ".lock"

// FileKind says what a file of a cache directory holds.
type FileKind int

const (
	KindEntry    FileKind = iota // an entry: chunks [Start, End) of a xorb
	KindManifest                 // the manifest of a xorb
	KindTemp                     // a write in progress, or left by a crash
)

func (k FileKind) String() string {
	switch k {
	case KindEntry:
		return "entry"
	case KindManifest:
		return "manifest"
	case KindTemp:
		return "temp"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// DirFile is one file of a cache directory, as listed (nothing in it is
// read).
type DirFile struct {
	Kind FileKind
	// Key names an entry; for a manifest only Xorb is set, for a
	// temporary file nothing.
	Key     Key
	Path    string
	Size    int64     // stored bytes: the file's size
	ModTime time.Time // last write, or last use refreshed by a hit (at most hourly)
}

// DecodedBytes is the decoded size of an entry's chunks as its file size
// implies (size minus the header for its chunk count); 0 for other kinds
// and for files too short to hold their header. VerifyDir checks it.
func (f DirFile) DecodedBytes() int64 {
	if f.Kind != KindEntry {
		return 0
	}
	return max(f.Size-int64(headerSize(f.Key.Len())), 0)
}

// StagingFolder is one staging store under StagingDirName.
type StagingFolder struct {
	Path string
	// PID is the process that created it, from its name (0 when the name
	// does not start with one).
	PID int
	// Live is true when its lock is held: its process is running. A
	// folder created less than a minute ago is presumed live (Recent).
	Live bool
	// Recent is true for a folder created less than a minute ago, whose
	// lock is not probed: its process may be between creating the lock
	// file and taking the lock, and a probe holding it at that instant
	// would make the process fail.
	Recent bool
	// Locked is false for a folder without a lock file (being created, or
	// debris).
	Locked  bool
	Files   int
	Bytes   int64
	ModTime time.Time
}

// OldLayout is a directory of an earlier release's layout (chunks-v1),
// never read; NewDisk removes it in the background.
type OldLayout struct {
	Path  string
	Files int
	Bytes int64
}

// DirScan is what ScanDir found in a cache directory.
type DirScan struct {
	Dir        string
	Entries    []DirFile // sorted by xorb hash (text form), then start, end
	Manifests  []DirFile // sorted by xorb hash (text form)
	Temp       []DirFile // .tmp-* files of entries and manifests
	Staging    []StagingFolder
	OldLayouts []OldLayout
}

// EntryBytes is the stored size of the entries.
func (s *DirScan) EntryBytes() int64 { return sumSize(s.Entries) }

// ManifestBytes is the stored size of the manifests.
func (s *DirScan) ManifestBytes() int64 { return sumSize(s.Manifests) }

// Bytes is what a Disk store counts against its MaxBytes: entries and
// manifests. Staging folders, temporary files and old layouts are not
// counted.
func (s *DirScan) Bytes() int64 { return s.EntryBytes() + s.ManifestBytes() }

func sumSize(fs []DirFile) int64 {
	var n int64
	for _, f := range fs {
		n += f.Size
	}
	return n
}

// ScanDir lists the cache directory dir as a Disk store lays it out: its
// entries and manifests (names and sizes only, no reads), temporary files,
// staging folders with whether their process runs, and old layouts. It
// changes nothing, except that probing the lock of a staging folder older
// than a minute takes it for an instant when it is free. A dir that does not exist is an error; one
// without the sub-directories is an empty cache.
func ScanDir(ctx context.Context, dir string) (*DirScan, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("cache: %s is not a directory", dir)
	}
	s := &DirScan{Dir: dir}
	root := filepath.Join(dir, diskLayout)
	err = listFiles(root, func(fan string, info fs.FileInfo) {
		name := info.Name()
		f := DirFile{Path: filepath.Join(root, fan, name), Size: info.Size(), ModTime: info.ModTime()}
		if strings.HasPrefix(name, tempPrefix) {
			f.Kind = KindTemp
			s.Temp = append(s.Temp, f)
		} else if k, ok := parseEntryName(name); ok && name[:2] == fan {
			f.Kind, f.Key = KindEntry, k
			s.Entries = append(s.Entries, f)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mroot := filepath.Join(dir, manifestLayout)
	err = listFiles(mroot, func(fan string, info fs.FileInfo) {
		name := info.Name()
		f := DirFile{Path: filepath.Join(mroot, fan, name), Size: info.Size(), ModTime: info.ModTime()}
		if strings.HasPrefix(name, tempPrefix) {
			f.Kind = KindTemp
			s.Temp = append(s.Temp, f)
		} else if h, ok := parseManifestName(name); ok && name[:2] == fan {
			f.Kind, f.Key = KindManifest, Key{Xorb: h}
			s.Manifests = append(s.Manifests, f)
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(s.Entries, func(i, j int) bool { return keyLess(s.Entries[i].Key, s.Entries[j].Key) })
	sort.Slice(s.Manifests, func(i, j int) bool { return keyLess(s.Manifests[i].Key, s.Manifests[j].Key) })
	sort.Slice(s.Temp, func(i, j int) bool { return s.Temp[i].Path < s.Temp[j].Path })

	if s.Staging, err = scanStaging(filepath.Join(dir, StagingDirName)); err != nil {
		return nil, err
	}
	for _, name := range oldLayouts {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			files, bytes := du(p)
			s.OldLayouts = append(s.OldLayouts, OldLayout{Path: p, Files: files, Bytes: bytes})
		}
	}
	return s, ctx.Err()
}

// keyLess orders keys by the text form of the xorb hash (the order of the
// file names, and of a listing filtered by a hash prefix), then by range.
func keyLess(a, b Key) bool {
	if a.Xorb != b.Xorb {
		return a.Xorb.String() < b.Xorb.String()
	}
	if a.Start != b.Start {
		return a.Start < b.Start
	}
	return a.End < b.End
}

// scanStaging lists the staging folders under root and probes the locks of
// those older than a minute. A process creates its folder, then the lock
// file, then takes the lock at once; the folder's modification time does
// not change afterwards (the store writes into sub-directories), so a
// folder older than a minute whose lock is free has no process.
func scanStaging(root string) ([]StagingFolder, error) {
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var out []StagingFolder
	for _, de := range ents {
		if !de.IsDir() {
			continue
		}
		p := filepath.Join(root, de.Name())
		info, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		f := StagingFolder{Path: p, ModTime: info.ModTime()}
		if pid, _, ok := strings.Cut(de.Name(), "-"); ok {
			f.PID, _ = strconv.Atoi(pid)
		}
		if time.Since(f.ModTime) < time.Minute {
			_, err := os.Stat(filepath.Join(p, stagingLockName))
			f.Locked, f.Live, f.Recent = err == nil, true, true
		} else {
			f.Locked, f.Live = probeStaging(p)
		}
		f.Files, f.Bytes = du(p)
		out = append(out, f)
	}
	return out, nil
}

// probeStaging reports whether the staging folder dir has a lock file and
// whether a process holds its lock. A free lock is taken (shared) and let
// go at once.
func probeStaging(dir string) (locked, live bool) {
	f, err := os.Open(filepath.Join(dir, stagingLockName))
	if err != nil {
		return false, false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	return true, errors.Is(err, syscall.EWOULDBLOCK)
}

// lockStaging takes the exclusive lock of the staging folder dir without
// waiting, as the owning process does, so that the folder can be removed
// while no process can be using it. The lock is let go when the file is
// closed.
func lockStaging(dir string) (*os.File, error) {
	f, err := os.Open(filepath.Join(dir, stagingLockName))
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// du counts the regular files under dir and their sizes; what cannot be
// read is skipped.
func du(dir string) (files int, bytes int64) {
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				files++
				bytes += info.Size()
			}
		}
		return nil
	})
	return files, bytes
}
