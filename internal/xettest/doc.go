// Package xettest loads the Xet known-answer vectors kept in
// testdata/xet-vectors.json (copied from the protocol reference) and
// regenerates the inputs they describe. It is imported by tests only.
package xettest
