package casclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/upstream"
)

// MaxReconstructionBytes caps the size of a reconstruction answer. A 256 MiB
// block needs a few hundred KiB; anything near the cap is hostile.
const MaxReconstructionBytes = 64 << 20

// Auth returns the CAS base URL and access token for the next CAS API call.
// It is called before every attempt, so a long retry picks up a refreshed
// token. rejected is the access token the CAS has just refused with 401
// ("" otherwise): the callee must not hand it out again.
type Auth func(ctx context.Context, rejected string) (casURL, accessToken string, err error)

// StaticAuth is an Auth with a fixed URL and token (tests, tools).
func StaticAuth(casURL, accessToken string) Auth {
	return func(context.Context, string) (string, string, error) { return casURL, accessToken, nil }
}

// Reconstruct asks how to rebuild bytes r (nil: all) of the file with hash
// file. It asks the v2 endpoint and falls back to v1 on 404 or 501,
// remembering per CAS that v2 is missing; the answer is always in the v2
// shape. Errors: ErrNotFound, ErrRangeNotSatisfiable, ErrUnauthorized,
// ErrForbidden, errors of auth unchanged, or the last retryable failure.
func (c *Client) Reconstruct(ctx context.Context, auth Auth, file merklehash.Hash, r *reconstruction.ByteRange) (*reconstruction.ResponseV2, error) {
	var out *reconstruction.ResponseV2
	err := c.withAuth(ctx, auth, func(base, token string) error {
		var err error
		out, err = c.reconstruct(ctx, base, token, file, r)
		return err
	})
	return out, err
}

// FileSize returns the size of the file with hash file (HEAD /v1/files).
func (c *Client) FileSize(ctx context.Context, auth Auth, file merklehash.Hash) (int64, error) {
	var size int64
	err := c.withAuth(ctx, auth, func(base, token string) error {
		u := base + "/v1/files/" + file.String()
		req, err := c.newRequest(ctx, http.MethodHead, u)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.api.Do(req)
		if err != nil {
			return transportErr(opFileSize, u, err)
		}
		defer upstream.Drain(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return statusError(opFileSize, u, resp)
		}
		if resp.ContentLength < 0 {
			return fmt.Errorf("%s: %s: %w: no Content-Length", opFileSize, upstream.Redact(u), ErrBadResponse)
		}
		size = resp.ContentLength
		return nil
	})
	return size, err
}

// withAuth runs call with retries, fetching the token before each attempt
// and once more, with the refused token named, after a 401.
func (c *Client) withAuth(ctx context.Context, auth Auth, call func(base, token string) error) error {
	rejected := ""
	refreshed := false
	return c.retry(ctx, func(int) error {
		for {
			base, token, err := auth(ctx, rejected)
			if err != nil {
				return err
			}
			rejected = ""
			err = call(strings.TrimRight(base, "/"), token)
			if errors.Is(err, ErrUnauthorized) && !refreshed {
				refreshed, rejected = true, token
				continue
			}
			return err
		}
	})
}

func (c *Client) reconstruct(ctx context.Context, base, token string, file merklehash.Hash, r *reconstruction.ByteRange) (*reconstruction.ResponseV2, error) {
	c.mu.Lock()
	v1 := c.v1Only[base]
	c.mu.Unlock()
	if !v1 {
		out, err := c.query(ctx, base+"/v2/reconstructions/"+file.String(), token, r, 2)
		var se *StatusError
		if err == nil || !errors.As(err, &se) || (se.Code != 404 && se.Code != 501) {
			return out, err
		}
	}
	out, err := c.query(ctx, base+"/v1/reconstructions/"+file.String(), token, r, 1)
	if err == nil && !v1 {
		c.mu.Lock()
		c.v1Only[base] = true
		c.mu.Unlock()
	}
	return out, err
}

func (c *Client) query(ctx context.Context, u, token string, r *reconstruction.ByteRange, version int) (*reconstruction.ResponseV2, error) {
	req, err := c.newRequest(ctx, http.MethodGet, u)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if r != nil {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", r.Start, r.End))
	}
	resp, err := c.api.Do(req)
	if err != nil {
		return nil, transportErr(opReconstruct, u, err)
	}
	defer upstream.Drain(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return nil, statusError(opReconstruct, u, resp)
	}
	body := io.LimitReader(resp.Body, c.maxAnswer+1)
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, transportErr(opReconstruct, u, err)
	}
	if int64(len(data)) > c.maxAnswer {
		return nil, fmt.Errorf("%s: %s: %w: answer over %d bytes", opReconstruct, upstream.Redact(u), ErrBadResponse, c.maxAnswer)
	}
	if version == 1 {
		var v1 reconstruction.ResponseV1
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", opReconstruct, upstream.Redact(u), err)
		}
		return v1.ToV2(), nil
	}
	var v2 reconstruction.ResponseV2
	if err := json.Unmarshal(data, &v2); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", opReconstruct, upstream.Redact(u), err)
	}
	return &v2, nil
}
