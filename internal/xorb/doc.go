// Package xorb reads and writes xorbs, the containers in which Xet storage
// keeps compressed chunks.
//
// Glossary:
//
//	chunk         a content-defined piece of a file, at most MaxChunkSize bytes
//	chunk header  8 bytes before every stored chunk (see below)
//	payload       the stored bytes of one chunk, CompressedLen long
//	chunk region  the concatenated header+payload records of a xorb
//	footer        XorbObjectInfo: hashes and offsets of every chunk, present
//	              in stored objects and optional in upload bodies
//	upload body   the chunk region alone (what clients upload)
//	stored object the chunk region, the footer and a trailing u32 footer length
//
// A chunk header, all integers little-endian:
//
//	offset 0  u8   version, always 0
//	offset 1  u24  compressed length (payload bytes that follow)
//	offset 4  u8   scheme: 0 none, 1 one LZ4 frame, 2 BG4 then one LZ4 frame
//	offset 5  u24  uncompressed length, at most 128 KiB
//
// BG4 ("byte grouping 4") moves every fourth byte together before
// compression: group g holds the bytes at positions i with i%4 == g, and the
// groups are concatenated in order 0..3; the first n%4 groups are one byte
// longer. It helps with arrays of 2- and 4-byte numbers such as model weights.
//
// The footer (V1) of a xorb with n chunks is 92+40n bytes, followed by its
// length as a u32:
//
//	"XETBLOB" 1 xorb-hash
//	"XBLBHSH" 0 n chunk-hash[n]
//	"XBLBBND" 1 n chunk-end[n] unpacked-end[n]
//	n hashes-offset-from-end boundaries-offset-from-end 16-byte-buffer
//
// where chunk-end[i] is the end of chunk i (header included) in the chunk
// region, unpacked-end[i] the running total of uncompressed sizes, and the
// xorb hash is the Merkle root of (chunk hash, uncompressed size). The legacy
// V0 footer (ident, 0, hash, n, chunk-end[n], chunk-hash[n], buffer) is still
// read.
//
// Decoding is on the hot path of every download: a Decoder turns a fetched
// byte range (whole chunks, never the footer) into decoded chunks, reusing
// its buffers. LZ4 frames are parsed here, over the block codec of
// github.com/pierrec/lz4/v4, straight from the in-memory payload into the
// output buffer: any valid frame is accepted (linked or independent blocks,
// block and content checksums, content size, skippable frames, concatenated
// frames) and the output can never grow past the length the chunk header
// declares. Every length read from the input is checked against a hard cap
// before anything is allocated.
package xorb
