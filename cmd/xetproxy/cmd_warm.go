package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/xetproxy/xetproxy/internal/warm"
)

const warmSynopsis = "--server URL [--api-key K] [--token T] [--repo-type model|dataset|space] [--include GLOB]... [--exclude GLOB]... [--json] REPO[@REVISION]"

const warmHelp = `
Asks a running xetproxy server to fill its chunk cache with the files of a
repo at a revision (default main), and shows the progress: a bar on a
terminal, plain lines otherwise, or the server's NDJSON events as they come
with --json. Warming the same repo while a job runs attaches to that job.

Globs select files by their path in the repo ('*' does not cross '/'); a
glob without '/' also matches the base name: --include '*.safetensors'
selects sub/model.safetensors too. No --include selects every file.
Files not stored in Xet are skipped: the chunk cache holds Xet files only.

The proxy API key is --api-key, else $XETPROXY_API_KEY. --token is a Hub
token the server uses upstream for this job (private and gated repos); it
is never printed or logged. Without it the server uses its own token if it
allows that for API key holders, else none.

Exit status: 0 every selected Xet file is cached, 1 other failure, 2 bad
command line or request, 3 repo or revision not found or no file
selected, 4 the key or the token was refused, 5 upstream failure, 6 a
file failed verification.
`

func warmCommand() command {
	return command{
		name:    "warm",
		summary: "fill a running server's cache with a repo's files",
		run:     runWarm,
	}
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func runWarm(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "warm", warmSynopsis)
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(e.stderr, warmHelp) }
	server := fs.String("server", "", "URL of the xetproxy server, e.g. http://mirror:8080")
	apiKey := fs.String("api-key", "", "proxy API key (default $XETPROXY_API_KEY)")
	token := fs.String("token", "", "Hub token for the server to use upstream for this job")
	repoType := fs.String("repo-type", "model", "model, dataset or space")
	asJSON := fs.Bool("json", false, "print the server's NDJSON events as they come")
	var include, exclude stringsFlag
	fs.Var(&include, "include", "glob of the files to warm (repeatable)")
	fs.Var(&exclude, "exclude", "glob of the files to leave out (repeatable)")
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(e.stderr, "xetproxy warm: "+format+"\n", a...)
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitUsage
	}
	base, err := url.Parse(strings.TrimRight(*server, "/"))
	if *server == "" || err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fail(exitUsage, "--server must be the http(s) URL of a xetproxy server")
	}
	key := *apiKey
	if key == "" {
		key = strings.TrimSpace(os.Getenv("XETPROXY_API_KEY"))
	}
	if key == "" {
		return fail(exitUsage, "a proxy API key is required: --api-key or $XETPROXY_API_KEY")
	}
	id, rev, _ := strings.Cut(pos[0], "@")
	if strings.Contains(pos[0], "@") && rev == "" {
		return fail(exitUsage, "empty revision after '@' in %q", pos[0])
	}
	o := hubOptions{repoType: *repoType}
	repo, err := o.repo(id)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	body, _ := json.Marshal(map[string]any{
		"repo": repo.ID, "repo_type": string(repo.Type), "revision": rev,
		"include": []string(include), "exclude": []string(exclude),
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String()+"/admin/warm", bytes.NewReader(body))
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/x-ndjson")
	req.Header.Set("User-Agent", "xetproxy-warm")
	req.Header.Set("X-Proxy-Key", key)
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	client := &http.Client{
		// the server's answer is the job's progress: no overall timeout
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: time.Minute},
		// a redirect would take the key elsewhere
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := client.Do(req)
	if err != nil {
		return fail(exitError, "cannot reach %s: %v", base.Redacted(), scrub(err, key, *token))
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/x-ndjson") {
		return fail(answerExit(res.StatusCode), "%s", answerError(res))
	}
	r := newWarmRenderer(e, *asJSON)
	return r.follow(res.Body)
}

// scrub removes the credentials from an error message (a URL error
// quotes the request, never its headers; this is belt and braces).
func scrub(err error, secrets ...string) string {
	s := err.Error()
	for _, x := range secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, "***")
		}
	}
	return s
}

