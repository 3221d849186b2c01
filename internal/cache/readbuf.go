package cache

import "sync"

// A disk hit used to read each entry into a new buffer: a few MiB that the
// runtime zeroes and the kernel faults in page by page, then garbage a
// moment later. That cost more CPU than the read itself. Entries read by
// the disk store now borrow their buffer from a pool, and a caller that
// knows when the last reference to Data is gone gives it back with
// Release. A caller that never calls Release loses nothing but the reuse.

// readBufRound: pooled buffers are sized in steps of this many bytes, one
// pool per step, so that a buffer taken from a pool always fits: entries
// read whole (about 4 MiB) and ranges of them (a few chunks) do not trade
// buffers too small for each other, each trade a new allocation.
const readBufRound = 1 << 20

// readBufs[i] holds buffers of capacity (i+1)*readBufRound. Larger
// entries (a store may keep up to MaxEntryBytes) are not pooled.
var readBufs [16]sync.Pool // of *[]byte

// getReadBuf returns a buffer of n bytes, from the pool of its size when
// it has one. Its bytes are not zeroed: the caller overwrites all of them.
func getReadBuf(n int) *[]byte {
	c := max(n-1, 0) / readBufRound
	if c < len(readBufs) {
		if p, ok := readBufs[c].Get().(*[]byte); ok {
			*p = (*p)[:n]
			return p
		}
	}
	b := make([]byte, n, (c+1)*readBufRound)
	return &b
}

func putReadBuf(p *[]byte) {
	if c := cap(*p)/readBufRound - 1; c >= 0 && c < len(readBufs) && cap(*p)%readBufRound == 0 {
		readBufs[c].Put(p)
	}
}

// Release gives e's buffer back to its store for reuse. The caller
// promises that nothing references e.Data, or any slice of it, any more
// and that it will not use e again; every other caller simply drops e.
// It does nothing for entries whose memory a store does not lend; it
// closes the file an entry lends (lent.go).
func (e *Entry) Release() {
	if l := e.lent; l != nil {
		e.lent = nil
		l.release()
	}
	if p := e.pooled; p != nil {
		e.pooled, e.Data = nil, nil
		putReadBuf(p)
	}
}
