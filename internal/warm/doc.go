// Package warm fills the chunk cache ahead of demand: a job lists a repo
// at a revision, selects files by glob, and reads each selected Xet file
// whole through the download engine, discarding the bytes. A whole-file
// read checks the Xet file hash, so every chunk it used is proven and
// lands in the cache (see internal/proxy, "Proofs"); a later download of
// the file then reads only the cache.
//
//	Start(req):
//	    a job with the same key is running -> attach to it
//	    else new job, run in the background under the Manager's context
//	run(job):
//	    list the repo recursively (the caller's upstream token); select files:
//	        (no include or any include matches) and no exclude matches
//	    files kept in git (no xetHash, no LFS pointer) -> skipped (the chunk
//	        cache holds Xet chunks only); an LFS file listed without its
//	        xetHash is resolved, and skipped if that says it is not Xet
//	    Config.Files workers per job, each file:
//	        take one of Config.Files server-wide slots, then Admit (the
//	        server's download slots and read-ahead budget)
//	        Stat, Open(0, size), copy to a counter; an integrity failure is
//	        tried once more (the engine purged the bad copy)
//	        Sources: nothing from upstream -> "cached", else "warmed"
//	    at the end: Flush (promotions of proven chunks), bounded
//
// Glob patterns are path.Match patterns: '*' and '?' never cross a '/'. A
// pattern without a '/' is also matched against the file's base name, so
// "*.json" selects config.json and sub/dir/tokenizer.json alike, while
// "sub/*.json" selects only the files directly in sub.
//
// Key and attach: a job's key is (digest of the upstream token, repo type,
// repo, revision, include, exclude). Starting a job whose key is running
// attaches to it: a caller never sees a job made with someone else's
// credentials. Finished jobs are kept (Config.KeepJobs) for the listing
// but are never attached to: warming again re-checks every file, which
// costs only local reads for the files already cached.
//
// Events: each job keeps its last events in a ring; a follower receives a
// snapshot of the job first, then every event after it, or a "lagged"
// event saying how many it missed if it fell behind the ring.
//
// The upstream token lives in the job while it runs and is dropped when
// it ends. It is never logged, shown in an event or a status, or kept.
package warm
