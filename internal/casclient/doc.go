// Package casclient is the HTTP client of a Xet CAS (content-addressed
// storage) for downloads: reconstruction queries and presigned xorb ranges.
//
// Two http.Clients, never shared: API calls carry "Authorization: Bearer
// <CAS token>"; transfers to presigned URLs carry no Authorization at all
// (they hold their own signature) and go through a transport of their own.
//
//	Reconstruct(ctx, auth, file, range)  GET {cas}/v2/reconstructions/{file}
//	                                     on 404/501: GET /v1/..., remembered per CAS
//	FileSize(ctx, auth, file)            HEAD {cas}/v1/files/{file}
//	FetchRange(ctx, url, range, refresh) GET url, Range: bytes=a-b  -> exactly b-a+1 bytes
//	FetchRanges(ctx, url, ranges, ...)   GET url, Range: bytes=a-b,c-d -> parts in order
//
// Failure handling, in one place so the layers above stay generic:
//
//   - Errors are classified by the transport: *StatusError matches
//     ErrNotFound (404), ErrRangeNotSatisfiable (416), ErrUnauthorized
//     (401), ErrForbidden (403 on the API), ErrURLRejected (403 on a
//     presigned URL); Retryable and Timeout answer the questions retry
//     and error-mapping code asks. URLs in errors are redacted (no query).
//   - Retryable: 408, 429, 5xx except 501, transport errors, bodies that
//     end early or stall, unparsable answers. Waits use full jitter
//     (random in [0, min(Max, Base·2^k))) or the server's Retry-After.
//   - A 401 from the CAS API makes the client ask Auth for a new token
//     once, naming the refused one.
//   - A 403 from a presigned URL calls the RefreshFunc for a new URL (the
//     caller re-queries the reconstruction for the same range).
//   - A FetchRange body that ends early, resets or stalls is requested
//     again and the bytes already delivered are skipped: the reader sees
//     one seamless stream of exactly the requested length, or an error.
//   - Stall detection is by progress: a watchdog cancels a Read (or the
//     wait for headers) that makes no progress for StallTimeout. There is
//     no deadline on a whole body, and time the consumer spends not
//     reading never counts.
package casclient
