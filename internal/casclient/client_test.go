package casclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/reconstruction"
	"github.com/xetproxy/xetproxy/internal/upstream"
)

// The tests run real HTTP servers (httptest) that answer canned protocol
// messages and inject faults; nothing of ours is mocked.

func testClient(t *testing.T, tweak ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Backoff:      Backoff{Attempts: 4, Base: time.Millisecond, Max: 200 * time.Millisecond},
		StallTimeout: 5 * time.Second,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var fileHash = merklehash.Hash{1, 2, 3}

const v2Answer = `{"offset_into_first_range":3,"terms":[{"hash":"0000000000000007000000000000000000000000000000000000000000000000","unpacked_length":100,"range":{"start":0,"end":2}}],` +
	`"xorbs":{"0000000000000007000000000000000000000000000000000000000000000000":[{"url":"http://x/a?sig=1","ranges":[{"chunks":{"start":0,"end":2},"bytes":{"start":0,"end":99}}]}]}}`

const v1Answer = `{"offset_into_first_range":3,"terms":[{"hash":"0000000000000007000000000000000000000000000000000000000000000000","unpacked_length":100,"range":{"start":0,"end":2}}],` +
	`"fetch_info":{"0000000000000007000000000000000000000000000000000000000000000000":[{"range":{"start":0,"end":2},"url":"http://x/a?sig=1","url_range":{"start":0,"end":99}}]}}`

// casServer counts requests per path and lets each test decide the answer.
type casServer struct {
	*httptest.Server
	mu    sync.Mutex
	count map[string]int
}

func newCAS(t *testing.T, h func(w http.ResponseWriter, r *http.Request, n int)) *casServer {
	s := &casServer{count: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.count[r.URL.Path]++
		n := s.count[r.URL.Path]
		s.mu.Unlock()
		h(w, r, n)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *casServer) hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[path]
}

func TestReconstructV2(t *testing.T) {
	s := newCAS(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Range") != "bytes=5-104" ||
			r.URL.Path != "/v2/reconstructions/"+fileHash.String() {
			http.Error(w, "bad request "+r.URL.Path, 400)
			return
		}
		io.WriteString(w, v2Answer)
	})
	c := testClient(t)
	got, err := c.Reconstruct(context.Background(), StaticAuth(s.URL+"/", "tok"), fileHash, &reconstruction.ByteRange{Start: 5, End: 104})
	if err != nil {
		t.Fatal(err)
	}
	if got.OffsetIntoFirstRange != 3 || len(got.Terms) != 1 || len(got.Xorbs) != 1 {
		t.Fatalf("answer %+v", got)
	}
}

func TestReconstructFallsBackToV1AndRemembers(t *testing.T) {
	for _, code := range []int{404, 501} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			s := newCAS(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if strings.HasPrefix(r.URL.Path, "/v2/") {
					w.WriteHeader(code)
					return
				}
				io.WriteString(w, v1Answer)
			})
			c := testClient(t)
			for range 3 {
				got, err := c.Reconstruct(context.Background(), StaticAuth(s.URL, "tok"), fileHash, nil)
				if err != nil {
					t.Fatal(err)
				}
				fe := got.Xorbs[got.Terms[0].Hash]
				if len(fe) != 1 || fe[0].Ranges[0].Bytes.End != 99 {
					t.Fatalf("v1 not converted: %+v", got)
				}
			}
			v2 := s.hits("/v2/reconstructions/" + fileHash.String())
			v1 := s.hits("/v1/reconstructions/" + fileHash.String())
			if v2 != 1 || v1 != 3 {
				t.Fatalf("v2 asked %d times, v1 %d times; want 1 and 3", v2, v1)
			}
		})
	}
}

