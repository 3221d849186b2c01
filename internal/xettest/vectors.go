package xettest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Vectors mirrors the parts of xet-vectors.json the tests use. Hash strings
// are in the Xet text form unless a field says raw.
type Vectors struct {
	HashStringFormat []struct {
		Raw    string `json:"raw"`
		String string `json:"string"`
	} `json:"hash_string_format"`
	ChunkHash []struct {
		InputASCII string `json:"input_ascii"`
		Raw        string `json:"raw"`
		String     string `json:"string"`
	} `json:"chunk_hash"`
	InternalNode struct {
		Buffer   string   `json:"buffer"`
		Children [][2]any `json:"children"`
		Result   string   `json:"result"`
	} `json:"internal_node"`
	HubDocsInternalNode struct {
		Children     []string `json:"children"`
		Sizes        []uint64 `json:"sizes"`
		InternalHash string   `json:"internal_hash"`
		MerkleRoot   string   `json:"merkle_root"`
	} `json:"hub_docs_internal_node_example"`
	VerificationHash struct {
		ChunkHashesRaw []string `json:"chunk_hashes_raw"`
		Result         string   `json:"result"`
	} `json:"verification_hash"`
	MerkleAndFileHash struct {
		Entries []struct {
			Chunks     [][2]any `json:"chunks"`
			XorbHash   string   `json:"xorb_hash"`
			FileHashes []struct {
				Salt     string `json:"salt"`
				FileHash string `json:"file_hash"`
			} `json:"file_hashes"`
		} `json:"entries"`
	} `json:"merkle_and_file_hash"`
	EmptyFile struct {
		XetCore string `json:"xet_core_zig_xet_and_hf_xet_thin_wasm"`
		Draft   string `json:"draft_denis_xet_text"`
	} `json:"empty_file"`
	GlobalDedup struct {
		HelloWorldMod1024 uint64 `json:"hello_world_chunk_mod_1024"`
	} `json:"global_dedup_eligibility"`
	DataVectors []DataVector `json:"data_vectors"`
	Trigger     struct {
		Vectors struct {
			BasePattern []byte `json:"-"`
			BaseInts    []int  `json:"base_pattern"`
			Cases       []struct {
				Boundaries  []int `json:"boundaries"`
				DataAt11111 int   `json:"data_at_11111"`
				Padding     int   `json:"padding"`
			} `json:"cases"`
		} `json:"vectors"`
	} `json:"chunking_trigger_pattern"`
	BG4 []struct {
		In         []int  `json:"in"`
		Grouped    []int  `json:"grouped"`
		InHex      string `json:"in_hex"`
		GroupedHex string `json:"grouped_hex"`
	} `json:"bg4"`
	XorbHelloWorld struct {
		ChunkRegionHex string `json:"chunk_region_hex"`
		FooterHex      string `json:"footer_and_info_length_hex"`
		XorbHash       string `json:"xorb_hash"`
	} `json:"xorb_hello_world_uncompressed"`
	XorbIMod256 struct {
		ChunkRegionLen string `json:"chunk_region_len"`
		FooterHex      string `json:"footer_and_info_length_hex"`
		SHA256         string `json:"sha256_of_region_plus_footer"`
		XorbHash       string `json:"xorb_hash"`
	} `json:"xorb_i_mod_256_uncompressed"`
	ShardUploadHelloWorld struct {
		Hex    string `json:"hex"`
		SHA256 string `json:"sha256"`
	} `json:"shard_upload_hello_world"`
	MetadataExtSHA256 struct {
		InputASCII string `json:"input_ascii"`
		SHA256Hex  string `json:"sha256_hex"`
		StoredHex  string `json:"stored_32_bytes_hex"`
	} `json:"metadata_ext_sha256"`
}

// DataVector is one whole-input vector: chunk boundaries, chunk hashes and
// the hashes of the whole input.
type DataVector struct {
	Description     string `json:"description"`
	Length          int    `json:"length"`
	ChunkEndOffsets []int  `json:"chunk_end_offsets"`
	Chunks          []struct {
		EndOffset int    `json:"end_offset"`
		Size      int    `json:"size"`
		Hash      string `json:"hash"`
	} `json:"chunks"`
	MerkleRoot       string `json:"merkle_root_equals_single_xorb_hash"`
	FileHash         string `json:"file_hash"`
	VerificationHash string `json:"verification_hash_all_chunks"`
	SHA256           string `json:"sha256_hex"`
}

// Leaf returns child i of a [hash string, size] pair list.
func Leaf(pair [2]any) (string, uint64) {
	return pair[0].(string), uint64(pair[1].(float64))
}

// Load reads testdata/xet-vectors.json from the repository root.
func Load() (*Vectors, error) {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "xet-vectors.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v Vectors
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	for _, x := range v.Trigger.Vectors.BaseInts {
		v.Trigger.Vectors.BasePattern = append(v.Trigger.Vectors.BasePattern, byte(x))
	}
	return &v, nil
}

// MustLoad is Load for tests and benchmarks that cannot go on without it.
func MustLoad() *Vectors {
	v, err := Load()
	if err != nil {
		panic(err)
	}
	return v
}

// SplitMix64 returns n bytes of the SplitMix64 stream for seed, each output
// word appended little-endian, as xet-core and zig-xet tests generate it.
func SplitMix64(seed uint64, n int) []byte {
	out := make([]byte, 0, n+8)
	state := seed
	var w [8]byte
	for len(out) < n {
		state += 0x9E3779B97F4A7C15
		z := state
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		z ^= z >> 31
		binary.LittleEndian.PutUint64(w[:], z)
		out = append(out, w[:]...)
	}
	return out[:n]
}

// DataVectorInput regenerates the input of DataVectors[i] (the JSON only
// describes it). The order is fixed by the vector file.
func DataVectorInput(i int) []byte {
	switch i {
	case 0:
		return SplitMix64(0, 1_000_000)
	case 1:
		b := make([]byte, 1_000_000)
		for j := range b {
			b[j] = 59
		}
		return b
	case 2:
		return SplitMix64(1, 256_000)
	case 3:
		b := make([]byte, 204_800)
		for j := range b {
			b[j] = byte(j)
		}
		return b
	case 4:
		return []byte("Hello World!")
	}
	panic(fmt.Sprintf("xettest: no data vector %d", i))
}

// TriggerInput builds a 65536-byte chunker trigger-pattern input: the base
// pattern, padding zero bytes, then the whole repeated.
func TriggerInput(base []byte, padding int) []byte {
	data := append(append([]byte(nil), base...), make([]byte, padding)...)
	for len(data) < 65536 {
		data = append(data, data[:min(65536-len(data), len(data))]...)
	}
	return data
}
