# syntax=docker/dockerfile:1
# The worker and orderctl, statically linked, on distroless.
#   docker build -t orderpipe .
#   docker run --rm orderpipe -h                              # the worker's variables
#   docker run --rm --entrypoint /orderctl orderpipe help     # orderctl

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/worker ./cmd/orderctl

# distroless/static carries the system CA roots (/etc/ssl/certs/ca-certificates.crt).
# Behind DB_PROXY=rds-proxy the worker verifies RDS Proxy's certificate (issued by
# AWS Certificate Manager, chained to Amazon's public roots) against them:
# sslrootcert=system, sslmode=verify-full. No RDS CA bundle is baked in; to use
# one, mount it and set DB_TLS_CA_FILE.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/orderctl /
USER nonroot
ENTRYPOINT ["/worker"]
