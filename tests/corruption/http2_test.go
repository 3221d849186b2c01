package corruption

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/xetproxy/xetproxy/internal/engineconf"
	"github.com/xetproxy/xetproxy/internal/server"
)

// TestCorruptHTTP2: over HTTP/2 (TLS), where there is no connection to
// cut per request, a whole file whose last chunk is damaged (raw, so it
// decodes) ends with a reset stream, never as a complete answer; healed,
// the same client gets the file.
func TestCorruptHTTP2(t *testing.T) {
	t.Parallel()
	f := newFile(t, schemes[0])
	for _, mode := range []cacheMode{noCache, diskCache} {
		t.Run(string(mode), func(t *testing.T) {
			st := newStack(t, mode)
			log := slog.New(slog.DiscardHandler)
			eng, closeEng, err := engineconf.New(st.cfg.Engine(http.DefaultTransport.(*http.Transport).Clone(), log))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { closeEng() })
			srv, err := server.New(server.Options{Config: st.cfg, Engine: eng, Logger: log, Version: "test"})
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewUnstartedServer(srv.Handler())
			ts.EnableHTTP2 = true
			ts.StartTLS()
			t.Cleanup(ts.Close)
			c := ts.Client()
			get := func() (*http.Response, []byte, error) {
				req, _ := http.NewRequestWithContext(context.Background(), "GET", ts.URL+f.downloadPath(), nil)
				res, err := c.Do(req)
				if err != nil {
					return nil, nil, err
				}
				defer res.Body.Close()
				b, err := io.ReadAll(res.Body)
				return res, b, err
			}
			corr := corrupt(t, f, len(f.chunks)-1)
			res, body, err := get()
			if res != nil && res.ProtoMajor != 2 {
				t.Fatalf("premise: answered over HTTP/%d", res.ProtoMajor)
			}
			if err == nil && res.StatusCode == http.StatusOK && bytes.Equal(body, f.data) {
				t.Fatal("premise: the damaged file came out right")
			}
			if err == nil && res.StatusCode == http.StatusOK {
				t.Fatalf("a complete HTTP/2 answer of %d wrong bytes", len(body))
			}
			heal(t, f, corr)
			res, body, err = get()
			if err != nil || res.StatusCode != http.StatusOK || res.ProtoMajor != 2 || !bytes.Equal(body, f.data) {
				t.Fatalf("healed: %v, %v, %d bytes", res, err, len(body))
			}
		})
	}
}
