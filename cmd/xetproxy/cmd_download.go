package main

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/xetproxy/xetproxy/internal/casclient"
	"github.com/xetproxy/xetproxy/internal/engineconf"
	"github.com/xetproxy/xetproxy/internal/hub"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/proxy"
	"github.com/xetproxy/xetproxy/internal/server"
	"github.com/xetproxy/xetproxy/internal/xethash"
)

// Exit codes of ls and download, beyond exitOK, exitError and exitUsage.
const (
	exitNotFound  = 3 // repo, revision, file or hash unknown
	exitAuth      = 4 // authentication required, or access denied
	exitUpstream  = 5 // the Hub or the CAS unreachable or failing
	exitIntegrity = 6 // downloaded bytes failed verification
)

// dlExitCodes is the help text about exit codes, shared by ls and download.
const dlExitCodes = `
Exit status: 0 success, 1 other failure, 2 bad command line, 3 not found
(repo, revision, path or hash), 4 authentication required or access denied,
5 network or upstream (Hub, CAS) failure, 6 integrity failure (the bytes did
not verify; nothing is left under the final name).

The Hub endpoint is --endpoint, else $HF_ENDPOINT, else
https://huggingface.co. The token is --token, else $HF_TOKEN, else the file
$HF_TOKEN_PATH, else $HF_HOME/token (default ~/.cache/huggingface/token);
public repos need none. The token is never printed.
`

// hubOptions are the flags shared by ls and download.
type hubOptions struct {
	revision string
	repoType string
	token    string
	endpoint string
}

func (o *hubOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.revision, "revision", "main", "branch, tag or commit")
	fs.StringVar(&o.repoType, "repo-type", "model", "model, dataset or space")
	fs.StringVar(&o.token, "token", "", "Hub token (default $HF_TOKEN or the token file)")
	fs.StringVar(&o.endpoint, "endpoint", "", "Hub URL (default $HF_ENDPOINT or https://huggingface.co)")
}

// repo parses a repo argument. "datasets/org/x" and "spaces/org/x" set the
// type as the Hub's URLs do.
func (o *hubOptions) repo(id string) (hub.Repo, error) {
	t, err := hub.ParseRepoType(o.repoType)
	if err != nil {
		return hub.Repo{}, err
	}
	for prefix, pt := range map[string]hub.RepoType{"datasets/": hub.Dataset, "spaces/": hub.Space, "models/": hub.Model} {
		if rest, ok := strings.CutPrefix(id, prefix); ok && strings.Count(rest, "/") == 1 {
			t, id = pt, rest
		}
	}
	r := hub.Repo{Type: t, ID: id}
	return r, r.Validate()
}

func (o *hubOptions) endpointURL() string {
	if o.endpoint != "" {
		return o.endpoint
	}
	if v := os.Getenv("HF_ENDPOINT"); v != "" {
		return v
	}
	return hub.DefaultEndpoint
}

// userToken finds the Hub token: flag, $HF_TOKEN, then the token file.
func (o *hubOptions) userToken() string {
	if o.token != "" {
		return o.token
	}
	if v := strings.TrimSpace(os.Getenv("HF_TOKEN")); v != "" {
		return v
	}
	for _, p := range tokenFiles() {
		if b, err := os.ReadFile(p); err == nil {
			if t := strings.TrimSpace(string(b)); t != "" {
				return t
			}
		}
	}
	return ""
}

func tokenFiles() []string {
	if p := os.Getenv("HF_TOKEN_PATH"); p != "" {
		return []string{p}
	}
	if h := os.Getenv("HF_HOME"); h != "" {
		return []string{filepath.Join(h, "token")}
	}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return []string{filepath.Join(x, "huggingface", "token")}
	}
	if home, err := os.UserHomeDir(); err == nil {
		return []string{filepath.Join(home, ".cache", "huggingface", "token")}
	}
	return nil
}

// engineConfig is the download engine configuration of the command line.
func (o *downloadOptions) engineConfig() engineconf.Config {
	return engineconf.Config{
		HubURL:    o.endpointURL(),
		Parallel:  o.parallel,
		ReadAhead: o.buffer,
		Cache:     engineconf.CacheConfig{Dir: o.cacheDir, Size: o.cacheMax},
	}
}

