package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/upstream"
)

// Entry is one item of a tree listing or a paths-info answer.
type Entry struct {
	Type string // "file" or "directory"
	Path string
	Size int64
	OID  string // git object id
	// LFS is set for LFS- and Xet-stored files: OID is the sha256.
	LFS *LFSInfo
	// XetHash is the Xet file hash; nil when absent, redacted or malformed.
	XetHash *merklehash.Hash
}

// LFSInfo is the LFS pointer of a file.
type LFSInfo struct {
	OID         string
	Size        int64
	PointerSize int64
}

// IsDir reports whether the entry is a directory.
func (e Entry) IsDir() bool { return e.Type == "directory" }

type wireEntry struct {
	Type string `json:"type"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	OID  string `json:"oid"`
	LFS  *struct {
		OID         string `json:"oid"`
		Size        int64  `json:"size"`
		PointerSize int64  `json:"pointerSize"`
	} `json:"lfs"`
	XetHash string `json:"xetHash"`
}

func (w wireEntry) entry() Entry {
	e := Entry{Type: w.Type, Path: w.Path, Size: w.Size, OID: w.OID}
	if w.LFS != nil {
		e.LFS = &LFSInfo{OID: w.LFS.OID, Size: w.LFS.Size, PointerSize: w.LFS.PointerSize}
	}
	// A redacted ("****...") or otherwise malformed hash is as good as none.
	if h, err := merklehash.Parse(w.XetHash); err == nil {
		e.XetHash = &h
	}
	return e
}

// Limits of List against a misbehaving server.
const (
	maxTreePages   = 100000
	maxPageBytes   = 64 << 20
	maxListEntries = 10_000_000
)

// List lists the tree at revision under path ("" = the root), one level or
// recursively, following the Link rel="next" pagination to the end.
func (c *Client) List(ctx context.Context, token string, repo Repo, revision, path string, recursive bool) ([]Entry, error) {
	var out []Entry
	err := c.ListPages(ctx, token, repo, revision, path, recursive, func(page []Entry) error {
		out = append(out, page...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListPages is List delivering the listing one page at a time, in order:
// a caller that needs only part of it, or bounds the work, stops the
// listing by returning an error from fn, which ListPages returns as is
// without asking for the next page.
func (c *Client) ListPages(ctx context.Context, token string, repo Repo, revision, path string, recursive bool, fn func(page []Entry) error) error {
	if err := repo.Validate(); err != nil {
		return err
	}
	c.init()
	u := c.BaseURL + "/api/" + repo.api() + "/tree/" + revisionSegment(revision)
	if path = strings.Trim(path, "/"); path != "" {
		u += "/" + escapePath(path)
	}
	q := url.Values{"expand": {"false"}}
	if recursive {
		q.Set("recursive", "true")
	}
	u += "?" + q.Encode()
	total := 0
	seen := map[string]bool{}
	for page := 0; u != ""; page++ {
		if page >= maxTreePages || seen[u] {
			return fmt.Errorf("hub list %s: pagination does not end", upstream.Redact(u))
		}
		seen[u] = true
		resp, err := c.do(ctx, "list", http.MethodGet, u, token, http.Header{"Accept": {"application/json"}}, false)
		if err != nil {
			return err
		}
		var items []wireEntry
		err = json.NewDecoder(io.LimitReader(resp.Body, maxPageBytes)).Decode(&items)
		next := parseLinks(resp.Header.Values("Link"))["next"]
		upstream.Drain(resp.Body)
		if err != nil {
			return netErr("list", u, fmt.Errorf("decoding the listing: %w", err))
		}
		if total += len(items); total > maxListEntries {
			return fmt.Errorf("hub list %s: more than %d entries", upstream.Redact(u), maxListEntries)
		}
		entries := make([]Entry, len(items))
		for i, it := range items {
			entries[i] = it.entry()
		}
		if err := fn(entries); err != nil {
			return err
		}
		if next != "" {
			base, _ := url.Parse(u)
			ref, err := url.Parse(next)
			if err != nil {
				return fmt.Errorf("hub list %s: bad next link", upstream.Redact(u))
			}
			next = base.ResolveReference(ref).String()
			// The caller's token goes with every page; a next link that
			// leaves the Hub's origin would hand it to a third party.
			if !c.onHub(next) {
				return fmt.Errorf("hub list %s: %w", upstream.Redact(u), ErrForeignLink)
			}
		}
		u = next
	}
	return nil
}

// PathsInfo returns the entries of the given paths at revision; paths that
// do not exist are left out.
func (c *Client) PathsInfo(ctx context.Context, token string, repo Repo, revision string, paths []string) ([]Entry, error) {
	if err := repo.Validate(); err != nil {
		return nil, err
	}
	c.init()
	u := c.BaseURL + "/api/" + repo.api() + "/paths-info/" + revisionSegment(revision)
	body, err := json.Marshal(map[string]any{"paths": paths, "expand": false})
	if err != nil {
		return nil, err
	}
	hdr := http.Header{"Accept": {"application/json"}, "Content-Type": {"application/json"}}
	resp, err := c.doBody(ctx, "paths-info", http.MethodPost, u, token, hdr, body, false)
	if err != nil {
		return nil, err
	}
	defer upstream.Drain(resp.Body)
	var items []wireEntry
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPageBytes)).Decode(&items); err != nil {
		return nil, netErr("paths-info", u, fmt.Errorf("decoding the answer: %w", err))
	}
	out := make([]Entry, 0, len(items))
	for _, it := range items {
		out = append(out, it.entry())
	}
	return out, nil
}
