package server

// The status page at GET /: what an operator wants to see at a glance
// (version, upstream health, cache use, busiest repos, warm jobs) as HTML
// for a browser, JSON for monitoring, and the usage text for curl.
//
// The page is built from one snapshot (statusSnapshot) so the HTML and the
// JSON can never disagree. Parts that other components own come through
// statusSources: each is a function the page calls when rendered, and a
// nil one shows as "unknown" or "none".
//
// Privacy: the page is public, so it never holds a credential, and names
// of private repos only for callers holding a proxy API key. Anonymous
// callers see private repos counted, not named; warm jobs and the last
// upstream error (either may name a private repo) are shown to key holders
// only.

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"math"
	"mime"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/proxy"
)

// statusTopRepos is how many repos the page lists by bytes served.
const statusTopRepos = 10

// statusSources are the page's live inputs owned by other components.
// Each may be nil. They are called on every render, concurrently with
// downloads, so each must be cheap and safe for concurrent use.
type statusSources struct {
	// upstream reports the health of the Hub and CAS as last seen.
	upstream func() statusUpstream
	// topRepos returns at most n repos by bytes served, largest first;
	// with includePrivate false it leaves private repos out. The page
	// always asks for them and hides their names itself.
	topRepos func(n int, includePrivate bool) []statusRepo
	// warmJobs lists the cache warming jobs, newest first.
	warmJobs func() []statusJob
}

// statusUpstream is the upstream's health. Known false means no source
// reports it (shown as "unknown").
type statusUpstream struct {
	Known     bool
	Offline   bool      // serving from cache only: upstream is unreachable
	Since     time.Time // when the current state began
	LastOK    time.Time // last successful upstream answer
	LastError string    // last upstream failure, as logged (no secrets)
}

// statusRepo is one repo with the bytes it was served.
type statusRepo struct {
	Type    string `json:"type"`           // model, dataset or space
	Repo    string `json:"repo,omitempty"` // empty when hidden
	Bytes   int64  `json:"bytes"`
	Private bool   `json:"private"`
}

// statusJob is one cache warming job.
type statusJob struct {
	ID         string `json:"id"`
	Type       string `json:"type,omitempty"`
	Repo       string `json:"repo,omitempty"` // empty when hidden
	Revision   string `json:"revision,omitempty"`
	State      string `json:"state"`
	FilesDone  int    `json:"files_done"`
	FilesTotal int    `json:"files_total"`
	Bytes      int64  `json:"bytes"`
}

