package cache

import "sync"

// A disk hit used to read each entry into a new buffer: a few MiB that the
// runtime zeroes and the kernel faults in page by page, then garbage a
// moment later. That cost more CPU than the read itself. Entries read by
// the disk store now borrow their buffer from a pool, and a caller that
// knows when the last reference to Data is gone gives it back with
// Release. A caller that never calls Release loses nothing but the reuse.

// readBufRound: pooled buffers are sized in steps of this many bytes, so
// that entries of similar size share buffers.
const readBufRound = 1 << 20

var readBufs sync.Pool // of *[]byte

// getReadBuf returns a buffer of n bytes, from the pool when one is big
// enough. Its bytes are not zeroed: the caller overwrites all of them.
func getReadBuf(n int) *[]byte {
	if p, ok := readBufs.Get().(*[]byte); ok {
		if cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
	}
	b := make([]byte, n, (n+readBufRound-1)/readBufRound*readBufRound)
	return &b
}

func putReadBuf(p *[]byte) { readBufs.Put(p) }

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
