package xetclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// maxRequeries bounds how often one download asks for the reconstruction
// again after 403s on xorb URLs.
const maxRequeries = 3

// Client downloads files the way huggingface_hub with hf_xet does through
// an HF_ENDPOINT. Its fields are set before first use.
type Client struct {
	// Endpoint is the HF_ENDPOINT, scheme://host[:port].
	Endpoint string
	// Token is the Hub token sent to resolve and to the token route.
	Token string
	// HTTP does every request; it must not follow redirects (the resolve
	// HEAD reads the first answer's headers). Nil means a client of its own.
	HTTP *http.Client
	// Parallel is the number of concurrent xorb range fetches (default 8).
	Parallel int
	// RefreshMargin: a cached CAS token is refreshed when it expires
	// within this margin (default 60 s).
	RefreshMargin time.Duration
	// Now is the clock compared with a token's exp (default time.Now).
	Now func() time.Time
	// V1Only asks /v1/reconstructions directly, as older clients do.
	V1Only bool
	// AfterReconstruction, when set, runs after every reconstruction
	// answer and before its xorb ranges are fetched.
	AfterReconstruction func()

	// Counters, for tests.
	TokenFetches    atomic.Int64
	Reconstructions atomic.Int64
	V1Fallbacks     atomic.Int64
	Requeries       atomic.Int64
	XorbFetches     atomic.Int64

	mu     sync.Mutex
	urls   []string
	tokens map[string]*casToken // key: token route
	chunks map[chunkKey][][]byte
}

// chunkKey names decoded chunks as hf_xet's chunk cache does.
type chunkKey struct {
	xorb       merklehash.Hash
	start, end uint32
}

type casToken struct {
	access string
	exp    time.Time
	casURL string
}

// FileInfo is what resolve says about a Xet file.
type FileInfo struct {
	Hash         merklehash.Hash
	Size         int64
	RefreshRoute string // token route
	// ReconstructionLink is the rel="xet-reconstruction-info" link, if any
	// (hf_xet does not use it; the JS client does).
	ReconstructionLink string
	Commit             string
}

// StatusError is an HTTP answer the flow did not expect.
type StatusError struct {
	Op     string
	URL    string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %s", e.Op, redact(e.URL), e.Status, e.Body)
}

// redact drops the query, which can carry a signed ticket.
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

// URLs returns every URL requested so far, in order.
func (c *Client) URLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.urls...)
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) do(ctx context.Context, method, u string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	c.mu.Lock()
	c.urls = append(c.urls, u)
	c.mu.Unlock()
	return c.http().Do(req)
}

func statusErr(op, u string, res *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	res.Body.Close()
	return &StatusError{Op: op, URL: u, Status: res.StatusCode, Body: strings.TrimSpace(string(b))}
}

// Resolve sends HEAD {endpoint}/{prefix}{repo}/resolve/{rev}/{path} and
// reads the Xet headers. prefix is "", "datasets/" or "spaces/".
func (c *Client) Resolve(ctx context.Context, prefix, repo, rev, path string) (FileInfo, error) {
	u := fmt.Sprintf("%s/%s%s/resolve/%s/%s", c.Endpoint, prefix, repo, url.PathEscape(rev), path)
	hdr := http.Header{}
	if c.Token != "" {
		hdr.Set("Authorization", "Bearer "+c.Token)
	}
	res, err := c.do(ctx, http.MethodHead, u, hdr)
	if err != nil {
		return FileInfo{}, err
	}
	res.Body.Close()
	if res.StatusCode >= 400 {
		return FileInfo{}, &StatusError{Op: "resolve", URL: u, Status: res.StatusCode, Body: res.Header.Get("X-Error-Code")}
	}
	var fi FileInfo
	if fi.Hash, err = merklehash.Parse(res.Header.Get("X-Xet-Hash")); err != nil {
		return FileInfo{}, fmt.Errorf("resolve %s: no Xet hash: %w", u, err)
	}
	links := parseLinks(res.Header.Values("Link"))
	fi.RefreshRoute = res.Header.Get("X-Xet-Refresh-Route")
	if fi.RefreshRoute == "" {
		fi.RefreshRoute = links["xet-auth"]
	}
	if fi.RefreshRoute == "" {
		return FileInfo{}, fmt.Errorf("resolve %s: X-Xet-Hash without a token route", u)
	}
	// huggingface_hub rewrites a route on huggingface.co to its endpoint
	// and uses any other absolute URL as it is.
	if rest, ok := strings.CutPrefix(fi.RefreshRoute, "https://huggingface.co"); ok {
		fi.RefreshRoute = c.Endpoint + rest
	}
	fi.ReconstructionLink = links["xet-reconstruction-info"]
	fi.Commit = res.Header.Get("X-Repo-Commit")
	if s := res.Header.Get("X-Linked-Size"); s != "" {
		fi.Size, _ = strconv.ParseInt(s, 10, 64)
	}
	return fi, nil
}

