// Package xethash computes the Xet file hash of a byte stream: the stream is
// cut by the gearhash chunker (package chunking), every chunk is hashed
// (merklehash.ChunkHash), and the chunk hashes and sizes are folded into
// the streaming Merkle tree whose root gives the file hash
// (merklehash.Builder). It is the one implementation of "bytes in, Xet
// file hash out" in the project: `xetproxy hash`, the verification of a
// resumed `xetproxy download` and the ingestion of fakehub all use it.
// (The proxy engine does not: it gets chunk hashes from the decoder, not a
// byte stream, and feeds a merklehash.Builder itself.)
//
// A Hasher is an io.Writer (and an io.ReaderFrom, which reads straight into
// its blocks): the result does not depend on how the input is split into
// writes. Sum ends the input and returns the size, the file hash and, if
// asked for, the SHA-256 of the input; Options.OnChunk sees every chunk in
// order. HashReader does all of that for an io.Reader under a context.
//
// # Pipeline
//
// The input runs through two or three goroutines joined by short
// channels, so that copying or reading, chunking and hashing overlap on
// separate cores:
//
//	writer:   the caller's Write or ReadFrom fills pooled blocks of
//	          blockSize bytes (the read syscalls and the copy out of the
//	          page cache happen here)
//	   │ block
//	chunker:  chunking.Boundaries on each block. Every boundary before the
//	          end of a block is final; the bytes after the last one are
//	          carried into the next block's first chunk through a small
//	          stitch buffer
//	   │ block + chunk offsets (+ the stitched chunk)
//	sha256:   (only with Options.SHA256) the block bytes in order
//	   │
//	hasher:   BLAKE3 chunk hashes straight from the block, streaming Merkle
//	          root, OnChunk; then the buffers go back to their pools
//
// Chunks are hashed where they lie in the block; only a chunk that spans
// two blocks is copied (at most MaxSize bytes per block). At most
// pipelineDepth messages wait in each channel, so a stream of any length
// holds about (3*pipelineDepth+4) blocks: 10 MiB with the defaults.
//
// # Stitching blocks
//
// chunking.Boundaries treats its input as a whole stream, so its last
// chunk may end only because the block does; every earlier boundary
// depends on nothing after it and is final. The last chunk of a block is
// therefore never emitted but carried as the tail, and cut again once
// MaxSize bytes from its start are known or the input has ended. For the
// cut to fall at or after the carried part, every block but the last
// holds at least MaxSize bytes: a block is passed on only when it is full,
// and blocks are never smaller than MaxSize.
package xethash
