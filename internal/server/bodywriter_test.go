package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// A client that stops reading fails the writes after the stall timeout,
// with a deadline error (the download is then aborted as "stall"), instead
// of blocking the handler for ever.
func TestBodyWriterStalledClient(t *testing.T) {
	errc := make(chan error, 1)
	var written int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &bodyWriter{w: w, rc: http.NewResponseController(w), stall: 200 * time.Millisecond, left: 1 << 40}
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 64<<10)
		for {
			if _, err := cw.Write(chunk); err != nil {
				written = cw.n
				errc <- err
				return
			}
		}
	}))
	defer ts.Close()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	// Read the status line, then nothing more.
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write error %v, want a deadline error", err)
		}
		if written <= 0 {
			t.Fatalf("%d bytes written before the stall", written)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the writes never failed")
	}
}

// More bytes than the response announced: the allowed ones go out, then
// errTooLong (an upstream failure), and nothing after.
func TestBodyWriterExcess(t *testing.T) {
	type result struct {
		n1, n2  int
		e1, e2  error
		written int64
	}
	rc := make(chan result, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &bodyWriter{w: w, rc: http.NewResponseController(w), stall: time.Minute, left: 5}
		var res result
		res.n1, res.e1 = cw.Write([]byte("abc"))
		res.n2, res.e2 = cw.Write([]byte("defgh"))
		res.written = cw.n
		rc <- res
	}))
	defer ts.Close()
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	res := <-rc
	if res.n1 != 3 || res.e1 != nil || res.n2 != 2 || res.e2 != errTooLong || res.written != 5 {
		t.Fatalf("writes %d %v, %d %v, written %d", res.n1, res.e1, res.n2, res.e2, res.written)
	}
	if string(body) != "abcde" {
		t.Fatalf("client got %q", body)
	}
}
