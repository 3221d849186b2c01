#!/usr/bin/env bash
# End-to-end smoke test of a running xetproxy: a local `xetproxy serve`, the
# container image, or the Cloudflare Worker in front of the containers.
#
# Usage: deploy/smoke-test.sh [flags] BASE_URL
#   --repo NS/NAME        public model repo to download from     (SMOKE_REPO, default xetproxy/demo-model)
#   --path PATH           file of that repo, a few MB at most    (SMOKE_PATH, default onnx/model.onnx)
#   --revision REV        revision                                (SMOKE_REVISION, default main)
#   --token TOKEN         Hugging Face token valid on the Hub     (SMOKE_TOKEN, default none)
#   --private-repo NS/N   repo only TOKEN can read                (SMOKE_PRIVATE_REPO)
#   --private-path PATH   file of the private repo                (SMOKE_PRIVATE_PATH, default config.json)
#   --admin-token T       X-Admin-Token for the Worker's /_container/health (SMOKE_ADMIN_TOKEN)
#   --worker              also check the Worker's /_container/health?instance=0 (wakes that container)
#
# The defaults fit `xetproxy demo`:
#   xetproxy demo &   deploy/smoke-test.sh --token hf_demo_reader_token \
#     --private-repo xetproxy/private-model http://127.0.0.1:8080
# Against a deployment, name a small public file and your token:
#   deploy/smoke-test.sh --repo openai-community/gpt2 --path config.json \
#     --token "$HF_TOKEN" https://xetproxy.<account>.workers.dev
#
# Checks: /health; a download without and with the token (bytes hashed, and
# compared with the ETag when the ETag is a sha256, as the Hub's are for
# LFS/Xet files); the private repo refused without the token and served with
# it; Range requests (206, Content-Range, the same bytes as the full file;
# 416 past the end); a malformed Xet hash -> 400 JSON; a missing file -> 404
# EntryNotFound; the HF_ENDPOINT mirror route answering HEAD with
# X-Repo-Commit. Needs curl, sha256sum, head, tail, cmp. Exit 0 when all pass.
set -euo pipefail

repo=${SMOKE_REPO:-xetproxy/demo-model}
path=${SMOKE_PATH:-onnx/model.onnx}
rev=${SMOKE_REVISION:-main}
token=${SMOKE_TOKEN:-}
private_repo=${SMOKE_PRIVATE_REPO:-}
private_path=${SMOKE_PRIVATE_PATH:-config.json}
admin_token=${SMOKE_ADMIN_TOKEN:-}
worker=0
base=""
while [ $# -gt 0 ]; do
	case $1 in
	--repo) repo=$2; shift ;;
	--path) path=$2; shift ;;
	--revision) rev=$2; shift ;;
	--token) token=$2; shift ;;
	--private-repo) private_repo=$2; shift ;;
	--private-path) private_path=$2; shift ;;
	--admin-token) admin_token=$2; shift ;;
	--worker) worker=1 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "smoke-test.sh: unknown flag $1" >&2; exit 2 ;;
	*) base=${1%/} ;;
	esac
	shift
