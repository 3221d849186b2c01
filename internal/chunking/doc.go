// Package chunking splits data into the content-defined chunks of the Xet
// protocol (PROTOCOL.md §2): a gear rolling hash over the bytes, a boundary
// where its top 16 bits are zero, chunks of MinSize to MaxSize bytes.
//
// Chunker splits an io.Reader with a fixed buffer; Boundaries splits a
// buffer held in memory. Both give the boundaries of the normative rule
// below, byte for byte, however the input arrives.
//
// # Normative rule
//
//	h := 0; start := 0
//	for i, b := range input {
//	    h = h<<1 + gearTable[b]            // wrapping uint64
//	    size := i - start + 1
//	    if size >= MaxSize || (size >= MinSize && h&mask == 0) {
//	        emit input[start : i+1]
//	        start = i + 1; h = 0
//	    }
//	}
//	if start < len(input) { emit input[start:] }  // nothing for an empty input
//
// # What this package runs
//
//	cut(data):                 // data = next MaxSize bytes, or all that is left
//	    data = data[:min(len(data), MaxSize)]
//	    if len(data) <= MinSize: return len(data)
//	    h := 0
//	    for i in skip .. MinSize-2:             // skip = MinSize-64-1: 65 bytes of warm-up
//	        h = h<<1 + gearTable[data[i]]
//	    for i in MinSize-1 .. len(data)-1:
//	        h = h<<1 + gearTable[data[i]]
//	        if h&mask == 0: return i + 1
//	    return len(data)                        // forced cut at MaxSize, or the end
//
//	Chunker.Next:
//	    read until MaxSize bytes are buffered past the chunk start, or EOF
//	    n := cut(buf[start:end]); chunk := buf[start : start+n]; start += n
//	    (when fewer than MaxSize bytes of room remain after start, the
//	    unconsumed bytes move to the front of the fixed buffer first)
//
// # Why the skip is exact
//
// Each update shifts h left by one, so the contribution of a byte is gone
// after 64 further updates: once at least 64 bytes of a chunk have been
// hashed, h is a function of the last 64 bytes only. The rule never tests
// h before the chunk holds MinSize bytes, i.e. at offsets below MinSize-1.
// Starting from h = 0 at offset MinSize-65 hashes 65 bytes before the first
// test, so at every tested offset h equals the hash of the reference that
// hashes every byte from the chunk start. Matches that the warm-up bytes
// would give are at offsets the rule does not test either. A cut depends on
// at most MaxSize bytes from the chunk start, so a stream chunker that
// buffers MaxSize bytes (or reaches EOF) before cutting finds the same
// boundaries whatever the read sizes. The tests check all of this against a
// hash-every-byte reference on random and adversarial inputs.
package chunking
