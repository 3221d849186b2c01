package castoken

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
)

// ErrExpired is returned for a value that opened but whose expiry passed.
var ErrExpired = errors.New("castoken: expired")

// Caps of the decoder: a sealed value is authenticated before it is
// decoded, so these only guard against the proxy's own bugs and keys that
// leaked, never cost more than the sealed text's length.
const (
	maxString      = 64 << 10
	MaxRanges      = 1024 // ranges of one ticket
	payloadVersion = 1
)

// Caller identifies the upstream credentials a request acted with (a
// digest, never the credential itself).
type Caller [16]byte

// AccessToken is the content of the CAS access token the token route
// issues: what the CAS routes need to query upstream as the caller.
type AccessToken struct {
	Exp           time.Time // when the proxy stops accepting it
	Caller        Caller
	RepoType      string // model, dataset, space
	RepoID        string
	Revision      string
	UpstreamURL   string // the upstream CAS base URL
	UpstreamToken string // the caller's upstream Xet read token
	UpstreamExp   time.Time
}

// Range is one chunk range a ticket grants: the chunks, the bytes the
// proxy serves for them (end-inclusive, the url_range it gave the client),
// and where the stored bytes are upstream.
type Range struct {
	Chunks   reconstruction.ChunkRange
	Served   reconstruction.ByteRange
	Upstream reconstruction.ByteRange
}

// Ticket is the content of a xorb URL: what a reconstruction gave one
// caller for one xorb, and how to fetch it upstream.
type Ticket struct {
	Exp         time.Time
	Caller      Caller
	Xorb        merklehash.Hash
	Layout      uint8 // how the served bytes are laid out (the proxy's choice)
	UpstreamURL string
	Ranges      []Range
}

// SealAccess seals t as a CAS access token.
func (s *Sealer) SealAccess(t *AccessToken) string {
	b := []byte{payloadVersion}
	b = binary.AppendVarint(b, t.Exp.Unix())
	b = append(b, t.Caller[:]...)
	for _, v := range []string{t.RepoType, t.RepoID, t.Revision, t.UpstreamURL, t.UpstreamToken} {
		b = appendString(b, v)
	}
	b = binary.AppendVarint(b, t.UpstreamExp.Unix())
	return s.Seal(PurposeAccess, b)
}

// OpenAccess opens a CAS access token valid at now: ErrInvalid for
// anything else than one this key sealed, ErrExpired past its expiry.
func (s *Sealer) OpenAccess(text string, now time.Time) (*AccessToken, error) {
	b, err := s.Open(PurposeAccess, text)
	if err != nil {
		return nil, err
	}
	t, err := decodeAccess(b)
	if err != nil {
		return nil, err
	}
	if !now.Before(t.Exp) {
		return nil, ErrExpired
	}
	return t, nil
}

func decodeAccess(b []byte) (*AccessToken, error) {
	d := decoder{b: b}
	if d.byte() != payloadVersion {
		return nil, ErrInvalid
	}
	t := &AccessToken{Exp: time.Unix(d.varint(), 0)}
	copy(t.Caller[:], d.bytes(len(t.Caller)))
	t.RepoType, t.RepoID, t.Revision = d.string(), d.string(), d.string()
	t.UpstreamURL, t.UpstreamToken = d.string(), d.string()
	t.UpstreamExp = time.Unix(d.varint(), 0)
	if err := d.end(); err != nil {
		return nil, err
	}
	return t, nil
}

// SealTicket seals t as the ticket of a xorb URL.
func (s *Sealer) SealTicket(t *Ticket) string {
	b := []byte{payloadVersion}
	b = binary.AppendVarint(b, t.Exp.Unix())
	b = append(b, t.Caller[:]...)
	b = append(b, t.Xorb[:]...)
	b = append(b, t.Layout)
	b = appendString(b, t.UpstreamURL)
	b = binary.AppendUvarint(b, uint64(len(t.Ranges)))
	for _, r := range t.Ranges {
		for _, v := range []uint64{uint64(r.Chunks.Start), uint64(r.Chunks.End), r.Served.Start, r.Served.End, r.Upstream.Start, r.Upstream.End} {
			b = binary.AppendUvarint(b, v)
		}
	}
	return s.Seal(PurposeTicket, b)
}

// OpenTicket opens a xorb ticket valid at now, like OpenAccess.
func (s *Sealer) OpenTicket(text string, now time.Time) (*Ticket, error) {
	b, err := s.Open(PurposeTicket, text)
	if err != nil {
		return nil, err
	}
	t, err := decodeTicket(b)
	if err != nil {
		return nil, err
	}
	if !now.Before(t.Exp) {
		return nil, ErrExpired
	}
	return t, nil
}

func decodeTicket(b []byte) (*Ticket, error) {
	d := decoder{b: b}
	if d.byte() != payloadVersion {
		return nil, ErrInvalid
	}
	t := &Ticket{Exp: time.Unix(d.varint(), 0)}
	copy(t.Caller[:], d.bytes(len(t.Caller)))
	copy(t.Xorb[:], d.bytes(len(t.Xorb)))
	t.Layout = d.byte()
	t.UpstreamURL = d.string()
	n := d.uvarint()
	if n == 0 || n > MaxRanges {
		return nil, ErrInvalid
	}
	t.Ranges = make([]Range, 0, n)
	for range n {
		var v [6]uint64
		for i := range v {
			v[i] = d.uvarint()
		}
		if v[0] >= v[1] || v[1] > 1<<32-1 || v[2] > v[3] || v[4] > v[5] {
			return nil, ErrInvalid
		}
		t.Ranges = append(t.Ranges, Range{
			Chunks:   reconstruction.ChunkRange{Start: uint32(v[0]), End: uint32(v[1])},
			Served:   reconstruction.ByteRange{Start: v[2], End: v[3]},
			Upstream: reconstruction.ByteRange{Start: v[4], End: v[5]},
		})
		if d.err != nil {
			break
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return t, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads a payload; the first problem sticks and every later read
// returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err, d.b = ErrInvalid, nil }

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(n int) []byte {
	if len(d.b) < n {
		d.fail()
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > maxString {
		d.fail()
		return ""
	}
	return string(d.bytes(int(n)))
}

func (d *decoder) end() error {
	if d.err != nil || len(d.b) != 0 {
		return ErrInvalid
	}
	return nil
}
