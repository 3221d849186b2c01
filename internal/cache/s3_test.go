package cache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
	"github.com/xetproxy/xetproxy/internal/merklehash"
)

func objectKey(prefix string, k cache.Key) string { return prefix + k.String() }

func TestS3ObjectLayout(t *testing.T) {
	f := newFakeS3(t)
	s := newS3Store(t, f.config("team/cache")) // "/" is appended
	e := cachetest.MakeEntry(cachetest.Xorb(1), 3, 9, 0)
	mustPut(t, s, e)
	key := "team/cache/" + e.Xorb.String() + "/3-9"
	b := f.object(t, key)
	if b == nil {
		t.Fatalf("no object %s; bucket has %v", key, f.keys(t))
	}
	if int64(len(b)) != storedSize(e) || string(b[:7]) != "XPCACHE" || b[7] != 2 {
		t.Errorf("object is %d bytes starting %q, want %d bytes of format 2", len(b), b[:8], storedSize(e))
	}
	// The disk file of the same entry is byte-identical.
	dir := t.TempDir()
	mustPut(t, newDisk(t, dir, 1<<30), e)
	if disk := readFile(t, entryPath(dir, e.Key())); string(disk) != string(b) {
		t.Error("disk file and object differ")
	}
}

// A second instance on the same bucket finds entries by listing the xorb's
// objects once, then trusts that listing for ListTTL.
func TestS3SecondInstanceLists(t *testing.T) {
	f := newFakeS3(t)
	a := newS3Store(t, f.config("p/"))
	x := cachetest.Xorb(2)
	mustPut(t, a, cachetest.MakeEntry(x, 0, 10, 0))
	mustPut(t, a, cachetest.MakeEntry(x, 20, 30, 0))

	cfg := f.config("p/")
	cfg.ListTTL = time.Hour
	b := newS3Store(t, cfg)
	f.reset()
	mustHit(t, b, x, 3, 7, 0)
	mustHit(t, b, x, 25, 26, 0)
	mustMiss(t, b, x, 8, 12)
	mustMiss(t, b, x, 40, 41)
	if n := f.Count("LIST"); n != 1 {
		t.Errorf("%d listings, want 1", n)
	}
	// Another xorb is listed separately; a different prefix sees nothing.
	mustMiss(t, b, cachetest.Xorb(3), 0, 1)
	if n := f.Count("LIST"); n != 2 {
		t.Errorf("%d listings, want 2", n)
	}
	mustMiss(t, newS3Store(t, f.config("q/")), x, 3, 7)
}

func TestS3ListTTLExpires(t *testing.T) {
	f := newFakeS3(t)
	cfg := f.config("")
	cfg.ListTTL = time.Nanosecond
	a, b := newS3Store(t, cfg), newS3Store(t, cfg)
	x := cachetest.Xorb(4)
	mustMiss(t, b, x, 0, 2) // b lists: nothing yet
	mustPut(t, a, cachetest.MakeEntry(x, 0, 4, 0))
	time.Sleep(time.Millisecond)
	mustHit(t, b, x, 0, 2, 0) // listing expired: b lists again
	if n := f.Count("LIST"); n != 2 {
		t.Errorf("%d listings, want 2", n)
	}
}

// With listing disabled a fresh instance finds exactly the keys asked for.
func TestS3DisableList(t *testing.T) {
	f := newFakeS3(t)
	x := cachetest.Xorb(5)
	mustPut(t, newS3Store(t, f.config("")), cachetest.MakeEntry(x, 0, 10, 0))
	cfg := f.config("")
	cfg.DisableList = true
	b := newS3Store(t, cfg)
	mustMiss(t, b, x, 3, 7) // would need a listing
	mustHit(t, b, x, 0, 10, 0)
	mustHit(t, b, x, 3, 7, 0) // now known
	if n := f.Count("LIST"); n != 0 {
		t.Errorf("%d listings with listing disabled", n)
	}
}

