package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Defaults of the Xet hash lookup (Config.HashListMax, Config.HashListTTL).
const (
	DefaultHashListMax = 100_000
	DefaultHashListTTL = 30 * time.Second
)

// Bounds of the remembered listings.
const (
	// hashListTimeout bounds one shared listing, which runs detached from
	// the requests waiting for it.
	hashListTimeout = 2 * time.Minute
	// hashIndexMaxKeys bounds the listings remembered at once.
	hashIndexMaxKeys = 4096
)

// ErrListingTooLarge: a repo lists more entries than a lookup by Xet hash
// may read (Config.HashListMax). The file can still be downloaded by path.
var ErrListingTooLarge = errors.New("repo listing too large for a lookup by xet hash")

// hashFile is what a listing says about one Xet file.
type hashFile struct {
	path string
	size int64
	etag string // sha256, "" when the entry had no LFS pointer
}

// hashIndexes answers "which file of repo R at revision V, as the user
// holding token T lists it, has Xet hash H" from one recursive listing per
// (T, R, V), so that lookups of many hashes, found or not, cost one listing:
//
//   - concurrent lookups with the same key share one listing (single
//     flight); it runs detached from the requests, bounded by
//     hashListTimeout, and stops when the last request waiting for it
//     leaves;
//   - a listing is read up to maxList entries (files and directories);
//     past that the lookup fails with ErrListingTooLarge;
//   - the outcome — the Xet files listed, or ErrListingTooLarge — is kept
//     for ttl and answers later lookups with the same key, positive and
//     negative alike. Other failures (auth, network) are not kept.
//
// The key holds a SHA-256 digest of the token, never the token: a user is
// answered only from a listing made with that very token, as with memo.
// Memory: at most maxHeld Xet files and hashIndexMaxKeys listings are kept;
// older ones are dropped first.
type hashIndexes struct {
	ttl     time.Duration
	maxList int
	maxHeld int

	mu   sync.Mutex
	m    map[string]*hashListing
	held int // Xet files in the settled listings of m
}

// hashListing is one listing, in flight or settled.
type hashListing struct {
	done chan struct{} // closed when files and err are set

	// Set before done is closed, read after.
	files map[merklehash.Hash]hashFile
	err   error

	// Guarded by hashIndexes.mu.
	settled bool
	exp     time.Time
	waiters int
	cancel  context.CancelFunc
}

func newHashIndexes(ttl time.Duration, maxList int) *hashIndexes {
	return &hashIndexes{ttl: ttl, maxList: maxList, maxHeld: 2 * maxList, m: make(map[string]*hashListing)}
}

// hashIndexKey identifies the listing of repo at revision as the holder of
// token sees it, without keeping the token.
func hashIndexKey(token string, repo hub.Repo, revision string) string {
	d := sha256.Sum256([]byte(token))
	typ := repo.Type
	if typ == "" {
		typ = hub.Model
	}
	if revision == "" {
		revision = "main"
	}
	return strings.Join([]string{hex.EncodeToString(d[:16]), string(typ), repo.ID, revision}, "\x00")
}

// listFunc lists a repo and returns its Xet files by hash.
type listFunc func(ctx context.Context) (map[merklehash.Hash]hashFile, error)

// files returns the Xet files of the listing key names: remembered, shared
// with a listing in flight, or listed now with list.
func (x *hashIndexes) files(ctx context.Context, key string, list listFunc) (map[merklehash.Hash]hashFile, error) {
	x.mu.Lock()
	l := x.m[key]
	if l != nil && l.settled && time.Now().After(l.exp) {
		x.dropLocked(key, l)
		l = nil
	}
	if l == nil {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hashListTimeout)
		l = &hashListing{done: make(chan struct{}), cancel: cancel}
		x.m[key] = l
		go x.run(lctx, key, l, list)
	}
	l.waiters++
	x.mu.Unlock()

	select {
	case <-l.done:
		x.mu.Lock()
		l.waiters--
		x.mu.Unlock()
		return l.files, l.err
	case <-ctx.Done():
		x.mu.Lock()
		l.waiters--
		if l.waiters == 0 && !l.settled {
			// Nobody wants it any more: stop it, and let the next
			// lookup start afresh rather than join a cancelled one.
			l.cancel()
			if x.m[key] == l {
				delete(x.m, key)
			}
		}
		x.mu.Unlock()
		return nil, ctx.Err()
	}
}

// run makes the listing l and settles it.
func (x *hashIndexes) run(ctx context.Context, key string, l *hashListing, list listFunc) {
	files, err := list(ctx)
	l.cancel()
	x.mu.Lock()
	l.files, l.err = files, err
	l.settled = true
	l.exp = time.Now().Add(x.ttl)
	if x.m[key] == l {
		if err == nil || errors.Is(err, ErrListingTooLarge) {
			x.held += len(files)
			x.makeRoomLocked(key)
		} else {
			delete(x.m, key)
		}
	}
	x.mu.Unlock()
	close(l.done)
}

// makeRoomLocked drops expired listings, then the oldest settled ones,
// until the bounds hold again; keep is the listing just settled.
func (x *hashIndexes) makeRoomLocked(keep string) {
	over := func() bool { return x.held > x.maxHeld || len(x.m) > hashIndexMaxKeys }
	if !over() {
		return
	}
	now := time.Now()
	for k, l := range x.m {
		if l.settled && now.After(l.exp) {
			x.dropLocked(k, l)
		}
	}
	for over() {
		var oldest string
		var ol *hashListing
		for k, l := range x.m {
			if k != keep && l.settled && (ol == nil || l.exp.Before(ol.exp)) {
				oldest, ol = k, l
			}
		}
		if ol == nil {
			return
		}
		x.dropLocked(oldest, ol)
	}
}

func (x *hashIndexes) dropLocked(key string, l *hashListing) {
	if l.settled {
		x.held -= len(l.files)
	}
	delete(x.m, key)
}

// listXetFiles lists repo at revision recursively as the holder of token,
// reading at most max entries, and returns its Xet files by hash (the
// first path listed for a hash that several files share).
func (e *Engine) listXetFiles(ctx context.Context, token string, repo hub.Repo, revision string, max int) (map[merklehash.Hash]hashFile, error) {
	files := make(map[merklehash.Hash]hashFile)
	n := 0
	err := e.hub.ListPages(ctx, token, repo, revision, "", true, func(page []hub.Entry) error {
		if n += len(page); n > max {
			return fmt.Errorf("%s@%s lists more than %d entries: %w", repo, revision, max, ErrListingTooLarge)
		}
		for _, en := range page {
			if en.Type != "file" || en.XetHash == nil {
				continue
			}
			if _, dup := files[*en.XetHash]; dup {
				continue
			}
			f := hashFile{path: en.Path, size: en.Size}
			if en.LFS != nil {
				f.etag = en.LFS.OID
			}
			files[*en.XetHash] = f
		}
		return nil
	})
	if errors.Is(err, ErrListingTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, upstream("list", repo.String(), err)
	}
	return files, nil
}
