package hub

import (
	"encoding/json"
	"testing"
)

func FuzzParseLinks(f *testing.F) {
	f.Add(`<https://a/x>; rel="xet-auth", <https://b/y>; rel="xet-reconstruction-info"`)
	f.Add(`<https://c/next>; rel=next`)
	f.Add(`<<>>;;rel=",`)
	f.Fuzz(func(t *testing.T, v string) {
		for rel, u := range parseLinks([]string{v}) {
			if rel == "" && u != "" {
				t.Fatalf("%q: empty rel", v)
			}
		}
	})
}

func FuzzTreeEntry(f *testing.F) {
	f.Add(`{"type":"file","oid":"o","size":3,"path":"a","lfs":{"oid":"x","size":3},"xetHash":"` + xetHashStr + `"}`)
	f.Add(`{"type":"file","xetHash":"****************************************************************"}`)
	f.Fuzz(func(t *testing.T, s string) {
		var w wireEntry
		if json.Unmarshal([]byte(s), &w) != nil {
			return
		}
		e := w.entry()
		if e.XetHash != nil && e.XetHash.String() == "" {
			t.Fatal("empty hash")
		}
	})
}
