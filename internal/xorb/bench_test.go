package xorb

import (
	"bytes"
	"io"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// Throughputs are in uncompressed bytes per second.

func benchDecodePayload(b *testing.B, data []byte, p Policy, want Scheme) {
	rec := AppendChunk(nil, data, p)
	h, err := ParseHeader(rec)
	if err != nil || h.Scheme != want {
		b.Fatalf("chunk stored as %v, want %v (%v)", h.Scheme, want, err)
	}
	b.ReportMetric(float64(len(data))/float64(h.CompressedLen), "ratio")
	dst := make([]byte, 0, MaxChunkSize)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := DecodePayload(dst, h, rec[HeaderSize:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLZ4Decode decodes one 64 KiB LZ4 chunk of text-like bytes.
func BenchmarkLZ4Decode(b *testing.B) {
	benchDecodePayload(b, textBytes(1, 64<<10), PolicyLZ4, SchemeLZ4)
}

// BenchmarkLZ4DecodeFrameReader is the same chunk through pierrec's frame
// reader (pooled and reset), the alternative to our frame parser.
func BenchmarkLZ4DecodeFrameReader(b *testing.B) {
	data := textBytes(1, 64<<10)
	rec := AppendChunk(nil, data, PolicyLZ4)
	payload := rec[HeaderSize:]
	br := bytes.NewReader(payload)
	zr := lz4.NewReader(br)
	out := make([]byte, len(data))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		br.Reset(payload)
		zr.Reset(br)
		if _, err := io.ReadFull(zr, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBG4Decode decodes one 64 KiB BG4+LZ4 chunk of float32 numbers:
// LZ4 frame, then the BG4 join.
func BenchmarkBG4Decode(b *testing.B) {
	benchDecodePayload(b, floatBytes(2, 64<<10), PolicyBG4, SchemeBG4LZ4)
}

// BenchmarkDecoder streams a xorb of 64 mixed chunks (random, text and
// float32; stored raw, LZ4 and BG4+LZ4 by the auto policy).
func BenchmarkDecoder(b *testing.B) {
	chunks := mixedChunks(1, 64)
	x := buildXorb(b, PolicyAuto, chunks)
	total := int64(x.UnpackedLen())
	r := bytes.NewReader(x.Region)
	d := NewDecoder(r)
	b.ReportMetric(float64(total)/float64(len(x.Region)), "ratio")
	b.SetBytes(total)
	for b.Loop() {
		r.Reset(x.Region)
		d.Reset(r)
		for {
			if _, err := d.Next(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

// BenchmarkParse parses and verifies the stored form of the same xorb.
func BenchmarkParse(b *testing.B) {
	x := buildXorb(b, PolicyAuto, mixedChunks(1, 64))
	stored := x.Bytes(true)
	b.SetBytes(int64(x.UnpackedLen()))
	for b.Loop() {
		if _, err := Parse(stored); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuilder packs the same 64 chunks with each policy (chunk hashing
// included).
func BenchmarkBuilder(b *testing.B) {
	chunks := mixedChunks(1, 64)
	var total int64
	for _, c := range chunks {
		total += int64(len(c))
	}
	for _, p := range allPolicies {
		b.Run(p.String(), func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				bl := NewBuilder(p)
				for _, c := range chunks {
					bl.Add(c)
				}
				bl.Finish()
			}
		})
	}
}
