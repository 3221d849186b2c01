package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"
)

// PruneOptions configures PruneDir. With neither MaxBytes nor OlderThan,
// only stale staging folders, stale temporary files and old layouts go.
type PruneOptions struct {
	// MaxBytes, when > 0, removes entries and manifests least recently
	// used first (oldest modification time, the order a Disk store
	// rebuilds its LRU from) until they hold at most MaxBytes.
	MaxBytes int64
	// OlderThan, when > 0, removes entries and manifests not written or
	// used for that long.
	OlderThan time.Duration
	// DryRun reports what would go and removes nothing.
	DryRun bool
	// Now is the reference time for OlderThan and stale temporary files;
	// zero means time.Now().
	Now time.Time
}

// PruneReport is what PruneDir removed (or, with DryRun, would remove).
type PruneReport struct {
	Removed      []DirFile // entries and manifests, least recently used first
	RemovedBytes int64
	Kept         int   // entries and manifests left
	KeptBytes    int64 // their stored size
	Staging      []StagingFolder
	Temp         []DirFile // temporary files older than an hour
	OldLayouts   []OldLayout
	// Errors are removals that failed; the rest went on.
	Errors []error
}

// PruneDir shrinks the cache directory dir: entries and manifests by
// opt.MaxBytes and opt.OlderThan, and in any case the staging folders of
// processes that are gone (their lock is free; the folder is removed while
// holding it, so a process cannot start using it meanwhile), temporary
// files older than an hour and the directories of old layouts.
//
// It is safe while servers use the directory. A server's Disk store
// notices a removed entry at its next lookup of it, which is then a miss
// (the file is dropped from its index and filled again from upstream); a
// removed manifest is fetched again. A server's index keeps counting the
// bytes of removed files until it looks them up, so its own eviction may
// free more than needed meanwhile; restarting it rebuilds the index.
// Recency on disk is refreshed by hits at most hourly, so the LRU order
// here is that of the last hour at best.
func PruneDir(ctx context.Context, dir string, opt PruneOptions) (*PruneReport, error) {
	if opt.MaxBytes < 0 || opt.OlderThan < 0 {
		return nil, fmt.Errorf("cache: prune: negative bound")
	}
	scan, err := ScanDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	r := &PruneReport{}
	remove := func(path string) bool {
		if opt.DryRun {
			return true
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.Errors = append(r.Errors, err)
			return false
		}
		return true
	}

	files := append(append([]DirFile(nil), scan.Entries...), scan.Manifests...)
	sort.SliceStable(files, func(i, j int) bool { return files[i].ModTime.Before(files[j].ModTime) })
	total := sumSize(files)
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		old := opt.OlderThan > 0 && now.Sub(f.ModTime) > opt.OlderThan
		over := opt.MaxBytes > 0 && total > opt.MaxBytes
		if (old || over) && remove(f.Path) {
			r.Removed = append(r.Removed, f)
			r.RemovedBytes += f.Size
			total -= f.Size
			continue
		}
		r.Kept++
	}
	r.KeptBytes = total

	for _, f := range scan.Temp {
		if now.Sub(f.ModTime) > staleTemp && remove(f.Path) {
			r.Temp = append(r.Temp, f)
		}
	}
	for _, s := range scan.Staging {
		if s.Live {
			continue
		}
		if ok, err := removeStaging(s, now, opt.DryRun); err != nil {
			r.Errors = append(r.Errors, err)
		} else if ok {
			r.Staging = append(r.Staging, s)
		}
	}
	for _, o := range scan.OldLayouts {
		if !opt.DryRun {
			if err := os.RemoveAll(o.Path); err != nil {
				r.Errors = append(r.Errors, err)
				continue
			}
		}
		r.OldLayouts = append(r.OldLayouts, o)
	}
	return r, ctx.Err()
}

// removeStaging removes the staging folder s if no process uses it: with
// its lock taken. A folder younger than a minute is left alone: a process
// creates its folder, then the lock file, then takes the lock, and must not
// find it taken or the folder gone in between.
func removeStaging(s StagingFolder, now time.Time, dryRun bool) (bool, error) {
	if now.Sub(s.ModTime) < time.Minute {
		return false, nil
	}
	if s.Locked {
		lock, err := lockStaging(s.Path)
		if err != nil {
			return false, nil // held (its process runs), or removed meanwhile
		}
		defer lock.Close()
	}
	if dryRun {
		return true, nil
	}
	return true, os.RemoveAll(s.Path)
}
