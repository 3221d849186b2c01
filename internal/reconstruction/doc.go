// Package reconstruction holds the CAS reconstruction wire types (v1 and v2)
// and the pure logic that turns a reconstruction answer into fetches: which
// stored byte ranges to download (each once, even when several terms share
// it) and how to cut the decoded chunks back into the requested bytes.
//
// Conventions: chunk ranges are end-exclusive, byte ranges end-inclusive
// (they are used verbatim as HTTP Range headers). A term's UnpackedLength
// includes the bytes that OffsetIntoFirstRange skips, and the last term may
// run past the requested end; the caller trims both.
package reconstruction