// answerExit maps the status of a refused warm request to an exit code.
func answerExit(status int) int {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return exitAuth
	case http.StatusBadRequest:
		return exitUsage
	}
	return exitError
}

// answerError describes a refused warm request from its error body.
func answerError(res *http.Response) string {
	var eb struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		return fmt.Sprintf("the server answered %s: %s (%s)", res.Status, eb.Error, eb.Code)
	}
	return "the server answered " + res.Status + " (is --server a xetproxy server?)"
}

// warmRenderer shows a job's events.
type warmRenderer struct {
	e      env
	json   bool
	tty    bool // stderr is a terminal: a bar there
	job    warm.Status
	files  map[string]int64 // bytes read of the files in flight
	began  time.Time
	last   time.Time // of the last plain progress line
	failed []warm.Event
	drawn  bool
}

func newWarmRenderer(e env, asJSON bool) *warmRenderer {
	r := &warmRenderer{e: e, json: asJSON, files: map[string]int64{}, began: time.Now()}
	if f, ok := e.stderr.(*os.File); ok && !asJSON && term.IsTerminal(int(f.Fd())) {
		r.tty = true
	}
	r.last = r.began
	return r
}

// follow reads the events to job_done and returns the exit code.
func (r *warmRenderer) follow(body io.Reader) int {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var end *warm.Status
	for sc.Scan() {
		var ev warm.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			r.clearBar()
			fmt.Fprintf(r.e.stderr, "xetproxy warm: malformed event from the server: %v\n", err)
			return exitError
		}
		if r.json {
			fmt.Fprintf(r.e.stdout, "%s\n", sc.Bytes())
		}
		r.event(ev)
		if ev.Event == warm.EventJobDone && ev.Job != nil {
			end = ev.Job
			break
		}
	}
	r.clearBar()
	if end == nil {
		msg := "the server ended the progress stream before the job finished"
		if err := sc.Err(); err != nil {
			msg += ": " + err.Error()
		}
		if r.job.ID != "" {
			msg += fmt.Sprintf(" (job %s may still be running: GET /admin/warm)", r.job.ID)
		}
		fmt.Fprintf(r.e.stderr, "xetproxy warm: %s\n", msg)
		return exitError
	}
	return r.result(end)
}

func (r *warmRenderer) event(ev warm.Event) {
	if ev.Job != nil {
		r.job = *ev.Job
	}
	switch ev.Event {
	case warm.EventJob:
		verb := "warming"
		if ev.Attached {
			verb = "attached to the running job warming"
		}
		r.line("%s %s@%s (job %s)", verb, repoName(r.job), r.job.Revision, r.job.ID)
	case warm.EventListed:
		r.line("%d files selected, %s to read", r.job.FilesTotal, dlBytes(r.job.BytesTotal))
	case warm.EventFileStarted:
		r.files[ev.Path] = 0
	case warm.EventFileProgress:
		r.files[ev.Path] = ev.Bytes
	case warm.EventFileDone:
		delete(r.files, ev.Path)
		r.job.FilesDone++
		r.job.BytesDone += ev.Size
		r.line("%-8s %10s  %s", ev.Result, dlBytes(ev.Size), ev.Path)
	case warm.EventFileSkipped:
		r.job.FilesSkipped++
		r.line("%-8s %10s  %s (%s)", "skipped", dlBytes(ev.Size), ev.Path, ev.Reason)
	case warm.EventFileFailed:
		delete(r.files, ev.Path)
		r.job.FilesFailed++
		r.failed = append(r.failed, ev)
		r.line("%-8s %10s  %s: %s", "FAILED", dlBytes(ev.Size), ev.Path, ev.Error)
	}
	if r.json {
		return
	}
	if r.tty {
		r.drawBar()
	} else if time.Since(r.last) >= 5*time.Second && (ev.Event == warm.EventFileProgress || ev.Event == warm.EventFileStarted) {
		r.last = time.Now()
		fmt.Fprintf(r.e.stdout, "progress: %s\n", r.progressText())
	}
}

// line prints one result line (not with --json), above the bar.
func (r *warmRenderer) line(format string, a ...any) {
	if r.json {
		return
	}
	r.clearBar()
	fmt.Fprintf(r.e.stdout, format+"\n", a...)
}

