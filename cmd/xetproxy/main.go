// Command xetproxy serves Hugging Face Xet-stored files as plain HTTP and
// offers the tools around it (hash, ls, download, fakehub, demo).
package main

import (
	"os"
)

func main() {
	stop := startCPUProfile()
	code := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
