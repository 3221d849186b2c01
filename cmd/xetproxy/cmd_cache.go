package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/server"
)

const cacheHelp = `Usage: xetproxy cache <du|ls|verify|prune> [flags]

Tools for the disk chunk cache directory of a server (--cache-dir). They
read the directory itself, so they see what every process sharing it
wrote, and they are safe while a server uses it: a file they delete is a
miss for the server, filled again from upstream.

  du      entries, manifests, bytes used, staging folders, capacity
  ls      one line per entry (and manifest, with --manifests)
  verify  read and check every entry and manifest; exit 1 if any fails
  prune   shrink by size (LRU) or age; remove stale staging folders

--cache-dir defaults to $XETPROXY_CACHE_DIR. Run 'xetproxy cache <command>
-h' for the flags of each.
`

func cacheCommand() command {
	return command{
		name:    "cache",
		summary: "inspect, verify and prune a disk cache directory (du, ls, verify, prune)",
		run:     runCache,
	}
}

func runCache(ctx context.Context, e env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, cacheHelp)
		return exitUsage
	}
	sub := map[string]func(context.Context, env, []string) int{
		"du": runCacheDu, "ls": runCacheLs, "verify": runCacheVerify, "prune": runCachePrune,
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stderr, cacheHelp)
		return exitOK
	}
	run, ok := sub[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "xetproxy cache: unknown command %q\n\n%s", args[0], cacheHelp)
		return exitUsage
	}
	return run(ctx, e, args[1:])
}

// cacheFlags are the flags every cache subcommand has.
type cacheFlags struct {
	dir  string
	json bool
}

func (c *cacheFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dir, "cache-dir", os.Getenv("XETPROXY_CACHE_DIR"), "cache directory (env XETPROXY_CACHE_DIR)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
}

// parseCacheFlags parses args of the subcommand name; ok is false when the
// caller should return code.
func parseCacheFlags(e env, fs *flag.FlagSet, c *cacheFlags, name string, args []string) (code int, ok bool) {
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code, false
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "xetproxy cache %s: unexpected argument %q\n", name, pos[0])
		return exitUsage, false
	}
	if c.dir == "" {
		fmt.Fprintf(e.stderr, "xetproxy cache %s: --cache-dir (or XETPROXY_CACHE_DIR) is required\n", name)
		return exitUsage, false
	}
	return 0, true
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// finish flushes w and maps a write failure to exit 1.
func finish(e env, name string, w *bufio.Writer, code int) int {
	if err := w.Flush(); err != nil {
		fmt.Fprintf(e.stderr, "xetproxy cache %s: write output: %v\n", name, err)
		return exitError
	}
	return code
}

// plural is "n thing" or "n things"; things is the plural form when it is
// not thing+"s".
func plural(n int, thing string, things ...string) string {
	switch {
	case n == 1:
		return "1 " + thing
	case len(things) > 0:
		return strconv.Itoa(n) + " " + things[0]
	}
	return strconv.Itoa(n) + " " + thing + "s"
}

