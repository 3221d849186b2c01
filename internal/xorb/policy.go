package xorb

import (
	"fmt"
	"strings"
)

// Policy chooses the compression scheme of each chunk a writer stores. Any
// choice decodes everywhere; a chunk that compression does not shrink is
// always stored as SchemeNone.
type Policy uint8

// The compression policies.
const (
	// PolicyAuto compresses each chunk with both LZ4 and BG4+LZ4 and keeps
	// the smaller (LZ4 on a tie), as huggingface.js does.
	PolicyAuto Policy = iota
	// PolicyNone stores every chunk uncompressed.
	PolicyNone
	// PolicyLZ4 uses SchemeLZ4 for every chunk it shrinks.
	PolicyLZ4
	// PolicyBG4 uses SchemeBG4LZ4 for every chunk it shrinks.
	PolicyBG4
)

func (p Policy) String() string {
	switch p {
	case PolicyAuto:
		return "auto"
	case PolicyNone:
		return "none"
	case PolicyLZ4:
		return "lz4"
	case PolicyBG4:
		return "bg4"
	}
	return fmt.Sprintf("policy(%d)", uint8(p))
}

// ParsePolicy parses "auto", "none", "lz4" or "bg4" (also "bg4-lz4", the
// spelling of xet-core's HF_XET_XORB_COMPRESSION_POLICY), ignoring case.
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto":
		return PolicyAuto, nil
	case "none":
		return PolicyNone, nil
	case "lz4":
		return PolicyLZ4, nil
	case "bg4", "bg4-lz4", "bg4lz4":
		return PolicyBG4, nil
	}
	return 0, fmt.Errorf("xorb: unknown compression policy %q (want auto, none, lz4 or bg4)", s)
}
