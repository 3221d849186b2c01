package cachetest

import (
	"bytes"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// VersitygwInstall is how scripts/test.sh installs versitygw.
const VersitygwInstall = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// Versity starts versitygw, a real S3 server on a local folder that checks
// every request's SigV4 signature against the root credentials key and
// secret, over a fresh folder holding the empty bucket bucket. It returns
// the server's URL and the bucket's folder (one file per object). The
// server is killed when the test ends. Without the binary (in PATH or
// GOPATH/bin) the test is skipped, or fails under CI=true, where
// scripts/test.sh must have installed it.
func Versity(t testing.TB, key, secret, bucket string) (url, bucketDir string) {
	t.Helper()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		bin = filepath.Join(build.Default.GOPATH, "bin", "versitygw")
		if _, serr := os.Stat(bin); serr != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("versitygw not found in PATH or %s under CI=true: scripts/test.sh installs it (%s)", bin, VersitygwInstall)
			}
			t.Skipf("versitygw not installed (%s; scripts/test.sh does it): this test needs a real S3 server", VersitygwInstall)
		}
	}
	root := t.TempDir()
	bucketDir = filepath.Join(root, bucket)
	if err := os.Mkdir(bucketDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out bytes.Buffer
	cmd := exec.Command(bin, "--access", key, "--secret", secret, "--port", addr, "--quiet", "posix", root)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("versitygw exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw does not listen on %s after 20 s: %s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + addr, bucketDir
}

// BucketFiles lists the objects under a versitygw bucket folder, as paths
// relative to it (the object keys).
func BucketFiles(t testing.TB, dir string) []string {
	t.Helper()
	var keys []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, rerr := filepath.Rel(dir, path)
			if rerr != nil {
				return rerr
			}
			keys = append(keys, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
