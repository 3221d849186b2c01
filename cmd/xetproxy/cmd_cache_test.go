package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// cacheXorb is a xorb of real content (chunked random bytes, hashed) and
// its manifest.
type cacheXorb struct {
	m    *cache.Manifest
	data []byte
	offs []uint32
}

func newCacheXorb(t *testing.T, seed uint64) *cacheXorb {
	t.Helper()
	m, data := cachetest.MakeManifest(seed, 512<<10)
	if m.Len() < 4 {
		t.Fatalf("premise: %d chunks", m.Len())
	}
	x := &cacheXorb{m: m, data: data, offs: []uint32{0}}
	for _, s := range m.Sizes {
		x.offs = append(x.offs, x.offs[len(x.offs)-1]+s)
	}
	return x
}

func (x *cacheXorb) entry(start, end uint32) *cache.Entry {
	base := x.offs[start]
	e := &cache.Entry{Xorb: x.m.Xorb, Start: start, End: end,
		Hashes: slices.Clone(x.m.Hashes[start:end]), Data: slices.Clone(x.data[base:x.offs[end]])}
	for i := start; i <= end; i++ {
		e.Offsets = append(e.Offsets, x.offs[i]-base)
	}
	return e
}

// cacheDirFixture fills a cache directory through a disk store: xorb a with
// its manifest and two entries, xorb b with one entry and no manifest.
func cacheDirFixture(t *testing.T) (dir string, a, b *cacheXorb) {
	t.Helper()
	dir = t.TempDir()
	d, err := cache.NewDisk(cache.DiskConfig{Dir: dir, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b = newCacheXorb(t, 1), newCacheXorb(t, 2)
	for _, e := range []*cache.Entry{a.entry(0, 2), a.entry(2, a.m.Len()), b.entry(0, 3)} {
		if err := d.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.PutManifest(ctx, a.m); err != nil {
		t.Fatal(err)
	}
	return dir, a, b
}

func entryFile(dir string, x merklehash.Hash, start, end uint32) string {
	name := (cache.Key{Xorb: x, Start: start, End: end}).String()
	name = strings.Replace(name, "/", ".", 1)
	return filepath.Join(dir, "chunks-v2", name[:2], name)
}

func TestCacheUsage(t *testing.T) {
	t.Setenv("XETPROXY_CACHE_DIR", "")
	dir := t.TempDir()
	for _, args := range [][]string{
		{"cache"},
		{"cache", "nope"},
		{"cache", "du"},
		{"cache", "du", "--cache-dir", dir, "extra"},
		{"cache", "du", "--cache-dir", dir, "--cache-size", "lots"},
		{"cache", "ls", "--cache-dir", dir, "--sort", "name"},
		{"cache", "prune", "--cache-dir", dir, "--older-than", "soon"},
		{"cache", "prune", "--cache-dir", dir, "--max-size", "0"},
	} {
		if code, _, _ := runCmd(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, _, errOut := runCmd(t, "cache", "-h"); code != exitOK || !strings.Contains(errOut, "prune") {
		t.Errorf("cache -h: exit %d, %q", code, errOut)
	}
	if code, _, _ := runCmd(t, "cache", "du", "--cache-dir", filepath.Join(dir, "missing")); code != exitError {
		t.Errorf("du of a missing directory: exit %d, want %d", code, exitError)
	}
	// The environment gives the directory.
	t.Setenv("XETPROXY_CACHE_DIR", dir)
	if code, out, errOut := runCmd(t, "cache", "du"); code != exitOK || !strings.Contains(out, dir) {
		t.Errorf("du with XETPROXY_CACHE_DIR: exit %d, %q %q", code, out, errOut)
	}
}

func TestCacheDu(t *testing.T) {
	dir, a, b := cacheDirFixture(t)
	code, out, errOut := runCmd(t, "cache", "du", "--cache-dir", dir, "--cache-size", "10MiB", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var d duJSON
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	decoded := int64(len(a.data) + len(b.entry(0, 3).Data))
	if d.Entries != 3 || d.Manifests != 1 || d.Xorbs != 2 || d.XorbsWithManifest != 1 ||
		d.DecodedBytes != decoded || d.CapacityBytes != 10<<20 || d.UsedBytes != d.EntryBytes+d.ManifestBytes {
		t.Errorf("du: %+v; want 3 entries of %d decoded bytes, 1 manifest, 2 xorbs (1 with a manifest)", d, decoded)
	}
	code, out, _ = runCmd(t, "cache", "du", "--cache-dir", dir, "--cache-size", "10MiB")
	if code != exitOK || !strings.Contains(out, "of 10.0 MiB") || !strings.Contains(out, "(1 with a manifest)") {
		t.Errorf("du text: %q", out)
	}
}

func TestCacheLs(t *testing.T) {
	dir, a, _ := cacheDirFixture(t)
	code, out, _ := runCmd(t, "cache", "ls", "--cache-dir", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 3 {
		t.Fatalf("ls: exit %d, %d lines: %q", code, len(lines), out)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 6 {
			t.Errorf("line %q: %d fields, want 6", l, len(f))
		}
	}

	// Filtered by a prefix of a's hash, with manifests, as NDJSON.
	prefix := a.m.Xorb.String()[:6]
	code, out, _ = runCmd(t, "cache", "ls", "--cache-dir", dir, "--xorb", prefix, "--manifests", "--json")
	if code != exitOK {
		t.Fatalf("ls --json: exit %d", code)
	}
	var kinds []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var j lsJSON
		if err := json.Unmarshal([]byte(l), &j); err != nil {
			t.Fatalf("%v: %q", err, l)
		}
		if j.Xorb != a.m.Xorb.String() {
			t.Errorf("--xorb %s listed %s", prefix, j.Xorb)
		}
		if j.Kind == "entry" && (j.Chunks == nil || *j.Chunks != *j.End-*j.Start || *j.DecodedBytes != int64(a.offs[*j.End]-a.offs[*j.Start])) {
			t.Errorf("entry line %q", l)
		}
		kinds = append(kinds, j.Kind)
	}
	if want := []string{"manifest", "entry", "entry"}; !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}

	// Largest first.
	_, out, _ = runCmd(t, "cache", "ls", "--cache-dir", dir, "--sort", "size", "--json")
	var sizes []int64
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var j lsJSON
		if err := json.Unmarshal([]byte(l), &j); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, j.StoredBytes)
	}
	if len(sizes) != 3 || !slices.IsSortedFunc(sizes, func(x, y int64) int { return int(y - x) }) {
		t.Errorf("--sort size: %v", sizes)
	}
}

func TestCacheVerify(t *testing.T) {
	dir, a, b := cacheDirFixture(t)
	code, out, _ := runCmd(t, "cache", "verify", "--cache-dir", dir)
	if code != exitOK || !strings.Contains(out, "checked 3 entries (2 against their xorb's manifest), 1 manifest") || !strings.Contains(out, "OK") {
		t.Fatalf("clean: exit %d, %q", code, out)
	}

	// A flipped byte in b's entry, and a's first entry rewritten
	// consistently (through a store's own encoder) so that only a's
	// manifest catches it.
	p := entryFile(dir, b.m.Xorb, 0, 3)
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	forged := a.entry(0, 2)
	forged.Data[0] ^= 1
	forged.Hashes[0] = merklehash.ChunkHash(forged.Chunk(0))
	scratch := t.TempDir()
	sd, err := cache.NewDisk(cache.DiskConfig{Dir: scratch, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.Put(context.Background(), forged); err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile(entryFile(scratch, a.m.Xorb, 0, 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(entryFile(dir, a.m.Xorb, 0, 2), raw, 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, _ = runCmd(t, "cache", "verify", "--cache-dir", dir)
	if code != exitError || strings.Count(out, "FAIL ") != 2 || !strings.Contains(out, ": stored form: ") ||
		!strings.Contains(out, ": manifest: ") || !strings.Contains(out, "run with --delete") {
		t.Errorf("damaged: exit %d, %q", code, out)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("report only, yet: %v", err)
	}

	code, out, _ = runCmd(t, "cache", "verify", "--cache-dir", dir, "--delete", "--json")
	var j verifyJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if code != exitError || len(j.Failures) != 2 || !j.Failures[0].Deleted || !j.Failures[1].Deleted {
		t.Errorf("--delete --json: exit %d, %+v", code, j)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("--delete left %s: %v", p, err)
	}
	code, out, _ = runCmd(t, "cache", "verify", "--cache-dir", dir)
	if code != exitOK || !strings.Contains(out, "checked 1 entry (1 against") {
		t.Errorf("after --delete: exit %d, %q", code, out)
	}
}

func TestCachePrune(t *testing.T) {
	dir, a, b := cacheDirFixture(t)
	files := []string{entryFile(dir, a.m.Xorb, 0, 2), entryFile(dir, a.m.Xorb, 2, a.m.Len()), entryFile(dir, b.m.Xorb, 0, 3)}

	code, out, _ := runCmd(t, "cache", "prune", "--cache-dir", dir, "--max-size", "1", "--dry-run", "-v")
	if code != exitOK || strings.Count(out, "would remove chunks-v2/") != 3 || !strings.Contains(out, "would remove 3 entries and 1 manifest") {
		t.Errorf("dry run: exit %d, %q", code, out)
	}
	for _, p := range files {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("dry run removed %s", p)
		}
	}

	code, out, _ = runCmd(t, "cache", "prune", "--cache-dir", dir, "--older-than", "30d", "--json")
	var j pruneJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != exitOK || j.Removed != 0 || j.Kept != 4 {
		t.Errorf("--older-than 30d on fresh files: exit %d, %q, %v", code, out, err)
	}

	code, out, _ = runCmd(t, "cache", "prune", "--cache-dir", dir, "--max-size", "1")
	if code != exitOK || !strings.Contains(out, "removed 3 entries and 1 manifest") || !strings.Contains(out, "0 files left (0 B)") {
		t.Errorf("prune --max-size 1: exit %d, %q", code, out)
	}
	for _, p := range files {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]string{"72h": "72h0m0s", "30d": "720h0m0s", "90m": "1h30m0s"} {
		if d, err := parseAge(in); err != nil || d.String() != want {
			t.Errorf("parseAge(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, in := range []string{"", "d", "-1d", "x3d", "-5m"} {
		if _, err := parseAge(in); err == nil {
			t.Errorf("parseAge(%q): no error", in)
		}
	}
}
