// Package hub is the client of the Hugging Face Hub API that a Xet download
// needs: resolving a file, listing a tree, and minting CAS read tokens.
//
//	Resolve   HEAD {hub}/{prefix}{repo}/resolve/{rev}/{path}   (no redirect following,
//	          except relative redirects of renamed repos)
//	          -> X-Repo-Commit, X-Linked-Size, X-Linked-Etag/ETag,
//	             X-Xet-Hash (present = Xet file), Link rel="xet-auth"
//	List      GET  {hub}/api/{type}s/{repo}/tree/{rev}[/{path}]?recursive=true
//	          following Link rel="next" to the last page (on the Hub's
//	          origin only: a token never leaves it, see onHub)
//	PathsInfo POST {hub}/api/{type}s/{repo}/paths-info/{rev}
//	ReadToken GET  {hub}/api/{type}s/{repo}/xet-read-token/{rev}
//	          -> {accessToken, exp, casUrl} (or the X-Xet-* headers)
//	OpenPlain GET  the resolve URL with Range, for files not stored in Xet
//
// {prefix} is "", "datasets/" or "spaces/"; the revision is escaped as one
// path segment (refs/pr/1 -> refs%2Fpr%2F1).
//
// Read tokens are cached per (user token, repo, revision), the user token
// only as a digest, and replaced RefreshMargin before they expire;
// concurrent callers share one request (single-flight, per Client).
// Minting a read token is the Hub's access check: a user who may not read
// the repo gets no token.
//
// Errors: Hub answers become *Error with the status, X-Error-Code, message
// and X-Repo-Commit, if any (matching ErrNotFound, ErrUnauthorized,
// ErrForbidden); failures to reach the Hub are *NetError. Neither ever
// contains a token, and URLs in them are redacted (no query). 408, 429 and
// 5xx answers and network errors are retried with jittered exponential
// backoff, honouring Retry-After.
package hub
