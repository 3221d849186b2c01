// Package shard reads and writes Xet "MDB" shards: the binary metadata that
// maps files to the xorb chunk ranges they are built from, and lists the
// chunks of each xorb.
//
// Every record is 48 bytes, all integers little-endian:
//
//	header          tag[32] "HFRepoMetaData\x00" + 17 magic bytes, version u64 = 2, footer_size u64 (0 or 200)
//	file section    per file:
//	                  file header   hash[32] flags u32 num_terms u32 reserved[8]
//	                  term × n      xorb_hash[32] flags u32 unpacked_bytes u32 chunk_start u32 chunk_end u32
//	                  verification × n   (if flags & 0x80000000) range_hash[32] zero[16]
//	                  metadata ext       (if flags & 0x40000000) sha256 word-reversed[32] zero[16]
//	                bookend         ff×32 zero[16]
//	xorb section    per xorb:
//	                  xorb header   hash[32] flags u32 num_chunks u32 bytes_in_xorb u32 bytes_on_disk u32
//	                  chunk × n     hash[32] offset u32 size u32 flags u32 reserved[4]
//	                bookend         ff×32 zero[16]
//	lookup tables   (stored shards) file: trunc u64 + record u32; xorb: trunc u64 + record u32;
//	                chunk: trunc u64 + xorb record u32 + chunk u32; each sorted by trunc = u64 word 0
//	footer (200 B)  version=1, file/xorb info offsets, table offsets and counts,
//	                chunk_hash_hmac_key[32], created, expiry, reserved[48],
//	                stored_bytes_on_disk, materialized_bytes, stored_bytes, footer_offset
//
// Glossary:
//
//	term          a contiguous chunk range [ChunkStart, ChunkEnd) of one xorb
//	verification  per-term BLAKE3(VerificationKey, raw chunk hashes of the term)
//	record index  position counted in 48-byte records from the start of a section
//	keyed hash    BLAKE3(footer HMAC key, raw chunk hash); global-dedup answers
//	              store chunk hashes keyed so only holders of the chunk can match
//
// Three flavours share the layout. An upload body (POST /v1/shards) stops
// after the xorb bookend with footer_size 0 (xet-core) or carries a footer
// without lookup tables (huggingface.js, zig-xet). A stored shard has lookup
// tables and a footer. A global-dedup answer has an empty file section, a
// keyed xorb section and a footer with the HMAC key and an expiry.
//
// Shard.MarshalBinary writes an upload body when Footer is nil and a stored
// shard otherwise; Parse reads all three. Parse is bounded: no shard above
// MaxShardSize is read, every count is checked against the bytes that remain
// before anything is allocated, and every reserved byte must be zero, so an
// accepted upload body re-serialises to the same bytes.
package shard
