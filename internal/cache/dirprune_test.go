package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
)

func TestPruneDir(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	build := func(t *testing.T) (dir string, d *cache.Disk, files []string, sizes []int64) {
		dir = t.TempDir()
		d = newDisk(t, dir, 1<<30)
		x := newRealXorb(t, 21)
		// Oldest first: three entries, then the manifest.
		for i, e := range []*cache.Entry{x.entry(0, 1), x.entry(1, 2), x.entry(2, 3)} {
			put(t, d, e)
			p := entryPath(dir, e.Key())
			setMtime(t, p, now.Add(-time.Duration(4-i)*time.Hour))
			files = append(files, p)
		}
		putManifest(t, d, x.m)
		files = append(files, manifestPath(dir, x.m.Xorb))
		setMtime(t, files[3], now.Add(-30*time.Minute))
		for _, p := range files {
			info, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, info.Size())
		}
		return dir, d, files, sizes
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	removed := func(r *cache.PruneReport) []string {
		var out []string
		for _, f := range r.Removed {
			out = append(out, f.Path)
		}
		return out
	}

	t.Run("max-size", func(t *testing.T) {
		dir, d, files, sizes := build(t)
		total := sizes[0] + sizes[1] + sizes[2] + sizes[3]
		// One byte too many for dropping the oldest alone.
		r, err := cache.PruneDir(ctx, dir, cache.PruneOptions{MaxBytes: total - sizes[0] - 1, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if got := removed(r); !slices.Equal(got, files[:2]) {
			t.Errorf("removed %v, want the two oldest %v", got, files[:2])
		}
		if r.RemovedBytes != sizes[0]+sizes[1] || r.Kept != 2 || r.KeptBytes != sizes[2]+sizes[3] {
			t.Errorf("report %+v", r)
		}
		if exists(files[0]) || exists(files[1]) || !exists(files[2]) || !exists(files[3]) {
			t.Error("the files on disk do not match the report")
		}
		// The store using the directory: a miss for what went, a hit for
		// the rest.
		s, _ := cache.ScanDir(ctx, dir)
		if _, err := d.Get(ctx, s.Entries[0].Key.Xorb, 0, 1); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("pruned entry under a running store: %v", err)
		}
		if _, err := d.Get(ctx, s.Entries[0].Key.Xorb, 2, 3); err != nil {
			t.Errorf("kept entry under a running store: %v", err)
		}
	})

	t.Run("older-than", func(t *testing.T) {
		dir, _, files, _ := build(t)
		r, err := cache.PruneDir(ctx, dir, cache.PruneOptions{OlderThan: 150 * time.Minute, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if got := removed(r); !slices.Equal(got, files[:2]) {
			t.Errorf("removed %v, want those of 4h and 3h ago %v", got, files[:2])
		}
	})

	t.Run("dry-run", func(t *testing.T) {
		dir, _, files, _ := build(t)
		r, err := cache.PruneDir(ctx, dir, cache.PruneOptions{MaxBytes: 1, DryRun: true, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if got := removed(r); !slices.Equal(got, files) {
			t.Errorf("would remove %v, want all, oldest first %v", got, files)
		}
		for _, p := range files {
			if !exists(p) {
				t.Errorf("dry run removed %s", p)
			}
		}
	})

	t.Run("staging, temporary files, old layouts", func(t *testing.T) {
		dir, _, files, _ := build(t)
		live := makeStaging(t, dir, "100-live", true)
		dead := makeStaging(t, dir, "200-dead", false)
		young := makeStaging(t, dir, "300-young", false)
		debris := filepath.Join(dir, cache.StagingDirName, "debris")
		if err := os.Mkdir(debris, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{live, dead, debris} {
			setMtime(t, p, now.Add(-2*time.Hour))
		}
		oldTemp := filepath.Join(filepath.Dir(files[0]), ".tmp-1")
		newTemp := filepath.Join(filepath.Dir(files[0]), ".tmp-2")
		writeFile(t, oldTemp, []byte("x"))
		writeFile(t, newTemp, []byte("x"))
		setMtime(t, oldTemp, now.Add(-2*time.Hour))
		oldLayout := filepath.Join(dir, "chunks-v1")
		if err := os.MkdirAll(filepath.Join(oldLayout, "ab"), 0o700); err != nil {
			t.Fatal(err)
		}

		for _, dry := range []bool{true, false} {
			r, err := cache.PruneDir(ctx, dir, cache.PruneOptions{DryRun: dry, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			var staged []string
			for _, s := range r.Staging {
				staged = append(staged, s.Path)
			}
			slices.Sort(staged)
			if want := []string{dead, debris}; !slices.Equal(staged, want) {
				t.Errorf("dry run %v: staging removed %v, want %v", dry, staged, want)
			}
			if len(r.Removed) != 0 || len(r.Temp) != 1 || r.Temp[0].Path != oldTemp || len(r.OldLayouts) != 1 || len(r.Errors) != 0 {
				t.Errorf("dry run %v: report %+v", dry, r)
			}
			if gone := !exists(dead) && !exists(debris) && !exists(oldTemp) && !exists(oldLayout); gone == dry {
				t.Errorf("dry run %v: the stale things gone: %v", dry, gone)
			}
			if !exists(live) || !exists(young) || !exists(newTemp) {
				t.Errorf("dry run %v: removed a live folder, a young one or a fresh temporary file", dry)
			}
		}
	})
}

// Prune and verify running next to a store that writes and reads: the
// store's reads are hits with the right bytes or misses, never errors;
// verify never sees a partial file (entries appear by rename).
func TestDirToolsBesideARunningStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := newDisk(t, dir, 1<<30)
	x := newRealXorb(t, 31)
	n := x.n()
	done := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(done)
		for i := range 300 {
			s := uint32(i) % (n - 1)
			want := x.entry(s, s+1)
			if err := d.Put(ctx, want); err != nil {
				errs <- err
				return
			}
			got, err := d.Get(ctx, x.m.Xorb, s, s+1)
			switch {
			case errors.Is(err, cache.ErrNotFound):
			case err != nil:
				errs <- err
				return
			default:
				if diff := cachetest.Equal(got, want); diff != "" {
					errs <- errors.New(diff)
					return
				}
			}
		}
	}()
	removed := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		pr, err := cache.PruneDir(ctx, dir, cache.PruneOptions{MaxBytes: 100 << 10})
		if err != nil {
			t.Fatal(err)
		}
		removed += len(pr.Removed)
		r, err := cache.VerifyDir(ctx, dir, cache.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Failed() {
			t.Fatalf("verify beside a running store: %+v", r.Failures[0])
		}
	}
	select {
	case err := <-errs:
		t.Fatalf("the store: %v", err)
	default:
	}
	if removed == 0 {
		t.Error("premise: prune never removed a file under the store")
	}
}
