#!/usr/bin/env bash
# Benchmarks the xetproxy server as the CAS of Xet clients against its own
# plain route, on a warm disk cache (results in docs/performance-xet.md):
# throughput, server CPU-seconds per GB and server peak RSS, for curl on
# /download, the Go hf_xet-flow client of tests/xetclient (8 and 16
# parallel range fetches) and @huggingface/hub (node with tests/js/
# node_modules, when present). Needs curl.
#   Usage: bench/xet.sh [--sizes 2GiB,8GiB] [--parallel 8,16] [--runs 1]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/xetproxy" ./cmd/xetproxy
go build -o "$out/xetbench" ./bench/xetbench
"$out/xetbench" --bin "$out/xetproxy" "$@"
