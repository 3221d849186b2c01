package cache_test

import (
	"context"
	"errors"
	"testing"

	"github.com/xetproxy/xetproxy/internal/cache"
	"github.com/xetproxy/xetproxy/internal/cache/cachetest"
)

// The credentials tests need an S3 server that checks request signatures;
// gofakes3 (fakeS3) accepts any. versitygw (cachetest.Versity) does.
func versityS3(t *testing.T, key, secret string) (url, bucketDir string) {
	t.Helper()
	return cachetest.Versity(t, key, secret, testBucket)
}

func versityConfig(url, key, secret string) cache.S3Config {
	return cache.S3Config{
		Endpoint:        url,
		Bucket:          testBucket,
		Region:          "us-east-1", // part of what is signed
		PathStyle:       true,
		AccessKeyID:     key,
		SecretAccessKey: secret,
	}
}

// bucketFiles counts the files under the bucket's folder.
func bucketFiles(t *testing.T, dir string) int {
	t.Helper()
	return len(cachetest.BucketFiles(t, dir))
}

// The configured credentials are the ones requests are signed with: the
// right ones write and read, a wrong secret or key is refused and writes
// nothing.
func TestS3CredentialsChecked(t *testing.T) {
	const key, secret = "xetproxy-key", "xetproxy-secret-0123456789"
	url, dir := versityS3(t, key, secret)
	e := cachetest.MakeEntry(cachetest.Xorb(12), 0, 2, 0)
	for _, tc := range []struct{ name, key, secret string }{
		{"wrong secret", key, "not-the-secret-0123456789"},
		{"wrong key", "not-the-key", secret},
	} {
		s := newS3Store(t, versityConfig(url, tc.key, tc.secret))
		if err := s.Put(context.Background(), e); err == nil {
			t.Errorf("%s: Put accepted", tc.name)
		}
		if _, err := s.Get(context.Background(), e.Xorb, 0, 2); err == nil {
			t.Errorf("%s: Get returned an entry", tc.name)
		}
	}
	if n := bucketFiles(t, dir); n != 0 {
		t.Fatalf("%d files in the bucket after refused writes", n)
	}
	s := newS3Store(t, versityConfig(url, key, secret))
	mustPut(t, s, e)
	if n := bucketFiles(t, dir); n == 0 {
		t.Fatal("the accepted Put wrote no file")
	}
	// a fresh store (empty index) finds it: the read is signed too
	mustHit(t, newS3Store(t, versityConfig(url, key, secret)), e.Xorb, 0, 2, 0)
}

// Without configured credentials the SDK's default chain is used: the
// environment's keys, and only them.
func TestS3CredentialsFromEnvironment(t *testing.T) {
	const key, secret = "env-key", "env-secret-0123456789"
	url, _ := versityS3(t, key, secret)
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	e := cachetest.MakeEntry(cachetest.Xorb(11), 0, 2, 0)

	t.Setenv("AWS_ACCESS_KEY_ID", key)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-env-secret-0123456789")
	s := newS3Store(t, versityConfig(url, "", ""))
	if err := s.Put(context.Background(), e); err == nil {
		t.Fatal("Put with a wrong secret from the environment accepted")
	}

	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	s = newS3Store(t, versityConfig(url, "", ""))
	mustPut(t, s, e)
	mustHit(t, newS3Store(t, versityConfig(url, "", "")), e.Xorb, 0, 2, 0)
	if _, err := s.Get(context.Background(), cachetest.Xorb(99), 0, 1); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get of a missing entry: %v, want ErrNotFound", err)
	}
}