// A sub-range of a large object is read with two ranged GETs (header and
// the chunks needed), not by downloading the whole object.
func TestS3RangedReads(t *testing.T) {
	f := newFakeS3(t)
	s := newS3Store(t, f.config(""))
	x := cachetest.Xorb(6)
	mustPut(t, s, cachetest.MakeEntry(x, 0, 100, 64<<10)) // ~3 MiB
	f.reset()
	mustHit(t, s, x, 50, 52, 64<<10)
	if g, r := f.Count("GET"), f.Count("GET range"); g != 0 || r != 2 {
		t.Errorf("%d whole and %d ranged GETs, want 0 and 2", g, r)
	}
}

func TestS3Corruption(t *testing.T) {
	x := cachetest.Xorb(7)
	e := cachetest.MakeEntry(x, 0, 10, 0)
	hdr := int(storedSize(e)) - len(e.Data)
	for _, tc := range []struct {
		name string
		f    func([]byte) []byte
	}{
		{"data byte", func(b []byte) []byte { b[hdr+10] ^= 1; return b }},
		{"header byte", func(b []byte) []byte { b[50] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-7] }},
		{"empty", func(b []byte) []byte { return []byte{} }},
		{
			// Consistent checksums over data that does not match the chunk
			// hashes: only the hash check catches it.
			"forged",
			func(b []byte) []byte {
				forged := *e
				forged.Data = append([]byte(nil), e.Data...)
				forged.Data[5] ^= 1
				dir := t.TempDir()
				d := newDisk(t, dir, 1<<30)
				mustPut(t, d, &forged)
				return readFile(t, entryPath(dir, e.Key()))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeS3(t)
			mustPut(t, newS3Store(t, f.config("")), e)
			key := objectKey("", e.Key())
			f.setObject(t, key, tc.f(f.object(t, key)))
			s := newS3Store(t, f.config(""))
			mustMiss(t, s, x, 0, 10)
			if f.object(t, key) != nil {
				t.Error("corrupt object not deleted")
			}
			if st := s.Stats(); st.Corrupt != 1 {
				t.Errorf("corrupt count %d, want 1", st.Corrupt)
			}
		})
	}
}

func TestS3SkipHashCheckServesForgery(t *testing.T) {
	// The other side of the "forged" case: documents what SkipHashCheck
	// gives up.
	f := newFakeS3(t)
	x := cachetest.Xorb(8)
	forged := cachetest.MakeEntry(x, 0, 3, 0)
	forged.Data[0] ^= 1
	mustPut(t, newS3Store(t, f.config("")), forged) // Put does not hash
	cfg := f.config("")
	cfg.SkipHashCheck = true
	if _, err := newS3Store(t, cfg).Get(bg, x, 0, 3); err != nil {
		t.Fatalf("Get with SkipHashCheck = %v", err)
	}
	if _, err := newS3Store(t, f.config("")).Get(bg, x, 0, 3); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get with the hash check = %v, want ErrNotFound", err)
	}
}

// An object deleted behind the store's back (a lifecycle rule, another
// instance) is a miss, and the store forgets it.
func TestS3VanishedObject(t *testing.T) {
	f := newFakeS3(t)
	s := newS3Store(t, f.config(""))
	e := cachetest.MakeEntry(cachetest.Xorb(9), 0, 4, 0)
	mustPut(t, s, e)
	if _, err := f.backend.DeleteObject(testBucket, objectKey("", e.Key())); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, s, e.Xorb, 0, 4)
	if st := s.Stats(); st.Entries != 0 || st.Errors != 0 {
		t.Errorf("entries %d, errors %d; want 0, 0", st.Entries, st.Errors)
	}
}

// Service failures are errors, not misses, so the engine can tell a cold
// cache from a broken one.
func TestS3ServiceErrors(t *testing.T) {
	f := newFakeS3(t)
	cfg := f.config("")
	cfg.Bucket = "no-such-bucket"
	s := newS3Store(t, cfg)
	x := cachetest.Xorb(10)
	if _, err := s.Get(bg, x, 0, 1); err == nil || errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get on a missing bucket = %v, want a non-miss error", err)
	}
	if err := s.Put(bg, cachetest.MakeEntry(x, 0, 1, 0)); err == nil {
		t.Error("Put on a missing bucket succeeded")
	}
	if st := s.Stats(); st.Errors != 2 {
		t.Errorf("errors %d, want 2", st.Errors)
	}

	ctx, cancel := context.WithTimeout(bg, time.Second)
	defer cancel()
	dead := f.config("")
	dead.Endpoint = "http://127.0.0.1:1"
	if _, err := newS3Store(t, dead).Get(ctx, x, 0, 1); err == nil || errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get on an unreachable endpoint = %v, want a non-miss error", err)
	}
}

