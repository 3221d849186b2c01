package xorb

import (
	"bytes"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{SchemeNone, 0, 0},
		{SchemeNone, 12, 12},
		{SchemeNone, MaxChunkSize, MaxChunkSize},
		{SchemeLZ4, 1, MaxChunkSize},
		{SchemeBG4LZ4, MaxCompressedSize, 7},
		{SchemeLZ4, 0x123456 & MaxCompressedSize, 0x01ABCD},
	} {
		var b [HeaderSize]byte
		h.Put(b[:])
		got, err := ParseHeader(b[:])
		if err != nil || got != h {
			t.Errorf("ParseHeader(Put(%+v)) = %+v, %v", h, got, err)
		}
	}
	// The X1 header: version 0, 12 bytes, scheme 0, 12 bytes.
	h, err := ParseHeader([]byte{0x00, 0x0c, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00})
	if err != nil || h != (Header{SchemeNone, 12, 12}) {
		t.Fatalf("X1 header: %+v, %v", h, err)
	}
}

func TestParseHeaderRejects(t *testing.T) {
	put := func(h Header) []byte {
		b := make([]byte, HeaderSize)
		b[1], b[2], b[3] = byte(h.CompressedLen), byte(h.CompressedLen>>8), byte(h.CompressedLen>>16)
		b[4] = byte(h.Scheme)
		b[5], b[6], b[7] = byte(h.UncompressedLen), byte(h.UncompressedLen>>8), byte(h.UncompressedLen>>16)
		return b
	}
	version1 := put(Header{SchemeNone, 1, 1})
	version1[0] = 1
	for name, b := range map[string][]byte{
		"short":                 {0, 1, 0, 0, 0, 1, 0},
		"version 1":             version1,
		"footer":                []byte("XETBLOB\x01"),
		"scheme 3":              put(Header{3, 10, 100}),
		"scheme 99":             put(Header{99, 10, 100}),
		"uncompressed too long": put(Header{SchemeLZ4, 10, MaxChunkSize + 1}),
		"compressed too long":   put(Header{SchemeLZ4, MaxCompressedSize + 1, 10}),
		"u24 max":               put(Header{SchemeLZ4, maxU24, maxU24}),
		"none with unequal len": put(Header{SchemeNone, 10, 11}),
	} {
		if h, err := ParseHeader(b); err == nil || !isFormatError(err) {
			t.Errorf("%s: ParseHeader = %+v, %v; want a *FormatError", name, h, err)
		}
	}
}

func TestAppendChunkPolicies(t *testing.T) {
	inputs := map[string][]byte{
		"random": randomBytes(1, 65536),
		"text":   textBytes(2, 65536),
		"floats": floatBytes(3, 65536),
		"zeros":  make([]byte, MaxChunkSize),
		"tiny":   []byte("Hello World!"),
		"empty":  {},
	}
	for name, data := range inputs {
		sizes := map[Policy]int{}
		schemes := map[Policy]Scheme{}
		for _, p := range allPolicies {
			rec := AppendChunk([]byte("prefix"), data, p)
			if string(rec[:6]) != "prefix" {
				t.Fatalf("%s/%v: prefix clobbered", name, p)
			}
			rec = rec[6:]
			h, err := ParseHeader(rec)
			if err != nil {
				t.Fatalf("%s/%v: %v", name, p, err)
			}
			if int(h.CompressedLen) != len(rec)-HeaderSize || int(h.UncompressedLen) != len(data) {
				t.Fatalf("%s/%v: header %+v for a %d-byte record of %d bytes", name, p, h, len(rec), len(data))
			}
			if h.Scheme != SchemeNone && int(h.CompressedLen) >= len(data) {
				t.Errorf("%s/%v: compressed %d bytes into %d", name, p, len(data), h.CompressedLen)
			}
			got, err := DecodePayload(nil, h, rec[HeaderSize:])
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s/%v: round trip failed: %v", name, p, err)
			}
			sizes[p], schemes[p] = len(rec), h.Scheme
		}
		// Policies force their scheme unless it does not pay.
		if s := schemes[PolicyNone]; s != SchemeNone {
			t.Errorf("%s: PolicyNone stored %v", name, s)
		}
		if s := schemes[PolicyLZ4]; s != SchemeLZ4 && s != SchemeNone {
			t.Errorf("%s: PolicyLZ4 stored %v", name, s)
		}
		if s := schemes[PolicyBG4]; s != SchemeBG4LZ4 && s != SchemeNone {
			t.Errorf("%s: PolicyBG4 stored %v", name, s)
		}
		// Auto is the smallest of the three (LZ4 on a tie).
		best := min(sizes[PolicyNone], sizes[PolicyLZ4], sizes[PolicyBG4])
		if sizes[PolicyAuto] != best {
			t.Errorf("%s: auto stored %d bytes, best is %d (%v)", name, sizes[PolicyAuto], best, sizes)
		}
		t.Logf("%s: %v", name, sizes)
	}
	// The expected winners for inputs built for them.
	for name, want := range map[string]Scheme{"random": SchemeNone, "text": SchemeLZ4, "floats": SchemeBG4LZ4, "tiny": SchemeNone, "empty": SchemeNone} {
		rec := AppendChunk(nil, inputs[name], PolicyAuto)
		if h, _ := ParseHeader(rec); h.Scheme != want {
			t.Errorf("auto on %s chose %v, want %v", name, h.Scheme, want)
		}
	}
}

