package shard_test

import (
	"math/rand/v2"
	"testing"

	"github.com/xetproxy/xetproxy/internal/shard"
)

// benchShard is a stored shard of realistic shape: 100 files of up to 50
// verified terms, 30 xorbs of up to 1000 chunks, lookup tables and footer.
func benchShard(b *testing.B) []byte {
	r := rand.New(rand.NewPCG(17, 18))
	s := genShard(r, genOpts{files: 100, maxTerms: 50, verification: true, metadata: true, xorbs: 30, maxChunks: 1000})
	s.Footer = &shard.Footer{Expiry: shard.NoExpiry}
	return mustMarshal(b, s)
}

func BenchmarkParse(b *testing.B) {
	data := benchShard(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := shard.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshal(b *testing.B) {
	s, err := shard.Parse(benchShard(b))
	if err != nil {
		b.Fatal(err)
	}
	out, _ := s.MarshalBinary()
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
}
