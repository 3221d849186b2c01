#!/usr/bin/env bash
# Runs every test of the project. Installs what the tests need first, so it
# works on a fresh machine: Debian packages, Go modules, npm packages from the
# committed lockfiles.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian tools used by end-to-end tests (chromium: the browser test of the
# status page in internal/server, which fails under CI=true without it).
need=()
for tool in curl:curl aria2c:aria2 chromium:chromium; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "== installing ${need[*]}"
	if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
	else sudo apt-get update -qq && sudo apt-get install -y -qq "${need[@]}" >/dev/null; fi
fi

echo "== go mod download"
go mod download

# versitygw: an S3 server on a local folder that checks request signatures,
# for the S3 credentials tests of internal/cache (gofakes3 accepts any
# credentials) and the S3 write queue tests of internal/cache and
# internal/server (cachetest.Versity). A test-time binary, not a module dependency; under CI=true
# those tests fail without it.
gobin=$(go env GOBIN)
export PATH="${gobin:-$(go env GOPATH)/bin}:$PATH"
if ! command -v versitygw >/dev/null 2>&1; then
	echo "== installing versitygw"
	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi

echo "== go vet"
go vet ./...

# --- npm ci + JS tests (fakehub) ---
# tests/js pins the official @huggingface/hub client; TestJSClient in
# internal/fakehub runs it against fakehub during go test (and fails under
# CI=true when node_modules is missing).
echo "== npm ci (tests/js)"
if ! command -v npm >/dev/null 2>&1; then echo "npm (Node >= 20) is required for tests/js"; exit 1; fi
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
# --- end npm ci + JS tests ---

echo "== go test -race"
go test -race -count=1 -timeout 30m ./...

# The mirror suite once more against servers in Xet mode (the default of
# xetproxy serve; the run above used plain-only servers).
echo "== go test ./tests/e2e/ -xet (the mirror suite against a server in Xet mode)"
go test -count=1 -timeout 20m ./tests/e2e/ -args -xet

# The engine's fault suite again with a disk chunk cache under every test
# engine (the -cache flag of internal/proxy), so the cache path meets the
# same faults. Skipped: the tests of cache_test.go, which set their own
# cache and ran above, and the lookups by hash, which use no cache.
echo "== go test -race ./internal/proxy/ -cache=disk"
go test -race -count=1 -timeout 30m -skip '^(TestCache|TestAuthMemo|TestStatHash)' ./internal/proxy/ -args -cache=disk

# The zero-allocation tests skip under -race (it makes sync.Pool drop
# items on purpose): run them without it, and check that they did run.
echo "== zero-allocation tests (no -race)"
zero_alloc='^(TestHotPathsDoNotAllocate|TestDecoderReuse)$'
out=$(go test -count=1 -v -run "$zero_alloc" ./internal/xorb/) || { echo "$out"; exit 1; }
if [ "$(grep -c '^--- PASS' <<<"$out")" != 2 ]; then
	echo "$out"
	echo "zero-allocation tests: want 2 passed, not skipped (renamed? update scripts/test.sh)"
	exit 1
fi
echo "2 passed"

echo "== fuzz (short)"
fuzz_secs=${FUZZ_SECONDS:-10}
for pkg in $(go list ./internal/...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "-- $pkg $target"
		# Go's fuzzing coordinator can fail a healthy run with "context
		# deadline exceeded" when -fuzztime ends while a busy worker is
		# mid-input (seen on a loaded machine). That failure alone, with
		# no failing input written, gets one more run; any other fails.
		if ! out=$(go test -run='^$' -fuzz="^${target}\$" -fuzztime="${fuzz_secs}s" "$pkg" 2>&1); then
			echo "$out"
			if grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
				echo "-- $pkg $target: the fuzzing deadline, not a finding; once more"
				go test -run='^$' -fuzz="^${target}\$" -fuzztime="${fuzz_secs}s" "$pkg"
			else
				exit 1
			fi
		else
			echo "$out" | tail -n 2
		fi
	done
done
# --- worker + image checks (Cloudflare Worker, container image) ---
# worker/: npm ci from its committed lockfile, tsc, vitest (inside workerd,
# offline) and the Worker bundle through wrangler's dry run, whose image
# build goes to worker/scripts/docker-noop.sh (a stand-in for the Docker
# CLI that reads the Dockerfile wrangler pipes to it and does nothing).
# deploy/check-image.sh builds the container image with buildah (no
# Docker engine needed) and checks it, including the image wrangler would
# build; it installs buildah and busybox-static with apt-get when missing.
echo "== worker: npm ci"
(cd worker && npm ci --no-audit --no-fund --loglevel=error)
echo "== worker: typecheck"
(cd worker && npx tsc --noEmit)
echo "== worker: vitest"
(cd worker && npx vitest run)
echo "== worker: bundle (wrangler deploy --dry-run)"
(cd worker && WRANGLER_SEND_METRICS=false WRANGLER_DOCKER_BIN="$PWD/scripts/docker-noop.sh" npx wrangler deploy --dry-run --outdir dist >/dev/null &&
	test -s dist/index.js && echo "bundled worker/dist/index.js ($(wc -c <dist/index.js) bytes)" && rm -rf dist)
echo "== image: deploy/check-image.sh"
deploy/check-image.sh
# --- end worker + image checks ---
echo "== all tests passed"
