#!/usr/bin/env bash
# Builds the xetproxy container image without a Docker engine and checks it.
#
# What it does (as root; installs buildah and busybox-static with apt-get if
# they are missing):
#   1. the final stage of ./Dockerfile and deploy/Dockerfile.local are
#      byte-identical;
#   2. builds a static binary on the host (the flags of ./Dockerfile), lays out
#      the image files with deploy/rootfs.sh and builds deploy/Dockerfile.local
#      with buildah (vfs storage, chroot isolation, in a private store);
#   3. inspects the image config: non-root user, entrypoint, cmd, exposed port,
#      healthcheck, env, volume, version label;
#   4. inspects the image files: owners, modes, CA bundle, static binary;
#   5. runs the binary in the image (buildah run, chroot isolation, the image's
#      user and PATH): `xetproxy version`, and `xetproxy healthcheck` against a
#      closed port and, when the binary has a serve command, against
#      `xetproxy serve` started from the image's rootfs as uid 65532; with
#      `xetproxy fakehub` (also from the image, serving deploy/fakehub with the
#      arguments of deploy/compose.yaml) as its upstream, deploy/smoke-test.sh
#      runs against it; then SIGTERM, exit code 0, and healthcheck fails;
#   6. unless --quick: builds the full multi-stage ./Dockerfile with buildah,
#      for amd64 and cross-compiled for arm64 (TARGETARCH=arm64). Base images
#      cannot be pulled here, so golang:<GO_VERSION>-bookworm is a stand-in
#      made on the spot: busybox + CA certificates, with the host's Go
#      toolchain and module cache bind-mounted (GOPROXY=file://, no network).
#      The amd64 image must have exactly the files and config of the
#      Dockerfile.local image (the binaries are byte-identical: same toolchain,
#      same flags, -trimpath); the arm64 one an arm64 static binary;
#   7. unless --quick, and when worker/node_modules exists: runs
#      `wrangler deploy --dry-run` with deploy/docker-shim.sh as its docker
#      CLI, so wrangler builds the image from worker/wrangler.jsonc as a real
#      deploy would (Dockerfile path, build context, image_vars, platform),
#      and checks that image matches the one above.
#
# Usage: deploy/check-image.sh [--quick] [--keep] [--save FILE.tar]
#   --quick   skip steps 6 and 7 (the full multi-stage builds, 1-3 minutes cold)
#   --keep    keep the work directory (buildah store, contexts) for a look
#   --save    also write the checked image as a docker-archive (docker load -i);
#             VERSION=v1.2.3 stamps it (default check-<git describe>)
set -euo pipefail

quick=0 keep=0 save=""
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--keep) keep=1 ;;
	--save) save=${2:?--save needs a file}; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "check-image.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [ "$(id -u)" != 0 ]; then
	# buildah's vfs store and chroot isolation, and chroot --userspec, want root.
	if [ "${CI:-}" = true ]; then echo "check-image.sh: must run as root in CI" >&2; exit 1; fi
	echo "check-image.sh: SKIP (needs root: sudo $0 $*)"
	exit 0
fi

need=()
command -v buildah >/dev/null 2>&1 || need+=(buildah)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
	echo "== installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
# expect NAME GOT WANT
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got [$2], want [$3]"; fi; }

work=$(mktemp -d /tmp/xetproxy-check-image.XXXXXX)
mkdir -p "$work/tmp"
B=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if mountpoint -q "$work/ro" 2>/dev/null && ! umount -R "$work/ro"; then
		echo "check-image.sh: could not unmount $work/ro; left $work in place" >&2
		return
	fi
	"${B[@]}" umount --all >/dev/null 2>&1 || true
	"${B[@]}" rm --all >/dev/null 2>&1 || true
	if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
# buildah keeps RUN --mount=type=cache directories under $TMPDIR.
export TMPDIR=$work/tmp

version=${VERSION:-"check-$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo dev)"}
ldflags="-s -w -X github.com/xetproxy/xetproxy/internal/buildinfo.version=$version"

echo "== 1. final stages"
final() { sed -n '/^# ==== final stage/,$p' "$1"; }
if [ -n "$(final Dockerfile)" ] && diff <(final Dockerfile) <(final deploy/Dockerfile.local) >"$work/final.diff"; then
	ok "final stage of Dockerfile and deploy/Dockerfile.local identical"
else
	bad "final stages differ:"; cat "$work/final.diff"
