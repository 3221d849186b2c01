package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// ErrRangeNotSatisfiable: the requested offset is at or past the end of
// the file (HTTP 416).
var ErrRangeNotSatisfiable = errors.New("range not satisfiable")

// IntegrityError: the bytes from upstream are not the file. A chunk did
// not decode, a term decoded to the wrong length, or the whole-file hash
// does not match. The data must not be used or cached.
type IntegrityError struct {
	File string // Xet hash or path
	Err  error
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("integrity check failed for %s: %v", e.File, e.Err)
}
func (e *IntegrityError) Unwrap() error { return e.Err }

// MismatchError is a hash that is not the expected one.
type MismatchError struct {
	What      string // "xet file hash", "sha256", "git blob sha1"
	Want, Got string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s mismatch: want %s, got %s", e.What, e.Want, e.Got)
}

// UpstreamError: the Hub or the CAS failed (unreachable, 5xx after the
// retries, a malformed answer, a transfer that stalled). Timeout tells a
// too-slow upstream (HTTP 504) from other failures (502). Errors the Hub
// answered on purpose (*hub.Error: not found, auth) are not wrapped in it.
type UpstreamError struct {
	Op      string
	Timeout bool
	Err     error
}

func (e *UpstreamError) Error() string { return fmt.Sprintf("upstream %s: %v", e.Op, e.Err) }
func (e *UpstreamError) Unwrap() error { return e.Err }

// upstream classifies an error of the Hub or CAS clients: context errors
// and Hub answers pass through, integrity failures become *IntegrityError,
// everything else *UpstreamError.
func upstream(op, file string, err error) error {
	var he *hub.Error
	var ie *IntegrityError
	var ue *UpstreamError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded) && !isNetTimeout(err),
		errors.As(err, &he), errors.As(err, &ie), errors.As(err, &ue):
		return err
	case isCorrupt(err):
		return &IntegrityError{File: file, Err: err}
	}
	return &UpstreamError{Op: op, Timeout: casclient.Timeout(err), Err: err}
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isCorrupt reports errors that mean the bytes themselves are wrong.
func isCorrupt(err error) bool {
	var fe *xorb.FormatError
	return errors.As(err, &fe) || errors.Is(err, reconstruction.ErrLength)
}

// errTruncatedChunk: a byte range of exactly the promised length ended in
// the middle of a chunk: the range does not hold what the reconstruction
// said it holds.
var errTruncatedChunk = fmt.Errorf("xorb range ends inside a chunk: %w", io.ErrUnexpectedEOF)
