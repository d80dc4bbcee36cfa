# syntax=docker/dockerfile:1
# The worker and orderctl, statically linked, on distroless. Only these two:
# cmd/orderbench (benchmark, load generator, drill) is not built here.
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t orderpipe .
#   docker run --rm orderpipe -h                              # the worker's variables
#   docker run --rm orderpipe --version                       # the stamped version
#   docker run --rm --entrypoint /orderctl orderpipe help     # orderctl
# .dockerignore leaves .git out, so the binaries carry no VCS revision:
# VERSION is what identifies them (unset, --version says "(devel)").

FROM golang:1.26 AS build
ARG VERSION=
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/ ./cmd/worker ./cmd/orderctl

# distroless/static carries the system CA roots (/etc/ssl/certs/ca-certificates.crt).
# Behind DB_PROXY=rds-proxy the worker verifies RDS Proxy's certificate (issued by
# AWS Certificate Manager, chained to Amazon's public roots) against them:
# sslrootcert=system, sslmode=verify-full. No RDS CA bundle is baked in; to use
# one, mount it and set DB_TLS_CA_FILE.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/orderctl /
USER nonroot
ENTRYPOINT ["/worker"]
