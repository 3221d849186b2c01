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
//	    at the end: length check, then the Xet file hash, then io.EOF
//
// # Memory
//
// Decoded chunks waiting for the reader are bounded per stream
// (StreamBuffer) and per engine (MaxBuffer), in 16 KiB size classes from
// sync.Pools. A fetch past its budget stops reading its body (TCP
// back-pressure). The fetch the reader waits for is always started and
// always gets memory, so the budget bounds read-ahead but can never
// deadlock the stream; the overshoot is the few chunks (at most 5) the
// reader is waiting for.
// Memory does not depend on the file size: blocks are planned one ahead,
// and a block's buffers are freed as its bytes are written. (A file whose
// terms reuse one xorb range far apart holds that range's chunks until
// their last use: bounded by the block, not the file.)
//
// # Errors
//
// Open and Read return: ErrRangeNotSatisfiable (offset at or past the
// end), *hub.Error as the Hub answered (not found, auth), ErrNotFound (an
// unknown Xet hash in StatHash), *IntegrityError (a chunk that does not
// decode, a term of the wrong length, a file hash or ETag digest that does
// not match), *UpstreamError with Timeout set when the upstream was too
// slow (stalled body, 504), or the context's error. A stream never ends
// with a clean io.EOF unless every byte was delivered and, for a whole
// file, verified.
//
// Ranged reads check every term's decoded length but cannot check content
// hashes (the reconstruction API gives none): a corrupted byte of a chunk
// stored uncompressed is only caught on a whole-file read.
package proxy