// bytesRead is what the job has read, the files in flight included.
func (r *warmRenderer) bytesRead() int64 {
	n := r.job.BytesDone
	for _, b := range r.files {
		n += b
	}
	return n
}

func (r *warmRenderer) progressText() string {
	n := r.bytesRead()
	rate := 0.0
	if el := time.Since(r.began).Seconds(); el > 0 {
		rate = float64(n) / el
	}
	done := r.job.FilesDone + r.job.FilesSkipped + r.job.FilesFailed
	return fmt.Sprintf("%d/%d files, %s/%s, %s/s", done, r.job.FilesTotal, dlBytes(n), dlBytes(r.job.BytesTotal), dlBytes(int64(rate)))
}

// bar draws the job's progress in width cells.
func warmBar(done, total int64, width int) string {
	fill := width
	if total > 0 {
		fill = int(float64(width) * float64(min(done, total)) / float64(total))
	}
	return "[" + strings.Repeat("=", fill) + strings.Repeat(" ", width-fill) + "]"
}

func (r *warmRenderer) drawBar() {
	pct := 100.0
	if r.job.BytesTotal > 0 {
		pct = 100 * float64(min(r.bytesRead(), r.job.BytesTotal)) / float64(r.job.BytesTotal)
	}
	fmt.Fprintf(r.e.stderr, "\r\033[K%s %5.1f%% %s", warmBar(r.bytesRead(), r.job.BytesTotal, 24), pct, r.progressText())
	r.drawn = true
}

func (r *warmRenderer) clearBar() {
	if r.drawn {
		fmt.Fprint(r.e.stderr, "\r\033[K")
		r.drawn = false
	}
}

// result prints the summary of a finished job and returns its exit code.
func (r *warmRenderer) result(st *warm.Status) int {
	if !r.json {
		fmt.Fprintf(r.e.stdout, "%s: %d of %d files cached (%d were already), %d skipped, %d failed; %s read, %s from upstream\n",
			st.State, st.FilesDone, st.FilesTotal-st.FilesSkipped, st.FilesCached, st.FilesSkipped, st.FilesFailed,
			dlBytes(st.BytesDone), dlBytes(st.BytesUpstream))
	}
	switch {
	case st.State == warm.StateDone && st.FilesTotal == 0:
		// most likely a glob that does not say what was meant
		fmt.Fprintf(r.e.stderr, "xetproxy warm: no file of %s@%s matches the selection\n", repoName(*st), st.Revision)
		return exitNotFound
	case st.State == warm.StateDone:
		return exitOK
	case st.State == warm.StateCancelled:
		fmt.Fprintf(r.e.stderr, "xetproxy warm: job %s was cancelled: the server is shutting down\n", st.ID)
		return exitError
	}
	if st.ErrorStatus != 0 || st.ErrorCode != "" {
		fmt.Fprintf(r.e.stderr, "xetproxy warm: job %s failed: %s\n", st.ID, st.Error)
		return warmExit(st.ErrorStatus, st.ErrorCode)
	}
	fmt.Fprintf(r.e.stderr, "xetproxy warm: job %s failed: %s\n", st.ID, st.Error)
	for _, ev := range r.failed {
		fmt.Fprintf(r.e.stderr, "  %s: %s\n", ev.Path, ev.Error)
	}
	code := exitError
	for _, ev := range r.failed {
		// the most specific reason wins: integrity, then the others
		if c := warmExit(ev.Status, ev.Code); c == exitIntegrity || code == exitError {
			code = c
		}
	}
	return code
}

// warmExit maps the status and code the server gave a failure to the exit
// codes of download.
func warmExit(status int, code string) int {
	switch {
	case code == "IntegrityError":
		return exitIntegrity
	case code == "RepoNotFound" || code == "RevisionNotFound" || code == "EntryNotFound" || status == http.StatusNotFound:
		return exitNotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return exitAuth
	case status >= 500 || status == http.StatusTooManyRequests:
		return exitUpstream
	}
	return exitError
}

func repoName(st warm.Status) string {
	switch st.RepoType {
	case "dataset":
		return "datasets/" + st.Repo
	case "space":
		return "spaces/" + st.Repo
	}
	return st.Repo
}

var _ flag.Value = (*stringsFlag)(nil)