// TokenRoute is the token route huggingface_hub builds from a tree listing
// (an entry with xetHash), without a HEAD. typ is "model", "dataset" or
// "space".
func (c *Client) TokenRoute(typ, repo, rev string) string {
	return fmt.Sprintf("%s/api/%ss/%s/xet-read-token/%s", c.Endpoint, typ, repo, url.PathEscape(rev))
}

// parseLinks maps rel to URL over Link header values.
func parseLinks(values []string) map[string]string {
	out := map[string]string{}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			lt, gt := strings.IndexByte(part, '<'), strings.IndexByte(part, '>')
			if lt != 0 || gt < 0 {
				continue
			}
			for _, p := range strings.Split(part[gt+1:], ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && k == "rel" {
					out[strings.Trim(val, `"`)] = part[1:gt]
				}
			}
		}
	}
	return out
}

// token returns a CAS token for route, fetching or refreshing it when it
// is missing, expires within RefreshMargin, or force is set.
func (c *Client) token(ctx context.Context, route string, force bool) (*casToken, error) {
	margin := c.RefreshMargin
	if margin == 0 {
		margin = time.Minute
	}
	c.mu.Lock()
	t := c.tokens[route]
	c.mu.Unlock()
	if t != nil && !force && c.now().Add(margin).Before(t.exp) {
		return t, nil
	}
	hdr := http.Header{}
	if c.Token != "" {
		hdr.Set("Authorization", "Bearer "+c.Token)
	}
	c.TokenFetches.Add(1)
	res, err := c.do(ctx, http.MethodGet, route, hdr)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, statusErr("token", route, res)
	}
	defer res.Body.Close()
	var body struct {
		AccessToken string `json:"accessToken"`
		Exp         int64  `json:"exp"`
		CasURL      string `json:"casUrl"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("token %s: %w", route, err)
	}
	// Newer clients read the headers; both must agree.
	if h := res.Header.Get("X-Xet-Access-Token"); h != body.AccessToken {
		return nil, fmt.Errorf("token %s: X-Xet-Access-Token differs from the body", route)
	}
	if h := res.Header.Get("X-Xet-Cas-Url"); h != body.CasURL {
		return nil, fmt.Errorf("token %s: X-Xet-Cas-Url %q differs from casUrl %q", route, h, body.CasURL)
	}
	if h := res.Header.Get("X-Xet-Token-Expiration"); h != strconv.FormatInt(body.Exp, 10) {
		return nil, fmt.Errorf("token %s: X-Xet-Token-Expiration %q differs from exp %d", route, h, body.Exp)
	}
	if body.AccessToken == "" || body.CasURL == "" || body.Exp == 0 {
		return nil, fmt.Errorf("token %s: incomplete answer", route)
	}
	t = &casToken{access: body.AccessToken, exp: time.Unix(body.Exp, 0), casURL: strings.TrimRight(body.CasURL, "/")}
	c.mu.Lock()
	if c.tokens == nil {
		c.tokens = map[string]*casToken{}
	}
	c.tokens[route] = t
	c.mu.Unlock()
	return t, nil
}

// AccessToken returns the CAS token the client holds for route, fetching
// one if needed: for tests that replay it.
func (c *Client) AccessToken(ctx context.Context, route string) (token, casURL string, exp time.Time, err error) {
	t, err := c.token(ctx, route, false)
	if err != nil {
		return "", "", time.Time{}, err
	}
	return t.access, t.casURL, t.exp, nil
}

// ByteRange is an inclusive range of file bytes.
type ByteRange struct{ Start, End uint64 }

// Reconstruction queries {casUrl}/v2/reconstructions/{hash}, falling back
// to /v1 on 404 or 501, and answers in the v2 shape. A 401 refreshes the
// token once.
func (c *Client) Reconstruction(ctx context.Context, route string, hash merklehash.Hash, rng *ByteRange) (*reconstruction.ResponseV2, error) {
	c.Reconstructions.Add(1)
	for attempt := 0; ; attempt++ {
		t, err := c.token(ctx, route, attempt > 0)
		if err != nil {
			return nil, err
		}
		hdr := http.Header{"Authorization": {"Bearer " + t.access}}
		if rng != nil {
			hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", rng.Start, rng.End))
		}
		u := t.casURL + "/v2/reconstructions/" + hash.String()
		if c.V1Only {
			u = t.casURL + "/v1/reconstructions/" + hash.String()
		}
		res, err := c.do(ctx, http.MethodGet, u, hdr)
		if err != nil {
			return nil, err
		}
		if c.V1Only && res.StatusCode == http.StatusOK {
			var v1 reconstruction.ResponseV1
			err := json.NewDecoder(res.Body).Decode(&v1)
			res.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("reconstruction %s: %w", u, err)
			}
			return v1.ToV2(), nil
		}
		if !c.V1Only && (res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusNotImplemented) {
			res.Body.Close()
			c.V1Fallbacks.Add(1)
			u = t.casURL + "/v1/reconstructions/" + hash.String()
			if res, err = c.do(ctx, http.MethodGet, u, hdr); err != nil {
				return nil, err
			}
			if res.StatusCode == http.StatusOK {
				var v1 reconstruction.ResponseV1
				err := json.NewDecoder(res.Body).Decode(&v1)
				res.Body.Close()
				if err != nil {
					return nil, fmt.Errorf("reconstruction %s: %w", u, err)
				}
				return v1.ToV2(), nil
			}
		}
		if res.StatusCode == http.StatusUnauthorized && attempt == 0 {
			res.Body.Close()
			continue
		}
		if res.StatusCode != http.StatusOK {
			return nil, statusErr("reconstruction", u, res)
		}
		var v2 reconstruction.ResponseV2
		err = json.NewDecoder(res.Body).Decode(&v2)
		res.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("reconstruction %s: %w", u, err)
		}
		return &v2, nil
	}
}

// errForbidden marks a 403 on a xorb URL: the reconstruction is asked again.
var errForbidden = errors.New("xorb URL refused (403)")

// fetchRange GETs one url_range of a xorb URL, with the Range verbatim and
// no Authorization, and decodes its chunk records.
func (c *Client) fetchRange(ctx context.Context, u string, r reconstruction.RangeV2) ([][]byte, error) {
	c.XorbFetches.Add(1)
	hdr := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", r.Bytes.Start, r.Bytes.End)}}
	res, err := c.do(ctx, http.MethodGet, u, hdr)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusForbidden {
		io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
		return nil, errForbidden
	}
	if res.StatusCode != http.StatusPartialContent && res.StatusCode != http.StatusOK {
		return nil, statusErr("xorb", u, res)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, int64(r.Bytes.Len())+1))
	if err != nil {
		return nil, fmt.Errorf("xorb %s: %w", redact(u), err)
	}
	if uint64(len(body)) != r.Bytes.Len() {
		return nil, fmt.Errorf("xorb %s: %d bytes for range %d-%d", redact(u), len(body), r.Bytes.Start, r.Bytes.End)
	}
	dec := xorb.NewDecoder(strings.NewReader(string(body)))
	var out [][]byte
	for {
		chunk, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("xorb %s: chunk %d: %w", redact(u), len(out), err)
		}
		out = append(out, append([]byte(nil), chunk...))
	}
	if uint32(len(out)) != r.Chunks.Len() {
		return nil, fmt.Errorf("xorb %s: %d chunks in a range of %d", redact(u), len(out), r.Chunks.Len())
	}
	return out, nil
}

// Download reconstructs the file hash (or the range rng of it) through the
// CAS named by the token route: reconstruction, parallel xorb ranges,
// decoding and assembly. A 403 on a xorb URL asks for the reconstruction
// again; chunks already fetched are kept.
func (c *Client) Download(ctx context.Context, route string, hash merklehash.Hash, rng *ByteRange) ([]byte, error) {
	for requery := 0; ; requery++ {
		plan, err := c.Reconstruction(ctx, route, hash, rng)
		if err != nil {
			return nil, err
		}
		if c.AfterReconstruction != nil {
			c.AfterReconstruction()
		}
		err = c.fetchAll(ctx, plan)
		if errors.Is(err, errForbidden) && requery < maxRequeries {
			c.Requeries.Add(1)
			continue
		}
		if err != nil {
			return nil, err
		}
		return c.assemble(plan, rng)
	}
}

// fetchAll fetches every range the terms of plan need and that is not in
// the chunk cache, Parallel at a time.
func (c *Client) fetchAll(ctx context.Context, plan *reconstruction.ResponseV2) error {
	type job struct {
		url string
		r   reconstruction.RangeV2
		key chunkKey
	}
	var jobs []job
	queued := map[chunkKey]bool{}
	for _, t := range plan.Terms {
		url, r, ok := findRange(plan, t)
		if !ok {
			return fmt.Errorf("term %s [%d,%d) has no fetch range", t.Hash, t.Range.Start, t.Range.End)
		}
		k := chunkKey{t.Hash, r.Chunks.Start, r.Chunks.End}
		c.mu.Lock()
		_, have := c.chunks[k]
		c.mu.Unlock()
		if have || queued[k] {
			continue
		}
		queued[k] = true
		jobs = append(jobs, job{url, r, k})
	}
	g, gctx := errgroup.WithContext(ctx)
	n := c.Parallel
	if n <= 0 {
		n = 8
	}
	g.SetLimit(n)
	for _, j := range jobs {
		g.Go(func() error {
			chunks, err := c.fetchRange(gctx, j.url, j.r)
			if err != nil {
				return err
			}
			c.mu.Lock()
			if c.chunks == nil {
				c.chunks = map[chunkKey][][]byte{}
			}
			c.chunks[j.key] = chunks
			c.mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

// findRange finds the fetch range of plan that holds term t's chunks.
func findRange(plan *reconstruction.ResponseV2, t reconstruction.Term) (string, reconstruction.RangeV2, bool) {
	for _, f := range plan.Xorbs[t.Hash] {
		for _, r := range f.Ranges {
			if r.Chunks.Contains(t.Range) {
				return f.URL, r, true
			}
		}
	}
	return "", reconstruction.RangeV2{}, false
}

// assemble concatenates the terms' chunks, checks each term's
// unpacked_length, and cuts offset_into_first_range and the range's end.
func (c *Client) assemble(plan *reconstruction.ResponseV2, rng *ByteRange) ([]byte, error) {
	var out []byte
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, t := range plan.Terms {
		_, r, _ := findRange(plan, t)
		chunks := c.chunks[chunkKey{t.Hash, r.Chunks.Start, r.Chunks.End}]
		n := 0
		for _, ch := range chunks[t.Range.Start-r.Chunks.Start : t.Range.End-r.Chunks.Start] {
			out = append(out, ch...)
			n += len(ch)
		}
		if uint32(n) != t.UnpackedLength {
			return nil, fmt.Errorf("term %d: %d bytes, unpacked_length %d", i, n, t.UnpackedLength)
		}
	}
	if plan.OffsetIntoFirstRange > uint64(len(out)) {
		return nil, fmt.Errorf("offset_into_first_range %d past %d bytes", plan.OffsetIntoFirstRange, len(out))
	}
	out = out[plan.OffsetIntoFirstRange:]
	if rng != nil && uint64(len(out)) > rng.End-rng.Start+1 {
		out = out[:rng.End-rng.Start+1]
	}
	return out, nil
}

// ForgetChunks empties the chunk cache, as a fresh process would start.
func (c *Client) ForgetChunks() {
	c.mu.Lock()
	c.chunks = nil
	c.mu.Unlock()
}

// DownloadTo writes the file hash of the given size to w in segments of
// segment bytes (a ranged reconstruction each), forgetting each segment's
// chunks once written: memory stays near one segment whatever the file's
// size, as in hf_xet's segmented downloads.
func (c *Client) DownloadTo(ctx context.Context, route string, hash merklehash.Hash, size, segment uint64, w io.Writer) error {
	if segment == 0 {
		return errors.New("segment size must be positive")
	}
	for start := uint64(0); start < size; start += segment {
		end := min(start+segment, size) - 1
		b, err := c.Download(ctx, route, hash, &ByteRange{start, end})
		if err != nil {
			return err
		}
		if uint64(len(b)) != end-start+1 {
			return fmt.Errorf("segment %d-%d: %d bytes", start, end, len(b))
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		c.ForgetChunks()
	}
	return nil
}
