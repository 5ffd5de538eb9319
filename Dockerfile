# syntax=docker/dockerfile:1
# sluice: a static binary in a distroless, non-root image.
#
#   docker build -t sluice .
#   docker run -p 24224:24224 -p 9880:9880 -p 8080:8080 sluice          # embedded defaults
#   docker run -v $PWD/sluice.yaml:/etc/sluice/sluice.yaml:ro \
#              -e SLUICE_CONFIG=/etc/sluice/sluice.yaml sluice           # a mounted config
#
# The config may use ${VAR} and ${VAR:-default} from the environment.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sluice ./cmd/sluice && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/loadgen ./cmd/loadgen && \
    mkdir -p /out/state/data /out/state/out

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /out/loadgen /usr/local/bin/
# The working directory holds the embedded JetStream store (./data/jetstream)
# and the file sink's default ./data/out; mount a volume here to keep them.
COPY --from=build --chown=65532:65532 /out/state /var/lib/sluice
WORKDIR /var/lib/sluice
USER 65532:65532
# Forward (TCP, and UDP heartbeats), HTTP ingest, API and metrics.
EXPOSE 24224/tcp 24224/udp 9880/tcp 4317/tcp 4318/tcp 8080/tcp
HEALTHCHECK --interval=10s --timeout=6s --start-period=20s \
    CMD ["/usr/local/bin/sluice", "-probe", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/sluice"]
