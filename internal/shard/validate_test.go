package shard_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/shard"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// store is a server's view of uploaded xorbs.
type store map[merklehash.Hash][]shard.XorbChunk

func (st store) lookup(h merklehash.Hash) ([]shard.XorbChunk, bool) {
	c, ok := st[h]
	return c, ok
}

// TestValidateDataVectors checks one-term uploads of every whole-file vector:
// the verification and file hashes come from the vector file, not from our
// own hashing.
func TestValidateDataVectors(t *testing.T) {
	for _, dv := range xettest.MustLoad().DataVectors {
		var leaves []merklehash.Leaf
		for _, c := range dv.Chunks {
			leaves = append(leaves, merklehash.Leaf{Hash: mustHash(t, c.Hash), Size: uint64(c.Size)})
		}
		x, err := shard.NewXorb(mustHash(t, dv.MerkleRoot), leaves, 0)
		if err != nil {
			t.Fatal(err)
		}
		s := &shard.Shard{
			Files: []shard.File{{
				Hash:         mustHash(t, dv.FileHash),
				Terms:        []shard.Term{{XorbHash: x.Hash, UnpackedBytes: uint32(dv.Length), ChunkStart: 0, ChunkEnd: uint32(len(leaves))}},
				Verification: []merklehash.Hash{mustHash(t, dv.VerificationHash)},
			}},
			Xorbs: []shard.Xorb{x},
		}
		st := store{x.Hash: x.Chunks}
		if err := s.ValidateFiles(st.lookup, true); err != nil {
			t.Errorf("%s: %v", dv.Description, err)
		}
		if err := s.ValidateXorbs(st.lookup); err != nil {
			t.Errorf("%s: %v", dv.Description, err)
		}
		s.Files[0].Verification[0][0] ^= 1
		if err := s.ValidateFiles(st.lookup, true); !errors.Is(err, shard.ErrVerification) {
			t.Errorf("%s: corrupted verification: %v", dv.Description, err)
		}
	}
}

// world is a consistent set of stored xorbs and an upload shard whose files
// are cut from them, with correct verification and file hashes.
func world(r *rand.Rand) (store, *shard.Shard) {
	st := store{}
	s := &shard.Shard{}
	for i := 0; i < 4; i++ {
		leaves := make([]merklehash.Leaf, 5+r.IntN(30))
		for j := range leaves {
			leaves[j] = merklehash.Leaf{Hash: randHash(r), Size: uint64(1 + r.IntN(1<<17))}
		}
		x, err := shard.NewXorb(merklehash.XorbHash(leaves), leaves, 0)
		if err != nil {
			panic(err)
		}
		st[x.Hash] = x.Chunks
		s.Xorbs = append(s.Xorbs, x)
	}
	for i := 0; i < 6; i++ {
		var f shard.File
		var all []merklehash.Leaf
		for j := 0; j < 1+r.IntN(5); j++ {
			x := s.Xorbs[r.IntN(len(s.Xorbs))]
			start := r.IntN(len(x.Chunks))
			end := start + 1 + r.IntN(len(x.Chunks)-start)
			term := shard.Term{XorbHash: x.Hash, ChunkStart: uint32(start), ChunkEnd: uint32(end)}
			var hashes []merklehash.Hash
			for _, c := range x.Chunks[start:end] {
				term.UnpackedBytes += c.Size
				hashes = append(hashes, c.Hash)
				all = append(all, merklehash.Leaf{Hash: c.Hash, Size: uint64(c.Size)})
			}
			f.Terms = append(f.Terms, term)
			f.Verification = append(f.Verification, merklehash.VerificationHash(hashes))
		}
		f.Hash = merklehash.FileHash(all)
		s.Files = append(s.Files, f)
	}
	return st, s
}