fi
for pat in 'FROM --platform=$BUILDPLATFORM golang:' 'ARG TARGETOS' 'ARG TARGETARCH' 'GOOS=$TARGETOS GOARCH=$TARGETARCH' \
	'CGO_ENABLED=0' '-trimpath' 'buildinfo.version=${VERSION}' '--mount=type=cache,target=/go/pkg/mod'; do
	if grep -qF -- "$pat" Dockerfile; then ok "Dockerfile has $pat"; else bad "Dockerfile lacks $pat"; fi
done

echo "== 2. host binary and Dockerfile.local image"
go mod download
CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$work/xetproxy" ./cmd/xetproxy
meta=$(go version -m "$work/xetproxy")
grep -q 'CGO_ENABLED=0' <<<"$meta" && ok "binary built with CGO_ENABLED=0" || bad "binary not built with CGO_ENABLED=0"
grep -q -- '-trimpath=true' <<<"$meta" && ok "binary built with -trimpath" || bad "binary not built with -trimpath"
sh deploy/rootfs.sh "$work/ctx/rootfs" "$work/xetproxy" /etc/ssl/certs/ca-certificates.crt
"${B[@]}" bud --quiet --isolation chroot --format docker --pull=never \
	--build-arg VERSION="$version" -f deploy/Dockerfile.local -t localhost/xetproxy:local "$work/ctx" >/dev/null
ok "buildah built deploy/Dockerfile.local"

echo "== 3. image config"
cfg() { "${B[@]}" inspect --type image --format "$2" "$1"; }
img=localhost/xetproxy:local
user=$(cfg $img '{{.Docker.Config.User}}')
expect "user" "$user" "65532:65532"
case ${user%%:*} in "" | 0 | root) bad "image runs as root" ;; *) ok "user is not root" ;; esac
expect "entrypoint" "$(cfg $img '{{.Docker.Config.Entrypoint}}')" "[xetproxy]"
expect "cmd" "$(cfg $img '{{.Docker.Config.Cmd}}')" "[serve]"
expect "exposed ports" "$(cfg $img '{{range $p, $_ := .Docker.Config.ExposedPorts}}{{$p}} {{end}}')" "8080/tcp "
expect "healthcheck" "$(cfg $img '{{.Docker.Config.Healthcheck.Test}}')" "[CMD xetproxy healthcheck]"
expect "healthcheck timing" "$(cfg $img '{{.Docker.Config.Healthcheck.Interval}} {{.Docker.Config.Healthcheck.Timeout}} {{.Docker.Config.Healthcheck.StartPeriod}} {{.Docker.Config.Healthcheck.Retries}}')" "30s 5s 10s 3"
expect "env" "$(cfg $img '{{range .Docker.Config.Env}}{{.}} {{end}}')" "PATH=/usr/local/bin XETPROXY_CACHE_DIR=/var/cache/xetproxy "
expect "volumes" "$(cfg $img '{{range $v, $_ := .Docker.Config.Volumes}}{{$v}} {{end}}')" "/var/cache/xetproxy "
expect "version label" "$(cfg $img '{{index .Docker.Config.Labels "org.opencontainers.image.version"}}')" "$version"
expect "platform" "$(cfg $img '{{.OCIv1.OS}}/{{.OCIv1.Architecture}}')" "linux/$(go env GOARCH)"

echo "== 4. image files"
ctr=$("${B[@]}" from --pull=never --name xetproxy-check $img)
mnt=$("${B[@]}" mount "$ctr")
listing() { (cd "$1" && find . -mindepth 1 -printf '%M %U:%G %p\n' | LC_ALL=C sort -k3); }
listing "$mnt" >"$work/files.txt"
expect "file tree" "$(cat "$work/files.txt")" "$(cat <<'EOF'
drwxr-xr-x 0:0 ./etc
-rw-r--r-- 0:0 ./etc/group
-rw-r--r-- 0:0 ./etc/nsswitch.conf
-rw-r--r-- 0:0 ./etc/passwd
drwxr-xr-x 0:0 ./etc/ssl
drwxr-xr-x 0:0 ./etc/ssl/certs
-rw-r--r-- 0:0 ./etc/ssl/certs/ca-certificates.crt
drwxrwxrwt 0:0 ./tmp
drwxr-xr-x 0:0 ./usr
drwxr-xr-x 0:0 ./usr/local
drwxr-xr-x 0:0 ./usr/local/bin
-rwxr-xr-x 0:0 ./usr/local/bin/xetproxy
drwxr-xr-x 0:0 ./var
drwxr-xr-x 0:0 ./var/cache
drwxr-xr-x 65532:65532 ./var/cache/xetproxy
EOF
)"
cmp -s "$mnt/etc/ssl/certs/ca-certificates.crt" /etc/ssl/certs/ca-certificates.crt && ok "CA bundle is the host's" || bad "CA bundle differs from the host's"
grep -q '^nonroot:x:65532:65532:' "$mnt/etc/passwd" && ok "passwd names uid 65532" || bad "passwd lacks uid 65532"
cmp -s "$mnt/usr/local/bin/xetproxy" "$work/xetproxy" && ok "binary in image is the host build" || bad "binary in image differs"