func TestReconstructNotFoundIsNotRememberedAsV1(t *testing.T) {
	s := newCAS(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("X-Error-Message", "file not found")
		w.WriteHeader(404)
	})
	c := testClient(t)
	for range 2 {
		_, err := c.Reconstruct(context.Background(), StaticAuth(s.URL, "tok"), fileHash, nil)
		if !errors.Is(err, ErrNotFound) || Retryable(err) {
			t.Fatalf("err = %v", err)
		}
	}
	if v2 := s.hits("/v2/reconstructions/" + fileHash.String()); v2 != 2 {
		t.Fatalf("v2 asked %d times, want 2", v2)
	}
}

func TestReconstructStatuses(t *testing.T) {
	cases := []struct {
		name    string
		answers []int // status per attempt; 200 answers v2Answer
		retryAf string
		want    error // nil = success
		calls   int
	}{
		{"416", []int{416}, "", ErrRangeNotSatisfiable, 1},
		{"503 burst", []int{503, 502, 500, 200}, "", nil, 4},
		{"429 retry-after", []int{429, 200}, "0", nil, 2},
		{"408", []int{408, 200}, "", nil, 2},
		{"too many 503", []int{503, 503, 503, 503, 200}, "", errSentinel503, 4},
		{"retry-after too long", []int{429, 200}, "3600", errSentinel429, 1},
		{"403 scope", []int{403}, "", ErrForbidden, 1},
		{"400", []int{400}, "", errSentinel400, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newCAS(t, func(w http.ResponseWriter, r *http.Request, n int) {
				code := tc.answers[min(n, len(tc.answers))-1]
				if code == 200 {
					io.WriteString(w, v2Answer)
					return
				}
				if tc.retryAf != "" {
					w.Header().Set("Retry-After", tc.retryAf)
				}
				w.WriteHeader(code)
			})
			c := testClient(t)
			_, err := c.Reconstruct(context.Background(), StaticAuth(s.URL, "tok"), fileHash, nil)
			switch want := tc.want; {
			case want == nil && err != nil:
				t.Fatalf("err = %v", err)
			case want != nil && !matches(err, want):
				t.Fatalf("err = %v, want %v", err, want)
			}
			if got := s.hits("/v2/reconstructions/" + fileHash.String()); got != tc.calls {
				t.Fatalf("%d calls, want %d", got, tc.calls)
			}
		})
	}
}

var (
	errSentinel503 = errors.New("503")
	errSentinel429 = errors.New("429")
	errSentinel400 = errors.New("400")
)

func matches(err, want error) bool {
	var se *StatusError
	switch want {
	case errSentinel503, errSentinel429, errSentinel400:
		return errors.As(err, &se) && strconv.Itoa(se.Code) == want.Error()
	}
	return errors.Is(err, want)
}

func TestReconstructRefreshesTokenOn401(t *testing.T) {
	s := newCAS(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Authorization") != "Bearer fresh" {
			w.WriteHeader(401)
			return
		}
		io.WriteString(w, v2Answer)
	})
	var rejected []string
	auth := func(_ context.Context, rej string) (string, string, error) {
		rejected = append(rejected, rej)
		if rej == "" && len(rejected) == 1 {
			return s.URL, "stale", nil
		}
		return s.URL, "fresh", nil
	}
	c := testClient(t)
	if _, err := c.Reconstruct(context.Background(), auth, fileHash, nil); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rejected) != "[ stale]" {
		t.Fatalf("auth calls %q", rejected)
	}
	// A token refused twice is an error, not a loop.
	_, err := c.Reconstruct(context.Background(), StaticAuth(s.URL, "bad"), fileHash, nil)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
}