// statusSnapshot is everything the page shows; its JSON form is the
// ?format=json answer.
type statusSnapshot struct {
	Version       string    `json:"version"`
	GoVersion     string    `json:"go_version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Listen        string    `json:"listen"`
	HubURL        string    `json:"hub_url"`
	// PrivateNames tells whether the caller holds a proxy API key and so
	// sees the names of private repos, warm jobs and upstream errors.
	PrivateNames bool               `json:"private_names"`
	Upstream     statusUpstreamView `json:"upstream"`
	Downloads    statusDownloads    `json:"downloads"`
	Cache        *statusCache       `json:"cache"` // nil: the engine reports no cache counters
	TopRepos     []statusRepo       `json:"top_repos"`
	// TopReposKnown is false when no component counts bytes per repo.
	TopReposKnown bool `json:"top_repos_known"`
	// PrivateReposHidden counts the rows of TopRepos whose name is hidden.
	PrivateReposHidden int         `json:"private_repos_hidden"`
	WarmJobs           []statusJob `json:"warm_jobs"`
	// WarmJobsKnown is false when no component reports warm jobs.
	WarmJobsKnown bool `json:"warm_jobs_known"`
}

type statusUpstreamView struct {
	State     string    `json:"state"` // unknown, online or offline
	Since     time.Time `json:"since,omitzero"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

type statusDownloads struct {
	InFlight int    `json:"in_flight"`
	Max      int    `json:"max"`
	Queued   int    `json:"queued"` // waiting for admission
	Ready    bool   `json:"ready"`  // false while draining or with the queue full
	Reason   string `json:"reason,omitempty"`
}

type statusCache struct {
	Tiers []statusTier `json:"tiers"` // none when no chunk cache is configured
	// Segment lookups of the engine in its cache.
	Hits   uint64 `json:"lookup_hits"`
	Misses uint64 `json:"lookup_misses"`
	Errors uint64 `json:"lookup_errors"`
	// HitRatio is hits/(hits+misses); nil before the first lookup.
	HitRatio *float64 `json:"lookup_hit_ratio"`
	// Where the Xet bytes sent to clients came from.
	ServedCache    int64 `json:"served_cache_bytes"`
	ServedShared   int64 `json:"served_shared_bytes"` // another request's fill
	ServedUpstream int64 `json:"served_upstream_bytes"`
	// ByteHitRatio is cache/(cache+shared+upstream); nil before the
	// first byte.
	ByteHitRatio *float64 `json:"byte_hit_ratio"`
}

type statusTier struct {
	Name      string `json:"name"`
	Entries   int64  `json:"entries"`
	Size      int64  `json:"size_bytes"`
	Capacity  int64  `json:"capacity_bytes"` // 0: unbounded
	Hits      uint64 `json:"hits"`
	Misses    uint64 `json:"misses"`
	Evictions uint64 `json:"evictions"`
}

// cacheReporter is what the page reads of the download engine: the real
// one (*proxy.Engine) has it.
type cacheReporter interface {
	CacheStats() proxy.CacheStats
	Cache() cache.Store
}

var _ cacheReporter = (*proxy.Engine)(nil)

// statusSnapshot gathers the page. keyed is whether the caller holds a
// proxy API key.
func (s *Server) statusSnapshot(keyed bool) statusSnapshot {
	now := time.Now()
	snap := statusSnapshot{
		Version:       s.version,
		GoVersion:     runtime.Version(),
		StartedAt:     s.started.UTC().Truncate(time.Second),
		UptimeSeconds: int64(now.Sub(s.started) / time.Second),
		Listen:        s.cfg.Listen,
		HubURL:        redactURL(s.cfg.HubURL),
		PrivateNames:  keyed,
		Upstream:      statusUpstreamView{State: "unknown"},
		TopRepos:      []statusRepo{},
		WarmJobs:      []statusJob{},
	}
	if a := s.listenAddr.Load(); a != nil {
		snap.Listen = *a
	}
	ready, why := s.adm.ready()
	snap.Downloads = statusDownloads{InFlight: s.adm.inFlight(), Max: s.cfg.MaxDownloads, Queued: s.adm.queued(), Ready: ready, Reason: why}

	if f := s.status.upstream; f != nil {
		if u := f(); u.Known {
			snap.Upstream = statusUpstreamView{State: "online", Since: u.Since.UTC(), LastOK: u.LastOK.UTC()}
			if u.Offline {
				snap.Upstream.State = "offline"
			}
			if keyed {
				snap.Upstream.LastError = u.LastError
			}
		}
	}
	if e, ok := s.base.(cacheReporter); ok {
		snap.Cache = engineCacheStatus(e)
	}
	if f := s.status.topRepos; f != nil {
		snap.TopReposKnown = true
		for _, r := range f(statusTopRepos, true) {
			if r.Private && !keyed {
				r.Repo = ""
				snap.PrivateReposHidden++
			}
			snap.TopRepos = append(snap.TopRepos, r)
			if len(snap.TopRepos) == statusTopRepos {
				break
			}
		}
	}
	if f := s.status.warmJobs; f != nil {
		snap.WarmJobsKnown = true
		for _, j := range f() {
			if !keyed {
				j.Repo, j.Revision = "", ""
			}
			snap.WarmJobs = append(snap.WarmJobs, j)
		}
	}
	return snap
}

func engineCacheStatus(e cacheReporter) *statusCache {
	st := e.CacheStats()
	c := &statusCache{
		Tiers: []statusTier{},
		Hits:  st.Hits, Misses: st.Misses, Errors: st.GetErrors,
		ServedCache: st.ServedCache, ServedShared: st.ServedShared, ServedUpstream: st.ServedUpstream,
		HitRatio:     ratio(float64(st.Hits), float64(st.Hits+st.Misses)),
		ByteHitRatio: ratio(float64(st.ServedCache), float64(st.ServedCache+st.ServedShared+st.ServedUpstream)),
	}
	for _, t := range cacheTiers(e.Cache()) {
		ts := t.store.Stats()
		c.Tiers = append(c.Tiers, statusTier{
			Name: t.name, Entries: ts.Entries, Size: ts.Size, Capacity: ts.Capacity,
			Hits: ts.Hits, Misses: ts.Misses, Evictions: ts.Evictions,
		})
	}
	return c
}

func ratio(num, den float64) *float64 {
	if den <= 0 {
		return nil
	}
	r := num / den
	return &r
}

// redactURL keeps the scheme, host and path of raw: credentials or a
// query in a configured URL must not reach a public page.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// The forms of the page.
const (
	statusHTML = "html"
	statusJSON = "json"
	statusText = "text" // the usage text
)

// statusFormat picks the form of the page: ?format= if given, else the
// best match of Accept. Browsers ask for text/html first; curl and clients
// that send no Accept get the usage text, as before the page existed.
func statusFormat(r *http.Request) (string, *apiError) {
	switch f := r.URL.Query().Get("format"); f {
	case statusHTML, statusJSON, statusText:
		return f, nil
	case "":
	default:
		return "", badRequest("InvalidFormat", "format must be html, json or text")
	}
	type offer struct {
		form, typ, sub string
		q              float64
		spec           int // 2 exact match, 1 type/*, 0 */*, -1 none
	}
	// Ties go to the earlier offer: text first keeps "*/*" on the usage text.
	offers := []*offer{{form: statusText, typ: "text", sub: "plain", spec: -1},
		{form: statusHTML, typ: "text", sub: "html", spec: -1},
		{form: statusJSON, typ: "application", sub: "json", spec: -1}}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				q = f
			}
		}
		typ, sub, _ := strings.Cut(mt, "/")
		for _, o := range offers {
			spec := -1
			switch {
			case typ == o.typ && sub == o.sub:
				spec = 2
			case typ == o.typ && sub == "*":
				spec = 1
			case typ == "*" && sub == "*":
				spec = 0
			}
			// the most specific range decides an offer's quality
			if spec > o.spec {
				o.spec, o.q = spec, q
			}
		}
	}
	best := offers[0]
	for _, o := range offers[1:] {
		if o.q > best.q {
			best = o
		}
	}
	return best.form, nil
}

