#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs its tools, then lints and tests everything.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-tools.sh
export PATH="$PWD/.venv/bin:$PATH"
export MOTO_SERVER="$PWD/.venv/bin/moto_server"

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets

# Checks of the non-Rust artifacts (rules, dashboards, manifests, Dockerfile), one script each.
for check in scripts/checks/*.sh; do
  echo "== $check"
  "$check"
done
echo "all checks passed"
