// Package reconstruction holds the CAS reconstruction wire types (v1 and v2)
// and the pure logic that turns a reconstruction answer into fetches: which
// stored byte ranges to download (each once, even when several terms share
// it) and how to cut the decoded chunks back into the requested bytes.
//
// Conventions: chunk ranges are end-exclusive, byte ranges end-inclusive
// (they are used verbatim as HTTP Range headers). A term's UnpackedLength
// includes the bytes that OffsetIntoFirstRange skips, and the last term may
// run past the requested end; the caller trims both.
//
// Glossary: a Fetch is one stored byte range of one xorb (a v2 range entry);
// a Piece is the part of one term that reaches the output.
//
//	NewPlan(answer, want):
//	    skip = offset_into_first_range
//	    for each term, until want bytes are planned:
//	        entry = the fetch range of term.hash whose chunks contain term.range
//	        fetch = the Fetch of that entry (created on first use: order of first use)
//	        piece = {term, fetch, Skip: skip, Len: min(unpacked_length-skip, left)}
//	        skip = 0
//	Tracker(fetch), per decoded chunk in stored order:
//	    size -> the last piece writing any byte of the chunk (-1: none)
//	    at a term's last chunk: check the term's decoded length == unpacked_length
//	Cutter(piece), per decoded chunk of the term:
//	    -> the part [lo, hi) of the chunk to write, and whether its last byte
//	       is written (a whole-file hash counts the chunk exactly then, so a
//	       chunk cut by a block edge is counted once, by the block writing its end)
//
// Every number of an answer is checked against the format limits before it
// is used (chunk indices below 8192, unpacked lengths within 128 KiB per
// chunk, byte ranges of plausible size): errors wrap ErrInvalid. Decoded
// lengths that contradict the answer are ErrLength.
package reconstruction
