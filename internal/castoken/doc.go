// Package castoken seals the credentials the proxy hands to Xet clients:
// the CAS access token of the xet-read-token route and the tickets in the
// xorb URLs of a reconstruction. Both are opaque to the client and carry
// what the proxy needs to act for that caller later, without any state on
// the server: the caller's own upstream Xet token and CAS URL, the repo and
// revision, the upstream presigned URL of a xorb range, expiries.
//
// # Sealing
//
//	sealed  = base64url( version(1) ‖ salt(24) ‖ AES-256-GCM(k, nonce, payload, ad) )
//	k       = HMAC-SHA256(master, "xetproxy/seal/v1" ‖ salt)
//	nonce   = salt[0:12]
//	ad      = version ‖ purpose
//
// A fresh random salt gives every message its own AES key, so the usual
// limit on random GCM nonces under one key does not apply however many
// tickets a long-lived key seals. The purpose ("cas-access", "xorb-ticket")
// is bound as additional data: a ticket opened as an access token (or the
// reverse) fails authentication like any forgery. The payload is a small
// versioned binary encoding (payload.go) whose decoder checks every length
// against a cap before allocating.
//
// # Keys
//
// The master key is XETPROXY_SIGNING_KEY (hex or base64 of at least 32
// bytes, ParseKey), shared by every instance behind one name. Without it
// the server generates one per process: tokens and URLs it issued then fail
// on any other instance and after a restart, and clients simply ask again
// (token route, reconstruction).
//
// Sealed values are secrets of the caller (they carry the caller's upstream
// Xet token): they are never logged, and errors never quote them.
package castoken