// exitCodeFor maps an error to the documented exit codes.
func exitCodeFor(err error) int {
	var he *hub.Error
	var ie *proxy.IntegrityError
	var ue *proxy.UpstreamError
	var ne *hub.NetError
	var netErr net.Error
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ie):
		return exitIntegrity
	case errors.Is(err, errUsageLine):
		return exitUsage
	case errors.Is(err, proxy.ErrNotFound), errors.Is(err, errNoSuchPath):
		return exitNotFound
	case errors.As(err, &he):
		switch he.Status {
		case 404:
			return exitNotFound
		case 401, 403:
			return exitAuth
		}
		return exitUpstream
	case errors.Is(err, casclient.ErrUnauthorized), errors.Is(err, casclient.ErrForbidden):
		return exitAuth
	case errors.As(err, &ue), errors.As(err, &ne), errors.As(err, &netErr):
		return exitUpstream
	}
	return exitError
}

// errNoSuchPath: a path that is neither a file nor a folder of the repo.
var errNoSuchPath = errors.New("no such file or folder")

// authHint adds what to do about an auth failure.
func authHint(err error, token string) string {
	if exitCodeFor(err) != exitAuth {
		return ""
	}
	if token == "" {
		return " (private or gated repo? pass --token or set HF_TOKEN)"
	}
	return " (does this token have access to the repo?)"
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, as users of wget and curl expect. "--" ends
// the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) (positional []string, code int, ok bool) {
	for {
		if code, ok := parseFlags(fs, args); !ok {
			return nil, code, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, 0, true
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), 0, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

const downloadSynopsis = "[flags] REPO PATH...\n       xetproxy download [flags] --hash HASH --repo REPO -o FILE"

const downloadHelp = `
Downloads files of a Hugging Face repo, speaking the Xet protocol directly:
the file's reconstruction is fetched from the CAS in parallel, every chunk is
decoded and checked, and the whole file is verified (Xet file hash, or the
sha256/git sha1 of files not stored in Xet) before it gets its final name.
A PATH that is a folder of the repo downloads every file under it.

Files go under -o DIR (default the current directory) at their path in the
repo; with a single PATH, -o may name the file itself (a name ending in /
is a directory), or be - for standard output. --hash downloads the Xet file
with that hash, read through REPO's access rights, to -o FILE (or -).

--cache-dir DIR keeps the decoded chunks in a disk cache (the same format
as the server's --cache-dir, bounded by --cache-size): downloading the same
file again, or a file sharing chunks with one downloaded before (a new
revision of a model), fetches only what the cache does not hold.

While downloading, a file is written as FILE.xetproxy-part; -c resumes such a
partial file (or a truncated FILE) with a ranged request, and the resumed file
is verified as a whole. Without --fsync the renamed file may still sit in the
page cache; after a crash, -c re-verifies it. Progress goes to standard error
(a bar on a terminal, a line every few seconds otherwise); the paths written
go to standard output.
` + dlExitCodes

func downloadCommand() command {
	return command{
		name:    "download",
		summary: "download files of a Hub repo over Xet, verified, resumable",
		run:     runDownload,
	}
}

type downloadOptions struct {
	hubOptions
	out      string
	resume   bool
	hash     string
	repoFlag string
	quiet    bool
	fsync    bool
	parallel int
	buffer   int64
	cacheDir string
	cacheMax int64
}

func runDownload(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "download", downloadSynopsis)
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(e.stderr, downloadHelp) }
	var o downloadOptions
	o.register(fs)
	fs.StringVar(&o.out, "o", "", "output file, or directory")
	fs.BoolVar(&o.resume, "c", false, "continue a partial download")
	fs.StringVar(&o.hash, "hash", "", "download the Xet file with this hash (needs --repo and -o)")
	fs.StringVar(&o.repoFlag, "repo", "", "repo whose access rights cover --hash")
	fs.BoolVar(&o.quiet, "q", false, "no progress output")
	fs.BoolVar(&o.fsync, "fsync", false, "flush each file to disk before giving it its final name")
	fs.IntVar(&o.parallel, "parallel", 8, "parallel xorb range downloads per file")
	buffer := fs.Int("buffer-mib", 48, "decoded read-ahead per file, MiB")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "chunk cache directory (default none)")
	cacheSize := fs.String("cache-size", "10GiB", "chunk cache capacity")
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	o.buffer = int64(*buffer) << 20
	if o.parallel < 1 || o.buffer < 1 {
		fmt.Fprintln(e.stderr, "xetproxy download: --parallel and --buffer-mib must be positive")
		return exitUsage
	}
	cacheMax, err := server.ParseSize(*cacheSize)
	if err != nil || cacheMax <= 0 {
		fmt.Fprintf(e.stderr, "xetproxy download: --cache-size %q: want a positive size like 10GiB\n", *cacheSize)
		return exitUsage
	}
	o.cacheMax = cacheMax
	var targets []string
	switch {
	case o.hash != "":
		if o.repoFlag == "" || o.out == "" || len(pos) > 0 {
			fmt.Fprintln(e.stderr, "xetproxy download: --hash needs --repo REPO and -o FILE, and no PATH")
			return exitUsage
		}
	case len(pos) < 2:
		fs.Usage()
		return exitUsage
	default:
		o.repoFlag, targets = pos[0], pos[1:]
	}
	repo, err := o.repo(o.repoFlag)
	if err != nil {
		fmt.Fprintf(e.stderr, "xetproxy download: %v\n", err)
		return exitUsage
	}
	// Keep the heap near what the read-ahead needs. The chunk buffers are
	// pooled, so little garbage is made and a tight limit costs little GC;
	// without it the default pacing lets idle pooled buffers and freed
	// spans pile up to twice the live heap. $GOMEMLIMIT, if set, wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(o.buffer + 24<<20))
	}
	eng, closeEngine, err := engineconf.New(o.engineConfig())
	if err != nil {
		fmt.Fprintf(e.stderr, "xetproxy download: %v\n", err)
		return exitError
	}
	// Let the cache fills still running finish (they outlive the stream
	// that started them) before the process exits, within the engine's
	// close bound.
	defer closeEngine()
	d := &downloader{e: e, o: &o, eng: eng, repo: repo, token: o.userToken()}
	if o.hash != "" {
		err = d.byHash(ctx)
	} else {
		err = d.byPaths(ctx, targets)
	}
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			fmt.Fprintln(e.stderr, "xetproxy download: interrupted")
			return exitError
		}
		fmt.Fprintf(e.stderr, "xetproxy download: %v%s\n", err, authHint(err, d.token))
		return exitCodeFor(err)
	}
	return exitOK
}