func TestValidateFiles(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	st, good := world(r)
	if err := good.ValidateFiles(st.lookup, true); err != nil {
		t.Fatalf("consistent shard rejected: %v", err)
	}
	// Also after a trip through the wire format.
	parsed, err := shard.Parse(mustMarshal(t, good))
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.ValidateFiles(st.lookup, true); err != nil {
		t.Fatalf("parsed shard rejected: %v", err)
	}
	noVerification := func(s *shard.Shard) {
		for i := range s.Files {
			s.Files[i].Verification = nil
		}
	}
	empty := &shard.Shard{Files: []shard.File{{}}}
	if err := empty.ValidateFiles(st.lookup, true); err != nil {
		t.Errorf("empty file (zero hash, no terms) rejected: %v", err)
	}

	cases := []struct {
		name      string
		mut       func(s *shard.Shard)
		fileHash  bool
		want      error
		file      int
		term      int
		inMessage string
	}{
		{"no verification anywhere", noVerification, true, nil, 0, 0, ""},
		{"unknown xorb", func(s *shard.Shard) { s.Files[2].Terms[0].XorbHash[5] ^= 1 }, false, shard.ErrUnknownXorb, 2, 0, "unknown xorb"},
		{"range past end", func(s *shard.Shard) {
			term := &s.Files[1].Terms[0]
			term.ChunkEnd = uint32(len(st[term.XorbHash])) + 1
		}, false, shard.ErrChunkRange, 1, 0, "outside"},
		{"empty range", func(s *shard.Shard) { s.Files[0].Terms[0].ChunkEnd = s.Files[0].Terms[0].ChunkStart }, false, shard.ErrChunkRange, 0, 0, ""},
		{"unpacked size", func(s *shard.Shard) { s.Files[3].Terms[0].UnpackedBytes-- }, false, shard.ErrUnpackedSize, 3, 0, "unpacked size"},
		{"verification", func(s *shard.Shard) { s.Files[4].Verification[0][31] ^= 1 }, false, shard.ErrVerification, 4, 0, "verification"},
		{"verification count", func(s *shard.Shard) { s.Files[0].Verification = append(s.Files[0].Verification, merklehash.Hash{}) }, false, shard.ErrVerification, 0, -1, "terms"},
		{"mixed verification", func(s *shard.Shard) { s.Files[5].Verification = nil }, false, shard.ErrMissingVerification, 5, -1, "5 of 6"},
		{"mixed verification, first file", func(s *shard.Shard) { s.Files[0].Verification = nil }, false, shard.ErrMissingVerification, 0, -1, ""},
		{"file hash", func(s *shard.Shard) { s.Files[2].Hash[0] ^= 1 }, true, shard.ErrFileHash, 2, -1, "file hash"},
		{"file hash not checked", func(s *shard.Shard) { s.Files[2].Hash[0] ^= 1 }, false, nil, 0, 0, ""},
		{"terms swapped", func(s *shard.Shard) {
			for i := range s.Files {
				f := &s.Files[i]
				if len(f.Terms) > 1 && f.Terms[0] != f.Terms[1] {
					f.Terms[0], f.Terms[1] = f.Terms[1], f.Terms[0]
					f.Verification[0], f.Verification[1] = f.Verification[1], f.Verification[0]
					return
				}
			}
			panic("no file with two distinct terms")
		}, true, shard.ErrFileHash, -2, -1, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := shard.Parse(mustMarshal(t, good)) // a deep copy
			if err != nil {
				t.Fatal(err)
			}
			c.mut(s)
			err = s.ValidateFiles(st.lookup, c.fileHash)
			if c.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			var fe *shard.FileError
			if !errors.As(err, &fe) {
				t.Fatalf("%T is not a *FileError", err)
			}
			if (c.file >= 0 && fe.File != c.file) || fe.Term != c.term {
				t.Errorf("at file %d term %d, want file %d term %d", fe.File, fe.Term, c.file, c.term)
			}
			if fe.File >= 0 && fe.Hash != s.Files[fe.File].Hash {
				t.Errorf("error names hash %s, file has %s", fe.Hash, s.Files[fe.File].Hash)
			}
			if !strings.Contains(err.Error(), c.inMessage) {
				t.Errorf("message %q lacks %q", err, c.inMessage)
			}
		})
	}
}

func TestValidateXorbs(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	st, good := world(r)
	if err := good.ValidateXorbs(st.lookup); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		mut   func(s *shard.Shard)
		want  error
		chunk int
	}{
		{"unknown", func(s *shard.Shard) { s.Xorbs[1].Hash[3] ^= 1 }, shard.ErrUnknownXorb, -1},
		{"chunk missing", func(s *shard.Shard) {
			x := &s.Xorbs[2]
			x.BytesInXorb -= x.Chunks[len(x.Chunks)-1].Size
			x.Chunks = x.Chunks[:len(x.Chunks)-1]
		}, shard.ErrXorbListingMismatch, -1},
		{"chunk hash", func(s *shard.Shard) { s.Xorbs[0].Chunks[3].Hash[0] ^= 1 }, shard.ErrXorbListingMismatch, 3},
		{"chunk size", func(s *shard.Shard) {
			x := &s.Xorbs[3]
			x.Chunks[4].Size++
			for j := 5; j < len(x.Chunks); j++ {
				x.Chunks[j].Offset++
			}
			x.BytesInXorb++
		}, shard.ErrXorbListingMismatch, 4},
		{"bytes in xorb", func(s *shard.Shard) { s.Xorbs[0].BytesInXorb++ }, shard.ErrXorbListingMismatch, -1},
		{"server flags ignored", func(s *shard.Shard) { s.Xorbs[0].Chunks[0].Flags = shard.ChunkFlagGlobalDedup }, nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := shard.Parse(mustMarshal(t, good))
			if err != nil {
				t.Fatal(err)
			}
			c.mut(s)
			err = s.ValidateXorbs(st.lookup)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var xe *shard.XorbError
			if !errors.Is(err, c.want) || !errors.As(err, &xe) {
				t.Fatalf("err = %v, want %v in a *XorbError", err, c.want)
			}
			if xe.Chunk != c.chunk {
				t.Errorf("chunk %d, want %d (%v)", xe.Chunk, c.chunk, err)
			}
		})
	}
}

func TestValidateHelloWorldS1(t *testing.T) {
	v := xettest.MustLoad()
	s, err := shard.Parse(mustHex(t, v.ShardUploadHelloWorld.Hex))
	if err != nil {
		t.Fatal(err)
	}
	// The stored xorb X1, as its footer describes it: one 12-byte chunk.
	st := store{mustHash(t, v.XorbHelloWorld.XorbHash): {{Hash: mustRaw(t, v.ChunkHash[0].Raw), Size: 12}}}
	if err := s.ValidateFiles(st.lookup, true); err != nil {
		t.Error(err)
	}
	if err := s.ValidateXorbs(st.lookup); err != nil {
		t.Error(err)
	}
}
