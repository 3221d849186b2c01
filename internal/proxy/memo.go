package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
)

// memoMaxEntries bounds the memo; past it, expired entries are dropped,
// and if that is not enough, everything.
const memoMaxEntries = 8192

// memo keeps positive upstream answers (resolve, file size, reconstruction)
// for a short time, keyed by the user's token, the repo and the revision,
// so that repeated downloads of a hot file do not ask the Hub and the CAS
// again each time. Only answers upstream gave to that very token are
// reused: a user never gets an answer obtained with another user's
// credentials, and a cached chunk is therefore still only served to a
// request that upstream authorised (within the TTL). A nil *memo is
// disabled: get misses and put does nothing.
type memo struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]memoEntry
}

type memoEntry struct {
	v   any
	exp time.Time
}

func newMemo(ttl time.Duration) *memo {
	return &memo{ttl: ttl, m: make(map[string]memoEntry)}
}

// key builds a memo key. The token is kept only as a SHA-256 digest, so
// the memo holds no credential.
func (m *memo) key(token string, repo hub.Repo, revision, kind, what string) string {
	if m == nil {
		return ""
	}
	d := sha256.Sum256([]byte(token))
	return strings.Join([]string{hex.EncodeToString(d[:16]), string(repo.Type), repo.ID, revision, kind, what}, "\x00")
}

func (m *memo) get(key string) (any, bool) {
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[key]
	if !ok {
		return nil, false
	}
	if time.Now().After(e.exp) {
		delete(m.m, key)
		return nil, false
	}
	return e.v, true
}

func (m *memo) put(key string, v any) {
	if m == nil {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.m) >= memoMaxEntries {
		for k, e := range m.m {
			if now.After(e.exp) {
				delete(m.m, k)
			}
		}
		if len(m.m) >= memoMaxEntries {
			clear(m.m)
		}
	}
	m.m[key] = memoEntry{v: v, exp: now.Add(m.ttl)}
}

// forget drops key (an answer that turned out to be stale).
func (m *memo) forget(key string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	delete(m.m, key)
	m.mu.Unlock()
}
