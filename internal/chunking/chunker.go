package chunking

import (
	"errors"
	"io"
)

// Chunk size limits in bytes (PROTOCOL.md §2.1).
const (
	MinSize    = 8192   // no boundary is tested before a chunk has this many bytes
	TargetSize = 65536  // the mask below gives one match per TargetSize bytes on average
	MaxSize    = 131072 // a chunk is cut here if no match came earlier
)

const (
	// mask selects the top 16 bits of the rolling hash: a boundary follows
	// the byte after which they are all zero. xet-core derives it as
	// (TargetSize-1) << leading_zeros(TargetSize-1).
	mask = 0xFFFF000000000000

	// window is the number of bytes the rolling hash remembers: after 64
	// updates every older byte has been shifted out of the 64-bit state.
	window = 64

	// skip is the chunk offset at which hashing starts. The first tested
	// offset is MinSize-1, so window+1 bytes are hashed before the first
	// test, and the hash there equals the hash of an implementation that
	// hashes every byte of the chunk (see doc.go).
	skip = MinSize - window - 1

	// bufSize is the fixed buffer of a streaming Chunker. It must be at
	// least MaxSize; a larger buffer means fewer and larger reads and fewer
	// moves of the unconsumed tail to the front.
	bufSize = 4 * MaxSize

	// maxEmptyReads is how many (0, nil) reads in a row are tolerated
	// before the reader is declared broken, as bufio does.
	maxEmptyReads = 100
)

// cut returns the length of the chunk at the start of data. data holds the
// next MaxSize bytes of the input or, at the end of the input, everything
// that is left; it must not be empty. Bytes past MaxSize are ignored.
func cut(data []byte) int {
	if len(data) > MaxSize {
		data = data[:MaxSize]
	}
	if len(data) <= MinSize {
		// A boundary at MinSize, if any, coincides with the end.
		return len(data)
	}
	tab := &gearTable
	var h uint64
	// Warm up over window+1 bytes that end just before the first testable
	// offset; matches inside them would make chunks shorter than MinSize
	// and are not tested.
	for _, b := range data[skip : MinSize-1] {
		h = tab[b] + h + h
	}
	// Test every byte from offset MinSize-1 on, eight at a time with
	// constant indexes into an 8-byte slice: one bounds check per eight
	// bytes, none per byte. Each byte is one load, one table load, one
	// shift-and-add (written tab[b]+h+h so that it compiles to a single
	// LEA, 1 cycle on the dependency chain) and one test-and-branch.
	tail := data[MinSize-1:]
	blocks := tail[:len(tail)&^7]
	for i := 0; i < len(blocks); i += 8 {
		q := blocks[i : i+8 : i+8]
		if h = tab[q[0]] + h + h; h&mask == 0 {
			return MinSize + i
		}
		if h = tab[q[1]] + h + h; h&mask == 0 {
			return MinSize + i + 1
		}
		if h = tab[q[2]] + h + h; h&mask == 0 {
			return MinSize + i + 2
		}
		if h = tab[q[3]] + h + h; h&mask == 0 {
			return MinSize + i + 3
		}
		if h = tab[q[4]] + h + h; h&mask == 0 {
			return MinSize + i + 4
		}
		if h = tab[q[5]] + h + h; h&mask == 0 {
			return MinSize + i + 5
		}
		if h = tab[q[6]] + h + h; h&mask == 0 {
			return MinSize + i + 6
		}
		if h = tab[q[7]] + h + h; h&mask == 0 {
			return MinSize + i + 7
		}
	}
	for i := len(blocks); i < len(tail); i++ {
		if h = tab[tail[i]] + h + h; h&mask == 0 {
			return MinSize + i
		}
	}
	// No match: either the forced cut at MaxSize or the end of the input.
	return len(data)
}

// Boundaries returns the end offsets of the chunks of data, which is taken
// to be a whole input: the last offset is len(data). An empty input has no
// chunks and gives an empty slice.
//
// A boundary depends only on the bytes before it, so when data is a prefix
// of a longer input every offset but the last is a boundary of that input
// as well; only the last chunk may end where it does because data ends.
func Boundaries(data []byte) []int {
	ends := make([]int, 0, len(data)/(MinSize+TargetSize)+1)
	for off := 0; off < len(data); {
		off += cut(data[off:])
		ends = append(ends, off)
	}
	return ends
}

// Chunker splits a stream into content-defined chunks. It reads ahead at
// most bufSize bytes and never allocates after its first Next call, so any
// input length costs the same memory. The boundaries do not depend on how
// the reader splits the input into reads.
type Chunker struct {
	r     io.Reader
	buf   []byte // allocated on the first Next; its length never changes
	start int    // offset in buf of the next chunk
	end   int    // offset in buf after the last byte read
	err   error  // first error of r (io.EOF at the end of the input)
}

// New returns a Chunker reading from r.
func New(r io.Reader) *Chunker {
	return &Chunker{r: r}
}

// Next returns the next chunk. The slice aliases the Chunker's buffer and
// is valid until the next call. After the last chunk Next returns io.EOF
// (at once for an empty input). A read error other than io.EOF is
// returned as it is, instead of the chunks that depend on bytes not read;
// every later call returns it again.
func (c *Chunker) Next() ([]byte, error) {
	if c.end-c.start < MaxSize && c.err == nil {
		c.fill()
	}
	if c.err != nil && c.err != io.EOF {
		return nil, c.err
	}
	if c.start == c.end {
		return nil, io.EOF
	}
	// Here the buffer holds MaxSize bytes, or all that is left of the input.
	n := cut(c.buf[c.start:c.end])
	chunk := c.buf[c.start : c.start+n : c.start+n]
	c.start += n
	return chunk, nil
}

// fill reads until at least MaxSize unconsumed bytes are buffered or the
// reader fails. It moves the unconsumed bytes to the front first if the
// space after them is too small.
func (c *Chunker) fill() {
	if c.buf == nil {
		c.buf = make([]byte, bufSize)
	}
	if len(c.buf)-c.start < MaxSize {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	for empty := 0; c.end-c.start < MaxSize; {
		n, err := c.r.Read(c.buf[c.end:])
		if n < 0 || n > len(c.buf)-c.end {
			c.err = errBadRead
			return
		}
		c.end += n
		if err != nil {
			c.err = err
			return
		}
		if n > 0 {
			empty = 0
		} else if empty++; empty >= maxEmptyReads {
			c.err = io.ErrNoProgress
			return
		}
	}
}

// errBadRead reports a reader that returned an impossible count.
var errBadRead = errors.New("chunking: reader returned an invalid count")
