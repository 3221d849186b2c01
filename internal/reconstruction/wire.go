package reconstruction

import "github.com/xetproxy/xetproxy/internal/merklehash"

// ChunkRange is a range of chunk indices inside one xorb, end-exclusive.
type ChunkRange struct {
	Start uint32 `json:"start"`
	End   uint32 `json:"end"`
}

// Len is the number of chunks in the range.
func (r ChunkRange) Len() uint32 { return r.End - r.Start }

// Contains reports whether o lies inside r.
func (r ChunkRange) Contains(o ChunkRange) bool { return r.Start <= o.Start && o.End <= r.End }

// ByteRange is a range of bytes, end-inclusive as HTTP Range headers are.
type ByteRange struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

// Len is the number of bytes in the range.
func (r ByteRange) Len() uint64 { return r.End - r.Start + 1 }

// Term is one piece of a file: chunks [Range.Start, Range.End) of xorb Hash,
// which decode to UnpackedLength bytes.
type Term struct {
	Hash           merklehash.Hash `json:"hash"`
	UnpackedLength uint32          `json:"unpacked_length"`
	Range          ChunkRange      `json:"range"`
}

// FetchInfo is a v1 fetch entry: a presigned URL and the stored byte range
// holding chunks Range of the xorb.
type FetchInfo struct {
	Range    ChunkRange `json:"range"`
	URL      string     `json:"url"`
	URLRange ByteRange  `json:"url_range"`
}

// ResponseV1 is the answer of GET /v1/reconstructions/{file}.
type ResponseV1 struct {
	OffsetIntoFirstRange uint64                          `json:"offset_into_first_range"`
	Terms                []Term                          `json:"terms"`
	FetchInfo            map[merklehash.Hash][]FetchInfo `json:"fetch_info"`
}

// RangeV2 pairs a chunk range with the stored bytes that hold it.
type RangeV2 struct {
	Chunks ChunkRange `json:"chunks"`
	Bytes  ByteRange  `json:"bytes"`
}

// XorbFetch is a v2 fetch entry: one URL signed for exactly Ranges.
type XorbFetch struct {
	URL    string    `json:"url"`
	Ranges []RangeV2 `json:"ranges"`
}

// ResponseV2 is the answer of GET /v2/reconstructions/{file}.
type ResponseV2 struct {
	OffsetIntoFirstRange uint64                          `json:"offset_into_first_range"`
	Terms                []Term                          `json:"terms"`
	Xorbs                map[merklehash.Hash][]XorbFetch `json:"xorbs"`
}

// ToV2 converts a v1 answer to the v2 shape: each fetch entry becomes a URL
// with a single range, as xet-core does when it falls back to v1.
func (r *ResponseV1) ToV2() *ResponseV2 {
	out := &ResponseV2{
		OffsetIntoFirstRange: r.OffsetIntoFirstRange,
		Terms:                r.Terms,
		Xorbs:                make(map[merklehash.Hash][]XorbFetch, len(r.FetchInfo)),
	}
	for h, infos := range r.FetchInfo {
		for _, fi := range infos {
			out.Xorbs[h] = append(out.Xorbs[h], XorbFetch{
				URL:    fi.URL,
				Ranges: []RangeV2{{Chunks: fi.Range, Bytes: fi.URLRange}},
			})
		}
	}
	return out
}
