#!/usr/bin/env bash
# Benchmarks the xetproxy server on this machine (see docs/performance-server.md):
# cold single stream vs nginx / Go static baseline, concurrent clients, peak
# RSS, time to first byte. Needs curl; nginx is used when installed
# (apt-get install nginx). Usage: bench/proxy.sh [proxybench flags]
#   e.g. bench/proxy.sh --size 2GiB --clients 16 --client-size 128MiB --runs 3
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/xetproxy" ./cmd/xetproxy
go build -o "$out/proxybench" ./bench/proxybench
"$out/proxybench" --bin "$out/xetproxy" "$@"
