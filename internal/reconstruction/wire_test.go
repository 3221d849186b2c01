package reconstruction

import (
	"encoding/json"
	"testing"
)

// The JSON field names and the hash text form must match the CAS exactly.
func TestWireJSON(t *testing.T) {
	in := `{"offset_into_first_range":5,"terms":[{"hash":"d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb","unpacked_length":12,"range":{"start":0,"end":1}}],` +
		`"fetch_info":{"d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb":[{"range":{"start":0,"end":1},"url":"http://x/y","url_range":{"start":0,"end":19}}]}}`
	var r ResponseV1
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.OffsetIntoFirstRange != 5 || len(r.Terms) != 1 || r.Terms[0].Range.Len() != 1 {
		t.Fatalf("decoded %+v", r)
	}
	v2 := r.ToV2()
	fetch := v2.Xorbs[r.Terms[0].Hash]
	if len(fetch) != 1 || fetch[0].Ranges[0].Bytes.Len() != 20 || fetch[0].URL != "http://x/y" {
		t.Fatalf("v2 %+v", v2)
	}
	out, err := json.Marshal(v2)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"offset_into_first_range":5,"terms":[{"hash":"d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb","unpacked_length":12,"range":{"start":0,"end":1}}],` +
		`"xorbs":{"d8d408e608fb9ca213b9909a65d86d725f2de4d8d540324be8a363e7a6e228cb":[{"url":"http://x/y","ranges":[{"chunks":{"start":0,"end":1},"bytes":{"start":0,"end":19}}]}]}}`
	if string(out) != want {
		t.Fatalf("marshal:\n%s\nwant\n%s", out, want)
	}
	if err := json.Unmarshal([]byte(`{"terms":[{"hash":"zz"}]}`), &r); err == nil {
		t.Fatal("bad hash accepted")
	}
}
