package metacache

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStorePersists(t *testing.T) {
	dir := t.TempDir()
	s, err := NewStore(StoreConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.Put("a key", []byte("value 1"))
	s.Put("a key", []byte("value 2"))
	s.Put("other", []byte("x"))
	if v, ok := s.Get("a key"); !ok || string(v) != "value 2" {
		t.Fatalf("get: %q %v", v, ok)
	}
	s2, err := NewStore(StoreConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := s2.Get("a key"); !ok || string(v) != "value 2" {
		t.Fatalf("after reopening: %q %v", v, ok)
	}
	if _, ok := s2.Get("never put"); ok {
		t.Fatal("a key never put was found")
	}
	// A file that is not its key's (renamed, or cut short) is a miss.
	if err := os.WriteFile(filepath.Join(dir, fileName("other")), []byte("a key\nvalue 2"), 0o600); err != nil {
		t.Fatal(err)
	}
	s3, _ := NewStore(StoreConfig{Dir: dir})
	if v, ok := s3.Get("other"); ok {
		t.Fatalf("a file holding another key answered: %q", v)
	}
}

func TestStoreBounds(t *testing.T) {
	dir := t.TempDir()
	val := bytes.Repeat([]byte{'v'}, 1000)
	s, err := NewStore(StoreConfig{Dir: dir, MemoryBytes: 5000, DiskBytes: 10000})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		s.Put(fmt.Sprint("key ", i), val)
	}
	if s.memSz > 5000 || s.ll.Len() > 5 {
		t.Errorf("memory: %d bytes, %d items", s.memSz, s.ll.Len())
	}
	var total int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		info, _ := e.Info()
		total += info.Size()
	}
	if total > 10000 || len(ents) == 0 {
		t.Errorf("disk: %d bytes in %d files, bound 10000", total, len(ents))
	}
	s4, _ := NewStore(StoreConfig{Dir: dir, MemoryBytes: 5000, DiskBytes: 10000})
	if _, ok := s4.Get("key 49"); !ok {
		t.Error("the newest value is gone from the disk")
	}
	if _, ok := s4.Get("key 0"); ok {
		t.Error("the oldest value is still on the disk")
	}

	// At open, the oldest files go first.
	dir2 := t.TempDir()
	s2, _ := NewStore(StoreConfig{Dir: dir2, DiskBytes: 1 << 20})
	old := time.Now().Add(-time.Hour)
	for i := range 10 {
		k := fmt.Sprint("key ", i)
		s2.Put(k, val)
		os.Chtimes(filepath.Join(dir2, fileName(k)), old.Add(time.Duration(i)*time.Minute), old.Add(time.Duration(i)*time.Minute))
	}
	s3, err := NewStore(StoreConfig{Dir: dir2, DiskBytes: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s3.Get("key 0"); ok {
		t.Error("the oldest value survived the smaller bound")
	}
	if _, ok := s3.Get("key 9"); !ok {
		t.Error("the newest value did not survive the smaller bound")
	}
}

func TestHealth(t *testing.T) {
	h := NewHealth(HealthConfig{Grace: 0, RetryEvery: time.Hour})
	if h.Offline() || !h.TryUpstream() {
		t.Fatal("a new Health is offline")
	}
	h.Observe(&testNetErr{})
	st := h.State()
	if !h.Offline() || !st.Offline || st.Forced || st.Since.IsZero() || st.LastError == "" {
		t.Fatalf("after a failure: %+v", st)
	}
	if !h.TryUpstream() {
		t.Fatal("no request let through to notice the Hub coming back")
	}
	if h.TryUpstream() {
		t.Fatal("a second request let through within RetryEvery")
	}
	h.Observe(nil)
	if h.Offline() || h.State().LastOK.IsZero() {
		t.Fatalf("an answer did not bring it back: %+v", h.State())
	}

	g := NewHealth(HealthConfig{Grace: time.Hour})
	g.Observe(&testNetErr{})
	if g.Offline() {
		t.Fatal("offline within the grace")
	}
	f := NewHealth(HealthConfig{Offline: true})
	if !f.Offline() || f.TryUpstream() || !f.State().Forced {
		t.Fatal("forced offline lets requests through")
	}
}

type testNetErr struct{}

func (*testNetErr) Error() string   { return "dial tcp: connection refused" }
func (*testNetErr) Timeout() bool   { return false }
func (*testNetErr) Temporary() bool { return false }