// rel shortens path to its place under the cache directory.
func rel(dir, path string) string {
	if r, err := filepath.Rel(dir, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// ---- du

const cacheDuHelp = `
Sums up a cache directory: entries and manifests (what --cache-size
bounds), the distinct xorbs and how many have a manifest (their entries
are checked chunk by chunk on every read), temporary files, each staging
folder with whether its process runs ("live": its lock is held; "stale":
'xetproxy cache prune' removes it; a folder created less than a minute ago
is presumed live, as its process may not hold its lock yet) and old layouts.
`

type duJSON struct {
	Dir               string        `json:"dir"`
	Entries           int           `json:"entries"`
	EntryBytes        int64         `json:"entry_bytes"`
	DecodedBytes      int64         `json:"decoded_bytes"`
	Manifests         int           `json:"manifests"`
	ManifestBytes     int64         `json:"manifest_bytes"`
	Xorbs             int           `json:"xorbs"`
	XorbsWithManifest int           `json:"xorbs_with_manifest"`
	UsedBytes         int64         `json:"used_bytes"`
	CapacityBytes     int64         `json:"capacity_bytes,omitempty"`
	TempFiles         int           `json:"temp_files"`
	TempBytes         int64         `json:"temp_bytes"`
	Staging           []stagingJSON `json:"staging"`
	OldLayouts        []oldJSON     `json:"old_layouts"`
}

type stagingJSON struct {
	Path string `json:"path"`
	PID  int    `json:"pid,omitempty"`
	Live bool   `json:"live"`
	// Recent: created less than a minute ago, lock not probed, presumed
	// live.
	Recent bool  `json:"recent,omitempty"`
	Files  int   `json:"files"`
	Bytes  int64 `json:"bytes"`
}

type oldJSON struct {
	Path  string `json:"path"`
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"`
}

func runCacheDu(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "cache du", "--cache-dir DIR [--cache-size SIZE] [--json]")
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(e.stderr, cacheDuHelp) }
	var c cacheFlags
	c.register(fs)
	size := fs.String("cache-size", os.Getenv("XETPROXY_CACHE_SIZE"), "the capacity to compare with, e.g. 10GiB (env XETPROXY_CACHE_SIZE)")
	if code, ok := parseCacheFlags(e, fs, &c, "du", args); !ok {
		return code
	}
	var capacity int64
	if *size != "" {
		n, err := server.ParseSize(*size)
		if err != nil || n <= 0 {
			fmt.Fprintf(e.stderr, "xetproxy cache du: --cache-size %q: want a positive size like 10GiB\n", *size)
			return exitUsage
		}
		capacity = n
	}
	s, err := cache.ScanDir(ctx, c.dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "xetproxy cache du: %v\n", err)
		return exitError
	}
	d := duJSON{
		Dir:           c.dir,
		Entries:       len(s.Entries),
		EntryBytes:    s.EntryBytes(),
		Manifests:     len(s.Manifests),
		ManifestBytes: s.ManifestBytes(),
		UsedBytes:     s.Bytes(),
		CapacityBytes: capacity,
		TempFiles:     len(s.Temp),
		Staging:       []stagingJSON{},
		OldLayouts:    []oldJSON{},
	}
	withManifest := map[string]bool{}
	for _, m := range s.Manifests {
		withManifest[m.Key.Xorb.String()] = false
	}
	xorbs := map[string]bool{}
	for _, f := range s.Entries {
		d.DecodedBytes += f.DecodedBytes()
		x := f.Key.Xorb.String()
		xorbs[x] = true
		if _, ok := withManifest[x]; ok {
			withManifest[x] = true
		}
	}
	d.Xorbs = len(xorbs)
	for _, has := range withManifest {
		if has {
			d.XorbsWithManifest++
		}
	}
	for _, f := range s.Temp {
		d.TempBytes += f.Size
	}
	for _, f := range s.Staging {
		d.Staging = append(d.Staging, stagingJSON{Path: rel(c.dir, f.Path), PID: f.PID, Live: f.Live, Recent: f.Recent, Files: f.Files, Bytes: f.Bytes})
	}
	for _, o := range s.OldLayouts {
		d.OldLayouts = append(d.OldLayouts, oldJSON{Path: rel(c.dir, o.Path), Files: o.Files, Bytes: o.Bytes})
	}

	w := bufio.NewWriter(e.stdout)
	if c.json {
		if err := writeJSON(w, d); err != nil {
			fmt.Fprintf(e.stderr, "xetproxy cache du: %v\n", err)
			return exitError
		}
		return finish(e, "du", w, exitOK)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "cache dir\t%s\n", c.dir)
	fmt.Fprintf(tw, "entries\t%d\t%s\t(%s decoded)\n", d.Entries, humanBytes(d.EntryBytes), humanBytes(d.DecodedBytes))
	fmt.Fprintf(tw, "manifests\t%d\t%s\n", d.Manifests, humanBytes(d.ManifestBytes))
	if capacity > 0 {
		fmt.Fprintf(tw, "used\t\t%s\tof %s (%.0f%%)\n", humanBytes(d.UsedBytes), humanBytes(capacity), 100*float64(d.UsedBytes)/float64(capacity))
	} else {
		fmt.Fprintf(tw, "used\t\t%s\n", humanBytes(d.UsedBytes))
	}
	fmt.Fprintf(tw, "xorbs\t%d\t\t(%d with a manifest)\n", d.Xorbs, d.XorbsWithManifest)
	fmt.Fprintf(tw, "temporary\t%d\t%s\n", d.TempFiles, humanBytes(d.TempBytes))
	var stagingBytes int64
	for _, f := range s.Staging {
		stagingBytes += f.Bytes
	}
	fmt.Fprintf(tw, "staging\t%d\t%s\t(not counted in used)\n", len(s.Staging), humanBytes(stagingBytes))
	for _, o := range d.OldLayouts {
		fmt.Fprintf(tw, "old layout\t%d\t%s\t%s (never read; removed by a server start or prune)\n", o.Files, humanBytes(o.Bytes), o.Path)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range s.Staging {
		state := "stale (prune removes it)"
		if f.Live {
			state = "live"
			if f.PID > 0 {
				state += fmt.Sprintf(" (pid %d)", f.PID)
			}
			if f.Recent {
				state += ", new: not probed"
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", rel(c.dir, f.Path), plural(f.Files, "file"), humanBytes(f.Bytes), state)
	}
	tw.Flush()
	return finish(e, "du", w, exitOK)
}

// ---- ls

const cacheLsHelp = `
Lists the entries of a cache directory, one per line: xorb hash, chunk
range [start-end), chunks, decoded bytes, stored bytes and modification
time (the last write, or the last hit: hits refresh it at most hourly; it
is the recency prune and a restarted server's LRU go by). With
--manifests, manifests too, with range "manifest". Sizes are in bytes;
decoded bytes are as the file size implies ('xetproxy cache verify'
checks them).

  <xorb hash>  <start>-<end>  <chunks>  <decoded>  <stored>  <mtime>

--json prints one JSON object per line instead:

  {"kind":"entry","xorb":"<hash>","start":0,"end":64,"chunks":64,
   "decoded_bytes":<n>,"stored_bytes":<n>,"mtime":"<RFC 3339>"}
`

type lsJSON struct {
	Kind         string    `json:"kind"`
	Xorb         string    `json:"xorb"`
	Start        *uint32   `json:"start,omitempty"`
	End          *uint32   `json:"end,omitempty"`
	Chunks       *uint32   `json:"chunks,omitempty"`
	DecodedBytes *int64    `json:"decoded_bytes,omitempty"`
	StoredBytes  int64     `json:"stored_bytes"`
	MTime        time.Time `json:"mtime"`
}

func runCacheLs(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "cache ls", "--cache-dir DIR [--xorb PREFIX] [--sort key|time|size] [--manifests] [--json]")
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(e.stderr, cacheLsHelp) }
	var c cacheFlags
	c.register(fs)
	prefix := fs.String("xorb", "", "only xorbs whose hash starts with PREFIX")
	order := fs.String("sort", "key", "key (xorb, then range), time (least recently used first) or size (largest first)")
	manifests := fs.Bool("manifests", false, "list manifests too")
	if code, ok := parseCacheFlags(e, fs, &c, "ls", args); !ok {
		return code
	}
	var less func(a, b cache.DirFile) bool
	switch *order {
	case "key":
	case "time":
		less = func(a, b cache.DirFile) bool { return a.ModTime.Before(b.ModTime) }
	case "size":
		less = func(a, b cache.DirFile) bool { return a.Size > b.Size }
	default:
		fmt.Fprintf(e.stderr, "xetproxy cache ls: --sort %q: want key, time or size\n", *order)
		return exitUsage
	}
	s, err := cache.ScanDir(ctx, c.dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "xetproxy cache ls: %v\n", err)
		return exitError
	}
	var files []cache.DirFile
	for _, f := range s.Entries {
		if strings.HasPrefix(f.Key.Xorb.String(), *prefix) {
			files = append(files, f)
		}
	}
	if *manifests {
		for _, f := range s.Manifests {
			if strings.HasPrefix(f.Key.Xorb.String(), *prefix) {
				files = append(files, f)
			}
		}
	}
	if less == nil { // key order: manifests before the entries of their xorb
		less = func(a, b cache.DirFile) bool {
			if a.Key.Xorb != b.Key.Xorb {
				return a.Key.Xorb.String() < b.Key.Xorb.String()
			}
			if a.Kind != b.Kind {
				return a.Kind == cache.KindManifest
			}
			return a.Key.Start < b.Key.Start || a.Key.Start == b.Key.Start && a.Key.End < b.Key.End
		}
	}
	sort.SliceStable(files, func(i, j int) bool { return less(files[i], files[j]) })

	w := bufio.NewWriter(e.stdout)
	for _, f := range files {
		if c.json {
			j := lsJSON{Kind: f.Kind.String(), Xorb: f.Key.Xorb.String(), StoredBytes: f.Size, MTime: f.ModTime.UTC()}
			if f.Kind == cache.KindEntry {
				n, dec := f.Key.Len(), f.DecodedBytes()
				j.Start, j.End, j.Chunks, j.DecodedBytes = &f.Key.Start, &f.Key.End, &n, &dec
			}
			if err := writeJSON(w, j); err != nil {
				fmt.Fprintf(e.stderr, "xetproxy cache ls: %v\n", err)
				return exitError
			}
			continue
		}
		rng, chunks, decoded := "manifest", "-", "-"
		if f.Kind == cache.KindEntry {
			rng = fmt.Sprintf("%d-%d", f.Key.Start, f.Key.End)
			chunks, decoded = strconv.FormatUint(uint64(f.Key.Len()), 10), strconv.FormatInt(f.DecodedBytes(), 10)
		}
		fmt.Fprintf(w, "%s  %-9s  %4s  %9s  %9d  %s\n", f.Key.Xorb, rng, chunks, decoded, f.Size, f.ModTime.UTC().Format(time.RFC3339))
	}
	return finish(e, "ls", w, exitOK)
}

