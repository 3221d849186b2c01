package xorb

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/xetproxy/xetproxy/internal/xettest"
)

func TestBG4Vectors(t *testing.T) {
	v := xettest.MustLoad()
	if len(v.BG4) == 0 {
		t.Fatal("no bg4 vectors")
	}
	for i, c := range v.BG4 {
		var in, want []byte
		if c.InHex != "" {
			var err error
			if in, err = hex.DecodeString(c.InHex); err != nil {
				t.Fatal(err)
			}
			if want, err = hex.DecodeString(c.GroupedHex); err != nil {
				t.Fatal(err)
			}
		} else {
			for _, x := range c.In {
				in = append(in, byte(x))
			}
			for _, x := range c.Grouped {
				want = append(want, byte(x))
			}
		}
		got := make([]byte, len(in))
		bg4Split(got, in)
		if !bytes.Equal(got, want) {
			t.Errorf("vector %d: split(% x) = % x, want % x", i, in, got, want)
		}
		back := make([]byte, len(want))
		bg4Join(back, want)
		if !bytes.Equal(back, in) {
			t.Errorf("vector %d: join(% x) = % x, want % x", i, want, back, in)
		}
	}
}

func TestBG4MatchesNaive(t *testing.T) {
	sizes := []int{65536, 65483, 65671, MaxChunkSize - 1, MaxChunkSize}
	for n := 0; n <= 300; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		in := randomBytes(uint64(n), n)
		want := naiveSplit(in)
		got := make([]byte, n)
		bg4Split(got, in)
		if !bytes.Equal(got, want) {
			t.Fatalf("n=%d: split differs from the naive loop", n)
		}
		back := make([]byte, n)
		bg4Join(back, got)
		if !bytes.Equal(back, in) {
			t.Fatalf("n=%d: join(split(x)) != x", n)
		}
		ref := make([]byte, n)
		naiveJoin(ref, want)
		if !bytes.Equal(ref, in) {
			t.Fatalf("n=%d: naive join is broken", n)
		}
	}
}

// The fast loops must not touch dst past len(src).
func TestBG4LeavesSpareCapacity(t *testing.T) {
	for _, n := range []int{0, 5, 31, 32, 33, 100} {
		in := randomBytes(7, n)
		for name, f := range map[string]func(dst, src []byte){"split": bg4Split, "join": bg4Join} {
			dst := bytes.Repeat([]byte{0xEE}, n+64)
			f(dst, in)
			for i := n; i < len(dst); i++ {
				if dst[i] != 0xEE {
					t.Fatalf("%s n=%d: wrote dst[%d]", name, n, i)
				}
			}
		}
	}
}

func benchBG4(b *testing.B, f func(dst, src []byte)) {
	src := floatBytes(1, 64<<10)
	dst := make([]byte, len(src))
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		f(dst, src)
	}
}

func BenchmarkBG4Split(b *testing.B) { benchBG4(b, bg4Split) }
func BenchmarkBG4Join(b *testing.B)  { benchBG4(b, bg4Join) }

func BenchmarkBG4SplitNaive(b *testing.B) {
	benchBG4(b, func(dst, src []byte) {
		n := len(src)
		o1, o2, o3 := bg4Offsets(n)
		off := [4]int{0, o1, o2, o3}
		for i := 0; i < n; i++ {
			dst[off[i&3]+i>>2] = src[i]
		}
	})
}

func BenchmarkBG4JoinNaive(b *testing.B) { benchBG4(b, naiveJoin) }
