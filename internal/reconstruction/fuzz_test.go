package reconstruction

import (
	"encoding/json"
	"testing"
)

// FuzzNewPlan feeds arbitrary reconstruction answers to the planner and
// the assembler: they must reject or handle them without panicking, and a
// plan they accept must be self-consistent.
func FuzzNewPlan(f *testing.F) {
	w := newWorld()
	x := w.addXorb(1, 100, 200, 300)
	y := w.addXorb(2, 50, 60)
	terms := []fileTerm{{x, 0, 2}, {y, 0, 2}, {x, 1, 3}}
	for _, rg := range [][2]uint64{{0, 909}, {5, 500}, {150, 150}} {
		b, _ := json.Marshal(w.answer(terms, rg[0], rg[1]))
		f.Add(b, rg[1]-rg[0]+1)
	}
	f.Add([]byte(`{"offset_into_first_range":99999,"terms":[{"hash":"00","unpacked_length":1,"range":{"start":0,"end":1}}]}`), uint64(10))
	f.Fuzz(func(t *testing.T, data []byte, want uint64) {
		var r ResponseV2
		if json.Unmarshal(data, &r) != nil {
			return
		}
		p, err := NewPlan(&r, want)
		if err != nil {
			return
		}
		if p.Size > want {
			t.Fatalf("planned %d bytes of %d", p.Size, want)
		}
		var sum uint64
		for i, pc := range p.Pieces {
			if pc.Offset != sum || pc.Len == 0 || pc.Skip+pc.Len > uint64(pc.UnpackedLength) {
				t.Fatalf("piece %d inconsistent: %+v", i, pc)
			}
			if !p.Fetches[pc.Fetch].Chunks.Contains(pc.Chunks) {
				t.Fatalf("piece %d outside its fetch", i)
			}
			sum += pc.Len
		}
		if sum != p.Size {
			t.Fatalf("pieces sum to %d, plan says %d", sum, p.Size)
		}
		// Chunks of the promised sizes assemble to exactly Size bytes, as
		// long as the sizes a fetch implies agree between its terms.
		for fi := range p.Fetches {
			tr := p.Track(fi)
			for range p.Fetches[fi].Chunks.Len() {
				if _, err := tr.Add(1); err != nil {
					return // lengths that no chunk list satisfies
				}
			}
		}
	})
}
