// Package fakehub is a local Hugging Face Hub with its Xet CAS: an
// http.Handler that tests, benchmarks and the offline demo talk to exactly
// as clients talk to huggingface.co and cas-server.xethub.hf.co. It is
// proven against the official @huggingface/hub client (tests/js, run by
// TestJSClient), so a fake that agrees with our own bugs is caught.
//
// # Go API
//
//	h, _ := fakehub.New(fakehub.Config{})          // in memory; Config.Dir keeps xorbs on disk
//	srv := httptest.NewServer(h)                    // or any http.Server
//	h.SetPublicURL(srv.URL)                         // absolute links (default: the request Host)
//	h.CreateRepo(fakehub.RepoSpec{ID: "org/model"}) // "datasets/org/d", "spaces/org/s"; Private,
//	                                                // Gated, Disabled, Readers, Writers (Hub tokens)
//	f, _ := h.AddFile(ctx, "org/model", "model.safetensors", r) // streams r; one commit on main
//	h.Commit(ctx, "org/model", fakehub.CommitSpec{Branch: "dev", Files: []fakehub.FileSpec{...}})
//	h.CreateBranch / CreateTag / Resolve / Files / Open / UpdateRepo / AddToken
//	h.LoadTree(ctx, dir, fakehub.TreeOptions{})    // serve a directory tree (xetproxy fakehub)
//
// AddFile returns a File: size, SHA-256, git blob id, commit, and for Xet
// files the Xet file hash. Storage is chosen as the Hub does (StorageAuto):
// files smaller than Config.SmallFileThreshold and text files smaller than
// Config.TextFileThreshold (10 MiB) that no LFS rule of .gitattributes
// matches are plain git files; everything else goes to Xet. StorageXet and
// StoragePlain force it. New repos get the Hub's default .gitattributes
// (*.bin, *.safetensors... go to LFS/Xet) unless RepoSpec.NoGitAttributes.
// FileSpec.Compression overrides Config.Compression for one file's new
// chunks (random data stays SchemeNone whatever the policy; text takes LZ4,
// bf16-like weights BG4). FileChunks(hash) lists where each chunk of a Xet
// file is stored: xorb, index, offset and stored header (scheme, lengths).
//
// # Ingestion
//
// Xet files go through the real upload path of the format core, as a
// pipeline over both cores with bounded memory (the hasher's blocks, at
// most two xorb buffers):
//
//	xethash pipeline:   read into blocks → chunker → SHA-256 → chunk hashes,
//	                    file hash; each chunk, in order, to the packer
//	packer (in order):  dedup (this xorb, then every stored chunk, across files
//	                    and repos) → unless stored: xorb.AppendChunk (policy)
//	                    onto the xorb under construction, cut at
//	                    MaxXorbBytes/MaxXorbChunks; terms = maximal runs of
//	                    consecutive chunks of one xorb, with verification
//	                    hashes
//	writer goroutine:   stores full xorbs with their footer (memory or
//	                    Config.Dir) while packing goes on
//	then:               shard.Shard{file, new xorbs}.MarshalBinary → the same
//	                    registration as POST /v1/shards (parse, validate
//	                    against stored xorbs, recompute the file hash)
//
// # Endpoints
//
// Hub: GET/HEAD /{prefix}{repo}/resolve/{rev}/{path} (Xet: 302 to a signed
// bridge URL that serves the whole file with Range, with X-Xet-Hash, Link
// rel="xet-auth" and rel="xet-reconstruction-info", X-Linked-Size,
// X-Linked-Etag, ETag, X-Repo-Commit; 200 application/vnd.xet-fileinfo+json
// when Accept asks for it; plain files: 200/206/416), /raw/;
// /api/{type}s/{repo}[/revision/{rev}] (sha, siblings with xetHash,
// xetEnabled); /tree/{rev}[/{path}] (recursive, expand, cursor pagination
// with an absolute Link rel="next"); POST /paths-info/{rev} (form or JSON);
// /xet-read-token/{rev} and /xet-write-token/{rev} (JSON and X-Xet-*
// headers); POST /preupload/{rev}, POST {repo}.git/info/lfs/objects/batch
// (transfer "xet", or "basic" with a signed PUT that is ingested), POST
// /commit/{rev} (NDJSON: header, file, lfsFile, deletedFile, deletedFolder;
// create_pr=1). Revisions are branches (refs/pr/N too), tags or commit ids,
// percent-encoded or not; routing uses the escaped path. Errors carry
// X-Error-Code (RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound) and
// X-Error-Message with the Hub's 401-versus-404 rules: unknown token 401;
// missing or hidden private repo 401 anonymous, 404 authenticated; gated
// repo 401 anonymous, 403 not approved (metadata, tree and paths-info of a
// gated repo stay public).
//
// CAS, at {base}/cas (Config.CASURL or SetCASURL move it to another
// host): /v1 and /v2 reconstructions (and unversioned /reconstructions)
// with Range (inclusive end, clamped, 416 past the end, empty file 200 with
// no terms), terms trimmed to whole chunks with offset_into_first_range,
// per-xorb fetch ranges merged when they overlap or touch, deterministic
// per request; the batch forms GET /v1/reconstructions?file_id=... and
// POST /v1/reconstructions (whole files, v1 shape); presigned
// /cas/transfer/{xorb} URLs signed (HMAC) for exactly their byte
// ranges and an expiry (403 outside them or after it; 400 with an
// Authorization header so tests catch token leaks), 200 without Range, 206
// single range, 206 multipart/byteranges with parts in request order;
// POST /v1/xorbs/{prefix}/{hash} ({"was_inserted":bool}), HEAD of it,
// POST /v1/shards ({"result":0|1}) and /v2/shards (NDJSON progress),
// GET /v1/chunks/{prefix}/{hash} (global dedup shard with footer and keyed
// chunk hashes, or 404), HEAD /v1/files/{hash}. Every CAS call needs a CAS
// token: 401 missing, invalid or expired; 403 read token on a write.
// Tokens are bound to their repo, as the Hub's are: a reconstruction (also
// in a batch) answers only files some commit of the token's repo holds, or
// that a shard uploaded with a write token of the repo registered; any
// other file is 404 as if unknown.
//
// # Knobs (safe to change while serving)
//
//	SetTokenTTL, SetURLTTL             lifetimes of CAS tokens and presigned URLs
//	SetLatency(class, d)               delay every request of a class
//	FailNth(class, n, status, ra)      fail the nth next request (Retry-After ra)
//	FailFraction(class, p, seed, ...)  fail a reproducible fraction of requests
//	InjectFault(Fault{...})            the general form (Nth+Times, Fraction+Seed)
//	TruncateBodies(class, after, n)    cut n bodies after `after` bytes (abort; counted in Counter.Cut)
//	CorruptXorb(hash, off, n)          flip stored bytes when they are served
//	CorruptChunk(file, k)              flip one payload byte of chunk k of a file,
//	                                   one that still decodes; .Heal() ends it
//	DisableV2(true)                    v2 endpoints answer 404
//	ForbidOncePerURL(true)             first fetch of each xorb URL gets 403
//	SetMaxRangesPerURL(n)              split v2 fetch entries
//	ClearFaults()                      remove every fault
//
// # Observing
//
// Stats() maps each Class (resolve, bridge, api, token, reconstruction,
// xorb, dedup, xorb-upload, shard-upload, commit, other) to a Counter of
// requests, errors, bytes out and bytes in; Stats()[ClassXorb].BytesOut is
// the xorb bytes served. Requests() is the request log (method, escaped path
// with signatures redacted, headers with Authorization redacted, HasAuth,
// status, bytes, duration); ResetStats clears both.
package fakehub
