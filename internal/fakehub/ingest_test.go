package fakehub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"testing"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// The file hash of ingested data is the known-answer file hash of the
// vectors (PROTOCOL §9.4): ingestion chunks and hashes like xet-core.
func TestIngestKnownFileHashes(t *testing.T) {
	v := xettest.MustLoad()
	h, _ := testHub(t, Config{})
	mustCreate(t, h, RepoSpec{ID: "org/vectors"})
	for i, dv := range v.DataVectors {
		data := xettest.DataVectorInput(i)
		f := mustAdd(t, h, "org/vectors", fmt.Sprint("v", i)+".bin", data, StorageXet)
		if f.XetHash.String() != dv.FileHash {
			t.Errorf("%s: file hash %s, want %s", fmt.Sprint("v", i), f.XetHash, dv.FileHash)
		}
		sum := sha256.Sum256(data)
		if f.SHA256 != hex.EncodeToString(sum[:]) || f.Size != int64(len(data)) {
			t.Errorf("%s: sha256/size %s/%d", fmt.Sprint("v", i), f.SHA256, f.Size)
		}
	}
}

func TestIngestRoundTripAllPolicies(t *testing.T) {
	for _, policy := range []string{"auto", "none", "lz4", "bg4"} {
		t.Run(policy, func(t *testing.T) {
			h, _ := testHub(t, Config{Compression: policy, MaxXorbBytes: 1 << 20})
			mustCreate(t, h, RepoSpec{ID: "org/m"})
			data := append(weights(1, 3<<20), bytes.Repeat([]byte("text "), 200000)...)
			f := mustAdd(t, h, "org/m", "w.safetensors", data)
			if !f.Xet {
				t.Fatal("not stored as Xet")
			}
			r, _, err := h.Open("org/m", "main", "w.safetensors")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("decoded file differs")
			}
			xorbs, _, _, _ := h.store.counts()
			if xorbs < 4 {
				t.Errorf("%d xorbs for a 4 MB file cut at 1 MiB", xorbs)
			}
		})
	}
}

// A second file sharing most chunks with the first adds few new xorb
// bytes, and dedup works across repos.
func TestIngestDedup(t *testing.T) {
	h, _ := testHub(t, Config{})
	mustCreate(t, h, RepoSpec{ID: "org/a"})
	mustCreate(t, h, RepoSpec{ID: "datasets/org/b"})
	base := randomBytes(7, 8<<20)
	mustAdd(t, h, "org/a", "one.bin", base)
	_, _, _, before := h.store.counts()

	edited := append([]byte(nil), base...)
	copy(edited[4<<20:], []byte("a small edit in the middle of the file"))
	edited = append(edited, randomBytes(8, 100_000)...)
	in, err := h.ingest(context.Background(), bytes.NewReader(edited))
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, after := h.store.counts()
	added := after - before
	if added > 600_000 || added != in.newBytes {
		t.Fatalf("second file added %d stored bytes (ingest says %d), want a few hundred KB", added, in.newBytes)
	}
	if in.dedupHits < in.chunks-6 {
		t.Fatalf("%d of %d chunks deduplicated", in.dedupHits, in.chunks)
	}
	// Same content in another repo: nothing new at all.
	mustAdd(t, h, "datasets/org/b", "copy.bin", base)
	if _, _, _, again := h.store.counts(); again != after {
		t.Fatalf("identical file in another repo added %d bytes", again-after)
	}
}

func TestIngestEmptyAndTiny(t *testing.T) {
	h, _ := testHub(t, Config{})
	mustCreate(t, h, RepoSpec{ID: "org/m"})
	empty := mustAdd(t, h, "org/m", "empty.bin", nil)
	if !empty.Xet || !empty.XetHash.IsZero() || empty.Size != 0 {
		t.Fatalf("empty .bin: %+v", empty)
	}
	one := mustAdd(t, h, "org/m", "one.bin", []byte{42})
	if !one.Xet || one.XetHash != merklehash.FileHash([]merklehash.Leaf{{Hash: merklehash.ChunkHash([]byte{42}), Size: 1}}) {
		t.Fatalf("one byte: %+v", one)
	}
	readme := mustAdd(t, h, "org/m", "README.md", []byte("# hello\n"))
	if readme.Xet {
		t.Fatal("small text file stored as Xet")
	}
}
