package fakehub

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/xorb"
)

// RepoType is the kind of a repo.
type RepoType string

// Repo types.
const (
	Model   RepoType = "model"
	Dataset RepoType = "dataset"
	Space   RepoType = "space"
)

// RepoSpec describes a repo and who may use it.
type RepoSpec struct {
	// ID is the repo as it appears in Hub URLs: "namespace/name" (or "name")
	// for a model, "datasets/namespace/name", "spaces/namespace/name".
	ID string

	// Private repos are visible only to Readers and Writers; gated repos
	// show their metadata to everyone but serve files (and read tokens) to
	// Readers and Writers only; disabled repos answer 403.
	Private  bool
	Gated    bool
	Disabled bool
	Readers  []string // Hub tokens that may read (allowed, or approved for a gated repo)
	Writers  []string // Hub tokens that may read and write

	// NoGitAttributes skips the initial commit of the Hub's default
	// .gitattributes (whose LFS rules send *.bin, *.safetensors... to Xet).
	NoGitAttributes bool
}

// Storage chooses how a file is stored.
type Storage int

// Storage modes.
const (
	StorageAuto  Storage = iota // the Hub's rules: size thresholds, .gitattributes, binary content
	StorageXet                  // chunked into xorbs, served through the CAS
	StoragePlain                // a plain git file, served by resolve itself
)

// File describes a file of a repo revision.
type File struct {
	Path    string
	Size    int64
	SHA256  string // hex
	GitOID  string // git blob sha1 of the file, or of its LFS pointer
	Xet     bool
	XetHash merklehash.Hash // zero for plain files
	Commit  string          // commit that last changed the file
}

// FileSpec is one file of a commit.
type FileSpec struct {
	Path    string
	Content io.Reader                     // read once, streaming
	Open    func() (io.ReadCloser, error) // used when Content is nil
	Storage Storage
	// Compression is the xorb compression policy of this file's new
	// chunks ("auto", "none", "lz4", "bg4"); empty means the Hub's
	// (Config.Compression). Chunks already stored keep their scheme.
	Compression string
}

// CommitSpec is a change to one branch.
type CommitSpec struct {
	Branch string // default "main"; created from main when missing
	Title  string
	Files  []FileSpec
	Delete []string // paths of files, or of folders ending in "/"
}

type repo struct {
	typ      RepoType
	name     string
	spec     RepoSpec
	readers  map[string]bool
	writers  map[string]bool
	branches map[string]string
	tags     map[string]string
	commits  map[string]*commit
	created  time.Time
	prs      int
	seq      int
	// xetFiles holds the Xet file hashes any commit of the repo ever
	// held: the files a CAS token of this repo may reconstruct.
	xetFiles map[merklehash.Hash]bool
}

type commit struct {
	id     string
	parent string
	title  string
	date   time.Time
	files  map[string]*entry
}

type entry struct {
	path        string
	size        int64
	sha256      [32]byte
	oid         string // git blob sha1 (of the pointer for Xet files)
	xet         bool
	xetHash     merklehash.Hash
	pointerSize int
	content     []byte // plain files
	commit      *commit
}

func (e *entry) public() File {
	return File{Path: e.path, Size: e.size, SHA256: hex.EncodeToString(e.sha256[:]), GitOID: e.oid,
		Xet: e.xet, XetHash: e.xetHash, Commit: e.commit.id}
}

var (
	// ErrNotFound reports an unknown repo, revision or file.
	ErrNotFound = errors.New("fakehub: not found")
	// ErrExists reports a repo, branch or tag that already exists.
	ErrExists = errors.New("fakehub: already exists")
)

