package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
)

// stagingDirName is the folder under --cache-dir that holds the staging
// stores: one sub-folder per running process, each locked while it runs.
const stagingDirName = "staging"

// NewStaging builds the store for chunks that await a proof (proxy.Config.
// Staging): a disk store in a folder of this process's own under
// --cache-dir, emptied at start so that nothing unproven survives a
// restart, or a memory store when there is no cache folder. Folders left by
// processes that are gone (their lock is free) are removed. nil when there
// is no cache.
func NewStaging(cfg Config, log *slog.Logger) (cache.Store, error) {
	switch {
	case cfg.CacheDir != "":
	case cfg.CacheMemory > 0:
		return cache.NewMemory(cfg.CacheMemory)
	case cfg.S3Bucket != "":
		return cache.NewMemory(DefaultS3Staging)
	default:
		return nil, nil
	}
	root := filepath.Join(cfg.CacheDir, stagingDirName)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	removeStaleStaging(root, log)
	dir, err := os.MkdirTemp(root, strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	lock, err := lockDir(dir, true)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("staging: %w", err)
	}
	d, err := cache.NewDisk(cache.DiskConfig{Dir: dir, MaxBytes: cfg.CacheSize, Logger: log})
	if err != nil {
		lock.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("staging: %w", err)
	}
	return &stagingDisk{Disk: d, dir: dir, lock: lock}, nil
}

// stagingDisk is a disk store that removes its folder when closed.
type stagingDisk struct {
	*cache.Disk
	dir  string
	lock *os.File
}

func (s *stagingDisk) Close() error {
	err := os.RemoveAll(s.dir)
	s.lock.Close()
	return err
}

// lockDir takes an exclusive lock on dir's lock file, held until the file
// is closed (or the process ends).
func lockDir(dir string, create bool) (*os.File, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), flags, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// removeStaleStaging removes the staging folders under root whose process
// is gone: their lock can be taken.
func removeStaleStaging(root string, log *slog.Logger) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, de := range ents {
		if !de.IsDir() {
			continue
		}
		dir := filepath.Join(root, de.Name())
		lock, err := lockDir(dir, false)
		if err != nil {
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // a running process's
			}
			// No lock file: a folder being created right now, or debris.
			if fi, serr := os.Stat(dir); serr != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("staging: could not remove a stale folder", "dir", dir, "err", err)
		}
		if lock != nil {
			lock.Close()
		}
	}
}
