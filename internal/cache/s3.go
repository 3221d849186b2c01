package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

const (
	defaultListTTL   = 30 * time.Second
	defaultIndexKeys = 100_000
	// listMaxKeys bounds the one listing page read per xorb on a miss.
	listMaxKeys = 1000
	// deletePages bounds the listing pages Delete reads for one xorb.
	deletePages = 10
)

// S3Config configures an S3 store on any S3-compatible object store
// (Cloudflare R2, AWS S3, MinIO, ...).
type S3Config struct {
	// Endpoint is the service URL, e.g.
	// https://<account>.r2.cloudflarestorage.com; empty means AWS S3.
	Endpoint string
	// Bucket holds the entries; it must exist.
	Bucket string
	// Prefix is prepended to every object key; a "/" is appended when it
	// does not end with one.
	Prefix string
	// Region signs requests ("auto" for R2). Empty takes the SDK's
	// environment (AWS_REGION), then "us-east-1".
	Region string
	// PathStyle addresses the bucket in the URL path instead of the host
	// name (MinIO and most self-hosted servers need it).
	PathStyle bool
	// AccessKeyID and SecretAccessKey are static credentials. When both are
	// empty the SDK's default chain is used: AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, shared config files, instance roles.
	AccessKeyID, SecretAccessKey string
	// DisableList stops Get from listing a xorb's objects on a miss: it then
	// only finds the exact key asked for and entries this process has seen.
	DisableList bool
	// ListTTL is how long a listing of a xorb's objects is trusted before a
	// miss lists again; 0 means 30s.
	ListTTL time.Duration
	// IndexKeys bounds the object keys remembered in memory; 0 means 100000.
	IndexKeys int
	// SkipHashCheck skips re-hashing the chunks of every object read. The
	// checksums are always verified; the hash check additionally rejects
	// objects whose data does not match their chunk hashes, which a writer
	// to the bucket could otherwise forge.
	SkipHashCheck bool
	// HTTPClient, if set, replaces the SDK's HTTP client.
	HTTPClient *http.Client
	// Logger receives corrupt-object warnings; nil discards them.
	Logger *slog.Logger
}

// Validate checks the configuration.
func (c S3Config) Validate() error {
	if c.Bucket == "" {
		return errors.New("cache: s3 bucket not set")
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("cache: s3 endpoint %q is not an http(s) URL", c.Endpoint)
		}
	}
	if strings.HasPrefix(c.Prefix, "/") {
		return fmt.Errorf("cache: s3 prefix %q starts with /", c.Prefix)
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return errors.New("cache: s3 access key id and secret access key must be set together")
	}
	if c.ListTTL < 0 || c.IndexKeys < 0 {
		return errors.New("cache: negative s3 list ttl or index size")
	}
	return nil
}

// S3 is a Store on an S3-compatible bucket, meant to be shared by several
// proxy instances. Each entry is one object, in the same stored form as a
// disk entry, under "<prefix><xorb hash>/<start>-<end>".
//
// The store cannot ask the bucket for "an object covering [s, e)", so it
// keeps a bounded in-memory index of the keys it has written, read or
// listed; on a miss it lists the xorb's objects (one page) and trusts that
// listing for ListTTL. Reads fetch only the header and the requested chunks
// of a large object, and verify checksums and, by default, chunk hashes.
// The store never evicts: give the bucket a lifecycle rule.
//
// S3 is also a ManifestStore: the manifest of a xorb is one object,
// "<prefix>manifests/<xorb hash>", in the stored form of
// Manifest.MarshalBinary. GetManifest reads it with one GET and parses
// (verifies) it; an object that fails is deleted. The index remembers which
// manifests exist, so that PutManifest writes each at most once.
type S3 struct {
	cfg    S3Config
	client *s3.Client
	prefix string
	log    *slog.Logger

	mu     sync.Mutex
	idx    *index[struct{}] // item size = object size
	listed map[merklehash.Hash]time.Time

	c counters
}

var (
	_ Store         = (*S3)(nil)
	_ ManifestStore = (*S3)(nil)
	_ StatsReporter = (*S3)(nil)
)

// NewS3 returns an S3 store. It does not contact the service.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ListTTL == 0 {
		cfg.ListTTL = defaultListTTL
	}
	if cfg.IndexKeys == 0 {
		cfg.IndexKeys = defaultIndexKeys
	}
	opts := []func(*config.LoadOptions) error{
		// Plain requests work with every S3-compatible server; the entries
		// carry their own checksums.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(cfg.HTTPClient))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cache: s3 config: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	})
	prefix := cfg.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &S3{
		cfg:    cfg,
		client: client,
		prefix: prefix,
		log:    log,
		idx:    newIndex[struct{}](),
		listed: make(map[merklehash.Hash]time.Time),
	}, nil
}

