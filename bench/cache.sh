#!/usr/bin/env bash
# Benchmarks xetproxy's chunk cache on this machine (see docs/performance-cache.md):
# the same static baselines as bench/proxy.sh (nginx when installed, Go's
# http.FileServer), then a 2 GiB Xet file served cold (filling --cache-dir),
# warm, after a restart on the same directory, from a shared S3 tier by a
# second instance (versitygw when installed; --s3-only runs this alone), an
# edited copy of it, and many clients on one cold file.
# Needs curl; nginx is used when installed. Usage: bench/cache.sh [cachebench flags]
#   e.g. bench/cache.sh --size 2GiB --runs 3 --clients 32 --client-size 256MiB
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/xetproxy" ./cmd/xetproxy
go build -o "$out/cachebench" ./bench/cachebench
"$out/cachebench" --bin "$out/xetproxy" "$@"
