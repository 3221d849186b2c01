// Package merklehash implements the hashes of the Xet storage format.
//
// Every hash is keyed BLAKE3 with a 32-byte output:
//
//	chunk hash         = BLAKE3(DataKey, chunk bytes)
//	internal node      = BLAKE3(InternalNodeKey, "<child string> : <size>\n" for each child)
//	xorb hash          = Root(chunk hashes and sizes)
//	file hash          = BLAKE3(zero key, Root(file's chunks)); all-zero for an empty file
//	verification hash  = BLAKE3(VerificationKey, raw chunk hashes of one term, concatenated)
//
// Root aggregates a list of (hash, size) leaves into a tree whose fan-out is
// decided by the hashes themselves: a group closes after entry i (i >= 2) when
// the last 8 bytes of that entry, read as a little-endian u64, are divisible
// by 4, and never holds more than 9 entries. Levels are merged until one
// entry remains; a single leaf is its own root.
//
// The text form of a Hash is not plain hex: the 32 bytes are read as four
// little-endian u64 words and each is printed as 16 hex digits. That form is
// used in URLs, JSON and inside the internal-node buffers.
package merklehash
