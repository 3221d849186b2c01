#!/usr/bin/env bash
# Measures the least server CPU per byte each xetproxy path can cost on this
# machine (see docs/performance-cache.md, "Cost floors"): minimal servers
# doing only the work a path cannot skip, next to Go's static file server.
# Needs curl. Usage: bench/floor.sh [floorbench flags], e.g. --size 1GiB --runs 5
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/floorbench" ./bench/floorbench
"$out/floorbench" "$@"