// ---- verify

const cacheVerifyHelp = `
Reads every entry and manifest of a cache directory and checks everything
that can be checked:

  stored form  entries: header and per-chunk CRC-32C, key, offsets;
               manifests: that they prove the xorb hash naming them
  chunk hash   each chunk's data re-hashed against its stored chunk hash
  manifest     each chunk of an entry against its xorb's manifest (when the
               cache holds one that proves itself): the only check that
               catches an entry rewritten with consistent hashes and CRCs

Each failure is printed as it is found, then a summary:

  FAIL <xorb>/<start>-<end> (entry): <check>: <reason>[ (deleted)]

--delete removes what fails (default: report only). --json prints one
JSON object with the counts and the failures instead. Exit status 1 when
anything failed or could not be read.
`

type verifyJSON struct {
	Entries      int           `json:"entries"`
	WithManifest int           `json:"entries_with_manifest"`
	Manifests    int           `json:"manifests"`
	Chunks       int64         `json:"chunks"`
	Bytes        int64         `json:"decoded_bytes"`
	Vanished     int           `json:"vanished"`
	Failures     []failureJSON `json:"failures"`
}

type failureJSON struct {
	Kind    string `json:"kind"`
	Key     string `json:"key"`
	Path    string `json:"path"`
	Check   string `json:"check"`
	Error   string `json:"error"`
	Deleted bool   `json:"deleted"`
}

