package server

import (
	"log/slog"

	"github.com/xetproxy/xetproxy/internal/cache"
)

// NewStaging builds the store for chunks that await a proof (proxy.Config.
// Staging): a disk store in a folder of this process's own under
// --cache-dir (cache.OpenStaging: emptied at start, removed at exit), or
// a memory store when there is no cache folder. nil when there is no
// cache.
func NewStaging(cfg Config, log *slog.Logger) (cache.Store, error) {
	switch {
	case cfg.CacheDir != "":
		return cache.OpenStaging(cfg.CacheDir, cfg.CacheSize, log)
	case cfg.CacheMemory > 0:
		return cache.NewMemory(cfg.CacheMemory)
	case cfg.S3Bucket != "":
		return cache.NewMemory(DefaultS3Staging)
	}
	return nil, nil
}