echo "== 5. run from the image"
inimage() { "${B[@]}" run --isolation chroot "$@"; }
expect "xetproxy version" "$(inimage "$ctr" -- xetproxy version 2>&1)" "xetproxy $version"

# A loopback port nobody listens on (bash's /dev/tcp: no other tools needed).
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	echo "check-image.sh: no free port" >&2; return 1
}
closed=$(free_port)
if inimage -e XETPROXY_LISTEN="127.0.0.1:$closed" "$ctr" -- xetproxy healthcheck >"$work/hc.out" 2>&1; then
	bad "healthcheck against a closed port exited 0"
else
	ok "healthcheck against a closed port exits non-zero ($(grep -m1 unhealthy "$work/hc.out"))"
fi

# grep reads the whole help (no -q): under pipefail, a grep that stops at
# the match can leave the binary writing to a closed pipe (SIGPIPE), and
# the command looks absent.
has_command() { "$work/xetproxy" help 2>/dev/null | grep "^  $1 " >/dev/null; }
# Runs a command of the image's binary from the image's rootfs as uid 65532,
# with the image's environment, so the process id is ours to signal.
rootfs_run() { exec env -i PATH=/usr/local/bin XETPROXY_CACHE_DIR=/var/cache/xetproxy "$@"; }
wait_healthy() {
	for _ in $(seq 100); do
		"$work/xetproxy" healthcheck --url "$1" --timeout 1s >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}
if has_command serve; then
	# Serve from a read-only view of the rootfs with only the cache volume and
	# a tmpfs /tmp writable, as `docker run --read-only --tmpfs /tmp -v ...`.
	root=$work/ro
	mkdir -p "$root" "$mnt/srv/hub"
	if mount --bind "$mnt" "$root" && mount -o remount,bind,ro "$root" &&
		mount --bind "$mnt/var/cache/xetproxy" "$root/var/cache/xetproxy" &&
		mount -t tmpfs -o mode=1777,size=64m tmpfs "$root/tmp"; then
		ok "read-only root filesystem for serve (writable: /var/cache/xetproxy, tmpfs /tmp)"
	else
		mountpoint -q "$root" && umount -R "$root"
		root=$mnt
		echo "note could not mount a read-only view here; serving from the writable rootfs"
	fi
	hub_url="http://127.0.0.1:$(free_port)" # upstream: a closed loopback port unless fakehub exists
	if has_command fakehub; then
		# deploy/compose.yaml's fake Hub: its data at /srv/hub, its token.
		for literal in '"fakehub", "--dir", "/srv/hub"' '"--token", "hf_compose_token"' './fakehub:/srv/hub:ro' \
			'HF_ENDPOINT: http://fakehub:8090'; do
			grep -qF -- "$literal" deploy/compose.yaml || bad "deploy/compose.yaml no longer has $literal: update this check"
		done
		cp -r deploy/fakehub/. "$mnt/srv/hub/"
		hub_port=$(free_port)
		rootfs_run /usr/sbin/chroot --userspec=65532:65532 "$root" xetproxy fakehub --dir /srv/hub \
			--listen "127.0.0.1:$hub_port" --state "" --token hf_compose_token >"$work/fakehub.log" 2>&1 &
		pids+=($!)
		hub_url="http://127.0.0.1:$hub_port"
		wait_healthy "$hub_url/api/models/xetproxy/compose-model" &&
			ok "fakehub from the image serves deploy/fakehub (as in deploy/compose.yaml)" ||
			{ bad "fakehub from the image did not come up; its log:"; sed 's/^/    /' "$work/fakehub.log"; }
	fi
	port=$(free_port)
	rootfs_run XETPROXY_LISTEN="127.0.0.1:$port" HF_ENDPOINT="$hub_url" XETPROXY_DRAIN_TIMEOUT=5s \
		/usr/sbin/chroot --userspec=65532:65532 "$root" xetproxy serve >"$work/serve.log" 2>&1 &
	serve_pid=$!
	pids+=("$serve_pid")
	if wait_healthy "http://127.0.0.1:$port/health"; then
		ok "xetproxy serve from the image answers /health as uid 65532"
		if inimage -e XETPROXY_LISTEN="127.0.0.1:$port" "$ctr" -- xetproxy healthcheck >"$work/hc.out" 2>&1; then
			ok "in-image healthcheck (default URL from XETPROXY_LISTEN): $(cat "$work/hc.out")"
		else
			bad "in-image healthcheck failed: $(cat "$work/hc.out")"
		fi
		"$work/xetproxy" healthcheck --url "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 &&
			ok "/readyz answers 200" || bad "/readyz does not answer 200"
		if has_command fakehub; then
			if deploy/smoke-test.sh --repo xetproxy/compose-model --path model.safetensors \
				--token hf_compose_token "http://127.0.0.1:$port" >"$work/smoke.log" 2>&1; then
				ok "deploy/smoke-test.sh against the image: $(tail -1 "$work/smoke.log")"
				echo "note cache volume after the smoke test: $(find "$mnt/var/cache/xetproxy" -type f | wc -l) files"
			else
				bad "deploy/smoke-test.sh against the image:"; sed 's/^/    /' "$work/smoke.log"
			fi
		fi
		kill -TERM "$serve_pid"
		code=0
		for _ in $(seq 150); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$serve_pid" 2>/dev/null; then
			bad "serve still running 15 s after SIGTERM"
		else
			wait "$serve_pid" || code=$?
			expect "serve exit code after SIGTERM" "$code" 0
		fi
		if inimage -e XETPROXY_LISTEN="127.0.0.1:$port" "$ctr" -- xetproxy healthcheck >/dev/null 2>&1; then
			bad "healthcheck still passes after the server stopped"
		else
			ok "healthcheck fails once the server has stopped"
		fi
	else
		bad "xetproxy serve from the image never became healthy; its log:"
		sed 's/^/    /' "$work/serve.log"
	fi
