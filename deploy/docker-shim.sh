#!/usr/bin/env bash
# The two docker CLI commands `wrangler deploy --dry-run` runs for a
# container built from a Dockerfile, done with buildah:
#
#   docker info
#   docker build --load -t TAG --platform P --provenance=false \
#       [--build-arg K=V]... [--network host] -f - CONTEXT   (Dockerfile on stdin)
#
# deploy/check-image.sh points wrangler at it (WRANGLER_DOCKER_BIN) to build
# the image exactly as `wrangler deploy` would, on a machine without a Docker
# engine, and then compares that image with the one it checked.
#
# Environment:
#   SHIM_BUILDAH   global buildah arguments (the private store), word-split
#   SHIM_BUD_ARGS  extra `buildah bud` arguments (bind mounts), word-split
#   SHIM_LOG       file that receives each command line it was given
set -euo pipefail

read -r -a global <<<"${SHIM_BUILDAH:-}"
read -r -a extra <<<"${SHIM_BUD_ARGS:-}"
[ -n "${SHIM_LOG:-}" ] && echo "docker $*" >>"$SHIM_LOG"

case ${1:-} in
info)
	buildah "${global[@]}" info >/dev/null
	;;
build)
	shift
	args=() file="" context=""
	while [ $# -gt 0 ]; do
		case $1 in
		--load | --provenance=*) ;; # buildah stores locally and adds no attestations
		-t | --tag | --platform | --build-arg | --network) args+=("$1" "$2"); shift ;;
		-f | --file) file=$2; shift ;;
		-*) echo "docker-shim: unsupported build flag $1" >&2; exit 1 ;;
		*) context=$1 ;;
		esac
		shift
	done
	[ -n "$context" ] || { echo "docker-shim: build without a context" >&2; exit 1; }
	tmp=""
	if [ "$file" = - ]; then
		tmp=$(mktemp)
		trap 'rm -f "$tmp"' EXIT
		cat >"$tmp"
		file=$tmp
	fi
	buildah "${global[@]}" bud --quiet --isolation chroot --format docker --pull=never \
		"${extra[@]}" "${args[@]}" -f "${file:-$context/Dockerfile}" "$context"
	;;
*)
	echo "docker-shim: unsupported command: docker $*" >&2
	exit 1
	;;
esac