// objectKey is the object key of entry k.
func (s *S3) objectKey(k Key) string { return s.prefix + k.String() }

// xorbPrefix is the key prefix of every object of xorb.
func (s *S3) xorbPrefix(xorb merklehash.Hash) string { return s.prefix + xorb.String() + "/" }

// parseRange reads the "<start>-<end>" suffix of an object key.
func parseRange(xorb merklehash.Hash, suffix string) (Key, bool) {
	ss, es, ok := strings.Cut(suffix, "-")
	if !ok {
		return Key{}, false
	}
	st, err1 := strconv.ParseUint(ss, 10, 32)
	en, err2 := strconv.ParseUint(es, 10, 32)
	k := Key{Xorb: xorb, Start: uint32(st), End: uint32(en)}
	if err1 != nil || err2 != nil || checkRange(k.Start, k.End) != nil || k.String() != xorb.String()+"/"+suffix {
		return Key{}, false
	}
	return k, true
}

// remember records that the object of k exists with the given size.
func (s *S3) remember(k Key, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it := s.idx.byKey[k]; it != nil {
		s.idx.touch(it)
		return
	}
	s.idx.add(k, size, struct{}{})
	s.trimLocked()
}

// trimLocked bounds the index to IndexKeys objects (entries and manifests).
// The caller holds s.mu.
func (s *S3) trimLocked() {
	for s.idx.items() > s.cfg.IndexKeys {
		s.idx.remove(s.idx.oldest())
	}
}

func (s *S3) forget(k Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it := s.idx.byKey[k]; it != nil {
		s.idx.remove(it)
	}
}

// lookup finds a known covering object; size is its object size.
func (s *S3) lookup(want Key) (k Key, size int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.idx.covering(want.Xorb, want.Start, want.End)
	if it == nil {
		return Key{}, 0, false
	}
	s.idx.touch(it)
	return it.key, it.size, true
}

// listedRecently reports whether xorb was listed within ListTTL.
func (s *S3) listedRecently(xorb merklehash.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.listed[xorb]
	return ok && time.Since(t) < s.cfg.ListTTL
}

// list reads one page of xorb's objects into the index.
func (s *S3) list(ctx context.Context, xorb merklehash.Hash) error {
	p := s.xorbPrefix(xorb)
	out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.cfg.Bucket),
		Prefix:  aws.String(p),
		MaxKeys: aws.Int32(listMaxKeys),
	})
	if err != nil {
		return err
	}
	for _, o := range out.Contents {
		if o.Key == nil || o.Size == nil {
			continue
		}
		if k, ok := parseRange(xorb, strings.TrimPrefix(*o.Key, p)); ok {
			s.remember(k, *o.Size)
		}
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listed) >= s.cfg.IndexKeys {
		for x, t := range s.listed {
			if now.Sub(t) >= s.cfg.ListTTL {
				delete(s.listed, x)
			}
		}
		if len(s.listed) >= s.cfg.IndexKeys {
			clear(s.listed)
		}
	}
	s.listed[xorb] = now
	return nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, xorb merklehash.Hash, start, end uint32) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkRange(start, end); err != nil {
		return nil, err
	}
	want := Key{Xorb: xorb, Start: start, End: end}
	for range getAttempts {
		k, size, ok := s.lookup(want)
		if !ok && s.cfg.DisableList {
			k, size, ok = want, -1, true // the exact key; size unknown
		}
		if !ok && !s.listedRecently(xorb) {
			if err := s.list(ctx, xorb); err != nil {
				return nil, s.failed(ctx, fmt.Errorf("cache: listing %s: %w", xorb, err))
			}
			k, size, ok = s.lookup(want)
		}
		if !ok {
			break
		}
		e, err := s.read(ctx, k, size, start, end)
		if err == nil && !s.cfg.SkipHashCheck {
			if verr := e.Verify(); verr != nil {
				err = fmt.Errorf("%w %s: %w", errCorrupt, k, verr)
			}
		}
		switch {
		case err == nil:
			if size < 0 {
				s.remember(k, int64(headerSize(k.Len()))+int64(len(e.Data)))
			}
			s.c.hit(len(e.Data))
			return e, nil
		case errors.Is(err, ErrNotFound):
			s.forget(k)
			if size < 0 {
				s.c.misses.Add(1)
				return nil, fmt.Errorf("%w: %s", ErrNotFound, want)
			}
		case errors.Is(err, errCorrupt):
			s.log.Warn("cache: deleting corrupt object", "key", s.objectKey(k), "err", err)
			s.c.corrupt.Add(1)
			s.forget(k)
			if _, derr := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
				Bucket: aws.String(s.cfg.Bucket),
				Key:    aws.String(s.objectKey(k)),
			}); derr != nil {
				s.log.Warn("cache: deleting corrupt object", "key", s.objectKey(k), "err", derr)
			}
			if size < 0 {
				s.c.misses.Add(1)
				return nil, fmt.Errorf("%w: %s", ErrNotFound, want)
			}
		default:
			return nil, s.failed(ctx, fmt.Errorf("cache: reading %s: %w", s.objectKey(k), err))
		}
	}
	s.c.misses.Add(1)
	return nil, fmt.Errorf("%w: %s", ErrNotFound, want)
}

