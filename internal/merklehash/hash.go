package merklehash

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Size is the length of a hash in bytes.
const Size = 32

// Hash is a 32-byte Xet hash in its raw (wire and on-disk) byte order.
type Hash [Size]byte

// Zero is the all-zero hash, which is also the hash of an empty file.
var Zero Hash

// ErrSyntax reports a string that is not 64 hexadecimal digits.
var ErrSyntax = errors.New("merklehash: not a 64-digit hex hash")

// Word returns the i-th little-endian u64 of h (0 <= i < 4).
func (h Hash) Word(i int) uint64 {
	return binary.LittleEndian.Uint64(h[i*8 : i*8+8])
}

// String renders h in the Xet text form: four little-endian u64 words, each
// printed as 16 lowercase hex digits.
func (h Hash) String() string {
	var out [2 * Size]byte
	h.appendText(out[:0])
	return string(out[:])
}

func (h Hash) appendText(dst []byte) []byte {
	var swapped [Size]byte
	for w := 0; w < 4; w++ {
		for i := 0; i < 8; i++ {
			swapped[w*8+i] = h[w*8+7-i]
		}
	}
	return hex.AppendEncode(dst, swapped[:])
}

// MarshalText implements encoding.TextMarshaler with the Xet text form.
func (h Hash) MarshalText() ([]byte, error) { return h.appendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler with the Xet text form.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := parse(b)
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// IsZero reports whether h is all zero bytes.
func (h Hash) IsZero() bool { return h == Zero }

// Compare orders hashes as the tuple of their four u64 words, word 0 first,
// which is the order xet-core uses when it sorts shard sections.
func (h Hash) Compare(o Hash) int {
	for i := 0; i < 4; i++ {
		a, b := h.Word(i), o.Word(i)
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
	}
	return 0
}

// Parse reads the Xet text form. It accepts upper- and lower-case digits and
// rejects anything that is not exactly 64 of them.
func Parse(s string) (Hash, error) { return parse([]byte(s)) }

func parse(b []byte) (Hash, error) {
	var h Hash
	if len(b) != 2*Size {
		return h, fmt.Errorf("%w: length %d", ErrSyntax, len(b))
	}
	var raw [Size]byte
	if _, err := hex.Decode(raw[:], b); err != nil {
		return h, ErrSyntax
	}
	for w := 0; w < 4; w++ {
		for i := 0; i < 8; i++ {
			h[w*8+i] = raw[w*8+7-i]
		}
	}
	return h, nil
}

// FromRawHex decodes 64 hex digits as raw bytes in order (no word swap), the
// form used by test vectors and debugging tools.
func FromRawHex(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*Size {
		return h, fmt.Errorf("%w: length %d", ErrSyntax, len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, ErrSyntax
	}
	return h, nil
}

// RawHex renders the raw bytes as plain hex (no word swap).
func (h Hash) RawHex() string { return hex.EncodeToString(h[:]) }
