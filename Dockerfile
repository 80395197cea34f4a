# syntax=docker/dockerfile:1
#
# aws-workflow-exporter container image.
#
#   docker build -t aws-workflow-exporter:dev \
#     --build-arg VERSION="$(git describe --tags --always)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm -p 9810:9810 --read-only aws-workflow-exporter:dev
#
# The binary links against glibc (aws-lc-sys is built with gcc), so the runtime
# stage is distroless/cc on the same Debian release as the builder (bookworm =
# Debian 12). That image ships glibc, libgcc_s and the CA bundle that TLS to
# the AWS endpoints needs, and no shell or package manager.
#
# scripts/checks/deploy.sh runs the `RUN cargo build` line below outside Docker,
# and checks that EXPOSE and ENTRYPOINT agree with the crate: keep that line
# on one line.

############################
# Builder
############################
FROM rust:1.95-bookworm AS builder

WORKDIR /src

# Dependency layer: download every crate in Cargo.lock before the sources are
# copied, so editing the code does not download the dependencies again. Stub
# targets only exist so that Cargo can read the manifest; they are deleted
# before the real sources arrive.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo fetch --locked \
 && rm -rf src

COPY . .
# build_info{revision}: build.rs reads git, but the build context leaves .git out, so the
# revision comes in as a build argument.
ARG REVISION=unknown
ENV GIT_REVISION=${REVISION}
RUN cargo build --release --locked

############################
# Runtime
############################
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=dev
ARG REVISION=unknown

LABEL org.opencontainers.image.title="aws-workflow-exporter" \
      org.opencontainers.image.description="Prometheus exporter for AWS Step Functions Map Runs, Transfer Family workflow executions and AppFlow flow runs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /src/target/release/aws-workflow-exporter /usr/local/bin/aws-workflow-exporter

# distroless "nonroot" user and group. Numeric so that Kubernetes'
# runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532

# The exporter writes nothing to disk: the image runs with a read-only root
# filesystem (docker run --read-only, readOnlyRootFilesystem: true).
#
# No HEALTHCHECK: the image has no shell or HTTP client to run one with.
# Kubernetes probes /healthz (liveness) and /readyz (readiness) instead.
EXPOSE 9810

ENTRYPOINT ["/usr/local/bin/aws-workflow-exporter"]