// failed counts err unless it is the caller's context ending, in which case
// the context's error is returned.
func (s *S3) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.c.errors.Add(1)
	return err
}

// read fetches chunks [start, end) of object k. With size < 0 (unknown) it
// reads the whole object; otherwise only what readEntry needs.
func (s *S3) read(ctx context.Context, k Key, size int64, start, end uint32) (*Entry, error) {
	if size >= 0 {
		return readEntry(&objectReader{ctx: ctx, s: s, key: s.objectKey(k)}, size, k, start, end)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.objectKey(k)),
	})
	if err != nil {
		return nil, mapS3Error(err)
	}
	defer out.Body.Close()
	if out.ContentLength != nil && *out.ContentLength > maxEncodedBytes {
		return nil, corruptf(k, "object is %d bytes", *out.ContentLength)
	}
	buf, err := io.ReadAll(io.LimitReader(out.Body, maxEncodedBytes+1))
	if err != nil {
		return nil, err
	}
	return readEntry(bytes.NewReader(buf), int64(len(buf)), k, start, end)
}

// objectReader reads byte ranges of one object, one request per ReadAt.
type objectReader struct {
	ctx context.Context
	s   *S3
	key string
}

func (r *objectReader) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	out, err := r.s.client.GetObject(r.ctx, &s3.GetObjectInput{
		Bucket: aws.String(r.s.cfg.Bucket),
		Key:    aws.String(r.key),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1)),
	})
	if err != nil {
		return 0, mapS3Error(err)
	}
	defer out.Body.Close()
	// A server that ignores Range answers with the whole object.
	if out.ContentRange == nil && off != 0 {
		return 0, fmt.Errorf("cache: range request for %s answered without Content-Range", r.key)
	}
	if out.ContentRange != nil && !strings.HasPrefix(*out.ContentRange, fmt.Sprintf("bytes %d-", off)) {
		return 0, fmt.Errorf("cache: range request for %s at %d answered with %q", r.key, off, *out.ContentRange)
	}
	return io.ReadFull(out.Body, p)
}

// mapS3Error turns a missing object into ErrNotFound and a range past the
// end of the object into io.ErrUnexpectedEOF (a truncated entry).
func mapS3Error(err error) error {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		case "InvalidRange":
			return io.ErrUnexpectedEOF
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Put implements Store. Objects are written whole with one PutObject; a key
// already known (or covered by a known key) is not written again.
func (s *S3) Put(ctx context.Context, e *Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.Validate(); err != nil {
		return err
	}
	k := e.Key()
	if _, _, ok := s.lookup(k); ok {
		return nil
	}
	body := encode(e)
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(s.objectKey(k)),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/octet-stream"),
	})
	if err != nil {
		return s.failed(ctx, fmt.Errorf("cache: writing %s: %w", s.objectKey(k), err))
	}
	s.remember(k, int64(len(body)))
	s.c.put(len(e.Data))
	return nil
}

