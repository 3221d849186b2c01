package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/upstream"
)

// CASToken is a Xet read token: a bearer token for the CAS at CASURL,
// valid until Exp.
type CASToken struct {
	AccessToken string
	Exp         time.Time
	CASURL      string

	fetched time.Time
}

// String never shows the token itself.
func (t *CASToken) String() string {
	return fmt.Sprintf("CAS token for %s until %s", t.CASURL, t.Exp.Format(time.RFC3339))
}

// tokenTTLWithoutExp is how long a token whose answer has no exp is used.
const tokenTTLWithoutExp = time.Minute

// ReadToken returns a Xet read token for repo at revision, as the user
// holding token ("" = anonymous) may get it. Tokens are cached per (user
// token, repo, revision) and replaced when they expire within
// RefreshMargin; concurrent callers share one request. Access is decided
// by the Hub when it mints the token, so this is also the access check.
func (c *Client) ReadToken(ctx context.Context, token string, repo Repo, revision string) (*CASToken, error) {
	if err := repo.Validate(); err != nil {
		return nil, err
	}
	c.init()
	key := tokenKey(token, repo, revision)
	if t := c.cached(key); t != nil {
		return t, nil
	}
	// The shared request runs detached from any one caller, so a caller
	// going away does not fail the others; each caller still stops waiting
	// when its own context ends.
	ch := c.flight.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		t, err := c.fetchToken(fctx, token, repo, revision)
		if err != nil {
			return nil, err
		}
		c.store(key, t)
		return t, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*CASToken), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ForgetToken drops the cached read token for (token, repo, revision) if
// it is still accessToken (any token when accessToken is ""), e.g. after
// the CAS refused it.
func (c *Client) ForgetToken(token string, repo Repo, revision, accessToken string) {
	c.init()
	key := tokenKey(token, repo, revision)
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.tokens[key]; t != nil && (accessToken == "" || t.AccessToken == accessToken) {
		delete(c.tokens, key)
	}
}

// tokenKey identifies a cache entry without keeping the user's token in
// the clear.
func tokenKey(token string, repo Repo, revision string) string {
	sum := sha256.Sum256([]byte(token))
	if revision == "" {
		revision = "main"
	}
	return hex.EncodeToString(sum[:16]) + "\x00" + string(repo.Type) + "\x00" + repo.ID + "\x00" + revision
}

func (c *Client) cached(key string) *CASToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tokens[key]
	if t == nil {
		return nil
	}
	// Refresh RefreshMargin before exp, or half-way through the life of
	// a token issued for less than twice the margin.
	margin := min(c.RefreshMargin, t.Exp.Sub(t.fetched)/2)
	if time.Until(t.Exp) <= margin {
		return nil
	}
	return t
}

func (c *Client) store(key string, t *CASToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tokens) >= MaxCachedTokens {
		now := time.Now()
		for k, old := range c.tokens {
			if old.Exp.Before(now) {
				delete(c.tokens, k)
			}
		}
		for k := range c.tokens { // still full: drop arbitrary entries
			if len(c.tokens) < MaxCachedTokens {
				break
			}
			delete(c.tokens, k)
		}
	}
	c.tokens[key] = t
}

func (c *Client) fetchToken(ctx context.Context, token string, repo Repo, revision string) (*CASToken, error) {
	u := c.BaseURL + "/api/" + repo.api() + "/xet-read-token/" + revisionSegment(revision)
	resp, err := c.do(ctx, "read token", http.MethodGet, u, token, http.Header{"Accept": {"application/json"}}, false)
	if err != nil {
		return nil, err
	}
	defer upstream.Drain(resp.Body)
	var body struct {
		AccessToken string          `json:"accessToken"`
		Exp         json.RawMessage `json:"exp"`
		CASURL      string          `json:"casUrl"`
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, netErr("read token", u, err)
	}
	if len(strings.TrimSpace(string(data))) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			return nil, fmt.Errorf("hub read token %s: decoding the answer: %w", upstream.Redact(u), err)
		}
	}
	t := &CASToken{AccessToken: body.AccessToken, CASURL: body.CASURL, fetched: time.Now()}
	exp := strings.Trim(string(body.Exp), `"`)
	// Older clients read only the headers; the Hub sends both.
	if t.AccessToken == "" {
		t.AccessToken = resp.Header.Get("X-Xet-Access-Token")
	}
	if t.CASURL == "" {
		t.CASURL = resp.Header.Get("X-Xet-Cas-Url")
	}
	if exp == "" || exp == "null" {
		exp = resp.Header.Get("X-Xet-Token-Expiration")
	}
	if t.AccessToken == "" || t.CASURL == "" {
		return nil, fmt.Errorf("hub read token %s: answer without accessToken or casUrl", upstream.Redact(u))
	}
	if secs, err := strconv.ParseFloat(strings.TrimSpace(exp), 64); err == nil && secs > 0 {
		t.Exp = time.Unix(int64(secs), 0)
	} else {
		t.Exp = time.Now().Add(tokenTTLWithoutExp + c.RefreshMargin)
	}
	return t, nil
}
