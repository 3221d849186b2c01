#!/bin/sh
# Lays out the files of the xetproxy image under OUT, in two trees:
#
#   OUT/image/usr/local/bin/xetproxy             the static binary
#   OUT/image/etc/ssl/certs/ca-certificates.crt  CA bundle (HTTPS to the Hub and its CAS)
#   OUT/image/etc/passwd, OUT/image/etc/group    root and nonroot (65532), as in distroless
#   OUT/image/etc/nsswitch.conf                  "hosts: files dns" for Go's resolver
#   OUT/image/tmp                                mode 1777
#   OUT/image/var/cache                          parent of the cache volume
#   OUT/volume/xetproxy                          the cache directory itself
#
# The image copies image/ to / and then volume/ to /var/cache/ with
# --chown=65532:65532: the cache directory is then a new entry of that copy,
# which every builder (BuildKit, buildah) gives the --chown owner. (Copying a
# directory onto one that already exists keeps the old owner in buildah.)
#
# Both builds run this script: the builder stage of ./Dockerfile, and
# deploy/check-image.sh for deploy/Dockerfile.local, so the two images hold
# the same files. POSIX sh only: it runs in golang:*-bookworm and on hosts.
#
# Usage: rootfs.sh OUT BINARY [CA_BUNDLE]
set -eu

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 OUT BINARY [CA_BUNDLE]" >&2
	exit 2
fi
out=$1
bin=$2
ca=${3:-/etc/ssl/certs/ca-certificates.crt}

[ -f "$bin" ] || { echo "rootfs.sh: no binary at $bin" >&2; exit 1; }
[ -s "$ca" ] || { echo "rootfs.sh: no CA bundle at $ca (install ca-certificates)" >&2; exit 1; }

img=$out/image
mkdir -p "$img/usr/local/bin" "$img/etc/ssl/certs" "$img/var/cache" "$img/tmp" "$out/volume/xetproxy"
cp "$bin" "$img/usr/local/bin/xetproxy"
chmod 0755 "$img/usr/local/bin/xetproxy"
cp "$ca" "$img/etc/ssl/certs/ca-certificates.crt"

cat >"$img/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$img/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
echo 'hosts: files dns' >"$img/etc/nsswitch.conf"

chmod 0644 "$img/etc/ssl/certs/ca-certificates.crt" "$img/etc/passwd" "$img/etc/group" "$img/etc/nsswitch.conf"
chmod 0755 "$img" "$img/usr" "$img/usr/local" "$img/usr/local/bin" "$img/etc" "$img/etc/ssl" \
	"$img/etc/ssl/certs" "$img/var" "$img/var/cache" "$out/volume" "$out/volume/xetproxy"
chmod 1777 "$img/tmp"
