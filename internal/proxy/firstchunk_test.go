package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
)

// A stream runs one upstream fetch until its first chunk is out: the
// fetches after it would compete with the first for the upstream and the
// CPU while the client waits for its first byte. Then they run in
// parallel as usual. With and without a cache (a fill delivers the first
// chunk then).
func TestStreamFirstChunkBeforeOtherFetches(t *testing.T) {
	for _, cached := range []bool{false, true} {
		name := "no cache"
		if cached {
			name = "cache"
		}
		t.Run(name, func(t *testing.T) {
			var xorbReqs atomic.Int32
			hold := make(chan struct{})
			wrap := func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasPrefix(r.URL.Path, "/cas/transfer/") && xorbReqs.Add(1) == 1 {
						<-hold // the first fetch waits for the test
					}
					h.ServeHTTP(w, r)
				})
			}
			e := newEnvWrapped(t, fakehub.Config{}, wrap, func(c *Config) {
				if !cached {
					c.Cache = nil
				}
			})
			e.repo(t, fakehub.RepoSpec{ID: "org/m"})
			data := randomData(7, 8<<20) // 8 blocks of 1 MiB, 4 fetches in parallel
			e.add(t, "org/m", "f.bin", data)
			m := e.stat(t, "", repoM, "f.bin")

			type result struct {
				b   []byte
				err error
			}
			done := make(chan result, 1)
			go func() {
				rc, err := e.eng.Open(context.Background(), "", m, 0, -1)
				if err != nil {
					done <- result{nil, err}
					return
				}
				defer rc.Close()
				b, err := io.ReadAll(rc)
				done <- result{b, err}
			}()
			for deadline := time.Now().Add(10 * time.Second); xorbReqs.Load() == 0; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					close(hold)
					t.Fatal("no xorb fetch started")
				}
			}
			// However long the first fetch is held, no other starts.
			time.Sleep(300 * time.Millisecond)
			n := xorbReqs.Load()
			close(hold)
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			if !bytes.Equal(r.b, data) {
				t.Fatal("wrong bytes")
			}
			if n != 1 {
				t.Errorf("%d xorb fetches started before the first chunk was out, want 1", n)
			}
			if total := xorbReqs.Load(); total < 2 {
				t.Errorf("%d xorb fetches in all: the file should take several", total)
			}
		})
	}
}
