#!/usr/bin/env bash
# Measures xetproxy under cgroup CPU quotas (see docs/performance-server.md,
# "Under a CPU limit"): for each limit, the server as it starts itself (one
# P at a limit of one CPU or less) against the same binary with
# GOMAXPROCS=2, which is Go's own default under such a quota on a machine
# of two or more CPUs. Cold single streams (proxybench --cold-only) and
# disk-cache fills and hits (cachebench --hit-only --no-s3).
# Needs root, a cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu, and curl.
# Usage: bench/cpulimit.sh [limits in CPUs, default "1 0.5"]
set -euo pipefail
cd "$(dirname "$0")/.."
limits=${*:-1 0.5}
cg=/sys/fs/cgroup/cpu
[ -w "$cg" ] || { echo "needs a writable $cg (root, cgroup v1 cpu controller)" >&2; exit 1; }
out=$(mktemp -d)
groups=()
cleanup() {
	for g in "${groups[@]}"; do rmdir "$g" 2>/dev/null || true; done
	rm -rf "$out"
}
trap cleanup EXIT
go build -o "$out/xetproxy" ./cmd/xetproxy
go build -o "$out/proxybench" ./bench/proxybench
go build -o "$out/cachebench" ./bench/cachebench
for l in $limits; do
	g="$cg/xetproxy-bench-$$-${l/./_}"
	mkdir "$g"
	groups+=("$g")
	echo 100000 > "$g/cpu.cfs_period_us"
	awk -v l="$l" 'BEGIN { printf "%d\n", l * 100000 }' > "$g/cpu.cfs_quota_us"
	# each server joins the cgroup, then becomes xetproxy (same PID, so
	# the benchmarks read its own CPU)
	for v in auto go2; do
		env=""
		[ "$v" = go2 ] && env="export GOMAXPROCS=2"
		printf '#!/bin/sh\necho $$ > "%s/cgroup.procs"\n%s\nexec "%s" "$@"\n' "$g" "$env" "$out/xetproxy" > "$out/xetproxy-$l-$v"
		chmod +x "$out/xetproxy-$l-$v"
	done
	echo "## CPU limit $l: cold streams, xetproxy-$l-auto (as it starts itself) vs xetproxy-$l-go2 (GOMAXPROCS=2)"
	"$out/proxybench" --bin "$out/xetproxy-$l-auto" --compare "$out/xetproxy-$l-go2" --size 1GiB --runs 5 --cold-only --ttfb-runs 9
	for v in auto go2; do
		echo "## CPU limit $l: disk cache fill and hits, xetproxy-$l-$v"
		"$out/cachebench" --bin "$out/xetproxy-$l-$v" --size 1GiB --runs 5 --hit-only --no-s3
	done
done
