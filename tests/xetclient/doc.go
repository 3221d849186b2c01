// Package xetclient is a test client that downloads files the way
// huggingface_hub with hf_xet does when HF_ENDPOINT points at a server,
// and the contract tests that run it against fakehub (the reference shape
// of the Hub and its CAS) and against the xetproxy server acting as the CAS
// of Xet clients.
//
// The flow, as the real client follows it:
//
//	HEAD {endpoint}/{prefix}{repo}/resolve/{rev}/{path}
//	    -> X-Xet-Hash, X-Xet-Refresh-Route or Link rel="xet-auth"
//	    (or, from a tree listing's xetHash: the token route without a HEAD)
//	GET {token route} with the Hub token
//	    -> {"accessToken", "exp", "casUrl"} and X-Xet-* headers; cached,
//	       refreshed when exp is near
//	GET {casUrl}/v2/reconstructions/{hash} (404/501 -> /v1), Bearer token,
//	    optional Range
//	for each term's fetch range, in parallel:
//	    GET {url} with Range: bytes={start}-{end} verbatim, no Authorization
//	    403 -> ask for the reconstruction again
//	decode the chunk records of exactly those bytes (internal/xorb), check
//	each term's unpacked_length, concatenate, cut offset_into_first_range
//	and the range's end.
package xetclient
