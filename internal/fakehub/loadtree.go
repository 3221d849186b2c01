package fakehub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// TreeOptions tunes LoadTree.
type TreeOptions struct {
	// Access settings given to every repo (see RepoSpec).
	Private, Gated   bool
	Readers, Writers []string
	// Progress receives one line per repo; nil is silent.
	Progress io.Writer
}

// manifestEntry remembers how a file of a loaded tree was stored, so that
// a Hub with the same Config.Dir skips re-reading unchanged files.
type manifestEntry struct {
	Size    int64           `json:"size"`
	ModTime int64           `json:"mtime"`
	SHA256  string          `json:"sha256"`
	XetHash merklehash.Hash `json:"xet_hash"`
}

// LoadTree serves a directory tree as repos: root/<namespace>/<name>/...
// are models, root/datasets/<namespace>/<name>/... datasets and
// root/spaces/<namespace>/<name>/... spaces. Each repo gets one commit
// holding all its files (under .git directories skipped), stored by the
// Hub's rules. With Config.Dir, Xet files already ingested from the same
// path, size and modification time are restored from their saved shard
// instead of being read again. It returns the repo ids in order.
func (h *Hub) LoadTree(ctx context.Context, root string, opts TreeOptions) ([]string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("fakehub: %w", err)
	}
	repos, err := findRepos(root)
	if err != nil {
		return nil, err
	}
	manifestPath := ""
	manifest := map[string]manifestEntry{}
	if h.cfg.Dir != "" {
		sum := sha256.Sum256([]byte(root))
		manifestPath = filepath.Join(h.cfg.Dir, "trees", hex.EncodeToString(sum[:8])+".json")
		if b, err := os.ReadFile(manifestPath); err == nil {
			_ = json.Unmarshal(b, &manifest) // a bad manifest only costs a re-read
		}
	}
	var ids []string
	for _, r := range repos {
		spec := RepoSpec{ID: r.id, Private: opts.Private, Gated: opts.Gated, Readers: opts.Readers, Writers: opts.Writers}
		if err := h.CreateRepo(spec); err != nil {
			return ids, err
		}
		start := time.Now()
		n, size, restored, err := h.loadRepo(ctx, r, manifest)
		if err != nil {
			return ids, fmt.Errorf("fakehub: loading %s: %w", r.id, err)
		}
		ids = append(ids, r.id)
		if opts.Progress != nil {
			d := time.Since(start)
			fmt.Fprintf(opts.Progress, "%s: %d files, %s (%d unchanged files reused) in %v (%s/s)\n",
				r.id, n, humanBytes(size), restored, d.Round(time.Millisecond), humanBytes(int64(float64(size)/max(d.Seconds(), 1e-3))))
		}
	}
	if manifestPath != "" {
		if err := os.MkdirAll(filepath.Dir(manifestPath), 0o755); err != nil {
			return ids, fmt.Errorf("fakehub: %w", err)
		}
		b, _ := json.Marshal(manifest)
		if err := writeFileAtomic(manifestPath, b); err != nil {
			return ids, err
		}
	}
	return ids, nil
}

type treeRepo struct {
	id  string
	dir string
}

func findRepos(root string) ([]treeRepo, error) {
	var out []treeRepo
	subdirs := func(dir string) ([]string, error) {
		es, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("fakehub: %w", err)
		}
		var names []string
		for _, e := range es {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		return names, nil
	}
	top, err := subdirs(root)
	if err != nil {
		return nil, err
	}
	for _, t := range top {
		prefix := ""
		base := filepath.Join(root, t)
		namespaces := []string{t}
		if t == "datasets" || t == "spaces" {
			prefix = t + "/"
			if namespaces, err = subdirs(base); err != nil {
				return nil, err
			}
		} else {
			base = root
		}
		for _, ns := range namespaces {
			names, err := subdirs(filepath.Join(base, ns))
			if err != nil {
				return nil, err
			}
			for _, name := range names {
				id := prefix + ns + "/" + name
				if _, _, err := parseRepoID(id); err != nil {
					return nil, err
				}
				out = append(out, treeRepo{id: id, dir: filepath.Join(base, ns, name)})
			}
		}
	}
	return out, nil
}

// loadRepo commits every file under r.dir to the repo's main branch.
func (h *Hub) loadRepo(ctx context.Context, r treeRepo, manifest map[string]manifestEntry) (files int, size int64, restored int, err error) {
	rp, err := h.lookup(r.id)
	if err != nil {
		return 0, 0, 0, err
	}
	h.mu.RLock()
	rules := lfsRules(rp.resolveRev("main"))
	h.mu.RUnlock()
	var entries []*entry
	err = filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(r.dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if err := checkPath(rel); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		key := p
		if m, ok := manifest[key]; ok && m.Size == info.Size() && m.ModTime == info.ModTime().UnixNano() && !m.XetHash.IsZero() {
			if f, err := h.store.restoreFile(m.XetHash); err == nil && int64(f.size) == m.Size {
				var sum [32]byte
				if b, err := hex.DecodeString(m.SHA256); err == nil && len(b) == 32 {
					copy(sum[:], b)
					entries = append(entries, xetEntryFor(rel, m.XetHash, m.Size, sum))
					files++
					size += m.Size
					restored++
					return nil
				}
			}
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		e, err := h.prepare(ctx, rules, rel, f, StorageAuto, h.policy)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		entries = append(entries, e)
		files++
		size += e.size
		if e.xet && !e.xetHash.IsZero() {
			manifest[key] = manifestEntry{Size: e.size, ModTime: info.ModTime().UnixNano(),
				SHA256: hex.EncodeToString(e.sha256[:]), XetHash: e.xetHash}
		}
		return nil
	})
	if err != nil {
		return 0, 0, 0, err
	}
	if _, err := h.apply(rp, "main", fmt.Sprintf("Load %d files", files), entries, nil, ""); err != nil {
		return 0, 0, 0, err
	}
	return files, size, restored, nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
