package cache

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Staging is a Disk store in a folder of one process's own under a cache
// directory (StagingDirName/<pid>-<random>), for chunks that await a
// proof. The folder is locked while the process runs and removed by Close;
// OpenStaging removes the folders of processes that are gone, so nothing
// staged outlives its process.
type Staging struct {
	*Disk
	dir  string
	lock *os.File
}

// OpenStaging creates this process's staging store under cacheDir, bounded
// by maxBytes, after removing the staging folders whose process is gone
// (their lock is free; folders younger than a minute are left alone, see
// scanStaging).
func OpenStaging(cacheDir string, maxBytes int64, log *slog.Logger) (*Staging, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root := filepath.Join(cacheDir, StagingDirName)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("cache: staging: %w", err)
	}
	if folders, err := scanStaging(root); err == nil {
		now := time.Now()
		for _, f := range folders {
			if f.Live {
				continue
			}
			if _, err := removeStaging(f, now, false); err != nil {
				log.Warn("cache: could not remove a stale staging folder", "dir", f.Path, "err", err)
			}
		}
	}
	dir, err := os.MkdirTemp(root, strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("cache: staging: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, stagingLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		if err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cache: staging lock: %w", err)
	}
	d, err := NewDisk(DiskConfig{Dir: dir, MaxBytes: maxBytes, Logger: log})
	if err != nil {
		lock.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cache: staging: %w", err)
	}
	return &Staging{Disk: d, dir: dir, lock: lock}, nil
}

// Dir is the store's folder.
func (s *Staging) Dir() string { return s.dir }

// Close removes the folder and lets go of its lock.
func (s *Staging) Close() error {
	err := os.RemoveAll(s.dir)
	s.lock.Close()
	return err
}
