// Package upstream holds the small pieces of HTTP plumbing that every client
// of an upstream server (the Hub, the CAS, presigned storage) needs the same
// way: URLs redacted before they reach an error or a log, error messages
// clipped to one short line, Retry-After parsed, bodies drained for
// connection reuse, and the one rule for which statuses are temporary.
//
// It imports nothing of ours; internal/hub and internal/casclient use it.
package upstream
