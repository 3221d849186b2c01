package cache

import (
	"context"
	"os"
	"sync/atomic"
)

// A disk hit used to reach the client through two copies: a pread from
// the page cache into a pooled buffer, where the CRC-32C of every chunk is
// checked, and a write of that buffer into the socket. For callers that
// promise to Release every entry they get (WithLentFiles), the disk store
// keeps the entry's file open and lends it with the entry: once the
// chunks have passed their checks, a server can hand their bytes to the
// socket with sendfile, from the page cache, instead of writing the
// buffer (ChunkFile). Release closes the file.
//
// Mapping the file (mmap) instead of reading it was measured too, and
// lost: mapping and unmapping a 4 MiB entry's pages cost more than the
// copy they save (BenchmarkDiskHit; docs/performance-cache.md).

// lentFiles counts the files lent with entries and not released yet.
var lentFiles atomic.Int64

// LentFiles returns how many files lent with entries (WithLentFiles) have
// not been released. It returns to 0 once every such entry is released.
func LentFiles() int64 { return lentFiles.Load() }

type lentFilesKey struct{}

// WithLentFiles marks ctx for a caller that calls Entry.Release on every
// entry Get returns, once it is done with it and its file: a disk store may
// then lend each entry's open file (ChunkFile).
func WithLentFiles(ctx context.Context) context.Context {
	return context.WithValue(ctx, lentFilesKey{}, true)
}

func lendFiles(ctx context.Context) bool {
	v, _ := ctx.Value(lentFilesKey{}).(bool)
	return v
}

// lent is the open file an entry was read from.
type lent struct {
	f    *os.File
	base int64 // file offset of Data[0]
}

func (l *lent) release() {
	l.f.Close()
	lentFiles.Add(-1)
}

// ChunkFile returns the open file chunk c of e was read from, and the
// offset of the chunk's first byte in it, while e lends its file (until
// Release); nil otherwise. The chunk's bytes there are those e.Chunk(c)
// holds, checked when e was read, unless the file was changed since (a
// file cut short reads short). The file's read position is the caller's.
func (e *Entry) ChunkFile(c uint32) (*os.File, int64) {
	l := e.lent
	if l == nil || c < e.Start || c >= e.End {
		return nil, 0
	}
	return l.f, l.base + int64(e.Offsets[c-e.Start])
}
