// Command xetproxy serves Hugging Face Xet-stored files as plain HTTP and
// offers the tools around it (hash, ls, download, fakehub, demo).
package main

import (
	"os"

	"github.com/xetproxy/xetproxy/internal/cpulimit"
)

// cpuFit is what cpulimit.Fit found and did at start, for serve to log.
var cpuFit struct {
	r   cpulimit.Result
	err error
}

func main() {
	cpuFit.r, cpuFit.err = cpulimit.Fit()
	stop := startCPUProfile()
	code := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
