# syntax=docker/dockerfile:1
#
# xetproxy container image: one static binary on an empty base, running as
# nonroot (65532), with CA certificates and a cache volume.
#
#   docker build -t xetproxy --build-arg VERSION=$(git describe --tags --always --dirty) .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/xetproxy:TAG --push .
#
# Cloudflare: worker/wrangler.jsonc points at this file (wrangler builds it).
# Stages: build (Go, on the build host's platform, cross-compiling to the
# target) -> rootfs (the files of the image) -> final (scratch + rootfs).
# deploy/Dockerfile.local has the same final stage, fed with a binary built on
# the host; deploy/check-image.sh builds both and checks they agree.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY deploy/rootfs.sh deploy/rootfs.sh
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/xetproxy/xetproxy/internal/buildinfo.version=${VERSION}" \
      -o /out/xetproxy ./cmd/xetproxy \
 && sh deploy/rootfs.sh /out/rootfs /out/xetproxy /etc/ssl/certs/ca-certificates.crt

FROM scratch AS rootfs
COPY --from=build /out/rootfs/ /

# ==== final stage: keep byte-identical to deploy/Dockerfile.local from here on ====
FROM scratch
ARG VERSION=dev
COPY --from=rootfs /image/ /
COPY --from=rootfs --chown=65532:65532 /volume/ /var/cache/
LABEL org.opencontainers.image.title="xetproxy" \
      org.opencontainers.image.description="Xet-native download proxy for Hugging Face" \
      org.opencontainers.image.version="${VERSION}"
ENV PATH=/usr/local/bin \
    XETPROXY_CACHE_DIR=/var/cache/xetproxy
USER 65532:65532
EXPOSE 8080
VOLUME ["/var/cache/xetproxy"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["xetproxy", "healthcheck"]
ENTRYPOINT ["xetproxy"]
CMD ["serve"]