func TestAppendChunkRefusesOversize(t *testing.T) {
	dst := []byte("keep")
	for _, p := range allPolicies {
		if out := AppendChunk(dst, make([]byte, MaxChunkSize+1), p); string(out) != "keep" {
			t.Errorf("%v: appended %d bytes for an oversize chunk", p, len(out)-4)
		}
	}
}

func TestDecodePayloadRejects(t *testing.T) {
	data := textBytes(9, 10_000)
	rec := AppendChunk(nil, data, PolicyLZ4)
	h, _ := ParseHeader(rec)
	payload := rec[HeaderSize:]
	for name, c := range map[string]struct {
		h       Header
		payload []byte
	}{
		"short payload":      {h, payload[:len(payload)-1]},
		"long payload":       {h, append(append([]byte(nil), payload...), 0)},
		"header over caps":   {Header{SchemeLZ4, h.CompressedLen, MaxChunkSize + 1}, payload},
		"unknown scheme":     {Header{5, h.CompressedLen, h.UncompressedLen}, payload},
		"wrong length":       {Header{SchemeLZ4, h.CompressedLen, h.UncompressedLen - 1}, payload},
		"wrong scheme (bg4)": {Header{SchemeBG4LZ4, h.CompressedLen, h.UncompressedLen}, payload}, // decodes, but to other bytes
		"none, short":        {Header{SchemeNone, 5, 5}, []byte{1, 2, 3}},
	} {
		out, err := DecodePayload([]byte("dst"), c.h, c.payload)
		if name == "wrong scheme (bg4)" {
			// Not detectable from the payload alone: the chunk hash catches it.
			if err != nil || bytes.Equal(out[3:], data) {
				t.Errorf("%s: err=%v, same bytes=%v", name, err, bytes.Equal(out[3:], data))
			}
			continue
		}
		if err == nil || !isFormatError(err) {
			t.Errorf("%s: err = %v, want a *FormatError", name, err)
		}
		if string(out) != "dst" {
			t.Errorf("%s: dst changed to %q", name, out)
		}
	}
}

func TestHotPathsDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	data := floatBytes(1, 100_000)
	for _, p := range allPolicies {
		rec := AppendChunk(nil, data, p)
		h, _ := ParseHeader(rec)
		dst := make([]byte, 0, MaxChunkSize)
		if n := testing.AllocsPerRun(20, func() {
			if _, err := DecodePayload(dst, h, rec[HeaderSize:]); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("DecodePayload(%v): %v allocations", h.Scheme, n)
		}
		out := make([]byte, 0, 2*MaxChunkSize)
		if n := testing.AllocsPerRun(20, func() { out = AppendChunk(out[:0], data, p) }); n != 0 {
			t.Errorf("AppendChunk(%v): %v allocations", p, n)
		}
	}
}