func TestS3ConfigValidate(t *testing.T) {
	ok := cache.S3Config{Bucket: "b", Endpoint: "https://acct.r2.cloudflarestorage.com", Region: "auto"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*cache.S3Config){
		"no bucket":       func(c *cache.S3Config) { c.Bucket = "" },
		"endpoint scheme": func(c *cache.S3Config) { c.Endpoint = "ftp://host" },
		"endpoint host":   func(c *cache.S3Config) { c.Endpoint = "https://" },
		"endpoint junk":   func(c *cache.S3Config) { c.Endpoint = "::" },
		"prefix slash":    func(c *cache.S3Config) { c.Prefix = "/x" },
		"half key":        func(c *cache.S3Config) { c.AccessKeyID = "k" },
		"half secret":     func(c *cache.S3Config) { c.SecretAccessKey = "s" },
		"negative ttl":    func(c *cache.S3Config) { c.ListTTL = -1 },
		"negative index":  func(c *cache.S3Config) { c.IndexKeys = -1 },
	} {
		c := ok
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The index of known keys is bounded; forgotten keys are found again by
// listing.
func TestS3IndexBound(t *testing.T) {
	f := newFakeS3(t)
	cfg := f.config("")
	cfg.IndexKeys = 2
	s := newS3Store(t, cfg)
	var xs []merklehash.Hash
	for i := range 5 {
		x := cachetest.Xorb(uint64(20 + i))
		xs = append(xs, x)
		mustPut(t, s, cachetest.MakeEntry(x, 0, 2, 0))
	}
	if st := s.Stats(); st.Entries != 2 {
		t.Errorf("index holds %d keys, want 2", st.Entries)
	}
	f.reset()
	mustHit(t, s, xs[0], 0, 1, 0)
	if n := f.Count("LIST"); n != 1 {
		t.Errorf("%d listings for a forgotten key, want 1", n)
	}
}

// Delete reaches objects another instance wrote, and the other instance
// stops serving them.
func TestS3DeleteAcrossInstances(t *testing.T) {
	f := newFakeS3(t)
	a, b := newS3Store(t, f.config("d")), newS3Store(t, f.config("d"))
	x := cachetest.Xorb(30)
	mustPut(t, a, cachetest.MakeEntry(x, 0, 4, 0))
	mustPut(t, a, cachetest.MakeEntry(x, 4, 8, 0))
	mustPut(t, a, cachetest.MakeEntry(cachetest.Xorb(31), 0, 4, 0))
	if err := b.Delete(bg, x, 3, 4); err != nil {
		t.Fatal(err)
	}
	if keys := f.keys(t); len(keys) != 2 || hasPrefixCount(keys, "d/"+x.String()+"/4-8") != 1 {
		t.Errorf("bucket after Delete: %v", keys)
	}
	mustMiss(t, a, x, 0, 4) // a's index knew the key; the object is gone
	mustHit(t, a, x, 4, 8, 0)
}

// An object truncated after this instance learned its size: the ranged read
// of the missing chunks runs past the end, which is corruption, not an
// error.
func TestS3TruncatedLargeObject(t *testing.T) {
	f := newFakeS3(t)
	s := newS3Store(t, f.config(""))
	x := cachetest.Xorb(12)
	e := cachetest.MakeEntry(x, 0, 100, 64<<10)
	mustPut(t, s, e)
	key := objectKey("", e.Key())
	b := f.object(t, key)
	f.setObject(t, key, b[:len(b)-len(e.Chunk(99))-10])
	mustHit(t, s, x, 10, 12, 64<<10) // untouched chunks still verify
	mustMiss(t, s, x, 98, 100)
	if f.object(t, key) != nil {
		t.Error("truncated object not deleted")
	}
	if st := s.Stats(); st.Corrupt != 1 || st.Errors != 0 {
		t.Errorf("corrupt %d, errors %d; want 1, 0", st.Corrupt, st.Errors)
	}
}
