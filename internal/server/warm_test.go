package server_test

// Cache warming end to end: fakehub and a xetproxy server (the real
// engine, a disk cache) on loopback sockets; what the warm jobs did
// upstream is read from fakehub's counters.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/fakehub"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/server/servertest"
	"github.com/xetproxy/xetproxy/internal/warm"
)

const (
	warmKey   = "warm-test-key-0123456789"
	warmToken = "hf_warm_secret_reader_token"
)

// warmHub is a fakehub on loopback whose connections a test can cut.
type warmHub struct {
	*fakehub.Hub
	ts *httptest.Server
}

func newWarmHub(t *testing.T) *warmHub {
	t.Helper()
	fh, err := fakehub.New(fakehub.Config{MaxXorbBytes: 1 << 20, Compression: "none"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fh)
	t.Cleanup(ts.Close)
	fh.SetPublicURL(ts.URL)
	return &warmHub{Hub: fh, ts: ts}
}

func (h *warmHub) add(t *testing.T, repo, path string, data []byte, s fakehub.Storage) fakehub.File {
	t.Helper()
	f, err := h.AddFile(context.Background(), repo, path, bytes.NewReader(data), s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (h *warmHub) class(c fakehub.Class) fakehub.Counter { return h.Stats()[c] }

// warmProxy is a running server with a disk cache and the proxy key
// warmKey; its log goes to log.
type warmProxy struct {
	t    *testing.T
	url  string
	srv  *server.Server
	log  *servertest.Buffer
	stop func() error
}

func startWarmProxy(t *testing.T, hubURL string, mod func(*server.Config)) *warmProxy {
	t.Helper()
	cfg := servertest.Config(t, hubURL)
	cfg.APIKeys = []string{warmKey}
	// long enough that a download right after a warm reuses its
	// authorisation (reconstruction) instead of asking again
	cfg.AuthTTL = 10 * time.Minute
	if mod != nil {
		mod(&cfg)
	}
	s := servertest.Start(t, cfg, servertest.Log("text", slog.LevelDebug), servertest.EngineLog())
	return &warmProxy{t: t, url: s.URL, srv: s.Srv, log: s.Log, stop: s.Stop}
}

// warmAnswer is the answer to a POST /admin/warm.
type warmAnswer struct {
	status int
	header http.Header
	body   []byte
	events []warm.Event
}

func (a warmAnswer) last() warm.Event {
	if len(a.events) == 0 {
		return warm.Event{}
	}
	return a.events[len(a.events)-1]
}

// files returns the file events of an answer by path (the last one of
// each path).
func (a warmAnswer) files() map[string]warm.Event {
	out := map[string]warm.Event{}
	for _, ev := range a.events {
		switch ev.Event {
		case warm.EventFileDone, warm.EventFileSkipped, warm.EventFileFailed:
			out[ev.Path] = ev
		}
	}
	return out
}

// do sends a request with the headers (key, value pairs) and returns the
// response, whose body the caller closes.
func (p *warmProxy) do(method, path string, body io.Reader, hdr ...string) *http.Response {
	p.t.Helper()
	req, err := http.NewRequest(method, p.url+path, body)
	if err != nil {
		p.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	return res
}

// post sends POST /admin/warm with the JSON body and headers (key, value
// pairs) and reads the whole answer.
func (p *warmProxy) post(body any, hdr ...string) warmAnswer {
	p.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		p.t.Fatal(err)
	}
	res := p.do(http.MethodPost, "/admin/warm", bytes.NewReader(b), append([]string{"Content-Type", "application/json"}, hdr...)...)
	defer res.Body.Close()
	a := warmAnswer{status: res.StatusCode, header: res.Header}
	if res.Header.Get("Content-Type") != "application/x-ndjson" {
		a.body, _ = io.ReadAll(res.Body)
		return a
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		var ev warm.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			p.t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		a.events = append(a.events, ev)
	}
	if err := sc.Err(); err != nil {
		p.t.Fatalf("reading the events: %v", err)
	}
	return a
}

// get sends GET path with the headers and reads the whole answer.
func (p *warmProxy) get(path string, hdr ...string) (int, []byte) {
	p.t.Helper()
	res := p.do(http.MethodGet, path, nil, hdr...)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	return res.StatusCode, b
}

func (p *warmProxy) jobs() []warm.Status {
	p.t.Helper()
	code, b := p.get("/admin/warm", "X-Proxy-Key", warmKey)
	if code != 200 {
		p.t.Fatalf("GET /admin/warm: %d %s", code, b)
	}
	var v struct{ Jobs []warm.Status }
	if err := json.Unmarshal(b, &v); err != nil {
		p.t.Fatal(err)
	}
	return v.Jobs
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWarmRefusedWithoutProxyKey(t *testing.T) {
	h := newWarmHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	h.add(t, "org/m", "w.bin", cacheTestData(1, 300000), fakehub.StorageXet)
	p := startWarmProxy(t, h.ts.URL, nil)
	h.ResetStats()
	body := map[string]any{"repo": "org/m"}
	for _, c := range []struct {
		name string
		hdr  []string
		code string
	}{
		{"no credentials", nil, "ProxyKeyRequired"},
		{"wrong X-Proxy-Key", []string{"X-Proxy-Key", "not-the-key-0123456789"}, "InvalidProxyKey"},
		{"a Hub token but no key", []string{"Authorization", "Bearer " + warmToken}, "ProxyKeyRequired"},
		{"wrong bearer key", []string{"Authorization", "Bearer " + warmKey + "x"}, "ProxyKeyRequired"},
	} {
		a := p.post(body, c.hdr...)
		if a.status != http.StatusUnauthorized || !strings.Contains(string(a.body), c.code) {
			t.Errorf("%s: %d %s, want 401 %s", c.name, a.status, a.body, c.code)
		}
		if code, b := p.get("/admin/warm", c.hdr...); code != http.StatusUnauthorized {
			t.Errorf("%s: GET %d %s, want 401", c.name, code, b)
		}
	}
	if n := h.Stats().Total().Requests; n != 0 {
		t.Errorf("refused warm requests reached upstream: %+v", h.Stats())
	}
	if jobs := p.jobs(); len(jobs) != 0 {
		t.Errorf("refused requests started jobs: %+v", jobs)
	}

	// A server with no API keys has no admin routes at all.
	open := startWarmProxy(t, h.ts.URL, func(c *server.Config) { c.APIKeys = nil })
	a := open.post(body, "X-Proxy-Key", warmKey)
	if a.status != http.StatusForbidden || !strings.Contains(string(a.body), "AdminDisabled") {
		t.Errorf("server without keys: %d %s", a.status, a.body)
	}
	if n := h.Stats().Total().Requests; n != 0 {
		t.Errorf("refused warm requests reached upstream: %+v", h.Stats())
	}
}

func TestWarmFillsTheCacheAndIsIdempotent(t *testing.T) {
	h := newWarmHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := map[string][]byte{
		"model-00001.safetensors": cacheTestData(1, 3<<20+17),
		"model-00002.safetensors": cacheTestData(2, 1<<20+5),
		"sub/extra.safetensors":   cacheTestData(3, 500000),
		"notes.bin":               cacheTestData(4, 200000),
		"config.json":             []byte(`{"a":1}`),
	}
	for path, b := range data {
		s := fakehub.StorageXet
		if path == "config.json" {
			s = fakehub.StoragePlain
		}
		h.add(t, "org/m", path, b, s)
	}
	p := startWarmProxy(t, h.ts.URL, nil)
	h.ResetStats()
	req := map[string]any{"repo": "org/m", "include": []string{"*.safetensors", "config.json"}, "exclude": []string{"sub/*"}}

	a := p.post(req, "X-Proxy-Key", warmKey)
	if a.status != 200 || len(a.events) < 2 {
		t.Fatalf("warm: %d %s", a.status, a.body)
	}
	if ev := a.events[0]; ev.Event != warm.EventJob || ev.Attached || ev.Job == nil || ev.Job.Repo != "org/m" || a.header.Get("X-Warm-Job") != ev.Job.ID {
		t.Fatalf("first event %+v, header %q", ev, a.header.Get("X-Warm-Job"))
	}
	end := a.last()
	if end.Event != warm.EventJobDone || end.Job.State != warm.StateDone {
		t.Fatalf("last event %+v", end)
	}
	st := end.Job
	want := int64(len(data["model-00001.safetensors"]) + len(data["model-00002.safetensors"]))
	if st.FilesTotal != 3 || st.FilesDone != 2 || st.FilesSkipped != 1 || st.FilesFailed != 0 || st.FilesCached != 0 ||
		st.BytesTotal != want || st.BytesDone != want || st.BytesUpstream != want || st.Finished == nil {
		t.Fatalf("job totals %+v", st)
	}
	files := a.files()
	for _, path := range []string{"model-00001.safetensors", "model-00002.safetensors"} {
		ev := files[path]
		if ev.Event != warm.EventFileDone || ev.Result != warm.ResultWarmed || ev.Bytes != int64(len(data[path])) || ev.UpstreamBytes != ev.Bytes {
			t.Errorf("%s: %+v", path, ev)
		}
	}
	if ev := files["config.json"]; ev.Event != warm.EventFileSkipped || !strings.Contains(ev.Reason, "not stored in Xet") {
		t.Errorf("config.json: %+v", ev)
	}
	if len(files) != 3 {
		t.Errorf("files outside the selection were warmed: %+v", files)
	}
	var started, listed int
	for _, ev := range a.events {
		switch ev.Event {
		case warm.EventFileStarted:
			started++
		case warm.EventListed:
			listed++
			if ev.Job.FilesTotal != 3 || ev.Job.BytesTotal != want {
				t.Errorf("listed %+v", ev.Job)
			}
		}
	}
	if started != 2 || listed != 1 {
		t.Errorf("%d file_started, %d listed events", started, listed)
	}
	xorbBytes := h.class(fakehub.ClassXorb).BytesOut
	if xorbBytes < want {
		t.Fatalf("the warm fetched %d xorb bytes for %d file bytes", xorbBytes, want)
	}

	// Every warmed file now downloads from the cache alone.
	h.ResetStats()
	for _, path := range []string{"model-00001.safetensors", "model-00002.safetensors"} {
		code, b := p.get("/download/org/m/" + path)
		if code != 200 || !bytes.Equal(b, data[path]) {
			t.Fatalf("download %s: %d, %d bytes", path, code, len(b))
		}
	}
	if x, r := h.class(fakehub.ClassXorb), h.class(fakehub.ClassReconstruction); x.Requests != 0 || r.Requests != 0 {
		t.Fatalf("downloads after the warm went upstream: xorb %+v, reconstruction %+v", x, r)
	}
	// The excluded file was not warmed: its download fetches xorbs.
	if code, b := p.get("/download/org/m/sub/extra.safetensors"); code != 200 || !bytes.Equal(b, data["sub/extra.safetensors"]) {
		t.Fatalf("download of the excluded file: %d", code)
	}
	waitFor(t, "the excluded file's xorb fetch", func() bool { return h.class(fakehub.ClassXorb).Requests > 0 })

	// Warming again fetches nothing: every file is reported cached.
	h.ResetStats()
	again := p.post(req, "X-Proxy-Key", warmKey)
	end = again.last()
	if again.status != 200 || end.Event != warm.EventJobDone || end.Job.State != warm.StateDone ||
		end.Job.FilesDone != 2 || end.Job.FilesCached != 2 || end.Job.BytesUpstream != 0 || end.Job.ID == st.ID {
		t.Fatalf("second warm: %d, %+v", again.status, end.Job)
	}
	for path, ev := range again.files() {
		if ev.Event == warm.EventFileDone && ev.Result != warm.ResultCached {
			t.Errorf("second warm: %s %+v", path, ev)
		}
	}
	if n := h.class(fakehub.ClassXorb).BytesOut; n != 0 {
		t.Fatalf("second warm fetched %d xorb bytes", n)
	}

	// GET lists both jobs, newest first.
	jobs := p.jobs()
	if len(jobs) != 2 || jobs[0].ID != end.Job.ID || jobs[1].ID != st.ID {
		t.Fatalf("jobs %+v", jobs)
	}
	for _, j := range jobs {
		if j.State != warm.StateDone || j.Repo != "org/m" || j.RepoType != "model" || j.Revision != "main" ||
			j.FilesTotal != 3 || j.FilesDone != 2 || j.Finished == nil || j.Started.IsZero() {
			t.Errorf("listed job %+v", j)
		}
	}
	if got := p.srv.WarmJobs(); len(got) != 2 || got[0].ID != jobs[0].ID {
		t.Errorf("WarmJobs %+v", got)
	}
}

// A second request for the same repo while a job runs attaches to it:
// one job, one set of upstream fetches.
func TestWarmAttachesToTheRunningJob(t *testing.T) {
	h := newWarmHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := cacheTestData(5, 2<<20+3)
	h.add(t, "org/m", "w.bin", data, fakehub.StorageXet)
	p := startWarmProxy(t, h.ts.URL, nil)
	h.ResetStats()
	h.SetLatency(fakehub.ClassXorb, time.Minute) // hold the job in its reads
	req := map[string]any{"repo": "org/m", "detach": true}
	first := p.post(req, "X-Proxy-Key", warmKey)
	var started struct {
		Job      warm.Status
		Attached bool
	}
	if first.status != http.StatusAccepted || json.Unmarshal(first.body, &started) != nil || started.Attached || started.Job.ID == "" {
		t.Fatalf("detached warm: %d %s", first.status, first.body)
	}
	// fakehub logs a request when its answer is complete: the
	// reconstruction query is done once the job waits for xorbs
	waitFor(t, "the job's reconstruction query", func() bool { return h.class(fakehub.ClassReconstruction).Requests > 0 })
	second := p.post(req, "Authorization", "Bearer "+warmKey)
	var attached struct {
		Job      warm.Status
		Attached bool
	}
	if second.status != http.StatusAccepted || json.Unmarshal(second.body, &attached) != nil || !attached.Attached || attached.Job.ID != started.Job.ID {
		t.Fatalf("second warm: %d %s", second.status, second.body)
	}
	// a follower attaches too, and sees the job to its end
	b, _ := json.Marshal(map[string]any{"repo": "org/m"})
	hreq, _ := http.NewRequest(http.MethodPost, p.url+"/admin/warm", bytes.NewReader(b))
	hreq.Header.Set("X-Proxy-Key", warmKey)
	res, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	var events []warm.Event
	var ev warm.Event
	if err := dec.Decode(&ev); err != nil || ev.Event != warm.EventJob || ev.Job.ID != started.Job.ID || !ev.Attached || ev.Job.State != warm.StateRunning {
		t.Fatalf("follower's first event %+v: %v", ev, err)
	}
	h.SetLatency(fakehub.ClassXorb, 0)
	h.ts.CloseClientConnections()
	for {
		var ev warm.Event
		if err := dec.Decode(&ev); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	followed := warmAnswer{status: res.StatusCode, events: events}
	end := followed.last()
	if end.Event != warm.EventJobDone || end.Job.State != warm.StateDone || end.Job.FilesDone != 1 {
		t.Fatalf("follower's last event %+v", end)
	}
	if jobs := p.jobs(); len(jobs) != 1 {
		t.Fatalf("%d jobs, want 1: %+v", len(jobs), jobs)
	}
	if r := h.class(fakehub.ClassReconstruction).Requests; r != 1 {
		t.Errorf("%d reconstruction queries, want 1", r)
	}
}

// A file whose chunk upstream keeps corrupting fails (after one more
// try), the others are warmed, and the job ends failed; nothing of the
// bad file reaches the cache.
func TestWarmReportsAFileThatFailsVerification(t *testing.T) {
	h := newWarmHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	good := cacheTestData(6, 600000)
	badData := cacheTestData(7, 900000)
	h.add(t, "org/m", "good.bin", good, fakehub.StorageXet)
	bad := h.add(t, "org/m", "bad.bin", badData, fakehub.StorageXet)
	c, err := h.CorruptChunk(bad.XetHash, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Decodes {
		t.Fatal("premise: the corruption should decode, so that only the file hash catches it")
	}
	p := startWarmProxy(t, h.ts.URL, nil)
	a := p.post(map[string]any{"repo": "org/m", "include": []string{"*.bin"}}, "X-Proxy-Key", warmKey)
	end := a.last()
	if a.status != 200 || end.Event != warm.EventJobDone || end.Job.State != warm.StateFailed ||
		end.Job.FilesFailed != 1 || end.Job.FilesDone != 1 || !strings.Contains(end.Job.Error, "1 of 2 files failed") {
		t.Fatalf("warm: %d %+v", a.status, end.Job)
	}
	files := a.files()
	if ev := files["bad.bin"]; ev.Event != warm.EventFileFailed || ev.Code != "IntegrityError" || ev.Status != http.StatusBadGateway || ev.Error == "" {
		t.Errorf("bad.bin: %+v", ev)
	}
	if ev := files["good.bin"]; ev.Event != warm.EventFileDone || ev.Result != warm.ResultWarmed {
		t.Errorf("good.bin: %+v", ev)
	}
	if !strings.Contains(p.log.String(), "trying the file once more") {
		t.Error("the bad file was not tried a second time")
	}
	// healed upstream, the bad file downloads right: nothing wrong was kept
	c.Heal()
	if code, b := p.get("/download/org/m/bad.bin"); code != 200 || !bytes.Equal(b, badData) {
		t.Fatalf("download after heal: %d, equal %v", code, bytes.Equal(b, badData))
	}
}

// The Hub answers 401 RepoNotFound to anonymous callers (it does not say
// whether a private repo exists): the job keeps its status and code.
func TestWarmUnknownRepoFails(t *testing.T) {
	h := newWarmHub(t)
	p := startWarmProxy(t, h.ts.URL, nil)
	a := p.post(map[string]any{"repo": "org/nope"}, "X-Proxy-Key", warmKey)
	end := a.last()
	if a.status != 200 || end.Event != warm.EventJobDone || end.Job.State != warm.StateFailed ||
		end.Job.ErrorCode != "RepoNotFound" || end.Job.Error == "" ||
		(end.Job.ErrorStatus != http.StatusNotFound && end.Job.ErrorStatus != http.StatusUnauthorized) {
		t.Fatalf("warm of an unknown repo: %d %+v", a.status, end.Job)
	}
}

func TestWarmBadRequests(t *testing.T) {
	h := newWarmHub(t)
	p := startWarmProxy(t, h.ts.URL, nil)
	for _, c := range []struct {
		body any
		code string
	}{
		{map[string]any{}, "MissingRepo"},
		{map[string]any{"repo": "a/b/c"}, "InvalidRepo"},
		{map[string]any{"repo": "org/../x"}, "InvalidRepo"},
		{map[string]any{"repo": "org/m", "repo_type": "book"}, "InvalidRepoType"},
		{map[string]any{"repo": "org/m", "revision": "a/../b"}, "InvalidRevision"},
		{map[string]any{"repo": "org/m", "include": []string{"[x"}}, "InvalidWarmRequest"},
		{map[string]any{"repo": "org/m", "unknown": 1}, "InvalidBody"},
		{"not an object", "InvalidBody"},
	} {
		a := p.post(c.body, "X-Proxy-Key", warmKey)
		if a.status != http.StatusBadRequest || !strings.Contains(string(a.body), c.code) {
			t.Errorf("%v: %d %s, want 400 %s", c.body, a.status, a.body, c.code)
		}
	}
	if n := h.Stats().Total().Requests; n != 0 {
		t.Errorf("bad requests reached upstream: %+v", h.Stats())
	}
	noCache := startWarmProxy(t, h.ts.URL, func(c *server.Config) { c.CacheDir = "" })
	if a := noCache.post(map[string]any{"repo": "org/m"}, "X-Proxy-Key", warmKey); a.status != http.StatusConflict || !strings.Contains(string(a.body), "NoCache") {
		t.Errorf("server without cache: %d %s", a.status, a.body)
	}
}

// The caller's Hub token reads a private repo upstream and appears in no
// log line; without it, the key alone (no server token) is anonymous and
// cannot read the repo.
func TestWarmForwardsTheCallersTokenAndNeverLogsIt(t *testing.T) {
	h := newWarmHub(t)
	if err := h.CreateRepo(fakehub.RepoSpec{ID: "org/private", Private: true, Readers: []string{warmToken}}); err != nil {
		t.Fatal(err)
	}
	data := cacheTestData(8, 700000)
	h.add(t, "org/private", "w.bin", data, fakehub.StorageXet)
	p := startWarmProxy(t, h.ts.URL, nil)

	anon := p.post(map[string]any{"repo": "org/private"}, "X-Proxy-Key", warmKey)
	if end := anon.last(); end.Job == nil || end.Job.State != warm.StateFailed || end.Job.ErrorStatus == 0 || end.Job.ErrorStatus >= 500 {
		t.Fatalf("anonymous warm of a private repo: %+v", end.Job)
	}
	a := p.post(map[string]any{"repo": "org/private"}, "X-Proxy-Key", warmKey, "Authorization", "Bearer "+warmToken)
	if end := a.last(); a.status != 200 || end.Job == nil || end.Job.State != warm.StateDone || end.Job.FilesDone != 1 {
		t.Fatalf("warm with the reader's token: %d %+v", a.status, end.Job)
	}
	// the token went upstream
	authed := 0
	for _, r := range h.Requests() {
		if r.Class == fakehub.ClassAPI && r.HasAuth {
			authed++
		}
	}
	if authed == 0 {
		t.Fatal("no listing carried the caller's token upstream")
	}
	p.stop()
	logs := p.log.String()
	if !strings.Contains(logs, "warm job started") || !strings.Contains(logs, "warm job ended") {
		t.Fatalf("premise: the jobs were logged:\n%s", logs)
	}
	if strings.Contains(logs, warmToken) || strings.Contains(logs, warmKey) {
		t.Fatalf("a credential is in the log:\n%s", logs)
	}
	for _, j := range p.srv.WarmJobs() {
		b, _ := json.Marshal(j)
		if strings.Contains(string(b), warmToken) {
			t.Fatalf("the token is in a job status: %s", b)
		}
	}
}

// Shutdown cancels a running job: its followers see job_done
// "cancelled" and Serve drains cleanly.
func TestWarmStopsOnShutdown(t *testing.T) {
	h := newWarmHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	h.add(t, "org/m", "w.bin", cacheTestData(9, 2<<20), fakehub.StorageXet)
	p := startWarmProxy(t, h.ts.URL, nil)
	h.ResetStats()
	h.SetLatency(fakehub.ClassXorb, time.Minute)
	defer h.SetLatency(fakehub.ClassXorb, 0)

	b, _ := json.Marshal(map[string]any{"repo": "org/m"})
	req, _ := http.NewRequest(http.MethodPost, p.url+"/admin/warm", bytes.NewReader(b))
	req.Header.Set("X-Proxy-Key", warmKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	waitFor(t, "the job's reconstruction query", func() bool { return h.class(fakehub.ClassReconstruction).Requests > 0 })
	stopped := make(chan error, 1)
	go func() { stopped <- p.stop() }()
	var last warm.Event
	dec := json.NewDecoder(res.Body)
	for {
		var ev warm.Event
		if err := dec.Decode(&ev); err != nil {
			break
		}
		last = ev
	}
	if last.Event != warm.EventJobDone || last.Job.State != warm.StateCancelled {
		t.Fatalf("last event %+v", last)
	}
	// the cache fill the job started runs detached, as for downloads: let
	// it end so that the engine closes
	h.SetLatency(fakehub.ClassXorb, 0)
	h.ts.CloseClientConnections()
	if err := <-stopped; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if jobs := p.srv.WarmJobs(); len(jobs) != 1 || jobs[0].State != warm.StateCancelled {
		t.Fatalf("jobs after shutdown %+v", jobs)
	}
}

// metricValue reads one sample of the server's /metrics.
func (p *warmProxy) metricValue(sample string) float64 {
	p.t.Helper()
	_, b := p.get("/metrics")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				p.t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	p.t.Fatalf("no sample %s", sample)
	return 0
}

// A job reads four files at a time, each holding a download slot like a
// download does.
func TestWarmReadsFourFilesAtATimeInDownloadSlots(t *testing.T) {
	h := newWarmHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	for i := range 8 {
		h.add(t, "org/m", fmt.Sprintf("w%d.bin", i), cacheTestData(uint64(20+i), 300000), fakehub.StorageXet)
	}
	p := startWarmProxy(t, h.ts.URL, nil)
	const inFlight = "xetproxy_downloads_in_flight"
	h.SetLatency(fakehub.ClassXorb, time.Minute)
	a := p.post(map[string]any{"repo": "org/m", "detach": true}, "X-Proxy-Key", warmKey)
	if a.status != http.StatusAccepted {
		t.Fatalf("warm: %d %s", a.status, a.body)
	}
	waitFor(t, "four files in flight", func() bool { return p.metricValue(inFlight) == 4 })
	// sample the slots in use until the job ends: never more than four
	stop := make(chan struct{})
	peak := make(chan float64)
	go func() {
		m := 0.0
		for {
			select {
			case <-stop:
				peak <- m
				return
			default:
			}
			m = max(m, p.metricValue(inFlight))
		}
	}()
	h.SetLatency(fakehub.ClassXorb, 0)
	h.ts.CloseClientConnections()
	waitFor(t, "the job to end", func() bool {
		j := p.srv.WarmJobs()
		return len(j) == 1 && j[0].Finished != nil
	})
	close(stop)
	if m := <-peak; m > 4 {
		t.Fatalf("%v files read at once", m)
	}
	if j := p.srv.WarmJobs()[0]; j.State != warm.StateDone || j.FilesDone != 8 {
		t.Fatalf("job %+v", j)
	}
	if v := p.metricValue(inFlight); v != 0 {
		t.Fatalf("%v slots still held after the job", v)
	}
}

// With --server-token-enabled, a key holder without a token of its own
// warms with the server's token, as its downloads would.
func TestWarmUsesTheServerTokenForKeyHolders(t *testing.T) {
	h := newWarmHub(t)
	if err := h.CreateRepo(fakehub.RepoSpec{ID: "org/private", Private: true, Readers: []string{warmToken}}); err != nil {
		t.Fatal(err)
	}
	h.add(t, "org/private", "w.bin", cacheTestData(10, 300000), fakehub.StorageXet)
	p := startWarmProxy(t, h.ts.URL, func(c *server.Config) {
		c.ServerTokenEnabled, c.ServerToken = true, warmToken
	})
	a := p.post(map[string]any{"repo": "org/private"}, "Authorization", "Bearer "+warmKey)
	if end := a.last(); a.status != 200 || end.Job == nil || end.Job.State != warm.StateDone || end.Job.FilesDone != 1 {
		t.Fatalf("warm with the server token: %d %+v", a.status, end.Job)
	}
	if strings.Contains(p.log.String(), warmToken) {
		t.Fatal("the server token is in the log")
	}
}

// A caller that hangs up does not stop the job.
func TestWarmGoesOnWhenTheCallerLeaves(t *testing.T) {
	h := newWarmHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := cacheTestData(11, 1<<20)
	h.add(t, "org/m", "w.bin", data, fakehub.StorageXet)
	p := startWarmProxy(t, h.ts.URL, nil)
	h.SetLatency(fakehub.ClassXorb, time.Minute)
	b, _ := json.Marshal(map[string]any{"repo": "org/m"})
	req, _ := http.NewRequest(http.MethodPost, p.url+"/admin/warm", bytes.NewReader(b))
	req.Header.Set("X-Proxy-Key", warmKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ev warm.Event
	if err := json.NewDecoder(res.Body).Decode(&ev); err != nil || ev.Event != warm.EventJob {
		t.Fatalf("first event %+v: %v", ev, err)
	}
	res.Body.Close() // hang up
	waitFor(t, "the request to end", func() bool { return strings.Contains(p.log.String(), "route=admin_warm status=499") })
	h.SetLatency(fakehub.ClassXorb, 0)
	h.ts.CloseClientConnections()
	waitFor(t, "the job to end", func() bool {
		j := p.srv.WarmJobs()
		return len(j) == 1 && j[0].Finished != nil
	})
	if j := p.srv.WarmJobs()[0]; j.ID != ev.Job.ID || j.State != warm.StateDone || j.FilesDone != 1 {
		t.Fatalf("job %+v", j)
	}
	h.ResetStats()
	if code, got := p.get("/download/org/m/w.bin"); code != 200 || !bytes.Equal(got, data) || h.class(fakehub.ClassXorb).Requests != 0 {
		t.Fatalf("download after the job: %d, %d xorb requests", code, h.class(fakehub.ClassXorb).Requests)
	}
}

// A Hub (or a mirror in front of it) whose listing leaves xetHash out:
// LFS files are resolved to learn whether they are Xet, files kept in git
// are skipped.
func TestWarmResolvesLFSFilesListedWithoutXetHash(t *testing.T) {
	h := newWarmHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := cacheTestData(12, 400000)
	h.add(t, "org/m", "w.bin", data, fakehub.StorageXet)
	h.add(t, "org/m", "config.json", []byte(`{"a":1}`), fakehub.StoragePlain)
	stripped := 0
	var mu sync.Mutex
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/tree/") {
			h.Hub.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.Hub.ServeHTTP(rec, r)
		var entries []map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &entries); err != nil {
			t.Errorf("tree answer: %v", err)
		}
		for _, e := range entries {
			if _, ok := e["xetHash"]; ok {
				mu.Lock()
				stripped++
				mu.Unlock()
				delete(e, "xetHash")
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		json.NewEncoder(w).Encode(entries)
	}))
	t.Cleanup(front.Close)
	h.SetPublicURL(front.URL)
	p := startWarmProxy(t, front.URL, nil)
	a := p.post(map[string]any{"repo": "org/m", "include": []string{"w.bin", "config.json"}}, "X-Proxy-Key", warmKey)
	mu.Lock()
	n := stripped
	mu.Unlock()
	if n == 0 {
		t.Fatalf("premise: the listing had xetHash fields to strip; warm answered %d %s", a.status, a.body)
	}
	end := a.last()
	if end.Job == nil || end.Job.State != warm.StateDone || end.Job.FilesDone != 1 || end.Job.FilesSkipped != 1 || end.Job.BytesTotal != int64(len(data)) {
		t.Fatalf("warm: %d %+v", a.status, end.Job)
	}
	if ev := a.files()["w.bin"]; ev.Event != warm.EventFileDone || ev.Result != warm.ResultWarmed {
		t.Fatalf("w.bin: %+v", ev)
	}
}

// The repo policy applies to warming as to downloads: a refused repo is
// 403 RepoNotAllowed, starts no job and asks nothing upstream.
func TestWarmObeysTheRepoPolicy(t *testing.T) {
	h := newWarmHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	h.add(t, "org/m", "w.bin", cacheTestData(1, 300000), fakehub.StorageXet)
	p := startWarmProxy(t, h.ts.URL, func(c *server.Config) { c.Deny = []string{"model/org/*"} })
	h.ResetStats()
	a := p.post(map[string]any{"repo": "org/m"}, "X-Proxy-Key", warmKey)
	if a.status != http.StatusForbidden || !strings.Contains(string(a.body), "RepoNotAllowed") {
		t.Errorf("warm of a denied repo: %d %s, want 403 RepoNotAllowed", a.status, a.body)
	}
	if n := h.Stats().Total().Requests; n != 0 {
		t.Errorf("a refused warm reached upstream: %+v", h.Stats())
	}
	if jobs := p.jobs(); len(jobs) != 0 {
		t.Errorf("a refused warm started a job: %+v", jobs)
	}
}

// A warmed repo is served whole and exact once the Hub is gone; a file the
// warm left out is not (503 NotCachedOffline).
func TestWarmThenOffline(t *testing.T) {
	h := newWarmHub(t)
	h.CreateRepo(fakehub.RepoSpec{ID: "org/m"})
	data := map[string][]byte{
		"a.safetensors": cacheTestData(21, 2<<20+3),
		"b.safetensors": cacheTestData(22, 700001),
		"left-out.bin":  cacheTestData(23, 300000),
	}
	for path, b := range data {
		h.add(t, "org/m", path, b, fakehub.StorageXet)
	}
	p := startWarmProxy(t, h.ts.URL, func(c *server.Config) { c.UpstreamGrace = time.Nanosecond })
	a := p.post(map[string]any{"repo": "org/m", "include": []string{"*.safetensors"}}, "X-Proxy-Key", warmKey)
	if end := a.last(); a.status != 200 || end.Job == nil || end.Job.State != warm.StateDone || end.Job.FilesDone != 2 {
		t.Fatalf("warm: %d %s", a.status, a.body)
	}
	h.ts.Close() // the Hub is gone: connections are refused from now on
	// the file left out first: its resolve fails and the server goes
	// offline (the warmed files' answers are still within --auth-cache-ttl
	// and would not ask the Hub)
	for _, path := range []string{"left-out.bin", "a.safetensors", "b.safetensors"} {
		want := data[path]
		res, err := http.Get(p.url + "/download/org/m/" + path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if path == "left-out.bin" {
			if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(got), "NotCachedOffline") {
				t.Errorf("%s offline: %d %s, want 503 NotCachedOffline", path, res.StatusCode, got)
			}
			continue
		}
		if err != nil || res.StatusCode != 200 || !bytes.Equal(got, want) || res.Header.Get("X-Xetproxy-Offline") != "1" {
			t.Errorf("%s offline: %d, %d bytes (exact %v), offline header %q, err %v",
				path, res.StatusCode, len(got), bytes.Equal(got, want), res.Header.Get("X-Xetproxy-Offline"), err)
		}
	}
}
