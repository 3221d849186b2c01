package corruption

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/merklehash"
	"github.com/xetproxy/xetproxy/internal/server"
)

// rewriteBucket rewrites every chunk entry in the stack's bucket the way
// someone with write access could: a byte of the data flipped, the chunk
// hashes and checksums recomputed to match. It returns how many it
// rewrote; with dropManifests it also deletes the xorb manifests.
func rewriteBucket(t *testing.T, st *stack, dropManifests bool) int {
	t.Helper()
	ctx := context.Background()
	open := func() *cache.S3 {
		s3, err := cache.NewS3(ctx, cache.S3Config{
			Endpoint: st.cfg.S3Endpoint, Bucket: st.cfg.S3Bucket, Prefix: st.cfg.S3Prefix, Region: st.cfg.S3Region,
			PathStyle: st.cfg.S3PathStyle, AccessKeyID: st.cfg.S3AccessKeyID, SecretAccessKey: st.cfg.S3SecretAccessKey,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s3
	}
	s3 := open()
	var forgeries []*cache.Entry
	list, err := st.bucket.ListBucket(bucketName, nil, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range list.Contents {
		key := strings.TrimPrefix(o.Key, st.cfg.S3Prefix)
		if strings.HasPrefix(key, "manifests/") {
			if dropManifests {
				if _, err := st.bucket.DeleteObject(bucketName, o.Key); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		xs, rng, ok := strings.Cut(key, "/")
		lo, hi, ok2 := strings.Cut(rng, "-")
		if !ok || !ok2 {
			continue
		}
		x, err := merklehash.Parse(xs)
		start, err1 := strconv.ParseUint(lo, 10, 32)
		end, err2 := strconv.ParseUint(hi, 10, 32)
		if err != nil || err1 != nil || err2 != nil {
			t.Fatalf("bucket key %q", o.Key)
		}
		ent, err := s3.Get(ctx, x, uint32(start), uint32(end))
		if err != nil {
			t.Fatalf("reading %s: %v", o.Key, err)
		}
		forged := &cache.Entry{Xorb: x, Start: ent.Start, End: ent.End, Offsets: ent.Offsets, Data: bytes.Clone(ent.Data)}
		forged.Data[len(forged.Data)/2] ^= 0x40
		for i := forged.Start; i < forged.End; i++ {
			forged.Hashes = append(forged.Hashes, merklehash.ChunkHash(forged.Chunk(i)))
		}
		if _, err := st.bucket.DeleteObject(bucketName, o.Key); err != nil {
			t.Fatal(err)
		}
		forgeries = append(forgeries, forged)
	}
	w := open() // a store that has not seen the old objects writes the new ones
	for _, e := range forgeries {
		if err := w.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	return len(forgeries)
}

// TestCorruptBucketRewritten: a bucket entry rewritten consistently (data,
// chunk hashes and checksums) is caught on a second instance that reads it:
// against the xorb's manifest, kept in the bucket, before any of it is sent,
// and the chunks come from upstream instead; without the manifests, the
// whole-file hash still keeps a wrong file from ever completing.
func TestCorruptBucketRewritten(t *testing.T) {
	t.Parallel()
	for _, dropManifests := range []bool{false, true} {
		name := "with manifests"
		if dropManifests {
			name = "without manifests"
		}
		t.Run(name, func(t *testing.T) {
			f := newFile(t, schemes[0]) // raw chunks: a flipped byte decodes fine
			st := newStack(t, s3Cache)
			p := st.start(nil)
			exact(t, "warming", goPlain.get(t, p.url+f.downloadPath(), nil), read{name: "whole", want: f.data})
			p.flush()
			p.stop()
			if n := rewriteBucket(t, st, dropManifests); n == 0 {
				t.Fatal("premise: no entry in the bucket to rewrite")
			}
			q := st.start(func(c *server.Config) { c.CacheDir = t.TempDir() })
			u := q.url + f.downloadPath()
			whole := read{name: "whole", want: f.data}
			if !dropManifests {
				exact(t, "second instance, whole", goPlain.get(t, u, nil), whole)
				if q.metric(`xetproxy_integrity_failures_total{check="manifest"}`) == 0 {
					t.Error("premise: no cached chunk failed its manifest")
				}
				mid := int64(len(f.data) / 2)
				rng := []int64{mid - 300, mid + 300}
				exact(t, "second instance, range", goPlain.get(t, u, rng), read{name: "range", rng: rng, want: f.data[mid-300 : mid+300]})
				return
			}
			for _, c := range []client{goPlain, goTrailers} {
				o := c.get(t, u, nil)
				if o.status == 200 && o.complete && !bytes.Equal(o.body, f.data) {
					t.Fatalf("%s: a complete answer of wrong bytes from a rewritten bucket", c)
				}
			}
			if q.metric(`xetproxy_integrity_failures_total{check="file_hash"}`) == 0 {
				t.Error("premise: the file hash never failed")
			}
			// The purge leaves the truth to be fetched again.
			exact(t, "after the purge", goPlain.get(t, u, nil), whole)
		})
	}
}
