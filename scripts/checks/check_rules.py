#!/usr/bin/env python3
"""Convention checks of the Prometheus rules that promtool does not make.

Usage (from the repository root):
    scripts/checks/check_rules.py [METRICS_DOC]

METRICS_DOC defaults to docs/metrics.md. Checks monitoring/alerts.yml (generated
from mixin.yaml), recording.yml, tests/*.yml and runbook.md:
  - recording rules are named level:metric:operations;
  - alerts are named <Component><Symptom> with a known component, carry `severity`
    (warning or critical) and the annotations summary, description and runbook_url, and the
    runbook_url points at a heading that exists in monitoring/runbook.md;
  - every metric an expression uses is emitted by the exporter (METRICS_DOC), a recording
    rule, or `up`;
  - every alert has promtool unit tests both firing (with exp_labels including severity and
    exp_annotations with all three annotations) and not firing, and every recording rule
    is evaluated by at least one promql_expr_test.
"""

import pathlib
import re
import sys

import yaml

from check_dashboards import DEFAULT_METRICS_DOC, allowed_metrics, metric_names

ALERTS = pathlib.Path("monitoring/alerts.yml")
RECORDING = pathlib.Path("monitoring/recording.yml")
TESTS = pathlib.Path("monitoring/tests")
RUNBOOK = pathlib.Path("monitoring/runbook.md")
MIXIN = pathlib.Path("monitoring/mixin.yaml")
COMPONENTS = ("Sfn", "Transfer", "AppFlow", "AwsWorkflowExporter")
SEVERITIES = {"warning", "critical"}
ANNOTATIONS = ("summary", "description", "runbook_url")
RECORD_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
ALERT_NAME_RE = re.compile(r"^[A-Z][A-Za-z0-9]+$")


def github_anchor(heading):
    """The anchor GitHub gives a markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def rules(path):
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for group in doc.get("groups") or []:
        for rule in group.get("rules") or []:
            yield rule


def main(argv):
    if len(argv) > 2:
        raise SystemExit(__doc__)
    metrics_doc = pathlib.Path(argv[1]) if len(argv) == 2 else DEFAULT_METRICS_DOC
    if not metrics_doc.is_file():
        raise SystemExit(f"{metrics_doc}: not found (the generated metrics reference)")
    allowed = allowed_metrics(metrics_doc)
    errors = []
    # alerts.yml is generated with the mixin's default config: its runbook URLs are the
    # pattern with {anchor} filled in.
    runbook_pattern = yaml.safe_load(MIXIN.read_text(encoding="utf-8"))["config"]["runbookUrl"]
    if not runbook_pattern.endswith("#{anchor}"):
        errors.append(f"{MIXIN}: config.runbookUrl should end with #{{anchor}} (a heading of {RUNBOOK})")
    runbook_prefix = runbook_pattern.split("{anchor}")[0]

    anchors = {github_anchor(m.group(1))
               for m in re.finditer(r"^#+\s+(.*)$", RUNBOOK.read_text(encoding="utf-8"), re.M)}

    records = []
    for rule in rules(RECORDING):
        name = rule.get("record")
        if not name:
            errors.append(f"{RECORDING}: only recording rules belong here, found {rule}")
            continue
        records.append(name)
        if not RECORD_NAME_RE.match(name):
            errors.append(f"{RECORDING}: {name}: not named level:metric:operations")
        for m in sorted(metric_names(rule["expr"]) - allowed):
            errors.append(f"{RECORDING}: {name}: metric {m!r} is not emitted by the exporter")

    alerts = []
    for rule in rules(ALERTS):
        name = rule.get("alert")
        if not name:
            errors.append(f"{ALERTS}: only alerting rules belong here, found {rule}")
            continue
        alerts.append(name)
        where = f"{ALERTS}: {name}"
        if not ALERT_NAME_RE.match(name) or not name.startswith(COMPONENTS):
            errors.append(f"{where}: not named <Component><Symptom> with a component in {COMPONENTS}")
        if (rule.get("labels") or {}).get("severity") not in SEVERITIES:
            errors.append(f"{where}: severity label is not one of {sorted(SEVERITIES)}")
        ann = rule.get("annotations") or {}
        for key in ANNOTATIONS:
            if not str(ann.get(key, "")).strip():
                errors.append(f"{where}: no {key} annotation")
        url = ann.get("runbook_url", "")
        if not url.startswith(runbook_prefix):
            errors.append(f"{where}: runbook_url does not start with {runbook_prefix}")
        elif url[len(runbook_prefix):] not in anchors:
            errors.append(f"{where}: runbook_url anchor #{url[len(runbook_prefix):]} is not a heading of {RUNBOOK}")
        for m in sorted(metric_names(rule["expr"]) - allowed):
            errors.append(f"{where}: metric {m!r} is not emitted by the exporter")
    if len(set(alerts)) != len(alerts):
        errors.append(f"{ALERTS}: duplicate alert names")

    firing, quiet, evaluated = set(), set(), set()
    test_files = sorted(TESTS.glob("*.yml"))
    if not test_files:
        errors.append(f"{TESTS}: no test files")
    for path in test_files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for test in doc.get("tests") or []:
            for case in test.get("alert_rule_test") or []:
                name = case.get("alertname")
                exp = case.get("exp_alerts") or []
                (firing if exp else quiet).add(name)
                for alert in exp:
                    if "severity" not in (alert.get("exp_labels") or {}):
                        errors.append(f"{path}: {name} at {case.get('eval_time')}: exp_labels without severity")
                    missing = [k for k in ANNOTATIONS if k not in (alert.get("exp_annotations") or {})]
                    if missing:
                        errors.append(f"{path}: {name} at {case.get('eval_time')}: exp_annotations without {missing}")
            for case in test.get("promql_expr_test") or []:
                evaluated |= metric_names(case.get("expr", ""))
    for name in alerts:
        if name not in firing:
            errors.append(f"{TESTS}: no test where {name} fires")
        if name not in quiet:
            errors.append(f"{TESTS}: no test where {name} does not fire")
    for name in records:
        if name not in evaluated:
            errors.append(f"{TESTS}: recording rule {name} is not evaluated by any promql_expr_test")

    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check_rules: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_rules: {len(alerts)} alerts and {len(records)} recording rules OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
