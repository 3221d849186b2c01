// Package metacache keeps the Hub's metadata answers (file resolves, and
// through Transport the /api reads: repo info, tree, paths-info) so that
// a mirror asks the Hub less, and can go on serving public repos while the
// Hub is unreachable. It is a decorator: Engine wraps the download engine
// with the server's Engine interface, Transport wraps the RoundTripper of
// the /api reverse proxy; Health is the upstream state both feed.
//
// # Freshness
//
//	revision is a commit id (40 hex)  -> the answer never changes: kept for good
//	branch or tag                     -> served from the store for Revalidate,
//	                                     then asked again (/api answers with
//	                                     If-None-Match: a 304 refreshes the stored one)
//
// # Who may be answered from the store
//
// An answer obtained with one caller's credentials serves another caller
// only for a public repo. A repo is public when an anonymous request for
// it succeeded: the caller's own (anonymous), or a probe the cache makes
// without credentials after a caller with a token got an answer (once per
// Revalidate). Otherwise (private, gated, unknown) an answer serves only a
// caller whose token got a positive answer for that repo within AuthTTL;
// the cache keeps a SHA-256 digest of the token, never the token.
//
// # Offline (Health)
//
//	offline = Config.Offline (forced), or upstream unreachable (connection
//	          refused, DNS failure, timeout, 5xx) for longer than Grace
//	offline: Stat answers from the store (public repos, or a token with a
//	         positive answer within AuthTTL), else an *OfflineError;
//	         Open reads only the chunk cache (proxy.Engine.OpenCached);
//	         a forced offline server sends nothing upstream; an unreachable
//	         one lets one request try upstream every RetryEvery, to notice
//	         the Hub coming back
//
// # Store
//
// Store is a bounded in-memory LRU in front of a bounded directory of
// small files (one per key, named by the key's SHA-256), so that a restart
// while the Hub is unreachable still finds what was known. Nothing secret
// is stored: keys and values hold repo names, revisions, paths and the
// Hub's public answers.
package metacache
