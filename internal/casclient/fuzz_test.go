package casclient

import (
	"testing"
)

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 5-5/*", "bytes 10-2/100", "bytes 0-18446744073709551615/*", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseContentRange(s)
		if err == nil && r.End < r.Start {
			t.Fatalf("%q: reversed range accepted", s)
		}
	})
}
