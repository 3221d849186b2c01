package main

import (
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"testing"
)

// $XETPROXY_CPUPROFILE names the profile file, %p standing for the process
// id; unset, no profile is written.
func TestCPUProfileEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XETPROXY_CPUPROFILE", "")
	startCPUProfile()()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files written without the variable: %v", ents)
	}
	t.Setenv("XETPROXY_CPUPROFILE", filepath.Join(dir, "cpu-%p.prof"))
	stop := startCPUProfile()
	stop()
	b, err := os.ReadFile(filepath.Join(dir, "cpu-"+strconv.Itoa(os.Getpid())+".prof"))
	if err != nil || len(b) == 0 {
		t.Fatalf("profile: %d bytes, %v", len(b), err)
	}
	// The profiler is free again: the profile was stopped.
	if err := pprof.StartCPUProfile(new(nopWriter)); err != nil {
		t.Fatalf("profiling still running: %v", err)
	}
	pprof.StopCPUProfile()
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