func failureName(f cache.DirFile) string {
	if f.Kind == cache.KindManifest {
		return f.Key.Xorb.String()
	}
	return f.Key.String()
}

func runCacheVerify(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "cache verify", "--cache-dir DIR [--delete] [--json]")
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(e.stderr, cacheVerifyHelp) }
	var c cacheFlags
	c.register(fs)
	del := fs.Bool("delete", false, "remove the entries and manifests that fail")
	if code, ok := parseCacheFlags(e, fs, &c, "verify", args); !ok {
		return code
	}
	w := bufio.NewWriter(e.stdout)
	opt := cache.VerifyOptions{Delete: *del}
	if !c.json {
		opt.OnFailure = func(v cache.VerifyFailure) {
			suffix := ""
			if v.Deleted {
				suffix = " (deleted)"
			}
			fmt.Fprintf(w, "FAIL %s (%s): %s: %v%s\n", failureName(v.File), v.File.Kind, v.Check, v.Err, suffix)
			w.Flush()
		}
	}
	r, err := cache.VerifyDir(ctx, c.dir, opt)
	if err != nil {
		w.Flush()
		fmt.Fprintf(e.stderr, "xetproxy cache verify: %v\n", err)
		return exitError
	}
	code := exitOK
	if r.Failed() {
		code = exitError
	}
	if c.json {
		j := verifyJSON{Entries: r.Entries, WithManifest: r.WithManifest, Manifests: r.Manifests,
			Chunks: r.Chunks, Bytes: r.Bytes, Vanished: r.Vanished, Failures: []failureJSON{}}
		for _, v := range r.Failures {
			j.Failures = append(j.Failures, failureJSON{Kind: v.File.Kind.String(), Key: failureName(v.File),
				Path: v.File.Path, Check: v.Check, Error: v.Err.Error(), Deleted: v.Deleted})
		}
		if err := writeJSON(w, j); err != nil {
			fmt.Fprintf(e.stderr, "xetproxy cache verify: %v\n", err)
			return exitError
		}
		return finish(e, "verify", w, code)
	}
	fmt.Fprintf(w, "checked %s (%d against their xorb's manifest), %s: %s, %s decoded\n",
		plural(r.Entries, "entry", "entries"), r.WithManifest, plural(r.Manifests, "manifest"), plural(int(r.Chunks), "chunk"), humanBytes(r.Bytes))
	if r.Vanished > 0 {
		fmt.Fprintf(w, "%d files vanished while checking (evicted by a server)\n", r.Vanished)
	}
	deleted := 0
	for _, v := range r.Failures {
		if v.Deleted {
			deleted++
		}
	}
	switch {
	case !r.Failed():
		fmt.Fprintln(w, "OK")
	case *del:
		fmt.Fprintf(w, "FAILED: %d (%d deleted)\n", len(r.Failures), deleted)
	default:
		fmt.Fprintf(w, "FAILED: %d (run with --delete to remove them)\n", len(r.Failures))
	}
	return finish(e, "verify", w, code)
}

