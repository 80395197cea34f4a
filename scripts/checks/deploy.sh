#!/usr/bin/env bash
# Checks the deployment artifacts: Dockerfile, deploy/kubernetes/, deploy/iam/.
#
#   1. hadolint on the Dockerfile;
#   2. kubernetes-validate --strict on every core manifest, offline, against
#      the Kubernetes version pinned below (a manifest whose kind has no schema
#      fails instead of being skipped);
#   3. scripts/checks/deploy_lint.py: the Prometheus Operator objects (no
#      schema for them; the ServiceMonitor's jobLabel), cross-references (ports,
#      labels, probes, ConfigMaps, security settings, Dockerfile
#      EXPOSE/ENTRYPOINT vs the crate), the prometheus.io/* component, the
#      dashboards ConfigMap (validated by kubernetes-validate), IAM JSON; where
#      kubectl exists, every kustomization is built and validated too;
#   4. promtool accepts the PrometheusRule's rules (scripts/checks/monitoring.sh checks that
#      it is what scripts/gen-mixin.py generates);
#   5. the Dockerfile's `RUN cargo build ...` line, run as-is in the repository
#      (it reuses ./target), then the release binary's check-config on the
#      ConfigMaps' configurations.
#
# Run from the repository root with the tools of scripts/setup-tools.sh on PATH
# (scripts/test.sh does both). SKIP_RELEASE_BUILD=1 skips the release build in
# step 5 for quick local runs; CI runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Must be a version the installed kubernetes-validate bundles schemas for
# (`ls .venv/lib/python3*/site-packages/kubernetes_validate/kubernetes-json-schema`).
K8S_VERSION=1.33.0

fail() {
  echo "deploy.sh: $*" >&2
  exit 1
}
for tool in hadolint kubernetes-validate python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found: run scripts/setup-tools.sh and put .venv/bin on PATH"
done
python3 -c 'import yaml' 2>/dev/null || fail "PyYAML is missing for $(command -v python3)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "-- hadolint ($(hadolint --version))"
# Default failure threshold: any finding, down to "info", fails.
hadolint --no-color Dockerfile
echo "ok   Dockerfile"

echo "-- kubernetes-validate $(kubernetes-validate --version) --strict -k $K8S_VERSION"
manifests=()
for dir in deploy/kubernetes/standalone deploy/kubernetes/sidecar deploy/kubernetes/sharded; do
  for f in "$dir"/*.yaml; do
    # kustomization.yaml is not a Kubernetes object; deploy_lint.py checks it.
    [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
  done
done
[ "${#manifests[@]}" -gt 0 ] || fail "no manifests found under deploy/kubernetes/"
if ! out=$(kubernetes-validate --strict -k "$K8S_VERSION" "${manifests[@]}" 2>&1); then
  echo "$out"
  fail "kubernetes-validate failed"
fi
echo "$out"
# kubernetes-validate only warns (exit 0) when it has no schema for a kind:
# that would leave a manifest unchecked.
if grep -qvE '^INFO ' <<<"$out"; then
  fail "kubernetes-validate printed warnings or errors"
fi

echo "-- deploy_lint.py"
mkdir "$tmp/generated"
python3 scripts/checks/deploy_lint.py --extract-configs "$tmp" --extract-rules "$tmp/prometheusrule-groups.yml" \
  --extract-dashboards "$tmp/generated/dashboards-configmap.yaml"

echo "-- kubernetes-validate the generated dashboards ConfigMap"
if ! out=$(kubernetes-validate --strict -k "$K8S_VERSION" "$tmp/generated/dashboards-configmap.yaml" 2>&1) \
  || grep -qvE '^INFO ' <<<"$out"; then
  echo "$out"
  fail "kubernetes-validate rejected the dashboards ConfigMap"
fi
echo "$out"

# kustomize itself is not one of the suite's tools; where kubectl is installed, also build
# every kustomization (the optional annotations component included) and validate the result.
if command -v kubectl >/dev/null 2>&1; then
  echo "-- kubectl kustomize + kubernetes-validate"
  cp -r deploy "$tmp/deploy-copy"
  for dir in standalone sidecar sharded; do
    k="$tmp/deploy-copy/kubernetes/$dir/kustomization.yaml"
    printf 'components:\n  - ../components/prometheus-annotations\n' >>"$k"
    for variant in "deploy/kubernetes/$dir" "$tmp/deploy-copy/kubernetes/$dir"; do
      name="$dir-$([ "$variant" = "deploy/kubernetes/$dir" ] && echo plain || echo annotated)"
      kubectl kustomize "$variant" >"$tmp/generated/$name.yaml"
    done
    grep -q 'prometheus.io/scrape: "true"' "$tmp/generated/$dir-annotated.yaml" \
      || fail "the prometheus-annotations component did not annotate the $dir Service"
  done
  kubectl kustomize dashboards >"$tmp/generated/dashboards-kustomize.yaml"
  if ! out=$(kubernetes-validate --strict -k "$K8S_VERSION" "$tmp"/generated/*.yaml 2>&1) \
    || grep -qvE '^INFO ' <<<"$out"; then
    echo "$out"
    fail "kubernetes-validate rejected a kustomize build"
  fi
  echo "$out"
else
  echo "kubectl not found: skipped building the kustomizations (deploy_lint.py checked them)"
fi

echo "-- PrometheusRule rules"
if command -v promtool >/dev/null 2>&1; then
  promtool check rules "$tmp/prometheusrule-groups.yml"
else
  echo "promtool not found: skipped promtool check of the PrometheusRule's groups"
fi

echo "-- Dockerfile build step, outside Docker"
build_lines=$(grep -E '^RUN cargo build( |$)' Dockerfile || true)
[ -n "$build_lines" ] || fail "Dockerfile has no line starting with 'RUN cargo build'"
[ "$(wc -l <<<"$build_lines")" -eq 1 ] || fail "Dockerfile has more than one 'RUN cargo build' line"
case "$build_lines" in
  *\\) fail "the 'RUN cargo build' line must not continue on the next line" ;;
esac
build_cmd=${build_lines#RUN }
pkg=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["package"]["name"])')
bin=""
if [ "${SKIP_RELEASE_BUILD:-0}" = 1 ]; then
  echo "SKIP_RELEASE_BUILD=1: not running: $build_cmd"
  # Smoke-test with a binary already built, if any.
  for candidate in "target/release/$pkg" "target/debug/$pkg"; do
    if [ -x "$candidate" ]; then
      bin=$candidate
      break
    fi
  done
else
  echo "+ $build_cmd"
  # Docker runs shell-form RUN with /bin/sh -c.
  sh -c "$build_cmd"
  bin="target/release/$pkg"
  [ -x "$bin" ] || fail "$build_cmd did not produce $bin (the Dockerfile copies that path)"
fi

if [ -n "$bin" ]; then
  echo "-- $bin check-config on the shipped configurations"
  "$bin" --help >/dev/null
  configs=("$tmp"/*.yaml)
  [ -f config/example.yaml ] && configs+=(config/example.yaml)
  for cfg in "${configs[@]}"; do
    [ -f "$cfg" ] || continue
    shown=$cfg
    case "$cfg" in "$tmp"/*) shown="ConfigMap $(basename "$cfg" .yaml)" ;; esac
    if ! out=$("$bin" check-config "$cfg" 2>&1); then
      echo "$out"
      fail "check-config rejected $shown"
    fi
    echo "ok   check-config $shown"
  done
else
  echo "no built binary: skipped check-config of the shipped configurations"
fi

echo "deploy checks passed"
