#!/usr/bin/env bash
# Benchmarks xetproxy's download side on this machine (results and method in
# docs/performance-download.md): the engine to io.Discard, `xetproxy download`
# (wall time, peak RSS, and peak RSS on a file --factor times larger), the
# @huggingface/hub JS client, and curl from Go and nginx static servers, all
# against fakehub on loopback. Needs curl and /usr/bin/time; node with
# tests/js/node_modules (npm ci) and nginx are used when present.
#   Usage: bench/download.sh [--size-mib 2048] [--factor 4] [--runs 3]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/xetproxy" ./cmd/xetproxy
go build -o "$out/downloadbench" ./bench/downloadbench
cp bench/download-js.mjs "$out/"
"$out/downloadbench" --bin "$out/xetproxy" "$@"