func TestReconstructAuthErrorPassesThrough(t *testing.T) {
	boom := errors.New("hub says no")
	c := testClient(t)
	_, err := c.Reconstruct(context.Background(), func(context.Context, string) (string, string, error) {
		return "", "", boom
	}, fileHash, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

func TestReconstructRejectsHugeAndBadAnswers(t *testing.T) {
	s := newCAS(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Query().Get("bad") != "" {
			io.WriteString(w, `{"terms":[{"hash":"nothex"}]}`)
			return
		}
		w.Write(bytes.Repeat([]byte(" "), 4097))
	})
	c := testClient(t)
	c.maxAnswer = 4096
	_, err := c.Reconstruct(context.Background(), StaticAuth(s.URL, "tok"), fileHash, nil)
	if !errors.Is(err, ErrBadResponse) || Retryable(err) {
		t.Fatalf("huge: %v", err)
	}
	_, err = c.Reconstruct(context.Background(), StaticAuth(s.URL+"/?bad=1", "tok"), fileHash, nil)
	if err == nil || Retryable(err) {
		t.Fatalf("bad hash: %v", err)
	}
}

func TestFileSize(t *testing.T) {
	s := newCAS(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Method != http.MethodHead || r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(400)
			return
		}
		if r.URL.Path == "/v1/files/"+fileHash.String() {
			w.Header().Set("Content-Length", "123456789")
			return
		}
		w.WriteHeader(404)
	})
	c := testClient(t)
	n, err := c.FileSize(context.Background(), StaticAuth(s.URL, "tok"), fileHash)
	if err != nil || n != 123456789 {
		t.Fatalf("size %d err %v", n, err)
	}
	if _, err := c.FileSize(context.Background(), StaticAuth(s.URL, "tok"), merklehash.Hash{9}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

// xorbServer serves object bytes at /obj with Range support and faults.
type xorbServer struct {
	*httptest.Server
	data      []byte
	requests  atomic.Int64
	sawAuth   atomic.Bool
	onRequest func(w http.ResponseWriter, r *http.Request, n int) bool // true: handled
}

func newXorbServer(t *testing.T, data []byte) *xorbServer {
	x := &xorbServer{data: data}
	x.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(x.requests.Add(1))
		if r.Header.Get("Authorization") != "" {
			x.sawAuth.Store(true)
			w.WriteHeader(400)
			return
		}
		if x.onRequest != nil && x.onRequest(w, r, n) {
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(x.data))
	}))
	t.Cleanup(x.Close)
	return x
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/256)
	}
	return b
}

func readRange(t *testing.T, c *Client, url string, r reconstruction.ByteRange, refresh RefreshFunc) ([]byte, error) {
	t.Helper()
	body, err := c.FetchRange(context.Background(), url, r, refresh)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(body)
}

func TestFetchRange(t *testing.T) {
	data := pattern(1 << 20)
	x := newXorbServer(t, data)
	c := testClient(t)
	r := reconstruction.ByteRange{Start: 1000, End: 500000}
	got, err := readRange(t, c, x.URL+"/obj?sig=secret", r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[1000:500001]) {
		t.Fatal("bytes differ")
	}
}

func TestFetchRangeNeverSendsAuthorization(t *testing.T) {
	data := pattern(4096)
	x := newXorbServer(t, data)
	// Even a client whose API side carries a token sends none to transfers.
	c := testClient(t, func(cfg *Config) {
		cfg.API = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r.Header.Set("Authorization", "Bearer leak")
			return http.DefaultTransport.RoundTrip(r)
		})}
	})
	if _, err := readRange(t, c, x.URL+"/obj", reconstruction.ByteRange{Start: 0, End: 99}, nil); err != nil {
		t.Fatal(err)
	}
	if x.sawAuth.Load() {
		t.Fatal("Authorization header reached the presigned URL")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A body cut short is resumed: the second request skips what was delivered.
func TestFetchRangeResumesTruncatedBodies(t *testing.T) {
	data := pattern(300000)
	x := newXorbServer(t, data)
	x.onRequest = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n > 2 {
			return false
		}
		// Promise the whole range, send a third of it, then hang up.
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(206)
		w.Write(data[:len(data)/3*n])
		panic(http.ErrAbortHandler)
	}
	c := testClient(t)
	got, err := readRange(t, c, x.URL+"/obj", reconstruction.ByteRange{Start: 0, End: uint64(len(data) - 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ after resume")
	}
	if n := x.requests.Load(); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
}

func TestFetchRangeGivesUpAfterAttempts(t *testing.T) {
	data := pattern(1000)
	x := newXorbServer(t, data)
	x.onRequest = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.Header().Set("Content-Range", "bytes 0-999/1000")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(206)
		w.Write(data[:10])
		panic(http.ErrAbortHandler)
	}
	c := testClient(t)
	_, err := readRange(t, c, x.URL+"/obj", reconstruction.ByteRange{Start: 0, End: 999}, nil)
	var te *TransportError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v", err)
	}
	if n := x.requests.Load(); n != 4 {
		t.Fatalf("%d requests, want 4 (the attempt budget)", n)
	}
}

