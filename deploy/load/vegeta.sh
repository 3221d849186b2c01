#!/usr/bin/env bash
# Load test of a running xetproxy with vegeta (a Go load tool; not a
# dependency of the project):
#   go install github.com/tsenart/vegeta/v12@latest
#
# Usage: deploy/load/vegeta.sh [flags] BASE_URL
#   --repo NS/NAME   repo                         (LOAD_REPO, default xetproxy/demo-model)
#   --path PATH      file for Range requests      (LOAD_PATH, default model.safetensors)
#   --small PATH     small file fetched whole     (LOAD_SMALL, default config.json)
#   --token TOKEN    Hugging Face token           (LOAD_TOKEN)
#   --rate N         requests per second          (LOAD_RATE, default 20)
#   --duration D     how long, vegeta syntax      (LOAD_DURATION, default 30s)
#   --range-size N   bytes per Range request      (LOAD_RANGE_SIZE, default 1048576)
#   --max-fail P     allowed failure percentage   (LOAD_MAX_FAIL, default 1)
#
# Mix: 70% Range requests at random offsets of PATH (the shape of parallel
# downloaders such as aria2c or hf_transfer), 20% whole downloads of SMALL,
# 10% GET /health. Prints vegeta's report and exits non-zero when more than
# --max-fail percent of the requests failed. Point it only at your own
# deployment: it is a load generator. Defaults fit `xetproxy demo`.
set -euo pipefail

repo=${LOAD_REPO:-xetproxy/demo-model}
path=${LOAD_PATH:-model.safetensors}
small=${LOAD_SMALL:-config.json}
token=${LOAD_TOKEN:-}
rate=${LOAD_RATE:-20}
duration=${LOAD_DURATION:-30s}
range_size=${LOAD_RANGE_SIZE:-1048576}
max_fail=${LOAD_MAX_FAIL:-1}
base=""
while [ $# -gt 0 ]; do
	case $1 in
	--repo) repo=$2; shift ;;
	--path) path=$2; shift ;;
	--small) small=$2; shift ;;
	--token) token=$2; shift ;;
	--rate) rate=$2; shift ;;
	--duration) duration=$2; shift ;;
	--range-size) range_size=$2; shift ;;
	--max-fail) max_fail=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "vegeta.sh: unknown flag $1" >&2; exit 2 ;;
	*) base=${1%/} ;;
	esac
	shift
done
[ -n "$base" ] || { echo "usage: $0 [flags] BASE_URL (see --help)" >&2; exit 2; }
command -v vegeta >/dev/null || { echo "vegeta.sh: needs vegeta: go install github.com/tsenart/vegeta/v12@latest" >&2; exit 1; }

auth=()
[ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
big="$base/download/$repo/$path"
size=$(curl -sfI "${auth[@]}" "$big" | tr -d '\r' | awk 'tolower($1) == "content-length:" { print $2 }' | tail -1)
[[ $size =~ ^[0-9]+$ ]] && [ "$size" -gt 0 ] || { echo "vegeta.sh: HEAD $big gave no size" >&2; exit 1; }
[ "$range_size" -lt "$size" ] || range_size=$size
echo "target $base: $path is $size bytes; $rate req/s for $duration"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hdr='"User-Agent":["xetproxy-load/vegeta"]'
[ -n "$token" ] && hdr="$hdr,\"Authorization\":[\"Bearer $token\"]"
# 1000 targets in the 70/20/10 mix; vegeta cycles through them in order.
for i in $(seq 0 999); do
	case $((i % 10)) in
	[0-6])
		first=$(((RANDOM << 30 | RANDOM << 15 | RANDOM) % (size - range_size + 1)))
		echo "{\"method\":\"GET\",\"url\":\"$big\",\"header\":{$hdr,\"Range\":[\"bytes=$first-$((first + range_size - 1))\"]}}" ;;
	[7-8]) echo "{\"method\":\"GET\",\"url\":\"$base/download/$repo/$small\",\"header\":{$hdr}}" ;;
	9) echo "{\"method\":\"GET\",\"url\":\"$base/health\",\"header\":{$hdr}}" ;;
	esac
done >"$tmp/targets.json"

vegeta attack -format=json -targets="$tmp/targets.json" -rate="$rate" -duration="$duration" \
	-timeout=120s -max-body=0 >"$tmp/results.bin"
vegeta report "$tmp/results.bin"
vegeta report -type=json "$tmp/results.bin" >"$tmp/report.json"
success=$(grep -o '"success":[0-9.e+-]*' "$tmp/report.json" | cut -d: -f2)
awk -v s="$success" -v m="$max_fail" 'BEGIN { f = (1 - s) * 100; printf "failed: %.2f%% (allowed %s%%)\n", f, m; exit (f > m) }'