done
[ -n "$base" ] || { echo "usage: $0 [flags] BASE_URL (see --help)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

# fetch NAME URL [curl args...]: body -> $tmp/NAME, headers -> $tmp/NAME.h;
# prints the status code. Never fails the script by itself.
fetch() {
	local name=$1 url=$2
	shift 2
	: >"$tmp/$name"
	: >"$tmp/$name.h"
	curl -sS -o "$tmp/$name" -D "$tmp/$name.h" -w '%{http_code}' --max-time 300 "$@" "$url" 2>"$tmp/$name.err" || true
}
# peek NAME: the start of a body, for messages.
peek() { head -c 300 "$tmp/$1" | tr -d '\n'; cat "$tmp/$1.err" 2>/dev/null | tr -d '\n'; }
# header NAME FIELD: the last value of FIELD in $tmp/NAME.h (after redirects).
header() { tr -d '\r' <"$tmp/$1.h" | grep -i "^$2:" | tail -1 | cut -d' ' -f2- || true; }
auth=()
[ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
url="$base/download/$repo/$path?revision=$rev"

echo "== $base"
code=$(fetch health "$base/health")
if [ "$code" = 200 ] && grep -q '"status" *: *"ok"' "$tmp/health"; then
	ok "GET /health: $(tr -d '\n' <"$tmp/health")"
else
	bad "GET /health: status $code: $(peek health)"
fi

if [ "$worker" = 1 ]; then
	admin=()
	[ -n "$admin_token" ] && admin=(-H "X-Admin-Token: $admin_token")
	code=$(fetch chealth "$base/_container/health?instance=0" "${admin[@]}")
	[ "$code" = 200 ] && ok "GET /_container/health?instance=0: $(tr -d '\n' <"$tmp/chealth")" ||
		bad "GET /_container/health?instance=0: status $code: $(peek chealth)"
fi

code=$(fetch full "$url")
size=0
if [ "$code" = 200 ]; then
	size=$(wc -c <"$tmp/full")
	sum=$(sha256sum "$tmp/full" | cut -d' ' -f1)
	ok "GET /download/$repo/$path without token: 200, $size bytes, sha256 $sum"
	length=$(header full Content-Length)
	[ -z "$length" ] || [ "$length" = "$size" ] && ok "Content-Length matches the body" || bad "Content-Length $length, body $size bytes"
	etag=$(header full ETag | sed 's/^W\///; s/"//g')
	if [[ $etag =~ ^[0-9a-f]{64}$ ]]; then
		[ "$etag" = "$sum" ] && ok "ETag is the sha256 of the bytes" || bad "ETag $etag, sha256 of the bytes $sum"
	else
		echo "note ETag ${etag:-none} is not a sha256 (a plain git file?): bytes not checked against it"
	fi
else
	bad "GET /download/$repo/$path without token: status $code: $(peek full)"
fi

if [ -n "$token" ]; then
	code=$(fetch authed "$url" "${auth[@]}")
	if [ "$code" = 200 ] && cmp -s "$tmp/authed" "$tmp/full"; then
		ok "GET /download/$repo/$path with token: 200, same bytes"
	else
		bad "GET /download/$repo/$path with token: status $code: $(peek authed)"
	fi
fi

if [ -n "$private_repo" ]; then
	purl="$base/download/$private_repo/$private_path?revision=$rev"
	code=$(fetch private_anon "$purl")
	case $code in
	401 | 403 | 404) ok "private $private_repo without token: $code ($(header private_anon X-Error-Code))" ;;
	*) bad "private $private_repo without token: status $code, want 401/403/404" ;;
	esac
	if [ -n "$token" ]; then
		code=$(fetch private_auth "$purl" "${auth[@]}")
		[ "$code" = 200 ] && ok "private $private_repo with token: 200, $(wc -c <"$tmp/private_auth") bytes" ||
			bad "private $private_repo with token: status $code: $(peek private_auth)"
	fi
fi

if [ "$size" -gt 0 ]; then
	# range NAME SPEC FIRST LAST: GET with Range: bytes=SPEC, expect 206 and bytes FIRST..LAST.
	range() {
		local name=$1 spec=$2 first=$3 last=$4 code want
		code=$(fetch "$name" "$url" -H "Range: bytes=$spec")
		want="bytes $first-$last/$size"
		{ tail -c +"$((first + 1))" "$tmp/full" | head -c "$((last - first + 1))" >"$tmp/$name.want"; } || true # SIGPIPE
		if [ "$code" = 206 ] && [ "$(header "$name" Content-Range)" = "$want" ] && cmp -s "$tmp/$name" "$tmp/$name.want"; then
			ok "Range bytes=$spec: 206, $want, same bytes as the full file"
		else
			bad "Range bytes=$spec: status $code, Content-Range '$(header "$name" Content-Range)' (want '$want'), $(wc -c <"$tmp/$name") bytes"
		fi
	}
	end=$((size < 100 ? size - 1 : 99))
	range range_head "0-$end" 0 "$end"
	mid=$((size / 2))
	mid_end=$((mid + 999 < size - 1 ? mid + 999 : size - 1))
	range range_mid "$mid-$mid_end" "$mid" "$mid_end"
	tail_n=$((size < 10 ? size : 10))
	range range_suffix "-$tail_n" "$((size - tail_n))" "$((size - 1))"
	code=$(fetch range_past "$url" -H "Range: bytes=$size-")
	[ "$code" = 416 ] && ok "Range bytes=$size- (past the end): 416" || bad "Range bytes=$size-: status $code, want 416"
fi

code=$(fetch badhash "$base/download-hash/not-a-xet-hash?repo=$repo")
if [ "$code" = 400 ] && grep -q '"code"' "$tmp/badhash"; then
	ok "GET /download-hash/not-a-xet-hash: 400 $(tr -d '\n' <"$tmp/badhash" | head -c 200)"
else
	bad "GET /download-hash/not-a-xet-hash: status $code, want 400 JSON: $(peek badhash)"
fi

code=$(fetch missing "$base/download/$repo/no/such/file-$$.bin?revision=$rev")
[ "$code" = 404 ] && [ "$(header missing X-Error-Code)" = EntryNotFound ] &&
	ok "missing file: 404 EntryNotFound" || bad "missing file: status $code, X-Error-Code '$(header missing X-Error-Code)'"

code=$(fetch mirror "$base/$repo/resolve/$rev/$path" -I)
commit=$(header mirror X-Repo-Commit)
if [[ $code =~ ^(200|302|307)$ ]] && [[ $commit =~ ^[0-9a-f]{40}$ ]]; then
	ok "HEAD /$repo/resolve/$rev/$path: $code, X-Repo-Commit $commit"
else
	bad "HEAD /$repo/resolve/$rev/$path: status $code, X-Repo-Commit '$commit'"
fi

echo "smoke-test: $passed passed, $failed failed"
[ "$failed" = 0 ]
