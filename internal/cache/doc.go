// Package cache is xetproxy's content-addressed cache of decoded xorb
// chunks: a Store interface, its implementations (Memory, Disk, S3, and
// Tiered to combine a local and a shared tier) and, in cachetest, the
// conformance suite every implementation passes.
//
// # Glossary
//
//   - xorb: a CAS object holding up to 8192 compressed chunks, named by its
//     Merkle hash. Chunk indices inside a xorb start at 0.
//   - chunk range [start, end): chunks start..end-1 of one xorb
//     (end-exclusive, like reconstruction terms and fetch entries).
//   - entry: the decoded bytes of one chunk range, plus the offset of each
//     chunk in those bytes and each chunk's hash (Entry).
//   - key: (xorb hash, start, end) (Key). It names content, not a location,
//     so an entry is never stale and never invalidated. Stores forget
//     entries (eviction) and purge them on request (Delete, for content a
//     later check showed to be wrong).
//   - covering: an entry covers a request for [s, e) of the same xorb when
//     its range contains [s, e). A lookup is a hit when some single stored
//     entry covers it; the store returns exactly [s, e), cut from that entry.
//     Stores do not stitch a request together from several entries
//     ([0,5) + [5,10) do not serve [3,7)): the engine fills the cache in the
//     units it downloads, so requests normally fall inside one of them, and
//     stitching would cost several reads and a merge for a rare case.
//   - tier: a Store used as part of a Tiered store: local (Memory or Disk,
//     private to one instance) or shared (S3, used by every instance).
//
// # Key scheme
//
// Disk: <dir>/chunks-v1/<first two characters of the xorb hash>/<xorb
// hash>.<start>-<end>. Object store: <prefix><xorb hash>/<start>-<end>.
// Hashes are in the Xet text form (merklehash.Hash.String). Both hold the
// same stored form: a header with the key, chunk offsets, chunk hashes, a
// CRC-32C per chunk and a CRC-32C over the header, then the data (see
// format.go and docs/cache.md). Readers check the header and the chunks they
// return; an entry that fails is deleted and reported as a miss.
//
// # Integrity
//
// Put trusts its caller for content: it checks the structure (Validate) but
// does not re-hash. Disk and S3 verify checksums on every read, which catches
// torn writes, truncation and bit rot. S3 also re-hashes every chunk it
// returns (unless S3Config.SkipHashCheck), because anyone who can write to
// the bucket can write consistent checksums; combined with the engine's
// file-hash check on whole-file reads this rejects forged data. Memory holds
// the caller's own bytes and checks nothing.
//
// # Using it from the download engine
//
// The engine holds one Store (nil when caching is off), built from flags:
// Disk when --cache-dir is set, S3 when --s3-bucket is set, Tiered when
// both. For each fetch entry of a reconstruction (a byte range of a xorb
// covering chunks [a, b)) it does, in this order:
//
//	// 1. Authorize first: the cache is shared by every user, so a hit
//	//    proves nothing. Only look up xorbs named by a reconstruction the
//	//    caller's own token obtained.
//	// 2. Look up the whole fetch range; on a miss look up each term that
//	//    uses it. If every term hits, skip the download entirely.
//	e, err := store.Get(ctx, xorb, a, b)
//	switch {
//	case err == nil:
//		// use e.Chunk(i) / e.Data[e.Offsets[i-a]:...]; do not modify e
//	case errors.Is(err, cache.ErrNotFound):
//		// fetch
//	default:
//		// the cache is a soft dependency: log, count, fetch
//	}
//	// 3. Fetch the whole signed range (a V2 URL is signed for its exact
//	//    ranges), decode every chunk, check the sizes against the terms,
//	//    hash each chunk (Entry.Hashes; verify the xorb hash when the range
//	//    is the whole xorb), and only then build the Entry and Put it.
//	//    Never Put data that failed to decode or check.
//	// 4. If a whole-file read then fails the file hash, Delete the range of
//	//    every term it used, cached or fetched, before reporting the error.
//
// Fill at most once per key per instance: single-flight on Key (e.g.
// golang.org/x/sync/singleflight keyed by Key.String(), or a map of
// channels), and run the fetch-and-Put on a detached, bounded context
// (context.WithoutCancel(ctx) plus a timeout) so that the client who started
// it can hang up without aborting it for the others waiting. Put errors are
// for logs and metrics only. Wrap the Store in a metrics decorator, or read
// Stats (StatsReporter; Tiered.Local and Tiered.Shared expose each tier) from
// a Prometheus collector. Call Tiered.Close during shutdown to finish queued
// shared writes.
//
// # Concurrency
//
// Every Store is safe for concurrent use. Disk directories and S3 buckets may
// be shared by several processes: entries appear atomically (rename, whole
// PutObject), a missing file or object is a miss, and rewriting a key writes
// the same bytes.
package cache