// ---- prune

const cachePruneHelp = `
Shrinks a cache directory: --max-size removes entries and manifests least
recently used first (oldest modification time, as a server's eviction)
until they fit; --older-than removes those unused for that long (a Go
duration, or days: 30d). In any case it removes staging folders whose
process is gone (their lock is free), temporary files older than an hour
and old layouts. --dry-run only reports; -v lists every file.

Safe while a server uses the directory: a removed entry is a miss for it,
fetched again from upstream. The server keeps counting removed files
against its --cache-size until it looks them up, and hits refresh the
modification time at most hourly, so the order is approximate.
`

type pruneJSON struct {
	DryRun       bool     `json:"dry_run"`
	Removed      int      `json:"removed"`
	RemovedBytes int64    `json:"removed_bytes"`
	Kept         int      `json:"kept"`
	KeptBytes    int64    `json:"kept_bytes"`
	Staging      []string `json:"staging"`
	TempFiles    int      `json:"temp_files"`
	OldLayouts   []string `json:"old_layouts"`
	Files        []string `json:"files,omitempty"`
	Errors       []string `json:"errors,omitempty"`
}

// parseAge reads a Go duration or a whole number of days ("30d").
func parseAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("%q: want a duration like 72h or 30d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a duration like 72h or 30d", s)
	}
	return d, nil
}

