#!/usr/bin/env bash
# Checks the monitoring artifacts: the Prometheus rules and their unit tests, the
# Prometheus configuration of the demo, the Grafana dashboards and provisioning files, and
# docker-compose.yml.
#
#   0. the files generated from monitoring/mixin.yaml (alerts.yml, the PrometheusRule, the
#      Grafana alert rules) are up to date: scripts/gen-mixin.py --check; and a site's
#      overrides file reaches every generated rule;
#   1. promtool check rules on monitoring/alerts.yml and recording.yml;
#   2. promtool test rules monitoring/tests/*.yml (every alert firing and not firing);
#   3. promtool check config monitoring/prometheus.yml (offline; rule_files are relative);
#   4. scripts/checks/check_rules.py: naming, severity, annotations, runbook anchors, test
#      coverage of every alert and recording rule, metric names;
#   5. scripts/checks/check_dashboards.py: dashboard structure, ${datasource} everywhere,
#      variables, grafana/dashboard-linter's rules (job/instance variables and matchers,
#      $__rate_interval, units, descriptions, counters in rate/increase, not editable), and
#      that every metric queried is one the exporter emits (docs/metrics.md);
#   6. scripts/checks/check_compose.py: docker-compose.yml parses and everything it mounts
#      or builds from exists.
#
# Run from the repository root with the tools of scripts/setup-tools.sh on PATH
# (scripts/test.sh does both). METRICS_DOC overrides the metrics reference the names are
# checked against (default docs/metrics.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
  echo "monitoring.sh: $*" >&2
  exit 1
}
command -v promtool >/dev/null 2>&1 || fail "promtool not found: run scripts/setup-tools.sh"
python3 -c 'import yaml' 2>/dev/null || fail "PyYAML is missing for $(command -v python3)"
metrics_doc=${METRICS_DOC:-docs/metrics.md}

echo "-- generated from monitoring/mixin.yaml"
python3 scripts/gen-mixin.py --check

echo "-- a site's overrides reach every generated file"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/site.yaml" <<'YAML'
config:
  selector: job="site-exporters",cluster="prod"
  runbookUrl: https://wiki.example.com/runbooks#{anchor}
  prometheusRule: {labels: {release: kube-prometheus-stack}}
alerts:
  SfnMapRunFailed: {severity: critical, for: 5m}
  SfnMapRunFailureRatioNearTolerance: {params: {threshold: 0.9}}
  AppFlowDataStale: {enabled: false}
YAML
python3 scripts/gen-mixin.py --overrides "$tmp/site.yaml" --out-dir "$tmp/out" >/dev/null
promtool check rules "$tmp/out/alerts.yml" "$tmp/out/recording.yml" >/dev/null
python3 - "$tmp/out" <<'PY'
import sys, pathlib, yaml
out = pathlib.Path(sys.argv[1])
alerts = {r["alert"]: r for g in yaml.safe_load((out / "alerts.yml").read_text())["groups"] for r in g["rules"]}
pr = yaml.safe_load((out / "prometheusrule.yaml").read_text())
grafana = yaml.safe_load((out / "grafana-alerting.yml").read_text())
problems = []
if "AppFlowDataStale" in alerts:
    problems.append("a disabled alert was generated")
if (alerts["SfnMapRunFailed"]["labels"]["severity"], alerts["SfnMapRunFailed"]["for"]) != ("critical", "5m"):
    problems.append("severity/for override not applied")
for name, rule in alerts.items():
    if 'job="aws-workflow-exporter"' in rule["expr"] or 'job="site-exporters",cluster="prod"' not in rule["expr"]:
        problems.append(f"{name}: the site's selector is not on its selectors")
    if not rule["annotations"]["runbook_url"].startswith("https://wiki.example.com/runbooks#"):
        problems.append(f"{name}: runbook_url ignores config.runbookUrl")
if "> 0.9" not in alerts["SfnMapRunFailureRatioNearTolerance"]["expr"]:
    problems.append("params override not applied to the expression")
if pr["metadata"]["labels"].get("release") != "kube-prometheus-stack":
    problems.append("PrometheusRule labels override not applied")
g = grafana["groups"][0]["rules"][0]
if g["data"][2]["model"]["conditions"][0]["evaluator"]["params"] != [0.9] or "site-exporters" not in g["data"][0]["model"]["expr"]:
    problems.append("the Grafana alert rule ignores the overrides")
for p in problems:
    print(f"gen-mixin overrides: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
echo "ok   selector, runbook URL, severity, for, params, enabled and labels reach the outputs"

echo "-- promtool check rules"
promtool check rules monitoring/alerts.yml monitoring/recording.yml monitoring/examples/*.yml

echo "-- promtool test rules"
promtool test rules monitoring/tests/*.yml

echo "-- promtool check config"
promtool check config monitoring/prometheus.yml

echo "-- rule conventions"
python3 scripts/checks/check_rules.py "$metrics_doc"

echo "-- dashboards"
python3 scripts/checks/check_dashboards.py "$metrics_doc"

echo "-- docker-compose.yml"
python3 scripts/checks/check_compose.py docker-compose.yml

echo "monitoring checks passed"
