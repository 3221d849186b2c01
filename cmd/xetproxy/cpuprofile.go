package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
)

// startCPUProfile writes a CPU profile of the whole process to the file
// that $XETPROXY_CPUPROFILE names, if set, until the returned function is
// called (at exit): for measuring where a server spends its CPU per byte
// (docs/performance-server.md). "%p" in the name stands for the process
// id, so that several servers of one benchmark keep their own profiles.
// Unset, it does nothing.
func startCPUProfile() (stop func()) {
	path := os.Getenv("XETPROXY_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	path = strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "xetproxy: XETPROXY_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
