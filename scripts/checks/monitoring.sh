#!/usr/bin/env bash
# Checks the monitoring artifacts: the Prometheus rules and their unit tests, the
# Prometheus configuration of the demo, the Grafana dashboards and provisioning files, and
# docker-compose.yml.
#
#   0. the files generated from monitoring/mixin.yaml (alerts.yml, the PrometheusRule, the
#      Grafana alert rules) are up to date: scripts/gen-mixin.py --check;
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

echo "-- promtool check rules"
promtool check rules monitoring/alerts.yml monitoring/recording.yml

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
