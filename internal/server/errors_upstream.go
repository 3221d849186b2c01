package server

import (
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

// classifyUpstream is the part of the error table about the download
// engine's and the Hub client's errors; nil when err is none of them.
func classifyUpstream(err error) *apiError {
	if errors.Is(err, proxy.ErrRangeNotSatisfiable) {
		e := newAPIError(http.StatusRequestedRangeNotSatisfiable, "RangeNotSatisfiable", "requested range not satisfiable")
		e.cause = err
		return e
	}
	if errors.Is(err, proxy.ErrNotFound) {
		e := newAPIError(http.StatusNotFound, "EntryNotFound", "no file with this Xet hash in the repo at this revision")
		e.cause = err
		return e
	}
	if errors.Is(err, proxy.ErrListingTooLarge) {
		e := newAPIError(http.StatusUnprocessableEntity, "HashLookupTooLarge", "the repo has too many files to look a Xet hash up in; download the file by path")
		e.cause = err
		return e
	}
	var ie *proxy.IntegrityError
	if errors.As(err, &ie) {
		e := newAPIError(http.StatusBadGateway, "IntegrityError", "upstream data failed verification")
		e.cause = err
		return e
	}
	var ue *proxy.UpstreamError
	if errors.As(err, &ue) && ue.Timeout {
		e := newAPIError(http.StatusGatewayTimeout, "UpstreamTimeout", "upstream did not answer in time ("+ue.Op+")")
		e.cause = err
		return e
	}
	var he *hub.Error
	if errors.As(err, &he) {
		switch {
		case he.Status == http.StatusTooManyRequests:
			e := newAPIError(http.StatusTooManyRequests, he.Code, "the Hub is rate limiting this proxy, retry later")
			e.RetryAfter = retryAfterSeconds
			if he.RetryAfter > 0 {
				e.RetryAfter = strconv.Itoa(int(math.Ceil(he.RetryAfter.Seconds())))
			}
			e.cause = err
			return e
		case he.Status >= 400 && he.Status < 500:
			msg := he.Message
			if msg == "" {
				msg = http.StatusText(he.Status)
			}
			e := newAPIError(he.Status, he.Code, msg)
			e.RepoCommit = he.Commit // EntryNotFound: the revision did resolve
			e.cause = err
			return e
		default:
			e := newAPIError(http.StatusBadGateway, "UpstreamError", "the Hub answered "+strconv.Itoa(he.Status))
			e.cause = err
			return e
		}
	}
	return nil
}
