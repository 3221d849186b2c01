// Package buildinfo holds the version stamped into the binary at build time
// with -ldflags "-X github.com/xetproxy/xetproxy/internal/buildinfo.version=v1.2.3".
package buildinfo

import "runtime/debug"

var version = ""

// Version returns the injected version, else the module version recorded by
// the Go toolchain, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