//go:embed status.html
var statusPageSource string

//go:embed status.css
var statusCSS string

// statusCSP allows the page exactly its own inline style sheet, by hash,
// and nothing else: no script, no image, no request anywhere.
var statusCSP = func() string {
	sum := sha256.Sum256([]byte(statusCSS))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes":   formatBytes,
	"percent": formatPercent,
	"ago":     formatAgo,
	"when":    formatWhen,
	"pct":     func(part, whole int64) string { return formatPercent(ratio(float64(part), float64(whole))) },
	"inc":     func(i int) int { return i + 1 },
	"uptime":  func(sec int64) string { return formatDuration(time.Duration(sec) * time.Second) },
}).Parse(statusPageSource))

// statusPageData is what the template renders.
type statusPageData struct {
	S     statusSnapshot
	CSS   template.CSS
	Usage string
	Now   time.Time
}

// serveStatus answers GET and HEAD / and /index.html.
func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	setRoute(r, "status")
	if !s.getOrHead(w, r) {
		return
	}
	w.Header().Add("Vary", "Accept")
	// live numbers, and per caller: never from a cache
	w.Header().Set("Cache-Control", "no-store")
	form, aerr := statusFormat(r)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	if form == statusText {
		s.usage(w, r)
		return
	}
	_, keyed, aerr := s.auth.upstreamToken(r)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	snap := s.statusSnapshot(keyed)
	if form == statusJSON {
		writeJSON(w, r, http.StatusOK, snap)
		return
	}
	var buf bytes.Buffer
	err := statusTemplate.Execute(&buf, statusPageData{
		S: snap, CSS: template.CSS(statusCSS), Usage: s.usageBody(r), Now: time.Now(),
	})
	if err != nil {
		// a template bug, not the caller's fault
		e := newAPIError(http.StatusInternalServerError, "InternalError", "could not render the status page")
		e.cause = err
		writeError(w, r, e)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

// formatBytes renders n in binary units with three significant digits.
func formatBytes(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := -1
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f %s", f, units[i])
	case f >= 10:
		return fmt.Sprintf("%.1f %s", f, units[i])
	}
	return fmt.Sprintf("%.2f %s", f, units[i])
}

// formatPercent renders a ratio as a percentage, "n/a" when there is none.
func formatPercent(r *float64) string {
	if r == nil || math.IsNaN(*r) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", *r*100)
}

// formatWhen renders t in UTC to the second, "never" for the zero time.
func formatWhen(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// formatAgo renders the time from t to now, coarsely.
func formatAgo(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return "(" + formatDuration(now.Sub(t)) + " ago)"
}

// formatDuration renders d in its two largest units (3d 4h, 5m 6s).
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	sec := int64(d / time.Second)
	days, sec := sec/86400, sec%86400
	hours, sec := sec/3600, sec%3600
	mins, sec := sec/60, sec%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	case mins > 0:
		return fmt.Sprintf("%dm %ds", mins, sec)
	}
	return fmt.Sprintf("%ds", sec)
}
