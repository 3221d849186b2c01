#!/usr/bin/env bash
# Benchmarks the memory budget of xetproxy serve under concurrent load (see
# docs/performance-server.md): many clients on one cold file, on several
# cold files, and on ranges of one cold file (some reading slowly), with a
# disk cache, for each --max-buffer; reports peak RSS
# against the budget, 503s and throughput.
# Usage: bench/load.sh [loadbench flags]
#   e.g. bench/load.sh --one-size 512MiB --many-size 64MiB --max-buffer 256MiB,1GiB
#   --bin PATH benchmarks another xetproxy binary (e.g. an older build).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/xetproxy" ./cmd/xetproxy
go build -o "$out/loadbench" ./bench/loadbench
"$out/loadbench" --bin "$out/xetproxy" "$@"
