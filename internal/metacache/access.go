package metacache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
)

// maxGrants bounds the (token digest, repo) pairs remembered.
const maxGrants = 16384

// access decides who may be answered from the store: anyone for a public
// repo, else a token that got a positive answer for the repo within
// authTTL. It keeps token digests only.
type access struct {
	store      *Store
	authTTL    time.Duration
	revalidate time.Duration

	mu     sync.Mutex
	grants map[string]time.Time // digest + repo -> last positive answer
}

func newAccess(st *Store, authTTL, revalidate time.Duration) *access {
	return &access{store: st, authTTL: authTTL, revalidate: revalidate, grants: map[string]time.Time{}}
}

func repoKey(r hub.Repo) string {
	t := r.Type
	if t == "" {
		t = hub.Model
	}
	return string(t) + " " + strconv.Quote(r.ID)
}

func grantKey(token string, r hub.Repo) string {
	d := sha256.Sum256([]byte(token))
	return hex.EncodeToString(d[:16]) + " " + repoKey(r)
}

// grant records that token got a positive answer for repo (anonymous
// callers are covered by publicity).
func (a *access) grant(token string, r hub.Repo) {
	if token == "" || a.authTTL <= 0 {
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.grants) >= maxGrants {
		for k, t := range a.grants {
			if now.Sub(t) > a.authTTL {
				delete(a.grants, k)
			}
		}
		if len(a.grants) >= maxGrants {
			clear(a.grants)
		}
	}
	a.grants[grantKey(token, r)] = now
}

func (a *access) granted(token string, r hub.Repo) bool {
	if token == "" || a.authTTL <= 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.grants[grantKey(token, r)]
	return ok && time.Since(t) <= a.authTTL
}

// publicity is what is known about a repo being public.
type publicity struct {
	Public  bool      `json:"public"`
	Checked time.Time `json:"checked"`
}

func publicKey(r hub.Repo) string { return "public " + repoKey(r) }

func (a *access) publicity(r hub.Repo) (publicity, bool) {
	b, ok := a.store.Get(publicKey(r))
	if !ok {
		return publicity{}, false
	}
	var p publicity
	if json.Unmarshal(b, &p) != nil {
		return publicity{}, false
	}
	return p, true
}

func (a *access) setPublic(r hub.Repo, public bool) {
	b, _ := json.Marshal(publicity{Public: public, Checked: time.Now()})
	a.store.Put(publicKey(r), b)
}

// public reports whether r is known to be public.
func (a *access) public(r hub.Repo) bool {
	p, ok := a.publicity(r)
	return ok && p.Public
}

// needsProbe reports whether r's publicity is unknown or older than
// revalidate (never when answers are revalidated every time).
func (a *access) needsProbe(r hub.Repo) bool {
	if a.revalidate <= 0 {
		return false
	}
	p, ok := a.publicity(r)
	return !ok || time.Since(p.Checked) >= a.revalidate
}

// mayServe reports whether a stored answer about r may go to the holder
// of token.
func (a *access) mayServe(token string, r hub.Repo) bool {
	return a.public(r) || a.granted(token, r)
}