// parseRepoID splits "datasets/ns/name" into its type and name.
func parseRepoID(id string) (RepoType, string, error) {
	t := Model
	switch {
	case strings.HasPrefix(id, "datasets/"):
		t, id = Dataset, strings.TrimPrefix(id, "datasets/")
	case strings.HasPrefix(id, "spaces/"):
		t, id = Space, strings.TrimPrefix(id, "spaces/")
	case strings.HasPrefix(id, "models/"):
		id = strings.TrimPrefix(id, "models/")
	}
	parts := strings.Split(id, "/")
	if len(parts) > 2 || (t != Model && len(parts) != 2) {
		return "", "", fmt.Errorf("fakehub: bad repo id %q", id)
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, " \t\n?#%") {
			return "", "", fmt.Errorf("fakehub: bad repo id %q", id)
		}
	}
	return t, id, nil
}

func repoKey(t RepoType, name string) string { return string(t) + "s/" + name }

// urlPrefix is the path prefix of the repo's web URLs ("", "datasets/"...).
func (rp *repo) urlPrefix() string {
	if rp.typ == Model {
		return ""
	}
	return string(rp.typ) + "s/"
}

func (rp *repo) key() string { return repoKey(rp.typ, rp.name) }

// lookup returns the repo with this id.
func (h *Hub) lookup(id string) (*repo, error) {
	t, name, err := parseRepoID(id)
	if err != nil {
		return nil, err
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	rp := h.repos[repoKey(t, name)]
	if rp == nil {
		return nil, fmt.Errorf("%w: repo %s", ErrNotFound, id)
	}
	return rp, nil
}

// DefaultGitAttributes is the .gitattributes the Hub puts in new repos.
const DefaultGitAttributes = `*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
`

// CreateRepo creates a repo with a main branch. Its first commit holds the
// default .gitattributes unless spec.NoGitAttributes.
func (h *Hub) CreateRepo(spec RepoSpec) error {
	t, name, err := parseRepoID(spec.ID)
	if err != nil {
		return err
	}
	rp := &repo{typ: t, name: name, branches: map[string]string{}, tags: map[string]string{},
		commits: map[string]*commit{}, created: time.Now().UTC()}
	rp.setSpec(spec)
	files := map[string]*entry{}
	c := rp.newCommit("", "initial commit")
	if !spec.NoGitAttributes {
		files[".gitattributes"] = plainEntry(".gitattributes", []byte(DefaultGitAttributes), c)
	}
	c.files = files
	rp.commits[c.id] = c
	rp.branches["main"] = c.id

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.repos[rp.key()] != nil {
		return fmt.Errorf("%w: repo %s", ErrExists, spec.ID)
	}
	h.repos[rp.key()] = rp
	return nil
}

// UpdateRepo replaces the access settings of an existing repo (Private,
// Gated, Disabled, Readers, Writers); its content is kept.
func (h *Hub) UpdateRepo(spec RepoSpec) error {
	rp, err := h.lookup(spec.ID)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rp.setSpec(spec)
	return nil
}

func (rp *repo) setSpec(spec RepoSpec) {
	rp.spec = spec
	rp.readers = make(map[string]bool)
	rp.writers = make(map[string]bool)
	for _, t := range spec.Readers {
		rp.readers[t] = true
	}
	for _, t := range spec.Writers {
		rp.writers[t] = true
	}
}

func (rp *repo) newCommit(parent, title string) *commit {
	rp.seq++
	now := time.Now().UTC()
	sum := sha1.Sum(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%s\x00%d", rp.key(), parent, rp.seq, title, now.UnixNano()))
	return &commit{id: hex.EncodeToString(sum[:]), parent: parent, title: title, date: now}
}

func isCommitID(s string) bool {
	if len(s) != 40 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// resolveRev maps a branch, tag or commit id to a commit (caller holds h.mu).
func (rp *repo) resolveRev(rev string) *commit {
	if rev == "" {
		rev = "main"
	}
	if id, ok := rp.branches[rev]; ok {
		return rp.commits[id]
	}
	if id, ok := rp.tags[rev]; ok {
		return rp.commits[id]
	}
	if isCommitID(rev) {
		return rp.commits[strings.ToLower(rev)]
	}
	return nil
}

// Resolve returns the commit id of a revision (branch, tag or commit).
func (h *Hub) Resolve(repoID, rev string) (string, error) {
	rp, err := h.lookup(repoID)
	if err != nil {
		return "", err
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	c := rp.resolveRev(rev)
	if c == nil {
		return "", fmt.Errorf("%w: revision %s of %s", ErrNotFound, rev, repoID)
	}
	return c.id, nil
}

// CreateBranch creates branch at revision from (default main). Branch
// names may contain slashes (refs/pr/1).
func (h *Hub) CreateBranch(repoID, branch, from string) error {
	return h.createRef(repoID, branch, from, false)
}

// CreateTag creates tag at revision rev (default main).
func (h *Hub) CreateTag(repoID, tag, rev string) error {
	return h.createRef(repoID, tag, rev, true)
}

func (h *Hub) createRef(repoID, name, from string, tag bool) error {
	rp, err := h.lookup(repoID)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	c := rp.resolveRev(from)
	if c == nil {
		return fmt.Errorf("%w: revision %s of %s", ErrNotFound, from, repoID)
	}
	if _, ok := rp.branches[name]; ok {
		return fmt.Errorf("%w: %s", ErrExists, name)
	}
	if _, ok := rp.tags[name]; ok {
		return fmt.Errorf("%w: %s", ErrExists, name)
	}
	if tag {
		rp.tags[name] = c.id
	} else {
		rp.branches[name] = c.id
	}
	return nil
}

// Files lists the files of a revision, sorted by path.
func (h *Hub) Files(repoID, rev string) ([]File, error) {
	rp, err := h.lookup(repoID)
	if err != nil {
		return nil, err
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	c := rp.resolveRev(rev)
	if c == nil {
		return nil, fmt.Errorf("%w: revision %s of %s", ErrNotFound, rev, repoID)
	}
	out := make([]File, 0, len(c.files))
	for _, e := range c.files {
		out = append(out, e.public())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Open returns the contents of a file of a revision, decoded from the CAS
// for Xet files.
func (h *Hub) Open(repoID, rev, path string) (io.ReadSeekCloser, File, error) {
	rp, err := h.lookup(repoID)
	if err != nil {
		return nil, File{}, err
	}
	h.mu.RLock()
	c := rp.resolveRev(rev)
	var e *entry
	if c != nil {
		e = c.files[path]
	}
	h.mu.RUnlock()
	if e == nil {
		return nil, File{}, fmt.Errorf("%w: %s at %s of %s", ErrNotFound, path, rev, repoID)
	}
	if !e.xet {
		return nopCloser{bytes.NewReader(e.content)}, e.public(), nil
	}
	f, ok := h.store.file(e.xetHash)
	if !ok {
		return nil, File{}, fmt.Errorf("%w: reconstruction %s", ErrNotFound, e.xetHash)
	}
	return h.store.openFile(f), e.public(), nil
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }

// AddFile commits one file to main (streaming from r) and returns it.
func (h *Hub) AddFile(ctx context.Context, repoID, path string, r io.Reader, storage ...Storage) (File, error) {
	spec := FileSpec{Path: path, Content: r}
	if len(storage) > 0 {
		spec.Storage = storage[0]
	}
	id, err := h.Commit(ctx, repoID, CommitSpec{Title: "Upload " + path, Files: []FileSpec{spec}})
	if err != nil {
		return File{}, err
	}
	files, err := h.Files(repoID, id)
	if err != nil {
		return File{}, err
	}
	for _, f := range files {
		if f.Path == path {
			return f, nil
		}
	}
	return File{}, fmt.Errorf("%w: %s", ErrNotFound, path)
}

// Commit applies a change to a branch as one new commit and returns its id.
// Files are ingested one after the other, each through the streaming
// pipeline.
func (h *Hub) Commit(ctx context.Context, repoID string, cs CommitSpec) (string, error) {
	rp, err := h.lookup(repoID)
	if err != nil {
		return "", err
	}
	branch := cs.Branch
	if branch == "" {
		branch = "main"
	}
	h.mu.RLock()
	head := rp.resolveRev(branch)
	if head == nil {
		head = rp.resolveRev("main")
	}
	rules := lfsRules(head)
	h.mu.RUnlock()

	entries := make([]*entry, 0, len(cs.Files))
	for _, fs := range cs.Files {
		if err := checkPath(fs.Path); err != nil {
			return "", err
		}
		r := fs.Content
		if r == nil {
			if fs.Open == nil {
				return "", fmt.Errorf("fakehub: file %s has no content", fs.Path)
			}
			rc, err := fs.Open()
			if err != nil {
				return "", fmt.Errorf("fakehub: %w", err)
			}
			defer rc.Close()
			r = rc
		}
		policy := h.policy
		if fs.Compression != "" {
			if policy, err = xorb.ParsePolicy(fs.Compression); err != nil {
				return "", fmt.Errorf("fakehub: %s: %w", fs.Path, err)
			}
		}
		e, err := h.prepare(ctx, rules, fs.Path, r, fs.Storage, policy)
		if err != nil {
			return "", fmt.Errorf("fakehub: %s: %w", fs.Path, err)
		}
		entries = append(entries, e)
	}
	return h.apply(rp, branch, cs.Title, entries, cs.Delete, "")
}

func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("fakehub: bad path %q", p)
	}
	for _, s := range strings.Split(p, "/") {
		if s == "" || s == "." || s == ".." {
			return fmt.Errorf("fakehub: bad path %q", p)
		}
	}
	return nil
}

// apply makes a commit on branch (created from main if missing) with the
// given new entries and deletions. parent, if set, must be the branch head.
func (h *Hub) apply(rp *repo, branch, title string, add []*entry, del []string, parent string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	head := rp.resolveRev(branch)
	if head == nil {
		if _, isTag := rp.tags[branch]; isTag || isCommitID(branch) {
			return "", fmt.Errorf("%w: %s is not a branch", ErrNotFound, branch)
		}
		head = rp.commits[rp.branches["main"]]
	} else if _, ok := rp.branches[branch]; !ok {
		return "", fmt.Errorf("%w: %s is not a branch", ErrNotFound, branch)
	}
	if parent != "" && parent != head.id {
		return "", errConflict
	}
	if title == "" {
		title = "Update files"
	}
	c := rp.newCommit(head.id, title)
	files := maps.Clone(head.files)
	for _, d := range del {
		if strings.HasSuffix(d, "/") {
			for p := range files {
				if strings.HasPrefix(p, d) {
					delete(files, p)
				}
			}
			continue
		}
		delete(files, d)
	}
	if rp.xetFiles == nil {
		rp.xetFiles = make(map[merklehash.Hash]bool)
	}
	for _, e := range add {
		e.commit = c
		files[e.path] = e
		if e.xet {
			rp.xetFiles[e.xetHash] = true
		}
	}
	c.files = files
	rp.commits[c.id] = c
	rp.branches[branch] = c.id
	return c.id, nil
}

var errConflict = errors.New("fakehub: parent commit is not the branch head")

// prepare stores one file and returns its entry, choosing plain or Xet
// storage by the Hub's rules when storage is StorageAuto; policy compresses
// its new chunks.
func (h *Hub) prepare(ctx context.Context, rules *lfsMatcher, path string, r io.Reader, storage Storage, policy xorb.Policy) (*entry, error) {
	switch storage {
	case StoragePlain:
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		return plainEntry(path, b, nil), nil
	case StorageXet:
		return h.xetEntry(ctx, path, r, policy)
	}
	sample := make([]byte, 512)
	n, err := io.ReadFull(r, sample)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	sample = sample[:n]
	lfs := rules.match(path)
	limit := h.cfg.SmallFileThreshold
	if !lfs && !isBinary(sample) {
		limit = max(limit, h.cfg.TextFileThreshold)
	}
	head := sample
	if int64(len(head)) < limit && n == 512 {
		rest, err := io.ReadAll(io.LimitReader(r, limit-int64(len(head))))
		if err != nil {
			return nil, err
		}
		head = append(head, rest...)
	}
	if int64(len(head)) < limit {
		return plainEntry(path, head, nil), nil
	}
	return h.xetEntry(ctx, path, io.MultiReader(bytes.NewReader(head), r), policy)
}

func (h *Hub) xetEntry(ctx context.Context, path string, r io.Reader, policy xorb.Policy) (*entry, error) {
	in, err := h.ingestWith(ctx, r, policy)
	if err != nil {
		return nil, err
	}
	return xetEntryFor(path, in.hash, in.size, in.sha256), nil
}

func xetEntryFor(path string, hash merklehash.Hash, size int64, sum [32]byte) *entry {
	ptr := lfsPointer(sum, size)
	return &entry{path: path, size: size, sha256: sum, oid: gitBlobOID(ptr), xet: true, xetHash: hash,
		pointerSize: len(ptr)}
}

func plainEntry(path string, content []byte, c *commit) *entry {
	return &entry{path: path, size: int64(len(content)), sha256: sha256.Sum256(content), oid: gitBlobOID(content),
		content: content, commit: c}
}

func lfsPointer(sum [32]byte, size int64) []byte {
	return fmt.Appendf(nil, "version https://git-lfs.github.com/spec/v1\noid sha256:%x\nsize %d\n", sum[:], size)
}

func gitBlobOID(content []byte) string {
	s := sha1.New()
	fmt.Fprintf(s, "blob %d\x00", len(content))
	s.Write(content)
	return hex.EncodeToString(s.Sum(nil))
}

// isBinary is the Hub's test on a sample: a NUL byte or invalid UTF-8 (a
// rune cut by the end of the sample does not count).
func isBinary(sample []byte) bool {
	if bytes.IndexByte(sample, 0) >= 0 {
		return true
	}
	if utf8.Valid(sample) {
		return false
	}
	for k := 1; k <= 3 && k < len(sample); k++ {
		if utf8.Valid(sample[:len(sample)-k]) {
			return false
		}
	}
	return true
}

// lfsMatcher holds the "filter=lfs" patterns of a .gitattributes file.
type lfsMatcher struct {
	res []*regexp.Regexp
	// base[i] tells whether pattern i matches the base name only
	base []bool
}

func lfsRules(c *commit) *lfsMatcher {
	m := &lfsMatcher{}
	if c == nil {
		return m
	}
	e := c.files[".gitattributes"]
	if e == nil || e.xet {
		return m
	}
	for _, line := range strings.Split(string(e.content), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || !containsString(f[1:], "filter=lfs") {
			continue
		}
		pat := strings.TrimPrefix(f[0], "/")
		re, err := regexp.Compile("^" + globToRegexp(pat) + "$")
		if err != nil {
			continue
		}
		m.res = append(m.res, re)
		m.base = append(m.base, !strings.Contains(f[0], "/"))
	}
	return m
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (m *lfsMatcher) match(p string) bool {
	base := p[strings.LastIndexByte(p, '/')+1:]
	for i, re := range m.res {
		if m.base[i] && re.MatchString(base) || !m.base[i] && re.MatchString(p) {
			return true
		}
	}
	return false
}

func globToRegexp(g string) string {
	var b strings.Builder
	for i := 0; i < len(g); i++ {
		switch c := g[i]; c {
		case '*':
			if strings.HasPrefix(g[i:], "**/") {
				b.WriteString("(.*/)?")
				i += 2
			} else if strings.HasPrefix(g[i:], "**") {
				b.WriteString(".*")
				i++
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return b.String()
}
