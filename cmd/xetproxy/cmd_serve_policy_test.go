package main

import (
	"strings"
	"testing"
)

// A bad repo glob stops serve before it listens, naming the glob.
func TestServeRefusesBadRepoGlob(t *testing.T) {
	t.Setenv("XETPROXY_ALLOW", "")
	t.Setenv("XETPROXY_DENY", "dataset/ok/*,spaces/*")
	var out, errb serveTestBuffer
	code := run([]string{"serve", "--listen", "127.0.0.1:0", "--allow", "model/[meta/*"}, strings.NewReader(""), &out, &errb)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d (%s)", code, exitUsage, errb.String())
	}
	for _, want := range []string{`allow: repo glob "model/[meta/*": malformed pattern`, `deny: repo glob "spaces/*": first segment matches no repo type`} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr %q does not say %q", errb.String(), want)
		}
	}
}
