package fakehub

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Token scopes. Write includes read.
const (
	scopeRead  = "read"
	scopeWrite = "write"
)

// casToken is the signed content of a CAS access token: opaque to clients,
// bound to a repo, a scope and an expiry.
type casToken struct {
	Repo  string `json:"repo"`
	Rev   string `json:"rev"`
	Scope string `json:"scope"`
	Exp   int64  `json:"exp"`
	Nonce string `json:"nonce"`
}

var (
	errTokenMissing = errors.New("missing authorization token")
	errTokenInvalid = errors.New("invalid token")
	errTokenExpired = errors.New("token expired")
	errTokenScope   = errors.New("token scope does not allow this operation")
)

// mac is the HMAC-SHA256 of the parts under the Hub secret, hex encoded.
func (h *Hub) mac(parts ...string) string {
	m := hmac.New(sha256.New, h.secret)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

func (h *Hub) verifyMAC(sig string, parts ...string) bool {
	return hmac.Equal([]byte(sig), []byte(h.mac(parts...)))
}

// issueToken mints a CAS token for repo key k and scope, expiring after the
// current token TTL.
func (h *Hub) issueToken(k, rev, scope string) (string, int64) {
	ttl, _ := h.knobs.ttls()
	exp := time.Now().Add(ttl).Unix()
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	payload, _ := json.Marshal(casToken{Repo: k, Rev: rev, Scope: scope, Exp: exp, Nonce: hex.EncodeToString(nonce[:])})
	body := base64.RawURLEncoding.EncodeToString(payload)
	return "xet_" + body + "." + h.mac("token", body), exp
}

// checkToken validates a CAS token and returns its content.
func (h *Hub) checkToken(tok string) (casToken, error) {
	var t casToken
	if tok == "" {
		return t, errTokenMissing
	}
	rest, ok := strings.CutPrefix(tok, "xet_")
	if !ok {
		return t, errTokenInvalid
	}
	body, sig, ok := strings.Cut(rest, ".")
	if !ok || !h.verifyMAC(sig, "token", body) {
		return t, errTokenInvalid
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || json.Unmarshal(payload, &t) != nil {
		return t, errTokenInvalid
	}
	if expired(t.Exp) {
		return t, errTokenExpired
	}
	return t, nil
}

// expired reports whether a unix-seconds expiry has passed.
func expired(exp int64) bool { return !time.Now().Before(time.Unix(exp, 0)) }

// urlExpiry is the expiry of a URL signed now.
func (h *Hub) urlExpiry() int64 {
	_, ttl := h.knobs.ttls()
	return time.Now().Add(ttl).Unix()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