else
	echo "SKIP serve checks: this binary has no serve command yet"
fi

if [ -n "$save" ]; then
	"${B[@]}" push --quiet $img "docker-archive:$save:xetproxy:$version"
	ok "saved $save (docker load -i $save)"
fi

if [ "$quick" = 0 ]; then
	echo "== 6. full multi-stage Dockerfile (stand-in golang base)"
	go_version=$(sed -n 's/^ARG GO_VERSION=//p' Dockerfile)
	host_go=$(go env GOVERSION)
	case $host_go in
	go"$go_version" | go"$go_version".*) ok "host Go $host_go matches GO_VERSION=$go_version" ;;
	*) bad "host Go $host_go does not match the Dockerfile's GO_VERSION=$go_version" ;;
	esac
	base=$work/base
	mkdir -p "$base/bin" "$base/etc/ssl/certs" "$base/tmp" "$base/root" "$base/go" \
		"$base/usr/local/go" "$base/hostmod" "$base/hostcache"
	chmod 1777 "$base/tmp"
	cp /bin/busybox "$base/bin/busybox"
	for applet in sh mkdir cp chmod cat echo ls rm mv ln test; do ln -s busybox "$base/bin/$applet"; done
	cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/"
	echo 'root:x:0:0:root:/root:/bin/sh' >"$base/etc/passwd"
	echo 'root:x:0:' >"$base/etc/group"
	b=$("${B[@]}" from scratch)
	"${B[@]}" copy "$b" "$base/" / >/dev/null
	# GOCACHE points at the host's build cache (bind-mounted below) so the
	# amd64 build is warm; GOPROXY reads the host's module cache.
	"${B[@]}" config --env PATH=/usr/local/go/bin:/go/bin:/bin --env GOPATH=/go --env GOTOOLCHAIN=local \
		--env GOPROXY=file:///hostmod --env GOSUMDB=off --env GOCACHE=/hostcache --workingdir /go "$b"
	"${B[@]}" commit --quiet "$b" "docker.io/library/golang:$go_version-bookworm" >/dev/null
	mounts=(-v "$(go env GOROOT):/usr/local/go:ro" -v "$(go env GOMODCACHE)/cache/download:/hostmod:ro"
		-v "$(go env GOCACHE):/hostcache")
	full() { # full TAG extra-bud-args...
		local tag=$1; shift
		"${B[@]}" bud --quiet --isolation chroot --format docker --pull=never "${mounts[@]}" \
			--build-arg VERSION="$version" "$@" -f Dockerfile -t "$tag" . >"$work/full.log" 2>&1
	}
	if full localhost/xetproxy:full; then
		ok "buildah built the multi-stage Dockerfile (amd64)"
		c2=$("${B[@]}" from --pull=never localhost/xetproxy:full)
		m2=$("${B[@]}" mount "$c2")
		expect "full build: same file tree" "$(listing "$m2")" "$(cat "$work/files.txt")"
		# Against a fresh container: step 5's `buildah run` added /dev and /etc/hosts to $mnt.
		m1=$("${B[@]}" mount "$("${B[@]}" from --pull=never $img)")
		if diff -r "$m1" "$m2" >"$work/full.diff" 2>&1; then ok "full build: same file contents (binary byte-identical)"; else bad "full build: file contents differ: $(head -c 600 "$work/full.diff")"; fi
		fmt='{{.Docker.Config.User}}|{{.Docker.Config.Entrypoint}}|{{.Docker.Config.Cmd}}|{{.Docker.Config.ExposedPorts}}|{{.Docker.Config.Healthcheck}}|{{.Docker.Config.Env}}|{{.Docker.Config.Volumes}}|{{.Docker.Config.Labels}}'
		expect "full build: same image config" "$(cfg localhost/xetproxy:full "$fmt")" "$(cfg $img "$fmt")"
	else
		bad "buildah could not build the multi-stage Dockerfile:"; tail -20 "$work/full.log"
	fi
	if full localhost/xetproxy:full-arm64 --build-arg TARGETARCH=arm64; then
		ok "buildah built the multi-stage Dockerfile with TARGETARCH=arm64"
		c3=$("${B[@]}" from --pull=never localhost/xetproxy:full-arm64)
		m3=$("${B[@]}" mount "$c3")
		meta=$(go version -m "$m3/usr/local/bin/xetproxy")
		grep -q 'GOARCH=arm64' <<<"$meta" && grep -q 'CGO_ENABLED=0' <<<"$meta" &&
			ok "arm64 image holds a static arm64 binary" || bad "arm64 image binary: $meta"
	else
		bad "buildah could not build the Dockerfile for arm64:"; tail -20 "$work/full.log"
	fi
