package server

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// authPolicy decides which Hub credential a request uses upstream.
//
//   - A caller's own `Authorization: Bearer <hub token>` is used for that
//     request only.
//   - A proxy API key (X-Proxy-Key, or a Bearer value equal to a key)
//     unlocks the server's HF_TOKEN, and only when that is enabled. A key is
//     never sent upstream.
//   - Everyone else is anonymous upstream, which reaches public repos.
//
// So the server token is never an open relay: it needs both the operator's
// opt-in and a caller holding a key.
type authPolicy struct {
	serverToken string // "" unless enabled
	keys        [][]byte
}

func newAuthPolicy(c *Config) *authPolicy {
	p := &authPolicy{}
	if c.ServerTokenEnabled {
		p.serverToken = c.ServerToken
	}
	for _, k := range c.APIKeys {
		p.keys = append(p.keys, []byte(k))
	}
	return p
}

// isKey compares s with every key in constant time per key.
func (p *authPolicy) isKey(s string) bool {
	ok := 0
	for _, k := range p.keys {
		ok |= subtle.ConstantTimeCompare(k, []byte(s))
	}
	return ok == 1
}

// upstreamToken returns the Hub token to use for r ("" = anonymous) and
// whether the caller presented a valid proxy key. A wrong X-Proxy-Key is an
// error (401 InvalidProxyKey): silently downgrading would hide a
// misconfiguration.
func (p *authPolicy) upstreamToken(r *http.Request) (token string, keyed bool, err *apiError) {
	if k := r.Header.Get("X-Proxy-Key"); k != "" {
		if !p.isKey(k) {
			return "", false, newAPIError(http.StatusUnauthorized, "InvalidProxyKey", "invalid proxy API key")
		}
		keyed = true
	}
	if bearer, ok := bearerToken(r.Header.Get("Authorization")); ok {
		if len(p.keys) > 0 && p.isKey(bearer) {
			keyed = true
		} else {
			return bearer, keyed, nil
		}
	}
	if keyed {
		return p.serverToken, true, nil
	}
	return "", false, nil
}

// bearerToken extracts the credentials of a Bearer Authorization value.
func bearerToken(h string) (string, bool) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	return rest, rest != ""
}
