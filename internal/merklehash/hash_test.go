package merklehash_test

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

func mustParse(t testing.TB, s string) merklehash.Hash {
	t.Helper()
	h, err := merklehash.Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return h
}

func mustRaw(t testing.TB, s string) merklehash.Hash {
	t.Helper()
	h, err := merklehash.FromRawHex(s)
	if err != nil {
		t.Fatalf("raw %q: %v", s, err)
	}
	return h
}

func TestStringForm(t *testing.T) {
	v := xettest.MustLoad()
	for _, c := range v.HashStringFormat {
		raw := mustRaw(t, c.Raw)
		if got := raw.String(); got != c.String {
			t.Errorf("String(%s) = %s, want %s", c.Raw, got, c.String)
		}
		if back := mustParse(t, c.String); back != raw {
			t.Errorf("Parse(%s) = %s, want raw %s", c.String, back.RawHex(), c.Raw)
		}
		if back := mustParse(t, strings.ToUpper(c.String)); back != raw {
			t.Errorf("upper-case parse differs")
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := strings.Repeat("ab", 32)
	for _, s := range []string{"", good[:63], good + "0", strings.Repeat("g", 64), " " + good[1:], good[:62] + "-1", strings.Repeat("*", 64)} {
		if _, err := merklehash.Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

func TestTextMarshalRoundTrip(t *testing.T) {
	h := merklehash.ChunkHash([]byte("x"))
	b, _ := h.MarshalText()
	var back merklehash.Hash
	if err := back.UnmarshalText(b); err != nil || back != h {
		t.Fatalf("round trip: %v %s %s", err, back, h)
	}
}

func TestChunkHash(t *testing.T) {
	v := xettest.MustLoad()
	for _, c := range v.ChunkHash {
		h := merklehash.ChunkHash([]byte(c.InputASCII))
		if h.RawHex() != c.Raw || h.String() != c.String {
			t.Errorf("ChunkHash(%q) = raw %s string %s", c.InputASCII, h.RawHex(), h)
		}
	}
	h := merklehash.ChunkHash([]byte("Hello World!"))
	if got := h.Word(3) % 1024; got != v.GlobalDedup.HelloWorldMod1024 {
		t.Errorf("word3 mod 1024 = %d, want %d", got, v.GlobalDedup.HelloWorldMod1024)
	}
	if merklehash.GlobalDedupEligible(h, false) || !merklehash.GlobalDedupEligible(h, true) {
		t.Error("dedup eligibility of the Hello World chunk")
	}
}

func TestInternalNode(t *testing.T) {
	v := xettest.MustLoad()
	var leaves []merklehash.Leaf
	for _, c := range v.InternalNode.Children {
		s, size := xettest.Leaf(c)
		leaves = append(leaves, merklehash.Leaf{Hash: mustParse(t, s), Size: size})
	}
	n := merklehash.NodeHash(leaves)
	if n.Hash.String() != v.InternalNode.Result || n.Size != 300 {
		t.Errorf("NodeHash = %s/%d, want %s/300", n.Hash, n.Size, v.InternalNode.Result)
	}
	if r := merklehash.Root(leaves); r.String() != v.InternalNode.Result {
		t.Errorf("Root = %s", r)
	}

	hd := v.HubDocsInternalNode
	leaves = leaves[:0]
	for i, s := range hd.Children {
		leaves = append(leaves, merklehash.Leaf{Hash: mustParse(t, s), Size: hd.Sizes[i]})
	}
	if n := merklehash.NodeHash(leaves); n.Hash.String() != hd.InternalHash {
		t.Errorf("hub-docs node = %s, want %s", n.Hash, hd.InternalHash)
	}
	if r := merklehash.Root(leaves); r.String() != hd.MerkleRoot {
		t.Errorf("hub-docs root = %s, want %s", r, hd.MerkleRoot)
	}
}

func TestVerificationHash(t *testing.T) {
	v := xettest.MustLoad()
	var hs []merklehash.Hash
	for _, s := range v.VerificationHash.ChunkHashesRaw {
		hs = append(hs, mustRaw(t, s))
	}
	if got := merklehash.VerificationHash(hs); got.String() != v.VerificationHash.Result {
		t.Errorf("VerificationHash = %s, want %s", got, v.VerificationHash.Result)
	}
}

func TestMerkleAndFileHashVectors(t *testing.T) {
	v := xettest.MustLoad()
	if len(v.MerkleAndFileHash.Entries) != 18 {
		t.Fatalf("want 18 cases, have %d", len(v.MerkleAndFileHash.Entries))
	}
	for i, e := range v.MerkleAndFileHash.Entries {
		var leaves []merklehash.Leaf
		var b merklehash.Builder
		for _, c := range e.Chunks {
			s, size := xettest.Leaf(c)
			h := mustParse(t, s)
			leaves = append(leaves, merklehash.Leaf{Hash: h, Size: size})
			b.Add(h, size)
		}
		if got := merklehash.XorbHash(leaves); got.String() != e.XorbHash {
			t.Errorf("case %d: xorb hash %s, want %s", i, got, e.XorbHash)
		}
		if got := b.Root(); got.String() != e.XorbHash {
			t.Errorf("case %d: streaming root %s, want %s", i, got, e.XorbHash)
		}
		for _, fh := range e.FileHashes {
			salt := mustParse(t, fh.Salt)
			root := merklehash.Root(leaves)
			var got merklehash.Hash
			if salt.IsZero() {
				got = merklehash.FileHash(leaves)
				if sb := b.FileHash(); sb != got {
					t.Errorf("case %d: streaming file hash %s, batch %s", i, sb, got)
				}
			} else if len(leaves) == 0 {
				got = merklehash.Zero
			} else {
				got = merklehash.KeyedChunkHash(salt, root) // keyed BLAKE3 with the salt as key
			}
			if got.String() != fh.FileHash {
				t.Errorf("case %d salt %s: file hash %s, want %s", i, fh.Salt[:8], got, fh.FileHash)
			}
		}
	}
}

func TestEmptyFileHash(t *testing.T) {
	v := xettest.MustLoad()
	if got := merklehash.FileHash(nil); got.String() != v.EmptyFile.XetCore {
		t.Errorf("empty file hash %s", got)
	}
	var b merklehash.Builder
	if got := b.FileHash(); got.String() != v.EmptyFile.XetCore {
		t.Errorf("empty streaming file hash %s", got)
	}
}

func TestDataVectorHashes(t *testing.T) {
	v := xettest.MustLoad()
	for i, dv := range v.DataVectors {
		data := xettest.DataVectorInput(i)
		var leaves []merklehash.Leaf
		var hashes []merklehash.Hash
		start := 0
		for _, c := range dv.Chunks {
			h := merklehash.ChunkHash(data[start:c.EndOffset])
			if h.String() != c.Hash {
				t.Fatalf("%s: chunk at %d: %s, want %s", dv.Description, start, h, c.Hash)
			}
			leaves = append(leaves, merklehash.Leaf{Hash: h, Size: uint64(c.Size)})
			hashes = append(hashes, h)
			start = c.EndOffset
		}
		if got := merklehash.Root(leaves); got.String() != dv.MerkleRoot {
			t.Errorf("%s: root %s, want %s", dv.Description, got, dv.MerkleRoot)
		}
		if got := merklehash.FileHash(leaves); got.String() != dv.FileHash {
			t.Errorf("%s: file hash %s, want %s", dv.Description, got, dv.FileHash)
		}
		if got := merklehash.VerificationHash(hashes); got.String() != dv.VerificationHash {
			t.Errorf("%s: verification %s, want %s", dv.Description, got, dv.VerificationHash)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != dv.SHA256 {
			t.Errorf("%s: regenerated input differs (sha256)", dv.Description)
		}
	}
}

// The streaming builder must agree with the batch algorithm for every list
// length, including those that fill several levels.
func TestBuilderMatchesRoot(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 400; n++ {
		var leaves []merklehash.Leaf
		var b merklehash.Builder
		for i := 0; i < n; i++ {
			var h merklehash.Hash
			for j := range h {
				h[j] = byte(r.Uint32())
			}
			size := r.Uint64N(1 << 17)
			leaves = append(leaves, merklehash.Leaf{Hash: h, Size: size})
			b.Add(h, size)
		}
		if got, want := b.Root(), merklehash.Root(leaves); got != want {
			t.Fatalf("n=%d: builder %s, batch %s", n, got, want)
		}
		if b.Len() != uint64(n) {
			t.Fatalf("Len = %d", b.Len())
		}
	}
}

func TestCompare(t *testing.T) {
	var a, b merklehash.Hash
	a[7] = 1 // most significant byte of word 0
	b[0] = 2 // least significant byte of word 0
	if a.Compare(b) <= 0 || b.Compare(a) >= 0 || a.Compare(a) != 0 {
		t.Error("Compare must order by little-endian words")
	}
}

func BenchmarkChunkHash(b *testing.B) {
	data := xettest.SplitMix64(3, 64<<10)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		merklehash.ChunkHash(data)
	}
}

func BenchmarkBuilder(b *testing.B) {
	h := merklehash.ChunkHash([]byte("x"))
	var bl merklehash.Builder
	for b.Loop() {
		h[0]++
		bl.Add(h, 65536)
	}
	_ = bl.Root()
}