func TestFetchRangeRefreshesOn403(t *testing.T) {
	data := pattern(5000)
	x := newXorbServer(t, data)
	x.onRequest = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.URL.Query().Get("sig") != "fresh" {
			w.WriteHeader(403)
			return true
		}
		return false
	}
	c := testClient(t)
	refreshes := 0
	refresh := func(context.Context) (string, error) {
		refreshes++
		return x.URL + "/obj?sig=fresh", nil
	}
	got, err := readRange(t, c, x.URL+"/obj?sig=old", reconstruction.ByteRange{Start: 10, End: 19}, refresh)
	if err != nil || !bytes.Equal(got, data[10:20]) || refreshes != 1 {
		t.Fatalf("err %v refreshes %d", err, refreshes)
	}
	// Without a refresher a 403 is ErrURLRejected, and the signature stays secret.
	_, err = readRange(t, c, x.URL+"/obj?sig=old", reconstruction.ByteRange{Start: 10, End: 19}, nil)
	if !errors.Is(err, ErrURLRejected) || Retryable(err) || strings.Contains(err.Error(), "sig=") {
		t.Fatalf("err = %v", err)
	}
	// A refresher that keeps handing out refused URLs is bounded.
	refreshes = 0
	_, err = readRange(t, c, x.URL+"/obj?sig=old", reconstruction.ByteRange{Start: 10, End: 19},
		func(context.Context) (string, error) { refreshes++; return x.URL + "/obj?sig=old2", nil })
	if !errors.Is(err, ErrURLRejected) || refreshes != 2 {
		t.Fatalf("err = %v after %d refreshes", err, refreshes)
	}
}

// A 403 in the middle of a resumed transfer refreshes the URL and the
// stream continues where it stopped.
func TestFetchRangeRefreshMidStream(t *testing.T) {
	data := pattern(200000)
	x := newXorbServer(t, data)
	x.onRequest = func(w http.ResponseWriter, r *http.Request, n int) bool {
		switch {
		case n == 1:
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(206)
			w.Write(data[:70000])
			panic(http.ErrAbortHandler)
		case r.URL.Query().Get("sig") != "new":
			w.WriteHeader(403)
			return true
		}
		return false
	}
	c := testClient(t)
	got, err := readRange(t, c, x.URL+"/obj?sig=old", reconstruction.ByteRange{Start: 0, End: uint64(len(data) - 1)},
		func(context.Context) (string, error) { return x.URL + "/obj?sig=new", nil })
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("err %v, equal %v", err, bytes.Equal(got, data))
	}
}

func TestFetchRangeWholeObjectAnswer(t *testing.T) {
	data := pattern(10000)
	x := newXorbServer(t, data)
	x.onRequest = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.Write(data) // 200, Range ignored
		return true
	}
	c := testClient(t)
	got, err := readRange(t, c, x.URL+"/obj", reconstruction.ByteRange{Start: 500, End: 699}, nil)
	if err != nil || !bytes.Equal(got, data[500:700]) {
		t.Fatalf("err %v", err)
	}
}

func TestFetchRangeWrongContentRange(t *testing.T) {
	data := pattern(10000)
	x := newXorbServer(t, data)
	x.onRequest = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.Header().Set("Content-Range", "bytes 0-99/10000")
		w.WriteHeader(206)
		w.Write(data[:100])
		return true
	}
	c := testClient(t)
	_, err := readRange(t, c, x.URL+"/obj", reconstruction.ByteRange{Start: 100, End: 199}, nil)
	if !errors.Is(err, ErrBadResponse) {
		t.Fatalf("err = %v", err)
	}
}