type downloader struct {
	e     env
	o     *downloadOptions
	eng   *proxy.Engine
	repo  hub.Repo
	token string
}

func (d *downloader) byHash(ctx context.Context) error {
	h, err := merklehash.Parse(d.o.hash)
	if err != nil {
		return fmt.Errorf("--hash %q: %w", d.o.hash, errUsageLine)
	}
	meta, err := d.eng.StatHash(ctx, d.token, d.repo, d.o.revision, h)
	if err != nil {
		return err
	}
	if d.o.out == "-" {
		return d.toStdout(ctx, meta)
	}
	return d.fetch(ctx, meta, d.o.out)
}

// errUsageLine marks a command-line mistake found after parsing (exit 2).
var errUsageLine = errors.New("bad command line")

// toStdout streams one file to standard output. The bytes are verified as
// they pass, but they cannot be taken back: a failed check is the exit
// status (and the message), after the bytes.
func (d *downloader) toStdout(ctx context.Context, meta *hub.FileMeta) error {
	prog := newProgress(d.e.stderr, d.o.quiet, meta.Path, meta.Size, 0)
	defer prog.stop()
	rc, err := d.eng.Open(ctx, d.token, meta, 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(d.e.stdout, prog.reader(rc)); err != nil {
		return err
	}
	prog.done()
	return nil
}

func (d *downloader) byPaths(ctx context.Context, targets []string) error {
	if d.o.out == "-" {
		if len(targets) != 1 || d.o.resume {
			return fmt.Errorf("-o - (standard output) takes one PATH and no -c: %w", errUsageLine)
		}
		metas, err := d.resolve(ctx, strings.Trim(targets[0], "/"))
		if err != nil {
			return err
		}
		if len(metas) != 1 {
			return fmt.Errorf("%s is a folder; -o - takes one file: %w", targets[0], errUsageLine)
		}
		return d.toStdout(ctx, metas[0])
	}
	dir, single := d.o.out, ""
	if len(targets) == 1 && d.o.out != "" && !isDir(d.o.out) && !strings.HasSuffix(d.o.out, string(os.PathSeparator)) && !strings.HasSuffix(d.o.out, "/") {
		single = d.o.out // -o names the file
	}
	if dir == "" {
		dir = "."
	}
	for _, p := range targets {
		p = strings.Trim(p, "/")
		metas, err := d.resolve(ctx, p)
		if err != nil {
			return err
		}
		for _, meta := range metas {
			dest := single
			if dest == "" || len(metas) > 1 {
				if dest, err = safeJoin(dir, meta.Path); err != nil {
					return err
				}
			}
			if err := d.fetch(ctx, meta, dest); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolve returns the file at p, or every file under p if it is a folder.
func (d *downloader) resolve(ctx context.Context, p string) ([]*hub.FileMeta, error) {
	meta, err := d.eng.Stat(ctx, d.token, d.repo, d.o.revision, p)
	var he *hub.Error
	if err == nil || !errors.As(err, &he) || he.Status != 404 || he.Code == "RepoNotFound" || he.Code == "RevisionNotFound" {
		if err != nil {
			return nil, err
		}
		return []*hub.FileMeta{meta}, nil
	}
	// Not a file: maybe a folder.
	entries, lerr := d.eng.Hub().List(ctx, d.token, d.repo, d.o.revision, p, true)
	var lhe *hub.Error
	if lerr != nil && !(errors.As(lerr, &lhe) && (lhe.Status == 404 || lhe.Status == 400)) {
		return nil, lerr
	}
	var files []*hub.FileMeta
	for _, en := range entries {
		if en.IsDir() {
			continue
		}
		m, err := d.eng.Stat(ctx, d.token, d.repo, d.o.revision, en.Path)
		if err != nil {
			return nil, err
		}
		files = append(files, m)
	}
	if len(files) == 0 {
		return nil, err // the file's own 404 (EntryNotFound)
	}
	return files, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// safeJoin places a repo path under dir, refusing paths that would leave it.
func safeJoin(dir, repoPath string) (string, error) {
	clean := path.Clean("/" + repoPath)[1:]
	if clean == "" || clean != repoPath || strings.Contains(repoPath, "\\") {
		return "", fmt.Errorf("refusing to write repo path %q", repoPath)
	}
	return filepath.Join(dir, filepath.FromSlash(clean)), nil
}

const partSuffix = ".xetproxy-part"

// fetch downloads one file to dest through dest+partSuffix.
func (d *downloader) fetch(ctx context.Context, meta *hub.FileMeta, dest string) error {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	part := dest + partSuffix
	var offset int64
	if d.o.resume {
		if _, err := os.Stat(part); errors.Is(err, os.ErrNotExist) {
			if st, err := os.Stat(dest); err == nil && st.Mode().IsRegular() {
				if err := os.Rename(dest, part); err != nil { // a truncated final file
					return err
				}
			}
		}
		if st, err := os.Stat(part); err == nil {
			offset = st.Size()
			if offset > meta.Size {
				offset = 0 // not a prefix of this file
			}
		}
	}
	flags := os.O_WRONLY | os.O_CREATE
	if offset == 0 {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	name := meta.Path
	prog := newProgress(d.e.stderr, d.o.quiet, name, meta.Size, offset)
	defer prog.stop()
	if offset < meta.Size || meta.Size == 0 {
		rc, err := d.eng.Open(ctx, d.token, meta, offset, -1)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, prog.reader(rc))
		rc.Close()
		if err != nil {
			var ie *proxy.IntegrityError
			if errors.As(err, &ie) {
				f.Close()
				os.Remove(part) // wrong bytes must not be resumed
			}
			return err
		}
	}
	if offset > 0 {
		prog.note("verifying")
		if err := verifyFile(ctx, part, meta); err != nil {
			f.Close()
			os.Remove(part)
			return err
		}
	}
	if d.o.fsync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(part, dest); err != nil {
		return err
	}
	prog.done()
	fmt.Fprintln(d.e.stdout, dest)
	return nil
}

// verifyFile checks a resumed file as a whole: its size, then the sha256
// or git blob sha1 the ETag names, or else its Xet file hash recomputed
// with the Xet chunker.
func verifyFile(ctx context.Context, p string, meta *hub.FileMeta) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != meta.Size {
		return &proxy.IntegrityError{File: meta.Path, Err: fmt.Errorf("size %d, want %d", st.Size(), meta.Size)}
	}
	r := ctxReader{ctx, f}
	etag := strings.ToLower(meta.ETag)
	if _, err := hex.DecodeString(etag); err == nil && (len(etag) == 64 || len(etag) == 40) {
		var h hash.Hash
		what := "sha256"
		if len(etag) == 64 {
			h = sha256.New()
		} else {
			h, what = sha1.New(), "git blob sha1"
			fmt.Fprintf(h, "blob %d\x00", meta.Size)
		}
		if _, err := io.Copy(h, r); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != etag {
			return &proxy.IntegrityError{File: meta.Path, Err: &proxy.MismatchError{What: what, Want: etag, Got: got}}
		}
		return nil
	}
	if meta.XetHash == nil {
		return &proxy.IntegrityError{File: meta.Path, Err: errors.New("nothing to verify a resumed file against")}
	}
	sum, err := xethash.HashReader(ctx, f, xethash.Options{})
	if err != nil {
		return err
	}
	if got := sum.FileHash; got != *meta.XetHash {
		return &proxy.IntegrityError{File: meta.Path, Err: &proxy.MismatchError{What: "xet file hash", Want: meta.XetHash.String(), Got: got.String()}}
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// progress reports a download on standard error: a bar redrawn ten times a
// second on a terminal, a line every five seconds otherwise.
type progress struct {
	w        io.Writer
	tty      bool
	quiet    bool
	name     string
	size     int64
	start    int64
	began    time.Time
	n        atomic.Int64
	stopped  chan struct{}
	finished chan struct{}
}

func newProgress(w io.Writer, quiet bool, name string, size, start int64) *progress {
	p := &progress{w: w, quiet: quiet, name: name, size: size, start: start, began: time.Now(),
		stopped: make(chan struct{}), finished: make(chan struct{})}
	p.n.Store(start)
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	if quiet {
		close(p.finished)
		return p
	}
	go p.loop()
	return p
}

func (p *progress) loop() {
	defer close(p.finished)
	every := 5 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stopped:
			return
		case <-t.C:
			p.draw(false)
		}
	}
}

func (p *progress) draw(final bool) {
	n := p.n.Load()
	el := time.Since(p.began).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(n-p.start) / el
	}
	pct := 100.0
	if p.size > 0 {
		pct = 100 * float64(n) / float64(p.size)
	}
	eta := ""
	if !final && rate > 0 && n < p.size {
		eta = " ETA " + time.Duration(float64(p.size-n)/rate*float64(time.Second)).Round(time.Second).String()
	}
	if final {
		eta = ", verified"
	}
	line := fmt.Sprintf("%s %5.1f%% %s/%s %s/s%s", p.name, pct, dlBytes(n), dlBytes(p.size), dlBytes(int64(rate)), eta)
	if p.tty {
		bar := ""
		if width := 24; p.size > 0 {
			fill := int(float64(width) * float64(n) / float64(p.size))
			bar = "[" + strings.Repeat("=", fill) + strings.Repeat(" ", width-fill) + "] "
		}
		fmt.Fprintf(p.w, "\r\033[K%s%s", bar, line)
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) reader(r io.Reader) io.Reader { return &progressReader{r: r, p: p} }

type progressReader struct {
	r io.Reader
	p *progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.n.Add(int64(n))
	return n, err
}

// WriteTo keeps the engine's zero-copy path through io.Copy.
func (r *progressReader) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := r.r.(io.WriterTo); ok {
		return wt.WriteTo(countingWriter{w, &r.p.n})
	}
	return io.Copy(countingWriter{w, &r.p.n}, r.r)
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (p *progress) note(s string) {
	if !p.quiet && p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s: %s", p.name, s)
	}
}

func (p *progress) stop() {
	select {
	case <-p.stopped:
	default:
		close(p.stopped)
	}
	<-p.finished
}

// done stops the reporting and prints the final line.
func (p *progress) done() {
	p.stop()
	if !p.quiet {
		p.draw(true)
	}
}

// dlBytes prints a byte count with a binary unit.
func dlBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
