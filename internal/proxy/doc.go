// Package proxy is the download engine: it composes the Hub client, the CAS
// client and the reconstruction planner into verified byte streams of Xet
// files (and of files the Hub stores in git or plain LFS). It holds no HTTP
// server code; internal/server and the CLI sit on top of it.
//
//	e, _ := proxy.New(proxy.Config{Hub: hubClient, CAS: casClient})
//	meta, err := e.Stat(ctx, token, repo, "main", "model.safetensors")
//	rc, err := e.Open(ctx, token, meta, offset, length) // errors before any byte
//	io.Copy(w, rc)                                       // exactly length bytes, or an error
//	rc.Close()
//
// # Algorithm (one stream)
//
//	Open: the first reconstruction block is queried and planned before
//	      Open returns, so not-found, auth and upstream failures are Open's.
//	scheduler goroutine:
//	    for each block of BlockSize file bytes (256 MiB):
//	        answer = CAS reconstruction of the block (v2, v1 fallback, retries)
//	        plan   = reconstruction.NewPlan(answer)  // each fetch range once
//	        hand the plan to the reader
//	        for each fetch in order of first use:
//	            wait until fewer than Parallel run, or the reader needs it
//	            go download(fetch)
//	download(fetch):                   // one goroutine per xorb range
//	    body = FetchRange(url, bytes)  // no auth; resumes, retries, refreshes URL on 403
//	    for each stored chunk:
//	        header -> size; Tracker.Add(size) -> last piece using it (or none)
//	        if used: take size from the byte budget (wait, unless the reader
//	                 is waiting for this very chunk), decode into a pooled buffer,
//	                 hash it if the whole file is read
//	        else:    decode into scratch (the size must still be proven)
//	        publish the chunk; every term is checked against unpacked_length
//	reader (Read / WriteTo, the caller's goroutine):
//	    for each piece in order, for each chunk of its term:
//	        wait for the chunk; Cutter says which bytes to write
//	        whole-file read: the Builder takes every chunk whose end is written
//	        free the chunk after its last piece
//	    at the end of a block: wait for its fetches (all terms checked)
//	    whole-file read, before the last chunk's bytes: wait for the last
//	        block's fetches and check the Xet file hash; only then hand
//	        them out (a wrong file never ends cleanly)
//	    at the end: length check, then io.EOF
//
// # Memory
//
// Decoded chunks waiting for the reader are bounded per stream
// (StreamBuffer) and per engine (MaxBuffer), in 16 KiB size classes from
// sync.Pools. A fetch past its budget stops reading its body (TCP
// back-pressure). The fetch the reader waits for is always started and
// always gets memory, so the budget bounds read-ahead but can never
// deadlock the stream; the overshoot is the few chunks (at most 5) the
// reader is waiting for. Each running fetch reads its body through one
// pooled 256 KiB buffer, in pieces of 64 KiB or more, and decodes the
// compressed payloads where they lie in it (chunks.go); the reader writes
// the chunk buffers themselves to the client (WriteTo).
// Memory does not depend on the file size: blocks are planned one ahead,
// and a block's buffers are freed as its bytes are written. (A file whose
// terms reuse one xorb range far apart holds that range's chunks until
// their last use: bounded by the block, not the file.)
//
// # Cache (Config.Cache; cachesource.go, fill.go, segments.go)
//
// With a cache, every fetch of a plan goes through it, in segments: the
// chunk ranges of the absolute 64-chunk grid of the xorb (entries of
// about 4 MiB that ranges of different files still share).
//
//	fetch [a, b) of xorb X, when it is its turn to fill (the reader's
//	fetch, the next, or within the stream's read-ahead in fetched bytes):
//	    first segment: cache.Has (no read, no memory); on a miss join
//	        the fill in flight whose range covers [a, b), or start one
//	    each segment, in order:
//	        the joined fill still holds it  -> its chunks, as they decode
//	        else charge the budgets for the entry (waiting for room; a
//	        waiting reader on a full budget: urgentPiece chunks), then
//	        cache.Get hits                  -> the entry's chunks
//	        no fill joined yet              -> join or start one, retry
//	        otherwise (the fill let go of it after its Put and the cache
//	        lost it: evicted, or the Put failed) -> fetch [a, b) for this
//	        stream alone, skipping the chunks already delivered
//	fill(X, [a, b)), one per range in flight per Engine (single-flight):
//	    context.WithoutCancel(request) + FillTimeout: the client going
//	        away does not stop it
//	    fetch the range, decode and hash every chunk into the segment
//	        under construction, publish each chunk to the streams reading
//	        the fill, check the terms of the starting stream's plan
//	    complete segment -> putter (at most 2 queued): proven (the
//	        manifest checked it) -> join it with the cached parts of a
//	        segment the range only partly covers, Put; not proven yet ->
//	        Staging.Put (see Proofs); then let go of it; streams that had
//	        not reached it read it from the cache (or staging)
//	    memory: FillBuffer, taken per segment (its largest possible size)
//	        before decoding it and given back after its Put: a fill waits
//	        only for other fills' Puts, never for a reader
//
// A fill is therefore never slowed by a slow client: it decodes at
// network speed into at most three segments of memory and hands them to
// the cache; a slow reader catches up from the cache. When a fill starts
// is still paced by the reader (its read-ahead), as downloads are. A
// stream reading from a fill or an entry uses the chunks in place and
// charges its budgets for them as for chunks it decoded itself.
//
// # Proofs (proof.go)
//
// Only proven chunks reach the cache. A proof is either a xorb manifest —
// the (hash, size) of every chunk of a xorb, learnt from any fetch of
// chunks [0, n) that hashes to the xorb's name, kept in memory and in the
// cache (cache.ManifestStore), self-certifying wherever it is read from —
// or a whole-file read whose file hash checks.
//
//	fetch [a, b) of X:
//	    manifest of X known  -> every chunk checked against it, whatever its
//	                            source (upstream, a fill, any store); a fill
//	                            Puts its segments
//	    whole-file stream    -> fills without a manifest write to Staging;
//	                            the stream notes each staged range it used
//	                            with the hashes it saw
//	    ranged stream        -> proven cache entries, else its own fetch,
//	                            no fill (counted as unverified bytes)
//	fill of [0, n) that hashes to X -> manifest learnt, staged segments
//	                                   promoted (whole segments adopted:
//	                                   the staged file moved into the
//	                                   cache, cache.Adopter; parts copied
//	                                   and joined)
//	whole-file stream's hash checks -> its noted ranges promoted, if the
//	                                   staged copy has the same hashes
//
// Stored hashes are never trusted: a stream that can check (a manifest, or
// its own file hash) hashes the bytes it reads from any store, except a
// disk entry the store vouches this process proved against the manifest
// and that has not changed since (cache.Entry.Proven; cache/vouch.go). A
// cached
// entry that fails its manifest is purged before any of it is delivered
// and its range fetched from upstream (errRecheck); a whole-file stream
// whose file hash fails purges every range it read, cached or staged.
// Whole-file readers may share a fill before it is proven: each checks its
// own file hash before its last byte, so shared bytes never end a stream
// cleanly unless they are right.
//
// Access: the cache is looked up only for the xorb ranges of a
// reconstruction that the CAS gave for this request's own token (after
// resolve and the read token, also with the caller's credentials); no
// route reaches a cached byte otherwise. Config.AuthTTL lets positive
// answers (resolve, file size, reconstruction) be reused for the same
// token, repo and revision for a short time; the memo keys on a digest of
// the token, so it never answers one user with another's authorisation.
//
// Lookup by Xet hash (StatHash) reads the repo's recursive listing with
// the caller's token, which can take many requests for a large repo.
// Bounded: at most Config.HashListMax entries, ErrListingTooLarge past
// them. Shared: concurrent lookups with the same (token digest, repo,
// revision) wait for one listing, which runs detached and stops when the
// last of them leaves. Remembered: the Xet files a listing found (or its
// being too large) answer every lookup with the same key for
// Config.HashListTTL, found or not; refusals and failures are not kept.
//
// Failures of the cache are soft: a Get error is a miss, a Put error is
// counted and logged (rate-limited). CacheStats has the counters; a
// stream's Sources say where its bytes came from.
//
// # Xet clients (xetcas.go)
//
// For the server's CAS routes the engine answers as the caller's CAS:
//
//	CASReconstruct(caller's upstream CAS URL + Xet token, file, range):
//	    answer = upstream reconstruction with that token (the authorisation)
//	    check it (reconstruction.NewPlan), keep its terms
//	    each upstream fetch entry -> one layout for all its ranges:
//	        a cache, and the xorb's manifest known (> 1 chunk) -> LayoutRecords:
//	            served bytes = uncompressed records (header with scheme
//	            none + chunk) at their offsets in an uncompressed copy of
//	            the whole xorb, computed from the manifest's sizes
//	        else -> LayoutUpstream: served bytes = upstream's, verbatim
//	OpenXorbRange(range as laid out, window):
//	    one record at a time, cut to the window:
//	        LayoutRecords: cache.Get per segment, each chunk checked
//	            against the manifest; at the first miss, upstream
//	        upstream: FetchRange(the range), chunks before the current one
//	            skipped; each chunk decoded under the format's caps and
//	            checked against the manifest when known; its stored bytes
//	            (LayoutUpstream) or a new record (LayoutRecords) handed out
//	            only after that
//	        chunks decoded from upstream fill 64-chunk segments: proven ->
//	            cache, else staging; a range of the whole xorb read without
//	            a manifest teaches it and promotes its staged segments
//
// Memory per xorb request (xetmem.go): the cache entry it hands records
// out of, or the decoder's buffers, charged to the engine's budget before
// they are read or made (waiting for room with nothing held; one chunk of
// an entry at a time when the budget is full) and given back once the
// entry's last record is out or the request ends; and one fill segment,
// taken from FillBuffer without waiting (when it is spent the chunks are
// served and not kept). A record is handed out as its header and the
// chunk where it lies, never copied.
//
// Single flight (xetflight.go), with a cache: a request that goes upstream
// for chunks of a xorb whose manifest it knows registers a flight (xorb,
// chunk range); a LayoutRecords request that misses the cache on chunks a
// flight has yet to store waits for it (holding nothing) and reads them
// from the cache, checked as any cached chunk. A flight that ends early
// (failed, closed) hands over to one of its followers; one that stalls
// (no chunk for xorbStall) or whose chunks were not kept sends them
// upstream on their own. LayoutUpstream ranges without a manifest cannot
// be shared this way: the cache holds decoded chunks, not upstream's
// stored records.
//
// # Errors
//
// Open and Read return: ErrRangeNotSatisfiable (offset at or past the
// end), *hub.Error as the Hub answered (not found, auth), ErrNotFound (an
// unknown Xet hash in StatHash), ErrListingTooLarge (StatHash in a repo of
// more than Config.HashListMax entries), *IntegrityError (a chunk that does not
// decode, a term of the wrong length, a file hash or ETag digest that does
// not match), *UpstreamError with Timeout set when the upstream was too
// slow (stalled body, 504), or the context's error. A stream never ends
// with a clean io.EOF unless every byte was delivered and, for a whole
// file, verified.
//
// Ranged reads check every term's decoded length; their content is checked
// only when a manifest of the xorb is known (the reconstruction API gives
// no chunk hashes). CacheStats.ServedUnverified counts the rest.
package proxy
