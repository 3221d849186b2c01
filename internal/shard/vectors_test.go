package shard_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/shard"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

func mustRaw(t testing.TB, s string) merklehash.Hash {
	t.Helper()
	h, err := merklehash.FromRawHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustHash(t testing.TB, s string) merklehash.Hash {
	t.Helper()
	h, err := merklehash.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// helloWorldShard builds the S1 upload shard from the file contents alone.
func helloWorldShard(t testing.TB) *shard.Shard {
	t.Helper()
	content := []byte("Hello World!")
	ch := merklehash.ChunkHash(content)
	leaves := []merklehash.Leaf{{Hash: ch, Size: uint64(len(content))}}
	x, err := shard.NewXorb(merklehash.XorbHash(leaves), leaves, 0)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(content)
	return &shard.Shard{
		Files: []shard.File{{
			Hash:         merklehash.FileHash(leaves),
			Terms:        []shard.Term{{XorbHash: x.Hash, UnpackedBytes: uint32(len(content)), ChunkStart: 0, ChunkEnd: 1}},
			Verification: []merklehash.Hash{merklehash.VerificationHash([]merklehash.Hash{ch})},
			SHA256:       &digest,
		}},
		Xorbs: []shard.Xorb{x},
	}
}

func TestUploadHelloWorldS1(t *testing.T) {
	v := xettest.MustLoad().ShardUploadHelloWorld
	want := mustHex(t, v.Hex)

	got, err := helloWorldShard(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		for i := 0; i < max(len(got), len(want)); i += shard.RecordSize {
			g, w := got[min(i, len(got)):min(i+48, len(got))], want[min(i, len(want)):min(i+48, len(want))]
			if !bytes.Equal(g, w) {
				t.Errorf("record at %#x:\n got %x\nwant %x", i, g, w)
			}
		}
		t.Fatalf("S1 differs: got %d bytes, want %d", len(got), len(want))
	}
	if sum := sha256.Sum256(got); hex.EncodeToString(sum[:]) != v.SHA256 {
		t.Errorf("sha256 = %x, want %s", sum, v.SHA256)
	}
}

func TestParseHelloWorldS1(t *testing.T) {
	v := xettest.MustLoad()
	data := mustHex(t, v.ShardUploadHelloWorld.Hex)
	s, err := shard.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if s.Footer != nil {
		t.Errorf("footer = %+v, want none (footer_size 0)", s.Footer)
	}
	if len(s.Files) != 1 || len(s.Xorbs) != 1 {
		t.Fatalf("%d files, %d xorbs; want 1, 1", len(s.Files), len(s.Xorbs))
	}

	chunk := mustRaw(t, v.ChunkHash[0].Raw)
	f := s.Files[0]
	hello := v.DataVectors[4]
	if f.Hash != mustHash(t, hello.FileHash) {
		t.Errorf("file hash %s, want %s", f.Hash, hello.FileHash)
	}
	wantTerm := shard.Term{XorbHash: chunk, Flags: 0, UnpackedBytes: 12, ChunkStart: 0, ChunkEnd: 1}
	if len(f.Terms) != 1 || f.Terms[0] != wantTerm {
		t.Errorf("terms %+v, want [%+v]", f.Terms, wantTerm)
	}
	if len(f.Verification) != 1 || f.Verification[0] != mustHash(t, hello.VerificationHash) {
		t.Errorf("verification %v, want [%s]", f.Verification, hello.VerificationHash)
	}
	if f.SHA256 == nil || hex.EncodeToString(f.SHA256[:]) != hello.SHA256 {
		t.Errorf("sha256 %x, want %s", f.SHA256, hello.SHA256)
	}

	x := s.Xorbs[0]
	if x.Hash != chunk || x.Flags != 0 || x.BytesInXorb != 12 || x.BytesOnDisk != 0 {
		t.Errorf("xorb header %s flags %d in %d on disk %d", x.Hash, x.Flags, x.BytesInXorb, x.BytesOnDisk)
	}
	wantChunk := shard.XorbChunk{Hash: chunk, Offset: 0, Size: 12, Flags: 0}
	if len(x.Chunks) != 1 || x.Chunks[0] != wantChunk {
		t.Errorf("chunks %+v, want [%+v]", x.Chunks, wantChunk)
	}

	again, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Errorf("re-marshalled S1 differs")
	}
}

func TestMetadataExtByteOrderM1(t *testing.T) {
	m := xettest.MustLoad().MetadataExtSHA256
	digest := sha256.Sum256([]byte(m.InputASCII))
	if hex.EncodeToString(digest[:]) != m.SHA256Hex {
		t.Fatalf("sha256(%q) = %x, vector says %s", m.InputASCII, digest, m.SHA256Hex)
	}
	// The stored form is the Xet string parse of the usual hex digest.
	if h := mustHash(t, m.SHA256Hex); h.RawHex() != m.StoredHex {
		t.Fatalf("vector inconsistent: Parse(sha hex) raw = %s, stored %s", h.RawHex(), m.StoredHex)
	}

	s := &shard.Shard{Files: []shard.File{{Hash: merklehash.ChunkHash([]byte("f")), SHA256: &digest}}}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// header, file header (0 terms), metadata record, bookend, bookend
	if len(b) != 5*shard.RecordSize {
		t.Fatalf("%d bytes, want %d", len(b), 5*shard.RecordSize)
	}
	meta := b[2*shard.RecordSize : 3*shard.RecordSize]
	if got := hex.EncodeToString(meta[:32]); got != m.StoredHex {
		t.Errorf("stored sha256 %s, want %s", got, m.StoredHex)
	}
	if !bytes.Equal(meta[32:], make([]byte, 16)) {
		t.Errorf("metadata reserved bytes %x", meta[32:])
	}
	if flags := b[shard.RecordSize+32 : shard.RecordSize+36]; !bytes.Equal(flags, []byte{0, 0, 0, 0x40}) {
		t.Errorf("file flags %x, want metadata-ext only", flags)
	}

	back, err := shard.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if f := back.Files[0]; f.SHA256 == nil || *f.SHA256 != digest || f.Verification != nil || f.Terms != nil {
		t.Errorf("parsed file %+v", f)
	}
}
