#!/bin/sh
# A stand-in for the Docker CLI, for `wrangler deploy --dry-run` in
# scripts/test.sh (WRANGLER_DOCKER_BIN): the dry run bundles the Worker and
# runs the container image build, which the test does not need (the image is
# checked by deploy/check-image.sh). Every command succeeds without doing
# anything. wrangler writes the Dockerfile to the stdin of `build ... -f -`:
# read it to the end, or wrangler's write can hit a closed pipe (EPIPE) when
# this process exits first. Other commands (`info`) inherit wrangler's own
# stdin, which must not be read.
if [ "${1:-}" = build ]; then
	cat >/dev/null
fi
exit 0
