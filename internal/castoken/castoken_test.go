package castoken

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

func testSealer(t testing.TB) *Sealer {
	s, err := NewSealer([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sampleAccess() *AccessToken {
	return &AccessToken{
		Exp: time.Unix(2000000000, 0), Caller: Caller{1, 2, 3}, RepoType: "model", RepoID: "org/m",
		Revision: "refs/pr/1", UpstreamURL: "https://cas.example", UpstreamToken: "xet_secret",
		UpstreamExp: time.Unix(2000000100, 0),
	}
}

func sampleTicket() *Ticket {
	x, _ := merklehash.Parse(strings.Repeat("ab", 32))
	return &Ticket{
		Exp: time.Unix(2000000000, 0), Caller: Caller{9}, Xorb: x, Layout: 1,
		UpstreamURL: "https://cas.example/transfer/x?sig=1",
		Ranges: []Range{
			{Chunks: reconstruction.ChunkRange{Start: 0, End: 4}, Served: reconstruction.ByteRange{Start: 0, End: 999}, Upstream: reconstruction.ByteRange{Start: 0, End: 499}},
			{Chunks: reconstruction.ChunkRange{Start: 9, End: 12}, Served: reconstruction.ByteRange{Start: 5000, End: 6000}, Upstream: reconstruction.ByteRange{Start: 2000, End: 2300}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	s := testSealer(t)
	now := time.Unix(1900000000, 0)
	a := sampleAccess()
	got, err := s.OpenAccess(s.SealAccess(a), now)
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("access: %+v, %v; want %+v", got, err, a)
	}
	tk := sampleTicket()
	gt, err := s.OpenTicket(s.SealTicket(tk), now)
	if err != nil || !reflect.DeepEqual(gt, tk) {
		t.Fatalf("ticket: %+v, %v; want %+v", gt, err, tk)
	}
}

func TestRefusals(t *testing.T) {
	s := testSealer(t)
	now := time.Unix(1900000000, 0)
	access := s.SealAccess(sampleAccess())
	ticket := s.SealTicket(sampleTicket())
	other, _ := NewSealer([]byte(strings.Repeat("o", 32)))

	if strings.Contains(access, "xet_secret") || strings.Contains(ticket, "cas.example") {
		t.Fatal("sealed text shows its content")
	}
	if _, err := s.OpenAccess(access, time.Unix(2000000000, 0)); !errors.Is(err, ErrExpired) {
		t.Errorf("expired access token: %v", err)
	}
	if _, err := s.OpenTicket(ticket, time.Unix(2000000001, 0)); !errors.Is(err, ErrExpired) {
		t.Errorf("expired ticket: %v", err)
	}
	// purposes do not mix
	if _, err := s.OpenAccess(ticket, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("ticket opened as access token: %v", err)
	}
	if _, err := s.OpenTicket(access, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("access token opened as ticket: %v", err)
	}
	if _, err := other.OpenAccess(access, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("another key opened it: %v", err)
	}
	// any changed character fails
	for i := 0; i < len(access); i += 7 {
		b := []byte(access)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if _, err := s.OpenAccess(string(b), now); err == nil {
			t.Fatalf("tampered token at %d opened", i)
		}
	}
	for _, bad := range []string{"", "x", "!!!!", access[:20], access + "A"} {
		if _, err := s.OpenAccess(bad, now); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestParseKey(t *testing.T) {
	raw := []byte(strings.Repeat("\x01\xff", 16))
	for _, s := range []string{
		strings.Repeat("01ff", 16),
		"Af8B/wH/Af8B/wH/Af8B/wH/Af8B/wH/Af8B/wH/Af8=",
		"Af8B_wH_Af8B_wH_Af8B_wH_Af8B_wH_Af8B_wH_Af8",
	} {
		k, err := ParseKey(s)
		if err != nil || string(k) != string(raw) {
			t.Errorf("ParseKey(%q) = %x, %v", s, k, err)
		}
	}
	for _, s := range []string{"", "short", strings.Repeat("ab", 31), "not base64 at all!!"} {
		if _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		} else if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error quotes the key: %v", err)
		}
	}
	if _, err := NewSealer(make([]byte, 31)); err == nil {
		t.Error("31-byte key accepted")
	}
}
