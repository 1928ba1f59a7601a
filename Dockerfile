# syntax=docker/dockerfile:1
#
# Container image of resume-chat-worker.
#
# Two stages:
#   1. builder: the Rust 1.95 toolchain on Debian bookworm builds the worker exactly as CI does
#      (`cargo build --release --locked`), scoped to the worker package with `-p`, so the
#      `connect-sim` workspace member (the local Connect simulator used by tests) is never built
#      into the image.
#   2. runtime: gcr.io/distroless/cc-debian12:nonroot: glibc + libgcc (what a Rust binary built
#      on bookworm links against), the Mozilla CA bundle at /etc/ssl/certs/ca-certificates.crt
#      (the AWS SDK's rustls client loads the platform roots from there), tzdata, and nothing
#      else: no shell, no package manager. It runs as the distroless `nonroot` user (65532).
#
# Dependency caching: the first builder step compiles only the dependencies, against stub
# sources, from the manifests and Cargo.lock alone. That layer is reused until a manifest or
# the lock file changes, so a source-only change recompiles the worker crate and nothing else.
# The stubs stand in for every target Cargo discovers on its own (src/lib.rs, src/main.rs,
# sim/src/lib.rs, sim/src/main.rs). If a manifest ever declares explicit targets
# ([[bin]], [[bench]], [[test]], [[example]], build = ...), add stubs for them here too:
# scripts/lint-deploy.sh loads the workspace with exactly these stubs and fails if it cannot.
#
# Build (see docs/operations.md, "Building and pushing the image"):
#   docker buildx build --platform linux/amd64 --build-arg GIT_COMMIT="$(git rev-parse HEAD)" \
#       -t resume-chat-worker:dev .

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /build
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# 1. Dependencies only (cached layer).
COPY Cargo.toml Cargo.lock ./
COPY sim/Cargo.toml sim/Cargo.toml
RUN mkdir -p src sim/src \
    && printf 'fn main() {}\n' > src/main.rs \
    && : > src/lib.rs \
    && : > sim/src/lib.rs \
    && printf 'fn main() {}\n' > sim/src/main.rs \
    && cargo build --release --locked -p resume-chat-worker \
    && rm -rf src sim/src

# 2. The real sources. COPY keeps the files' own modification times, which can be older than
# the stub build's fingerprints, so the worker's fingerprint is dropped to force its rebuild.
# GIT_COMMIT (the build argument; .git is not in the build context) labels the
# resume_chat_build_info metric: --build-arg GIT_COMMIT="$(git rev-parse HEAD)".
# Declared here, after the dependency layer, so a new commit does not invalidate that layer.
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=${GIT_COMMIT}
COPY . .
RUN rm -rf target/release/.fingerprint/resume-chat-worker-* \
    && cargo build --release --locked -p resume-chat-worker \
    && install -D -m 0755 target/release/resume-chat-worker /out/resume-chat-worker

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="resume-chat-worker" \
      org.opencontainers.image.description="Resumes Amazon Connect persistent chats from SQS jobs, within Connect's quotas" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/resume-chat-worker /usr/local/bin/resume-chat-worker
# distroless "nonroot": uid/gid 65532. Numeric, so Kubernetes/ECS can verify runAsNonRoot.
USER 65532:65532
ENV METRICS_ADDR=0.0.0.0:9464 \
    LOG_FORMAT=json
# Prometheus metrics, /healthz and /readyz.
EXPOSE 9464
# No shell in distroless: the binary checks itself (GET /healthz on METRICS_ADDR, exit 0 or 1).
# ECS ignores this instruction and uses the task definition's healthCheck (the same command).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/resume-chat-worker", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/resume-chat-worker"]
CMD ["run"]
