# Helix container image: one binary, any service. `docker build -t helix .`, then
# `docker run helix healer` (the entrypoint is `helix serve`; the argument names the service:
# orchestrator, trace-collector, breaker-gateway or healer). See deploy/ for compose and
# Kubernetes.

# --- build: the workspace's locked dependencies, release profile
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p helix --bin helix \
 && strip target/release/helix

# --- run: Debian slim, a non-root user, nothing but the binary and what phases call
FROM debian:bookworm-slim
# ca-certificates for TLS to LLM providers; curl for health checks; bubblewrap for the orchestrator's phase sandbox; git
# and python3 for the commands pipelines commonly run
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl bubblewrap git python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/helix --create-home helix
COPY --from=build /src/target/release/helix /usr/local/bin/helix
USER 10001:10001
WORKDIR /var/lib/helix
# a container is reached from outside its loopback: bind all addresses (which needs tokens,
# see README "Security"); data under the volume; one JSON object per log line
ENV HELIX_HOST=0.0.0.0 \
    HELIX_DATA_DIR=/var/lib/helix \
    HELIX_LOG_FORMAT=json
VOLUME ["/var/lib/helix"]
EXPOSE 7700 7701 7702 7703
ENTRYPOINT ["helix", "serve"]
CMD ["healer"]