func runCachePrune(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "cache prune", "--cache-dir DIR [--max-size SIZE] [--older-than DURATION] [--dry-run] [-v] [--json]")
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(e.stderr, cachePruneHelp) }
	var c cacheFlags
	c.register(fs)
	maxSize := fs.String("max-size", "", "remove least recently used entries until the rest fits, e.g. 5GiB")
	olderThan := fs.String("older-than", "", "remove entries unused for this long, e.g. 72h or 30d")
	dry := fs.Bool("dry-run", false, "report what would be removed, remove nothing")
	verbose := fs.Bool("v", false, "list every removed file")
	if code, ok := parseCacheFlags(e, fs, &c, "prune", args); !ok {
		return code
	}
	opt := cache.PruneOptions{DryRun: *dry}
	if *maxSize != "" {
		n, err := server.ParseSize(*maxSize)
		if err != nil {
			fmt.Fprintf(e.stderr, "xetproxy cache prune: --max-size: %v\n", err)
			return exitUsage
		}
		if n == 0 {
			fmt.Fprintln(e.stderr, "xetproxy cache prune: --max-size 0 would remove everything; remove the directory instead")
			return exitUsage
		}
		opt.MaxBytes = n
	}
	if *olderThan != "" {
		d, err := parseAge(*olderThan)
		if err != nil || d == 0 {
			fmt.Fprintf(e.stderr, "xetproxy cache prune: --older-than %q: want a positive duration like 72h or 30d\n", *olderThan)
			return exitUsage
		}
		opt.OlderThan = d
	}
	r, err := cache.PruneDir(ctx, c.dir, opt)
	if err != nil && r == nil {
		fmt.Fprintf(e.stderr, "xetproxy cache prune: %v\n", err)
		return exitError
	}
	code := exitOK
	if err != nil || len(r.Errors) > 0 {
		code = exitError
	}
	j := pruneJSON{DryRun: *dry, Removed: len(r.Removed), RemovedBytes: r.RemovedBytes, Kept: r.Kept,
		KeptBytes: r.KeptBytes, Staging: []string{}, TempFiles: len(r.Temp), OldLayouts: []string{}}
	var stagingBytes, oldBytes int64
	for _, s := range r.Staging {
		j.Staging = append(j.Staging, rel(c.dir, s.Path))
		stagingBytes += s.Bytes
	}
	for _, o := range r.OldLayouts {
		j.OldLayouts = append(j.OldLayouts, rel(c.dir, o.Path))
		oldBytes += o.Bytes
	}
	for _, rerr := range r.Errors {
		j.Errors = append(j.Errors, rerr.Error())
	}
	if *verbose {
		for _, f := range r.Removed {
			j.Files = append(j.Files, rel(c.dir, f.Path))
		}
		for _, f := range r.Temp {
			j.Files = append(j.Files, rel(c.dir, f.Path))
		}
	}

	w := bufio.NewWriter(e.stdout)
	if c.json {
		if err := writeJSON(w, j); err != nil {
			fmt.Fprintf(e.stderr, "xetproxy cache prune: %v\n", err)
			return exitError
		}
	} else {
		verb := "removed"
		if *dry {
			verb = "would remove"
		}
		for _, f := range j.Files {
			fmt.Fprintf(w, "%s %s\n", verb, f)
		}
		entries, manifests := 0, 0
		for _, f := range r.Removed {
			if f.Kind == cache.KindManifest {
				manifests++
			} else {
				entries++
			}
		}
		fmt.Fprintf(w, "%s %s and %s (%s); %s left (%s)\n", verb, plural(entries, "entry", "entries"), plural(manifests, "manifest"),
			humanBytes(r.RemovedBytes), plural(r.Kept, "file"), humanBytes(r.KeptBytes))
		if len(r.Staging) > 0 || len(r.Temp) > 0 || len(r.OldLayouts) > 0 {
			fmt.Fprintf(w, "%s %s (%s), %s, %s (%s)\n", verb, plural(len(r.Staging), "stale staging folder"), humanBytes(stagingBytes),
				plural(len(r.Temp), "temporary file"), plural(len(r.OldLayouts), "old layout"), humanBytes(oldBytes))
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "xetproxy cache prune: %v\n", err)
	}
	for _, s := range j.Errors {
		fmt.Fprintf(e.stderr, "xetproxy cache prune: %s\n", s)
	}
	return finish(e, "prune", w, code)
}
