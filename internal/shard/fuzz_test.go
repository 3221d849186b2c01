package shard_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"runtime/metrics"
	"testing"

	"github.com/xetproxy/xetproxy/internal/shard"
	"github.com/xetproxy/xetproxy/internal/xettest"
)

// parseAllocApprox is parseAlloc without stopping the world, cheap enough
// for every fuzz input. The runtime counts a span as allocated when an
// mcache takes it, so the figure can run ahead by some spans.
func parseAllocApprox(data []byte) (uint64, error) {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	before := sample[0].Value.Uint64()
	_, err := shard.Parse(data)
	metrics.Read(sample)
	return sample[0].Value.Uint64() - before, err
}

// FuzzParse feeds arbitrary bytes to Parse. It must return a *FormatError
// or ErrTooLarge rather than panic, stay within allocBound (plus 1 MiB of
// slack for parseAllocApprox), and whatever it
// accepts must survive MarshalBinary → Parse unchanged; an accepted upload
// body without footer must re-serialise to the very same bytes.
func FuzzParse(f *testing.F) {
	v := xettest.MustLoad()
	f.Add(mustHex(f, v.ShardUploadHelloWorld.Hex))
	f.Add(mustMarshal(f, smallShard(false)))
	f.Add(mustMarshal(f, smallShard(true)))
	f.Add([]byte{})
	r := rand.New(rand.NewPCG(15, 16))
	// Small shapes: the fuzzer mutates small inputs much faster.
	for _, o := range []genOpts{
		{files: 1, maxTerms: 2, verification: true, metadata: true, xorbs: 1, maxChunks: 3},
		{files: 3, maxTerms: 3, mixed: true, xorbs: 2, maxChunks: 4},
		{xorbs: 2, maxChunks: 3},
		{files: 2},
	} {
		s := genShard(r, o)
		body := mustMarshal(f, s)
		f.Add(body)
		f.Add(appendJSFooter(body, 1, 2, 3))
		s.Footer = &shard.Footer{HMACKey: randHash(r), Created: 1, Expiry: 2}
		f.Add(mustMarshal(f, s))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := parseAllocApprox(data)
		if n > allocBound(len(data))+1<<20 {
			t.Fatalf("Parse allocated %d bytes for %d input bytes", n, len(data))
		}
		if err != nil {
			var fe *shard.FormatError
			if !errors.As(err, &fe) && !errors.Is(err, shard.ErrTooLarge) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		s, err := shard.Parse(data)
		if err != nil {
			t.Fatalf("second Parse failed: %v", err)
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted shard does not marshal: %v", err)
		}
		if s.Footer == nil && !bytes.Equal(out, data) {
			t.Fatalf("upload body re-serialises differently:\n in %x\nout %x", data, out)
		}
		back, err := shard.Parse(out)
		if err != nil {
			t.Fatalf("re-marshalled shard rejected: %v", err)
		}
		if !reflect.DeepEqual(back.Files, s.Files) || !reflect.DeepEqual(back.Xorbs, s.Xorbs) {
			t.Fatal("content changed across marshal/parse")
		}
		if (back.Footer == nil) != (s.Footer == nil) || (s.Footer != nil && !footerInputsEqual(back.Footer, s.Footer)) {
			t.Fatal("footer changed across marshal/parse")
		}
	})
}
