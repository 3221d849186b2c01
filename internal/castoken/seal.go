package castoken

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Purposes bound to sealed values as additional data.
const (
	PurposeAccess = "cas-access"
	PurposeTicket = "xorb-ticket"
)

const (
	sealVersion = 1
	saltLen     = 24
	nonceLen    = 12
	tagLen      = 16
	// MinKeyLen is the shortest master key accepted.
	MinKeyLen = 32
	// maxSealed bounds the text Open accepts: an access token carries an
	// upstream token of up to 64000 characters (PROTOCOL §6.2).
	maxSealed = 96 << 10
)

// ErrInvalid is returned by Open for anything that is not a value this
// key sealed for this purpose: malformed, forged, tampered with, sealed by
// another key or for another purpose. The cause is deliberately not told.
var ErrInvalid = errors.New("castoken: invalid or foreign token")

// Sealer seals and opens values with one master key. Safe for concurrent use.
type Sealer struct {
	master []byte
}

// NewSealer returns a Sealer for a master key of at least MinKeyLen bytes.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("castoken: key of %d bytes, want at least %d", len(key), MinKeyLen)
	}
	return &Sealer{master: append([]byte(nil), key...)}, nil
}

// GenerateKey returns a random master key.
func GenerateKey() []byte {
	k := make([]byte, MinKeyLen)
	if _, err := rand.Read(k); err != nil {
		panic("castoken: no randomness: " + err.Error())
	}
	return k
}

// ParseKey reads a master key written as hex or base64 (standard or URL
// alphabet, padded or not) of at least MinKeyLen bytes. Errors never
// quote the key.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty signing key")
	}
	var key []byte
	if b, err := hex.DecodeString(s); err == nil {
		key = b
	} else {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				key = b
				break
			}
		}
	}
	if key == nil {
		return nil, errors.New("signing key is neither hex nor base64")
	}
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("signing key of %d bytes, want at least %d", len(key), MinKeyLen)
	}
	return key, nil
}

func (s *Sealer) aead(salt []byte) cipher.AEAD {
	m := hmac.New(sha256.New, s.master)
	m.Write([]byte("xetproxy/seal/v1"))
	m.Write(salt)
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return g
}

func additional(purpose string) []byte { return append([]byte{sealVersion}, purpose...) }

// Seal encrypts and authenticates payload for purpose and returns it as
// URL-safe text.
func (s *Sealer) Seal(purpose string, payload []byte) string {
	buf := make([]byte, 1+saltLen, 1+saltLen+len(payload)+tagLen)
	buf[0] = sealVersion
	salt := buf[1 : 1+saltLen]
	if _, err := rand.Read(salt); err != nil {
		panic("castoken: no randomness: " + err.Error())
	}
	buf = s.aead(salt).Seal(buf, salt[:nonceLen], payload, additional(purpose))
	return base64.RawURLEncoding.EncodeToString(buf)
}

// Open checks and decrypts text sealed for purpose. Any failure is ErrInvalid.
func (s *Sealer) Open(purpose, text string) ([]byte, error) {
	if len(text) > maxSealed {
		return nil, ErrInvalid
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(text)
	if err != nil || len(raw) < 1+saltLen+tagLen || raw[0] != sealVersion {
		return nil, ErrInvalid
	}
	salt := raw[1 : 1+saltLen]
	out, err := s.aead(salt).Open(nil, salt[:nonceLen], raw[1+saltLen:], additional(purpose))
	if err != nil {
		return nil, ErrInvalid
	}
	return out, nil
}
