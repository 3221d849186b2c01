package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// chunkRecord is one chunk of a spooled chunk list; offsets follow from the
// lengths.
type chunkRecord struct {
	length uint32
	hash   merklehash.Hash
}

const chunkRecordSize = 4 + merklehash.Size

// defaultSpoolLimit is how many chunk records a chunkSpool keeps in memory
// (2.25 MiB, the chunks of about 4.5 GiB of input) before it moves them to
// a temporary file.
const defaultSpoolLimit = 1 << 16

// chunkSpool holds the chunk list of one file until the file hash, which is
// printed first, is known: in memory up to limit records, beyond that in a
// temporary file, so that a file of any size costs bounded memory.
type chunkSpool struct {
	limit int
	mem   []chunkRecord
	file  *os.File
	w     *bufio.Writer
	spilt int // records in file
}

func (s *chunkSpool) add(length int, h merklehash.Hash) error {
	s.mem = append(s.mem, chunkRecord{length: uint32(length), hash: h})
	if len(s.mem) < s.limit {
		return nil
	}
	if s.file == nil {
		f, err := os.CreateTemp("", "xetproxy-chunks-*")
		if err != nil {
			return fmt.Errorf("spool chunk list: %w", err)
		}
		s.file = f
		s.w = bufio.NewWriterSize(f, 64<<10)
	}
	var b [chunkRecordSize]byte
	for _, r := range s.mem {
		binary.LittleEndian.PutUint32(b[:4], r.length)
		copy(b[4:], r.hash[:])
		if _, err := s.w.Write(b[:]); err != nil {
			return fmt.Errorf("spool chunk list: %w", err)
		}
	}
	s.spilt += len(s.mem)
	s.mem = s.mem[:0]
	return nil
}

// each calls fn for every record in order with its offset.
func (s *chunkSpool) each(fn func(offset uint64, r chunkRecord) error) error {
	var off uint64
	if s.file != nil {
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("spool chunk list: %w", err)
		}
		if _, err := s.file.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("spool chunk list: %w", err)
		}
		br := bufio.NewReaderSize(s.file, 64<<10)
		var b [chunkRecordSize]byte
		for range s.spilt {
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return fmt.Errorf("read spooled chunk list: %w", err)
			}
			r := chunkRecord{length: binary.LittleEndian.Uint32(b[:4])}
			copy(r.hash[:], b[4:])
			if err := fn(off, r); err != nil {
				return err
			}
			off += uint64(r.length)
		}
	}
	for _, r := range s.mem {
		if err := fn(off, r); err != nil {
			return err
		}
		off += uint64(r.length)
	}
	return nil
}

// close removes the temporary file, if any.
func (s *chunkSpool) close() error {
	if s.file == nil {
		return nil
	}
	name := s.file.Name()
	err := errors.Join(s.file.Close(), os.Remove(name))
	s.file, s.w = nil, nil
	return err
}
