package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// trickle opens a raw connection, sends head (request line and headers)
// and then one byte of body every 50 ms until the connection breaks or
// stop is closed. It returns the connection and a reader on it.
func trickle(t *testing.T, addr, head string, stop <-chan struct{}) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte("a")); err != nil {
				return
			}
		}
	}()
	return c, bufio.NewReader(c)
}

// A paths-info body trickled one byte at a time is cut at the body
// deadline with 408, before anything goes upstream, and the connection is
// closed.
func TestSlowBodyTimesOut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := newWriteFixture(t, func(c *Config) { c.BodyTimeout = timeout })
	addr := strings.TrimPrefix(f.front.URL, "http://")
	// the premise: the same request sent at once is answered
	res, b := send(t, "POST", f.front.URL+"/api/models/org/w/paths-info/main", `{"paths":["a.txt"]}`, "Content-Type", "application/json")
	if res.StatusCode != 200 || !strings.Contains(string(b), "a.txt") {
		t.Fatalf("paths-info sent at once: %d %s", res.StatusCode, b)
	}
	f.fh.ResetStats()

	for _, te := range []string{"Content-Length: 1000", "Transfer-Encoding: chunked"} {
		stop := make(chan struct{})
		head := "POST /api/models/org/w/paths-info/main HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Proxy-Key: " + roKey + "\r\n" + te + "\r\n\r\n"
		if strings.HasPrefix(te, "Transfer") {
			head += "1000\r\n" // one chunk announced, its bytes trickled
		}
		start := time.Now()
		c, br := trickle(t, addr, head, stop)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: no answer to a trickled body: %v", te, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		took := time.Since(start)
		if res.StatusCode != http.StatusRequestTimeout || res.Header.Get("X-Error-Code") != "RequestTimeout" || took < timeout || took > 5*time.Second {
			t.Errorf("%s: %d %q after %v, want 408 RequestTimeout after about %v", te, res.StatusCode, res.Header.Get("X-Error-Code"), took, timeout)
		}
		// closed: EOF, or a reset when the trickle hit the closed socket
		if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: connection still open after the 408: %v", te, err)
		}
		close(stop)
	}
	if n := len(f.fh.Requests()); n != 0 {
		t.Errorf("the Hub saw %d requests", n)
	}
}

// A body nobody reads (a refused write, a GET with a body) gets its answer
// at once and cannot hold the connection past the body deadline: without
// a deadline the server's discard of the unread body would wait for the
// trickle forever, before even sending the answer.
func TestUnreadSlowBodyReleased(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := newWriteFixture(t, func(c *Config) { c.BodyTimeout = timeout })
	f.fh.ResetStats()
	addr := strings.TrimPrefix(f.front.URL, "http://")
	for _, target := range []string{"POST /api/models/org/w/commit/main", "GET /api/models/org/w", "GET /health"} {
		stop := make(chan struct{})
		start := time.Now()
		c, br := trickle(t, addr, target+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", stop)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: no answer: %v", target, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s: answered after %v", target, took)
		}
		_, err = br.ReadByte()
		if took := time.Since(start); err == nil || errors.Is(err, os.ErrDeadlineExceeded) || took > 5*time.Second {
			t.Errorf("%s: connection held %v (%v) while the body trickles", target, took, err)
		}
		close(stop)
	}
	if reqs := f.fh.Requests(); len(reqs) != 1 || reqs[0].BytesIn != 0 {
		t.Errorf("the Hub saw %d requests, want the one GET without a body", len(reqs))
	}
}

// A body over maxRequestBody is refused with 413, not buffered.
func TestLargeBodyRefused(t *testing.T) {
	f := newWriteFixture(t, nil)
	f.fh.ResetStats()
	c, err := net.Dial("tcp", strings.TrimPrefix(f.front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := maxRequestBody + 10
	go func() {
		io.WriteString(c, "POST /api/models/org/w/paths-info/main HTTP/1.1\r\nHost: x\r\nContent-Length: "+itoa(int64(n))+"\r\n\r\n")
		c.Write(make([]byte, n))
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("body of %d bytes: %d, want 413", n, res.StatusCode)
	}
	if k := len(f.fh.Requests()); k != 0 {
		t.Errorf("the Hub saw %d requests", k)
	}
}
