# syntax=docker/dockerfile:1
# connectd in a container: a multi-stage build (the Rust toolchain stays in the build
# stage), a slim runtime image running as a non-root user, and a health check on
# /healthz. The admin API listens on all interfaces, so it needs a token:
#   docker build -t connectd .
#   docker run --rm -p 8083:8083 -e CONNECTD_ADMIN_TOKEN=change-me \
#     -v "$PWD/examples/pipelines:/pipelines:ro" connectd --config /pipelines/iot-monitoring.yaml
# Checked by runtime/tests/packaging.rs (this machine has no container engine to build it).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p connectd-runtime --bin connectd \
 && cp target/release/connectd /connectd

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/connectd connectd
COPY --from=build /connectd /usr/local/bin/connectd
USER 10001
WORKDIR /var/lib/connectd
ENV CONNECTD_ADMIN_ADDR=0.0.0.0:8083 \
    CONNECTD_STATE_DIR=/var/lib/connectd/state
EXPOSE 8083
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s \
  CMD curl -fsS http://127.0.0.1:8083/healthz || exit 1
ENTRYPOINT ["connectd"]
