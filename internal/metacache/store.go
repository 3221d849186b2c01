package metacache

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Defaults of StoreConfig.
const (
	DefaultMemoryBytes = 64 << 20
	DefaultDiskBytes   = 256 << 20
	// maxValue bounds one value: larger ones are not stored (a tree page
	// of a huge repo is asked again instead).
	maxValue = 16 << 20
)

// StoreConfig configures a Store.
type StoreConfig struct {
	// Dir keeps the values across restarts; "" = memory only.
	Dir string
	// MemoryBytes bounds the values held in memory (default
	// DefaultMemoryBytes); DiskBytes those in Dir (default DefaultDiskBytes).
	MemoryBytes int64
	DiskBytes   int64
	Logger      *slog.Logger
}

// Store maps string keys to byte values: an LRU in memory, written through
// to Dir. Safe for concurrent use. Failures of the directory are logged
// and otherwise ignored: the store is a cache.
type Store struct {
	cfg StoreConfig
	log *slog.Logger

	mu     sync.Mutex
	ll     list.List // of *memItem, front = most recent
	mem    map[string]*list.Element
	memSz  int64
	files  map[string]diskFile // by file name
	seq    uint64              // numbers writes, oldest first
	diskSz int64
}

type diskFile struct {
	size int64
	seq  uint64 // order of writing (at open: of modification time)
}

type memItem struct {
	key string
	val []byte
}

// NewStore opens a store, creating Dir if needed and removing the oldest
// files past DiskBytes.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.MemoryBytes == 0 {
		cfg.MemoryBytes = DefaultMemoryBytes
	}
	if cfg.DiskBytes == 0 {
		cfg.DiskBytes = DefaultDiskBytes
	}
	s := &Store{cfg: cfg, log: cfg.Logger, mem: map[string]*list.Element{}, files: map[string]diskFile{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("metadata cache: %w", err)
	}
	ents, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("metadata cache: %w", err)
	}
	type found struct {
		name  string
		size  int64
		mtime time.Time
	}
	var all []found
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if strings.HasPrefix(e.Name(), ".tmp-") {
			os.Remove(filepath.Join(cfg.Dir, e.Name()))
			continue
		}
		all = append(all, found{e.Name(), info.Size(), info.ModTime()})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	for _, f := range all {
		s.seq++
		s.files[f.name] = diskFile{f.size, s.seq}
		s.diskSz += f.size
	}
	s.mu.Lock()
	drop := s.evictDiskLocked()
	s.mu.Unlock()
	s.remove(drop)
	return s, nil
}

// fileName is the file of key: the hex SHA-256 of the key.
func fileName(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

// Get returns the value of key.
func (s *Store) Get(key string) ([]byte, bool) {
	s.mu.Lock()
	if el, ok := s.mem[key]; ok {
		s.ll.MoveToFront(el)
		v := el.Value.(*memItem).val
		s.mu.Unlock()
		return v, true
	}
	_, onDisk := s.files[fileName(key)]
	s.mu.Unlock()
	if !onDisk {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, fileName(key)))
	if err != nil {
		return nil, false
	}
	// A file holds the key, a newline, then the value: a file that is not
	// this key's (or is cut short) is a miss.
	k, v, ok := bytes.Cut(b, []byte{'\n'})
	if !ok || string(k) != key {
		return nil, false
	}
	s.mu.Lock()
	s.putMemLocked(key, v)
	s.mu.Unlock()
	return v, true
}

// Put stores v under key, in memory and in Dir.
func (s *Store) Put(key string, v []byte) {
	if len(v) > maxValue || strings.ContainsRune(key, '\n') {
		return
	}
	v = bytes.Clone(v)
	s.mu.Lock()
	s.putMemLocked(key, v)
	s.mu.Unlock()
	if s.cfg.Dir == "" {
		return
	}
	name := fileName(key)
	if err := s.write(name, key, v); err != nil {
		s.log.Warn("metadata cache: write failed", "err", err)
		return
	}
	size := int64(len(key) + 1 + len(v))
	s.mu.Lock()
	s.diskSz += size - s.files[name].size
	s.seq++
	s.files[name] = diskFile{size, s.seq}
	drop := s.evictDiskLocked()
	s.mu.Unlock()
	s.remove(drop)
}

func (s *Store) putMemLocked(key string, v []byte) {
	if el, ok := s.mem[key]; ok {
		it := el.Value.(*memItem)
		s.memSz += int64(len(v) - len(it.val))
		it.val = v
		s.ll.MoveToFront(el)
	} else {
		s.mem[key] = s.ll.PushFront(&memItem{key, v})
		s.memSz += int64(len(key) + len(v))
	}
	for s.memSz > s.cfg.MemoryBytes && s.ll.Len() > 1 {
		it := s.ll.Remove(s.ll.Back()).(*memItem)
		delete(s.mem, it.key)
		s.memSz -= int64(len(it.key) + len(it.val))
	}
}

// evictDiskLocked picks the oldest files to remove until the directory
// is at 90 % of DiskBytes, once it is past DiskBytes.
func (s *Store) evictDiskLocked() []string {
	if s.diskSz <= s.cfg.DiskBytes {
		return nil
	}
	order := make([]string, 0, len(s.files))
	for n := range s.files {
		order = append(order, n)
	}
	sort.Slice(order, func(i, j int) bool { return s.files[order[i]].seq < s.files[order[j]].seq })
	var drop []string
	for _, n := range order {
		if s.diskSz <= s.cfg.DiskBytes*9/10 {
			break
		}
		s.diskSz -= s.files[n].size
		delete(s.files, n)
		drop = append(drop, n)
	}
	return drop
}

func (s *Store) remove(names []string) {
	for _, n := range names {
		os.Remove(filepath.Join(s.cfg.Dir, n))
	}
}

// write replaces the file name atomically.
func (s *Store) write(name, key string, v []byte) error {
	f, err := os.CreateTemp(s.cfg.Dir, ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(append(append([]byte(key), '\n'), v...))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(s.cfg.Dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