// Delete implements Store: it lists every object of xorb (up to
// deletePages pages) and deletes those that overlap [start, end).
func (s *S3) Delete(ctx context.Context, xorb merklehash.Hash, start, end uint32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkRange(start, end); err != nil {
		return err
	}
	want := Key{Xorb: xorb, Start: start, End: end}
	s.mu.Lock()
	for _, it := range s.idx.overlapping(want) {
		s.idx.remove(it)
	}
	delete(s.listed, xorb)
	s.mu.Unlock()

	p := s.xorbPrefix(xorb)
	var token *string
	for range deletePages {
		out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket:            aws.String(s.cfg.Bucket),
			Prefix:            aws.String(p),
			MaxKeys:           aws.Int32(listMaxKeys),
			ContinuationToken: token,
		})
		if err != nil {
			return s.failed(ctx, fmt.Errorf("cache: listing %s: %w", xorb, err))
		}
		for _, o := range out.Contents {
			if o.Key == nil {
				continue
			}
			if k, ok := parseRange(xorb, strings.TrimPrefix(*o.Key, p)); !ok || !k.Overlaps(want) {
				continue
			}
			if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
				Bucket: aws.String(s.cfg.Bucket),
				Key:    o.Key,
			}); err != nil {
				return s.failed(ctx, fmt.Errorf("cache: deleting %s: %w", *o.Key, err))
			}
		}
		if out.IsTruncated == nil || !*out.IsTruncated || out.NextContinuationToken == nil {
			return nil
		}
		token = out.NextContinuationToken
	}
	return nil
}

// Stats implements StatsReporter. Entries and Size count the objects this
// process knows of, not the bucket.
func (s *S3) Stats() Stats {
	st := s.c.snapshot()
	s.mu.Lock()
	st.Entries, st.Manifests, st.Size = int64(s.idx.len()), int64(s.idx.manifestCount()), s.idx.size
	s.mu.Unlock()
	return st
}

// manifestKey is the object key of the manifest of xorb. No entry key
// starts with "manifests/": entry keys start with a xorb hash.
func (s *S3) manifestKey(xorb merklehash.Hash) string {
	return s.prefix + "manifests/" + xorb.String()
}

// rememberManifest records that the manifest object of xorb exists.
func (s *S3) rememberManifest(xorb merklehash.Hash, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it := s.idx.manifest(xorb); it != nil {
		s.idx.touch(it)
		return
	}
	s.idx.addManifest(xorb, size, struct{}{})
	s.trimLocked()
}

func (s *S3) forgetManifest(xorb merklehash.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it := s.idx.manifest(xorb); it != nil {
		s.idx.remove(it)
	}
}

// PutManifest implements ManifestStore: one PutObject of the stored form,
// which is parsed and verified first, skipped when this process knows the
// object exists.
func (s *S3) PutManifest(ctx context.Context, m *Manifest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	if _, err := ParseManifest(m.Xorb, b); err != nil {
		return err
	}
	s.mu.Lock()
	it := s.idx.manifest(m.Xorb)
	if it != nil {
		s.idx.touch(it)
	}
	s.mu.Unlock()
	if it != nil {
		return nil
	}
	key := s.manifestKey(m.Xorb)
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(b),
		ContentLength: aws.Int64(int64(len(b))),
		ContentType:   aws.String("application/octet-stream"),
	})
	if err != nil {
		return s.failed(ctx, fmt.Errorf("cache: writing %s: %w", key, err))
	}
	s.rememberManifest(m.Xorb, int64(len(b)))
	return nil
}

// GetManifest implements ManifestStore: one GET of the manifest object. An
// object that fails ParseManifest is deleted and reported as a miss.
func (s *S3) GetManifest(ctx context.Context, xorb merklehash.Hash) (*Manifest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key := s.manifestKey(xorb)
	m, size, err := s.readManifest(ctx, key, xorb)
	switch {
	case err == nil:
		s.rememberManifest(xorb, size)
		return m, nil
	case errors.Is(err, ErrNotFound):
		s.forgetManifest(xorb)
	case errors.Is(err, errCorrupt):
		s.log.Warn("cache: deleting corrupt manifest", "key", key, "err", err)
		s.c.corrupt.Add(1)
		s.forgetManifest(xorb)
		if _, derr := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
			Bucket: aws.String(s.cfg.Bucket),
			Key:    aws.String(key),
		}); derr != nil {
			s.log.Warn("cache: deleting corrupt manifest", "key", key, "err", derr)
		}
	default:
		return nil, s.failed(ctx, fmt.Errorf("cache: reading %s: %w", key, err))
	}
	return nil, fmt.Errorf("%w: manifest of %s", ErrNotFound, xorb)
}

func (s *S3) readManifest(ctx context.Context, key string, xorb merklehash.Hash) (*Manifest, int64, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		return nil, 0, mapS3Error(err)
	}
	defer out.Body.Close()
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	m, b, err := readStoredManifest(out.Body, size, xorb)
	return m, int64(len(b)), err
}
