package castoken

import (
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary text to both openers, and arbitrary payloads
// (sealed with the right key, as a leaked key would allow) to both
// decoders: neither may panic or allocate past its caps.
func FuzzOpen(f *testing.F) {
	s := testSealer(f)
	f.Add(s.SealAccess(sampleAccess()), []byte{1, 2, 3})
	f.Add(s.SealTicket(sampleTicket()), []byte{payloadVersion, 0})
	f.Add("", []byte{})
	now := time.Unix(1900000000, 0)
	f.Fuzz(func(t *testing.T, text string, payload []byte) {
		_, _ = s.OpenAccess(text, now)
		_, _ = s.OpenTicket(text, now)
		if tk, err := decodeTicket(payload); err == nil {
			if len(tk.Ranges) == 0 || len(tk.Ranges) > MaxRanges {
				t.Fatalf("%d ranges decoded", len(tk.Ranges))
			}
			if back, err := s.OpenTicket(s.SealTicket(tk), time.Unix(0, 0)); err == nil && len(back.Ranges) != len(tk.Ranges) {
				t.Fatal("ticket did not round-trip")
			}
		}
		if a, err := decodeAccess(payload); err == nil && len(a.UpstreamToken) > maxString {
			t.Fatal("string over its cap")
		}
	})
}
