package cache

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A failed file that was replaced after it was read (a server wrote the key
// again by rename) is not deleted: the new file was never checked.
func TestRemoveIfSame(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("bad"), 0o600); err != nil {
		t.Fatal(err)
	}
	read, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	failure := errors.New("checksum")

	tmp := filepath.Join(dir, ".tmp-1")
	if err := os.WriteFile(tmp, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if ok, err := removeIfSame(p, read, failure); ok || !errors.Is(err, failure) {
		t.Errorf("replaced file: removed %v, err %v", ok, err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "new" {
		t.Fatalf("the replacing file is gone or changed: %q, %v", b, err)
	}

	now, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := removeIfSame(p, now, failure); !ok || err != failure {
		t.Errorf("same file: removed %v, err %v", ok, err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("same file still there: %v", err)
	}
}