fi

if [ "$quick" = 0 ]; then
	echo "== 7. the image \`wrangler deploy\` builds (worker/wrangler.jsonc, docker CLI on buildah)"
	wrangler=$repo/worker/node_modules/.bin/wrangler
	if [ -x "$wrangler" ]; then
		if (cd worker && SHIM_BUILDAH="${B[*]:1}" SHIM_BUD_ARGS="${mounts[*]}" SHIM_LOG="$work/shim.log" \
			WRANGLER_DOCKER_BIN="$repo/deploy/docker-shim.sh" WRANGLER_SEND_METRICS=false CI=true \
			"$wrangler" deploy --dry-run --outdir "$work/wrangler-dist") >"$work/wrangler.log" 2>&1; then
			ok "wrangler deploy --dry-run built the container image and bundled the Worker"
			grep -q '^docker build ' "$work/shim.log" && ok "wrangler ran: $(grep -m1 '^docker build ' "$work/shim.log")" || bad "wrangler never ran docker build"
			[ -s "$work/wrangler-dist/index.js" ] && ok "Worker bundle written ($(wc -c <"$work/wrangler-dist/index.js") bytes)" || bad "no Worker bundle"
			wimg=localhost/$(sed -n 's/^docker build .* -t \([^ ]*\) .*/\1/p' "$work/shim.log" | head -1)
			wversion=$(sed -n 's/.*--build-arg VERSION=\([^ ]*\).*/\1/p' "$work/shim.log" | head -1)
			c4=$("${B[@]}" from --pull=never "$wimg")
			m4=$("${B[@]}" mount "$c4")
			expect "wrangler image: same file tree" "$(listing "$m4")" "$(cat "$work/files.txt")"
			fmt='{{.Docker.Config.User}}|{{.Docker.Config.Entrypoint}}|{{.Docker.Config.Cmd}}|{{.Docker.Config.ExposedPorts}}|{{.Docker.Config.Healthcheck}}|{{.Docker.Config.Env}}|{{.Docker.Config.Volumes}}|{{.OCIv1.Architecture}}'
			expect "wrangler image: same config" "$(cfg "$wimg" "$fmt")" "$(cfg $img "$fmt")"
			expect "wrangler image: version from image_vars" "$(inimage "$c4" -- xetproxy version 2>&1)" "xetproxy ${wversion:-dev}"
		else
			bad "wrangler deploy --dry-run failed:"; tail -25 "$work/wrangler.log"
		fi
	else
		echo "SKIP wrangler image build: run npm ci in worker/ first"
	fi
fi

echo "check-image: $passed passed, $failed failed"
[ "$failed" = 0 ]
