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
// Disk: <dir>/chunks-v2/<first two characters of the xorb hash>/<xorb
// hash>.<start>-<end>. Object store: <prefix><xorb hash>/<start>-<end>.
// Manifests (ManifestStore): <dir>/manifests-v1/<first two characters>/<xorb
// hash> and <prefix>manifests/<xorb hash>, in the form of
// Manifest.MarshalBinary, parsed and verified on every read.
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
// # How the download engine uses it
//
// internal/proxy (cache.go) holds one Store, built by the server from flags
// (memory, disk when --cache-dir is set, S3 when --s3-bucket is set, tiered
// when local and shared are both set). It only looks up xorbs named by a
// reconstruction answer the caller obtained with its own credentials, since
// a hit proves nothing about access. Entries are aligned segments of 64
// chunks of a xorb; a miss joins or starts one fill per segment range per
// Engine (single-flight), run on a detached, bounded context so the client
// that started it can leave. Only decoded chunks are Put, with hashes of
// their bytes; a whole-file read that then fails its file hash Deletes what
// it used. Chunks that await a proof wait in a Staging store (a Disk of the
// process's own under the cache directory); once they are proven,
// Disk.Adopt (and Tiered.Adopt over a disk tier) moves a staged entry's
// file into the cache after checking its header, instead of a Get and a
// Put (adopt.go). Get errors count as misses, Put errors are logged and
// counted.
// Stats (StatsReporter; Tiered.Local and Tiered.Shared for each tier) feed
// the server's Prometheus collector; Tiered.Close at shutdown finishes
// queued shared writes.
//
// # Operator tools
//
// ScanDir, VerifyDir and PruneDir (xetproxy cache du|ls|verify|prune) work
// on a Disk directory itself, not on a Disk's index: they see every
// process's files, take no lock but an instant's probe of a stale staging
// folder's, and may run next to servers, for which a file they delete is a
// miss. VerifyDir re-hashes every chunk and checks the entries of each xorb
// whose manifest is stored against it; PruneDir removes least recently
// used first by modification time, the order NewDisk rebuilds.
//
// # Concurrency
//
// Every Store is safe for concurrent use. Disk directories and S3 buckets may
// be shared by several processes: entries appear atomically (rename, whole
// PutObject), a missing file or object is a miss, and rewriting a key writes
// the same bytes.
package cache
