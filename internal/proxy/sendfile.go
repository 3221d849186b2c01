package proxy

import (
	"fmt"
	"io"
	"slices"
)

// A cached chunk whose entry lends its file (cache.WithLentFiles) is sent
// from that file: WriteTo hands the response writer an io.LimitedReader of
// the *os.File, and net/http's response writer sends it with sendfile,
// from the page cache, without copying the bytes through this process.
// The chunks of one entry lie end to end in its file, so sendRun sends as
// many of them as are ready in one call (a run), which costs far less
// than a call per chunk. The bytes the file holds there are those the
// entry was read and checked with (CRC-32C; and its proof) just before;
// a file cut short since reads short, which fails the stream.

// maxRun bounds the bytes of one run: the slots of a run stay charged to
// the budgets until it is sent.
const maxRun = 4 << 20

// sendRun sends pending, and the bytes after it while they are ready and
// lie next to it in the same file, to rf from the file, and returns how
// many bytes went out. The whole run is consumed first (its slots are
// freed once it is sent); a run that does not all go out fails the
// stream.
func (s *stream) sendRun(rf io.ReaderFrom) (int, error) {
	file, start := s.pendFile, s.pendFoff
	n := len(s.pending)
	var unsent []*slot
	s.unsent = &unsent
	defer func() {
		s.unsent = nil
		for _, sl := range unsent {
			s.free(sl)
		}
	}()
	s.consume(n)
	for n < maxRun && s.nextReady() {
		if err := s.advance(); err != nil {
			if err == io.EOF {
				break // sent below; the next advance returns io.EOF again
			}
			return 0, err // the stream failed: the run is not sent
		}
		if s.pendFile != file || s.pendFoff != start+int64(n) {
			break // pending is for the caller's next turn
		}
		m := len(s.pending)
		n += m
		s.consume(m)
	}
	if s.sentFile != file || s.sentPos != start {
		if _, err := file.Seek(start, io.SeekStart); err != nil {
			return 0, s.sendFailed(err)
		}
	}
	sent, err := rf.ReadFrom(&io.LimitedReader{R: file, N: int64(n)})
	s.sentFile, s.sentPos = file, start+sent
	s.e.stats.sentFromFile.Add(sent)
	if err == nil && sent < int64(n) {
		err = s.sendFailed(fmt.Errorf("cache file %s ended %d bytes early", file.Name(), int64(n)-sent))
	}
	return int(sent), err
}

// nextReady reports whether the reader's next bytes are a chunk of the
// piece it is on that is already delivered: getting them (advance) does
// not wait, nor cross into another piece or block (which frees fetches).
func (s *stream) nextReady() bool {
	if s.rerr != nil || s.cur == nil || s.pi >= len(s.cur.plan.Pieces) || s.cut.Written() {
		return false
	}
	pc := &s.cur.plan.Pieces[s.pi]
	f := s.cur.fetches[pc.Fetch]
	k := s.cut.Chunk() - s.cur.plan.Fetches[pc.Fetch].Chunks.Start
	return f.seq <= s.head.Load() && f.delivered.Load() > k
}

// sendFailed fails the stream for an error reading a cache file it sends.
func (s *stream) sendFailed(err error) error {
	err = fmt.Errorf("proxy: sending from the cache: %w", err)
	s.rerr = err
	s.fail(err)
	return err
}

// isUnsent reports whether sl belongs to the run being gathered: it is
// freed once the run is sent, not before.
func (s *stream) isUnsent(sl *slot) bool {
	return s.unsent != nil && slices.Contains(*s.unsent, sl)
}
