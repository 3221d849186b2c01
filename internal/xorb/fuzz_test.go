package xorb

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/pierrec/lz4/v4"

	"github.com/xetproxy/xetproxy/internal/xettest"
)

// seedXorbs returns small xorbs of every policy, for fuzz seeds.
func seedXorbs(f *testing.F) []*Xorb {
	f.Helper()
	// Small, so that the fuzzer's minimization of new inputs stays quick.
	chunks := [][]byte{[]byte("Hello World!"), textBytes(1, 120), floatBytes(2, 96), {}}
	var xs []*Xorb
	for _, p := range allPolicies {
		xs = append(xs, buildXorb(f, p, chunks))
	}
	return xs
}

// FuzzDecoder feeds arbitrary bytes to a Decoder: it must end with io.EOF,
// io.ErrUnexpectedEOF or a *FormatError, never panic, and cost at most the
// pooled buffers. A stream it decodes cleanly must parse as an upload body
// with the same chunks.
func FuzzDecoder(f *testing.F) {
	for _, x := range seedXorbs(f) {
		f.Add(x.Region)
		f.Add(x.Region[:len(x.Region)/2])
	}
	v := xettest.MustLoad().XorbHelloWorld
	x1, _ := hex.DecodeString(v.ChunkRegionHex + v.FooterHex)
	f.Add(x1)
	f.Fuzz(func(t *testing.T, data []byte) {
		var sizes []int
		var end error
		if n := allocatedBy(func() {
			d := NewDecoder(bytes.NewReader(data))
			for {
				c, err := d.Next()
				if err != nil {
					end = err
					return
				}
				if len(c) > MaxChunkSize {
					t.Fatalf("chunk of %d bytes", len(c))
				}
				sizes = append(sizes, len(c))
			}
		}); n > allocLimit(len(data)) {
			t.Fatalf("allocated %d bytes for %d input bytes", n, len(data))
		}
		if end != io.EOF && end != io.ErrUnexpectedEOF && !isFormatError(end) {
			t.Fatalf("unexpected error %T %v", end, end)
		}
		if end != io.EOF || len(sizes) == 0 || len(sizes) > MaxChunks {
			return
		}
		x, err := Parse(data)
		if err != nil {
			t.Fatalf("decoder accepted %d chunks, Parse: %v", len(sizes), err)
		}
		if len(x.Chunks) != len(sizes) {
			t.Fatalf("decoder: %d chunks, Parse: %d", len(sizes), len(x.Chunks))
		}
		for i, c := range x.Chunks {
			if int(c.Size) != sizes[i] {
				t.Fatalf("chunk %d: decoder %d bytes, Parse %d", i, sizes[i], c.Size)
			}
		}
	})
}

// FuzzChunk runs ParseHeader and DecodePayload on arbitrary bytes (header,
// then payload). Whatever decodes must decode the same with pierrec's own
// frame reader, and must be exactly as long as the header says.
func FuzzChunk(f *testing.F) {
	for _, p := range allPolicies {
		for _, data := range [][]byte{textBytes(1, 300), floatBytes(2, 200), randomBytes(3, 40), nil} {
			f.Add(AppendChunk(nil, data, p))
		}
	}
	frame, want := linkedFrame(f, true)
	rec := make([]byte, HeaderSize)
	Header{SchemeLZ4, uint32(len(frame)), uint32(len(want))}.Put(rec)
	f.Add(append(rec, frame...))
	data := textBytes(4, 300)
	frame = pierrecFrame(f, data, lz4.BlockChecksumOption(true), lz4.SizeOption(uint64(len(data))))
	Header{SchemeLZ4, uint32(len(frame)), uint32(len(data))}.Put(rec)
	f.Add(append(rec, frame...))

	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil {
			if !isFormatError(err) {
				t.Fatalf("ParseHeader: %T %v", err, err)
			}
			return
		}
		payload := data[HeaderSize:]
		if len(payload) > int(h.CompressedLen) {
			payload = payload[:h.CompressedLen]
		}
		var out []byte
		if n := allocatedBy(func() { out, err = DecodePayload(nil, h, payload) }); n > allocLimit(len(data)) {
			t.Fatalf("allocated %d bytes for %d input bytes", n, len(data))
		}
		if err != nil {
			if !isFormatError(err) {
				t.Fatalf("DecodePayload: %T %v", err, err)
			}
			return
		}
		if len(out) != int(h.UncompressedLen) {
			t.Fatalf("decoded %d bytes, header says %d", len(out), h.UncompressedLen)
		}
		if h.Scheme == SchemeNone {
			if !bytes.Equal(out, payload) {
				t.Fatal("uncompressed chunk differs from its payload")
			}
			return
		}
		ref, err := pierrecDecode(payload, MaxChunkSize)
		if err != nil {
			t.Fatalf("we decoded a payload pierrec's reader rejects: %v", err)
		}
		if h.Scheme == SchemeBG4LZ4 {
			joined := make([]byte, len(ref))
			bg4Join(joined, ref)
			ref = joined
		}
		if !bytes.Equal(out, ref) {
			t.Fatal("decoded bytes differ from pierrec's reader")
		}
	})
}

// FuzzParse parses arbitrary bytes as a xorb: an error is a *FormatError, a
// success re-serializes to the same region, parses again from its stored
// form, and decodes chunk by chunk to the same hashes.
func FuzzParse(f *testing.F) {
	for _, x := range seedXorbs(f) {
		f.Add(x.Bytes(true))
		f.Add(x.Bytes(false))
	}
	v := xettest.MustLoad().XorbHelloWorld
	x1, _ := hex.DecodeString(v.ChunkRegionHex + v.FooterHex)
	f.Add(x1)
	f.Fuzz(func(t *testing.T, data []byte) {
		var x *Xorb
		var err error
		if n := allocatedBy(func() { x, err = Parse(data) }); n > allocLimit(len(data)) {
			t.Fatalf("allocated %d bytes for %d input bytes", n, len(data))
		}
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("Parse: %T %v", err, err)
			}
			if fe.Offset < 0 || fe.Offset > int64(len(data)) {
				t.Fatalf("error offset %d outside the %d input bytes", fe.Offset, len(data))
			}
			return
		}
		if !bytes.Equal(x.Bytes(false), data[:len(x.Region)]) {
			t.Fatal("region is not a prefix of the input")
		}
		if len(x.Region) < len(data) && !bytes.HasPrefix(data[len(x.Region):], []byte(footerIdent)) {
			t.Fatal("bytes after the region are not a footer")
		}
		y, err := Parse(x.Bytes(true))
		if err != nil || y.Hash != x.Hash {
			t.Fatalf("stored form does not parse back: %v", err)
		}
		d := NewDecoder(bytes.NewReader(x.Region))
		for i := range x.Chunks {
			c, err := d.Next()
			if err != nil {
				t.Fatalf("decoder, chunk %d: %v", i, err)
			}
			if len(c) != int(x.Chunks[i].Size) {
				t.Fatalf("decoder, chunk %d: %d bytes, want %d", i, len(c), x.Chunks[i].Size)
			}
		}
		if _, err := d.Next(); err != io.EOF {
			t.Fatalf("decoder after the last chunk: %v", err)
		}
	})
}
