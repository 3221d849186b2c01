package engineconf

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Staging folders belong to one process each: a running one's survives
// another's start, a dead one's (its lock free) is removed, and closing
// removes one's own. Nothing staged survives a restart.
func TestStagingFolders(t *testing.T) {
	dir := t.TempDir()
	cfg := CacheConfig{Dir: dir, Size: 1 << 30}
	log := slog.New(slog.DiscardHandler)
	folders := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, cache.StagingDirName, "*"))
		return m
	}

	a, err := NewStaging(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ent := &cache.Entry{Xorb: merklehash.Hash{1}, Start: 0, End: 1, Offsets: []uint32{0, 3}, Hashes: []merklehash.Hash{merklehash.ChunkHash([]byte("abc"))}, Data: []byte("abc")}
	if err := a.Put(context.Background(), ent); err != nil {
		t.Fatal(err)
	}
	b, err := NewStaging(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(folders()); n != 2 {
		t.Fatalf("%d staging folders with two live stores, want 2", n)
	}
	if _, err := a.Get(context.Background(), ent.Xorb, 0, 1); err != nil {
		t.Fatalf("a live store's entry is gone after another started: %v", err)
	}

	// A dead process's folder: its lock file exists and nobody holds it.
	stale := filepath.Join(dir, cache.StagingDirName, "999999-stale")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, ".lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Folders younger than a minute are left alone (their process may be
	// about to take the lock): this one is older.
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	c, err := NewStaging(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale folder kept: %v", err)
	}
	if n := len(folders()); n != 3 {
		t.Fatalf("%d staging folders, want the 3 live ones", n)
	}
	for _, s := range []cache.Store{a, b, c} {
		if err := s.(interface{ Close() error }).Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(folders()); n != 0 {
		t.Fatalf("%d staging folders left after every store closed", n)
	}

	// Without a cache folder, staging is in memory; without a cache, none.
	if s, err := NewStaging(CacheConfig{Memory: 1 << 20}, log); err != nil || s == nil {
		t.Fatalf("memory staging: %v %v", s, err)
	}
	if s, err := NewStaging(CacheConfig{}, log); err != nil || s != nil {
		t.Fatalf("no cache: %v %v", s, err)
	}
}