func TestFetchRangeStallIsDetectedAndRetried(t *testing.T) {
	data := pattern(100000)
	x := newXorbServer(t, data)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	x.onRequest = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n > 1 {
			return false
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(206)
		w.Write(data[:1000])
		w.(http.Flusher).Flush()
		select { // go silent
		case <-release:
		case <-r.Context().Done():
		}
		return true
	}
	c := testClient(t, func(cfg *Config) { cfg.StallTimeout = 100 * time.Millisecond })
	body, err := c.FetchRange(context.Background(), x.URL+"/obj", reconstruction.ByteRange{Start: 0, End: uint64(len(data) - 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	// A slow consumer is not a stall: wait longer than the timeout between reads.
	first := make([]byte, 500)
	if _, err := io.ReadFull(body, first); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	rest, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(first, rest...), data) {
		t.Fatal("bytes differ")
	}
	if n := x.requests.Load(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestFetchRangeCancel(t *testing.T) {
	x := newXorbServer(t, nil)
	x.onRequest = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.WriteHeader(503)
		return true
	}
	c := testClient(t, func(cfg *Config) { cfg.Backoff = Backoff{Attempts: 100, Base: time.Hour, Max: time.Hour} })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := c.FetchRange(ctx, x.URL+"/obj", reconstruction.ByteRange{Start: 0, End: 9}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// multipartServer answers multi-range requests in the shape the test picks.
func writeMultipart(w http.ResponseWriter, data []byte, parts [][2]int) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", p[0], p[1], len(data)))
		pw, _ := mw.CreatePart(h)
		pw.Write(data[p[0] : p[1]+1])
	}
	mw.Close()
	w.Header().Set("Content-Type", "multipart/byteranges; boundary="+mw.Boundary())
	w.WriteHeader(206)
	w.Write(buf.Bytes())
}

func TestFetchRanges(t *testing.T) {
	data := pattern(50000)
	ranges := []reconstruction.ByteRange{{Start: 10, End: 19}, {Start: 100, End: 4099}, {Start: 30000, End: 49999}}
	cases := map[string]func(w http.ResponseWriter){
		"one part per range": func(w http.ResponseWriter) { writeMultipart(w, data, [][2]int{{10, 19}, {100, 4099}, {30000, 49999}}) },
		"coalesced parts":    func(w http.ResponseWriter) { writeMultipart(w, data, [][2]int{{0, 4099}, {30000, 49999}}) },
		"single 206": func(w http.ResponseWriter) {
			w.Header().Set("Content-Range", "bytes 10-49999/50000")
			w.WriteHeader(206)
			w.Write(data[10:])
		},
		"200 whole object": func(w http.ResponseWriter) { w.Write(data) },
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			x := newXorbServer(t, data)
			x.onRequest = func(w http.ResponseWriter, r *http.Request, n int) bool {
				if r.Header.Get("Range") != "bytes=10-19,100-4099,30000-49999" {
					w.WriteHeader(400)
					return true
				}
				answer(w)
				return true
			}
			c := testClient(t)
			parts, err := c.FetchRanges(context.Background(), x.URL+"/obj", ranges, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer parts.Close()
			for i := 0; ; i++ {
				r, body, err := parts.Next()
				if err == io.EOF {
					if i != len(ranges) {
						t.Fatalf("EOF after %d parts", i)
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if r != ranges[i] {
					t.Fatalf("part %d is %+v", i, r)
				}
				if i == 1 { // leave part of a section unread: Next skips the rest
					b := make([]byte, 10)
					io.ReadFull(body, b)
					continue
				}
				got, err := io.ReadAll(body)
				if err != nil || !bytes.Equal(got, data[r.Start:r.End+1]) {
					t.Fatalf("part %d: err %v", i, err)
				}
			}
		})
	}
}

func TestFetchRangesBadAnswers(t *testing.T) {
	data := pattern(50000)
	ranges := []reconstruction.ByteRange{{Start: 10, End: 19}, {Start: 100, End: 199}}
	cases := map[string]func(w http.ResponseWriter){
		"missing part": func(w http.ResponseWriter) { writeMultipart(w, data, [][2]int{{10, 19}}) },
		"wrong order":  func(w http.ResponseWriter) { writeMultipart(w, data, [][2]int{{100, 199}, {10, 19}}) },
		"short single": func(w http.ResponseWriter) {
			w.Header().Set("Content-Range", "bytes 10-19/50000")
			w.WriteHeader(206)
			w.Write(data[10:20])
		},
		"part too short": func(w http.ResponseWriter) { writeMultipart(w, data, [][2]int{{10, 19}, {100, 150}}) },
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			x := newXorbServer(t, data)
			x.onRequest = func(w http.ResponseWriter, r *http.Request, n int) bool { answer(w); return true }
			c := testClient(t)
			parts, err := c.FetchRanges(context.Background(), x.URL+"/obj", ranges, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer parts.Close()
			var last error
			for {
				_, body, err := parts.Next()
				if err != nil {
					last = err
					break
				}
				if _, err := io.ReadAll(body); err != nil {
					last = err
					break
				}
			}
			if last == io.EOF || last == nil {
				t.Fatal("bad answer accepted")
			}
		})
	}
	c := testClient(t)
	if _, err := c.FetchRanges(context.Background(), "http://x", []reconstruction.ByteRange{{Start: 5, End: 9}, {Start: 0, End: 3}}, nil); err == nil {
		t.Fatal("descending ranges accepted")
	}
}

func TestClassification(t *testing.T) {
	cases := []struct {
		err       error
		retryable bool
		timeout   bool
	}{
		{&StatusError{Op: opReconstruct, Code: 500}, true, false},
		{&StatusError{Op: opReconstruct, Code: 501}, false, false},
		{&StatusError{Op: opReconstruct, Code: 504}, true, true},
		{&StatusError{Op: opReconstruct, Code: 429}, true, false},
		{&StatusError{Op: opReconstruct, Code: 404}, false, false},
		{&StatusError{Op: opFetch, Code: 403}, false, false},
		{&TransportError{Op: opFetch, Err: io.ErrUnexpectedEOF}, true, false},
		{&TransportError{Op: opFetch, Err: ErrStalled}, true, true},
		{fmt.Errorf("x: %w", context.Canceled), false, false},
		{context.DeadlineExceeded, false, true},
		{&json.SyntaxError{}, true, false},
		{errors.New("other"), false, false},
	}
	for _, tc := range cases {
		if Retryable(tc.err) != tc.retryable || Timeout(tc.err) != tc.timeout {
			t.Errorf("%v: retryable %v timeout %v", tc.err, Retryable(tc.err), Timeout(tc.err))
		}
	}
	if got := upstream.Redact("https://u:p@cas.example/x/y?Signature=abc&Key-Pair-Id=k#f"); got != "https://cas.example/x/y" {
		t.Errorf("redact: %s", got)
	}
	if d := upstream.RetryAfter("7", time.Now()); d != 7*time.Second {
		t.Errorf("retry-after seconds: %v", d)
	}
	now := time.Now()
	if d := upstream.RetryAfter(now.Add(90*time.Second).UTC().Format(http.TimeFormat), now); d < 80*time.Second || d > 91*time.Second {
		t.Errorf("retry-after date: %v", d)
	}
	b := Backoff{Attempts: 5, Base: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	for k := range 10 {
		d, ok := b.delay(k, 0)
		if !ok || d <= 0 || d > 40*time.Millisecond {
			t.Errorf("delay(%d) = %v %v", k, d, ok)
		}
	}
	if _, ok := b.delay(0, time.Minute); ok {
		t.Error("retry-after beyond Max accepted")
	}
}
