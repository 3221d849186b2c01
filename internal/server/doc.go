// Package server is the HTTP face of xetproxy: the handlers users deploy.
//
// Routes (see routes.go for the parsing rules):
//
//	GET  /health, /readyz, /metrics, /           liveness, readiness, Prometheus, status page
//	                                               (HTML, JSON, or usage text for curl)
//	GET|HEAD /download/[datasets/|spaces/]{ns}/{repo}/{path...}?revision=
//	GET|HEAD /download-hash/{xet hash}?repo=&repo_type=&revision=&filename=
//	GET|HEAD /[datasets/|spaces/]{repo}/resolve/{rev}/{path...}   drop-in HF_ENDPOINT mirror
//	GET|HEAD|POST /api/...                         the read routes of apiroutes.go, proxied to the Hub
//	                                               with Xet metadata removed; everything else 403/405
//	GET|POST /admin/warm                           cache-warming jobs (warm.go, package warm); proxy API key only
//
// A download runs in two phases. Before the status line: route parsing,
// auth policy, metadata (Engine.Stat), conditional requests and Range, the
// admission check (download slots and read-ahead budget), then Engine.Open
// and the first read. Any failure there becomes an error answer through the
// one table in errors.go. After the status line the bytes are copied with a
// per-write stall deadline; a failure then aborts the connection
// (panic(http.ErrAbortHandler)) so the client sees a truncated transfer,
// never a clean end.
//
// Glossary: "upstream token" is the Hub credential a request uses: the
// caller's own bearer token, or the server's HF_TOKEN when that is enabled
// and the caller presented a proxy API key, or none. It lives in the request
// only (or in a warm job while it runs); it is never logged, put in an
// error or metric, or stored.
//
// Files: config.go (flags/env, Validate), httpsem.go (Range, conditionals,
// representation headers, pure), errors.go + errors_upstream.go (the one
// error→status table), routes.go (path parsing), auth.go, limits.go,
// middleware.go (request IDs, access log, headers every answer carries),
// metrics.go, status.go (the status page at /), apiroutes.go (what /api
// forwards), apiproxy.go (/api passthrough), download.go (the download
// handler), server.go (dispatch, Serve and the drain), repopolicy.go (the
// --allow/--deny repo policy every route asks, listing filter), audit.go
// (the download log line, per repo type metrics, caller digest, top repos
// by bytes).
// The download engine is built by package engineconf, from Config.Engine.
// Subpackage sample generates the demo, benchmark and test content.
//
// Metadata cache and offline mode (offline.go): New wraps the engine and
// the /api transport with package metacache (stored resolves and API
// answers, revalidation, offline answers from the caches), and
// Config.Engine puts the upstream health watcher on the engine's
// transport. Offline answers carry X-Xetproxy-Offline: 1; /readyz says
// "degraded"; UpstreamState reports it.
//
// Shutdown: Serve stops accepting on context cancellation, /readyz turns
// 503, in-flight requests run to completion within the drain deadline;
// those still running then are cut and logged before Serve returns.
package server
