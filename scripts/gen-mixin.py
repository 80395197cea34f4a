#!/usr/bin/env python3
"""Generate the alerting rules, the PrometheusRule and the Grafana alert rules from the mixin.

monitoring/mixin.yaml holds the site settings (`config`: label selector, runbook URL
pattern, poll interval, PrometheusRule metadata) and one entry per alert (severity, `for`,
thresholds as `params`, expression, annotations). This script writes

    monitoring/alerts.yml                                        alerting rules
    deploy/kubernetes/prometheusrule.yaml                        monitoring/recording.yml + alerts.yml
    dashboards/provisioning/alerting/aws-workflow-exporter.yml   Grafana-managed rules (alerts with `grafana:`)

Usage (from anywhere):
    scripts/gen-mixin.py                          # rewrite the files above
    scripts/gen-mixin.py --check                  # exit 1 (with a diff) if any is stale (CI)
    scripts/gen-mixin.py --overrides site.yaml --out-dir build/monitoring
                                                  # your settings, written elsewhere

An overrides file changes the defaults without editing the repository's files:
    config:                      # merged into mixin.yaml's config (nested mappings merged)
      selector: job="aws-workflow-exporter",cluster="prod"
      prometheusRule: {labels: {release: kube-prometheus-stack}}
    alerts:
      SfnMapRunFailed: {severity: critical, for: 5m}
      SfnMapRunNoProgress: {params: {window: 1h}}
      AppFlowDataStale: {enabled: false}
With --out-dir the outputs are written flat into DIR (alerts.yml, recording.yml,
prometheusrule.yaml, grafana-alerting.yml). Needs PyYAML.
"""

import argparse
import copy
import difflib
import re
import sys
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
MIXIN = "monitoring/mixin.yaml"
RECORDING = "monitoring/recording.yml"
# output key -> (path in the repository, file name with --out-dir)
OUTPUTS = {
    "alerts": ("monitoring/alerts.yml", "alerts.yml"),
    "prometheusrule": ("deploy/kubernetes/prometheusrule.yaml", "prometheusrule.yaml"),
    "grafana": ("dashboards/provisioning/alerting/aws-workflow-exporter.yml", "grafana-alerting.yml"),
}
CONFIG_REQUIRED = {"selector", "runbookUrl", "prometheusRule", "grafanaFolder"}
ALERT_KEYS = {"alert", "comment", "params", "expr", "for", "severity", "summary", "description", "grafana"}
ALERT_REQUIRED = {"alert", "expr", "severity", "summary", "description"}
OVERRIDE_KEYS = {"severity", "for", "params", "enabled"}
GRAFANA_KEYS = {"uid", "query", "threshold", "noData", "description"}
SEVERITIES = {"warning", "critical"}
DURATION_RE = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MixinError(Exception):
    pass


def load_yaml(path):
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MixinError(f"{path}: not found")
    except yaml.YAMLError as exc:
        raise MixinError(f"{path}: invalid YAML: {exc}")


def merge(base, over):
    """Nested mappings merged, everything else replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def substitute(text, values, where):
    def repl(m):
        name = m.group(1)
        if name not in values:
            raise MixinError(f"{where}: unknown placeholder ${{{name}}} (known: {', '.join(sorted(values))})")
        value = values[name]
        if isinstance(value, (dict, list)):
            raise MixinError(f"{where}: ${{{name}}} is not a scalar")
        return str(value)

    return PLACEHOLDER_RE.sub(repl, text)


def apply_overrides(mixin, overrides, source):
    """mixin with overrides (a parsed overrides file) applied."""
    if not isinstance(overrides, dict):
        raise MixinError(f"{source}: expected a mapping with `config` and/or `alerts`")
    unknown = set(overrides) - {"config", "alerts"}
    if unknown:
        raise MixinError(f"{source}: unknown top-level keys {sorted(unknown)}")
    mixin = copy.deepcopy(mixin)
    if overrides.get("config") is not None:
        if not isinstance(overrides["config"], dict):
            raise MixinError(f"{source}: config must be a mapping")
        mixin["config"] = merge(mixin["config"], overrides["config"])
    rules = {r.get("alert"): r for g in mixin["groups"] for r in g["rules"]}
    for name, change in (overrides.get("alerts") or {}).items():
        where = f"{source}: alerts.{name}"
        if name not in rules:
            raise MixinError(f"{where}: no such alert in {MIXIN}")
        if not isinstance(change, dict) or set(change) - OVERRIDE_KEYS:
            raise MixinError(f"{where}: must be a mapping of {sorted(OVERRIDE_KEYS)}")
        rule = rules[name]
        if "params" in change:
            unknown = set(change["params"] or {}) - set(rule.get("params") or {})
            if unknown:
                raise MixinError(f"{where}.params: {name} has no params {sorted(unknown)}")
            rule["params"] = merge(rule.get("params") or {}, change["params"] or {})
        for key in ("severity", "for"):
            if key in change:
                rule[key] = change[key]
        if change.get("enabled") is False:
            rule["disabled"] = True
    return mixin


def build_alerts(mixin):
    """[(group name, [rule dict with a `comment` key])], the mixin's alerts resolved."""
    config = mixin.get("config")
    if not isinstance(config, dict):
        raise MixinError(f"{MIXIN}: needs a `config` mapping")
    missing = CONFIG_REQUIRED - set(config)
    if missing:
        raise MixinError(f"{MIXIN}: config lacks {sorted(missing)}")
    if not str(config["selector"]).strip():
        raise MixinError(f"{MIXIN}: config.selector must not be empty (it goes inside {{...}})")
    if "{anchor}" not in config["runbookUrl"] and "{alert}" not in config["runbookUrl"]:
        raise MixinError(f"{MIXIN}: config.runbookUrl needs {{anchor}} or {{alert}}")
    groups, seen = [], set()
    for i, group in enumerate(mixin.get("groups") or []):
        if not isinstance(group, dict) or not group.get("name") or not isinstance(group.get("rules"), list):
            raise MixinError(f"{MIXIN}: groups[{i}] needs `name` and a `rules` list")
        rules = []
        for j, rule in enumerate(group["rules"]):
            where = f"{MIXIN}: {group['name']} rules[{j}]"
            if not isinstance(rule, dict):
                raise MixinError(f"{where}: must be a mapping")
            unknown = set(rule) - ALERT_KEYS - {"disabled"}
            missing = ALERT_REQUIRED - set(rule)
            if unknown or missing:
                raise MixinError(f"{where}: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
            name = rule["alert"]
            where = f"{MIXIN}: alert {name}"
            if name in seen:
                raise MixinError(f"{where}: defined twice")
            seen.add(name)
            if rule.get("disabled"):
                continue
            if rule["severity"] not in SEVERITIES:
                raise MixinError(f"{where}: severity {rule['severity']!r} is not one of {sorted(SEVERITIES)}")
            values = {k: v for k, v in config.items() if not isinstance(v, (dict, list))}
            values.update(rule.get("params") or {})
            expr = substitute(rule["expr"], values, f"{where}.expr").strip()
            # Multi-line expressions end with a newline (a `|` block), one-liners do not.
            out = {"comment": rule.get("comment", ""), "alert": name,
                   "expr": expr + "\n" if "\n" in expr else expr}
            if rule.get("for") is not None:
                duration = substitute(str(rule["for"]), values, f"{where}.for")
                if not DURATION_RE.match(duration):
                    raise MixinError(f"{where}: for {duration!r} is not a Prometheus duration")
                out["for"] = duration
            out["labels"] = {"severity": rule["severity"]}
            out["annotations"] = {
                "summary": substitute(rule["summary"], values, f"{where}.summary").strip(),
                "description": substitute(rule["description"], values, f"{where}.description").strip(),
                "runbook_url": config["runbookUrl"].replace("{anchor}", name.lower()).replace("{alert}", name),
            }
            if rule.get("grafana"):
                out["grafana"] = build_grafana_spec(rule["grafana"], values, where)
            rules.append(out)
        if rules:
            groups.append((group["name"], rules))
    return groups


def build_grafana_spec(spec, values, where):
    unknown = set(spec) - GRAFANA_KEYS
    if unknown or not {"uid", "query", "threshold"} <= set(spec):
        raise MixinError(f"{where}.grafana: needs uid, query, threshold; unknown keys {sorted(unknown)}")
    threshold = substitute(str(spec["threshold"]), values, f"{where}.grafana.threshold").split()
    if len(threshold) != 2 or threshold[0] not in ("gt", "lt"):
        raise MixinError(f"{where}.grafana.threshold: expected `gt|lt <number>`")
    try:
        limit = float(threshold[1])
    except ValueError:
        raise MixinError(f"{where}.grafana.threshold: {threshold[1]!r} is not a number")
    return {
        "uid": spec["uid"],
        "query": " ".join(substitute(spec["query"], values, f"{where}.grafana.query").split()),
        "op": threshold[0],
        "limit": int(limit) if limit.is_integer() else limit,
        "noData": spec.get("noData", "NoData"),
        "description": substitute(spec.get("description", ""), values, f"{where}.grafana.description").strip(),
    }


# --------------------------------------------------------------------------- emitters

def _scalar(value):
    """A one-line YAML scalar."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True).rstrip("\n").removesuffix("\n...")


def _block(key, text, indent, fold=False):
    pad = " " * indent
    if fold:
        # Keep each {{ template action }} on one line: protect its spaces while wrapping.
        glued = re.sub(r"\{\{.*?\}\}", lambda m: m.group(0).replace(" ", "\0"), text)
        lines = [line.replace("\0", " ") for line in
                 textwrap.wrap(glued, width=88 - indent - 2, break_long_words=False, break_on_hyphens=False)]
        return [f"{pad}{key}: >-"] + [f"{pad}  {line}" for line in lines]
    if "\n" not in text.rstrip("\n"):
        return [f"{pad}{key}: {_scalar(text.rstrip(chr(10)))}"]
    chomp = "|" if text.endswith("\n") else "|-"
    return [f"{pad}{key}: {chomp}"] + [f"{pad}  {line}" if line else "" for line in text.rstrip("\n").split("\n")]


def render_alerts(groups, header):
    lines = header[:]
    lines.append("groups:")
    for gi, (name, rules) in enumerate(groups):
        if gi:
            lines.append("")
        lines += [f"  - name: {_scalar(name)}", "    rules:"]
        for ri, rule in enumerate(rules):
            if ri:
                lines.append("")
            for c in rule["comment"].rstrip("\n").split("\n") if rule["comment"] else []:
                lines.append(f"      # {c}".rstrip())
            lines.append(f"      - alert: {rule['alert']}")
            lines += _block("expr", rule["expr"], 8)
            if "for" in rule:
                lines.append(f"        for: {rule['for']}")
            lines += ["        labels:", f"          severity: {rule['labels']['severity']}", "        annotations:"]
            ann = rule["annotations"]
            lines += _block("summary", ann["summary"], 10)
            lines += _block("description", ann["description"], 10, fold=True)
            lines.append(f"          runbook_url: {_scalar(ann['runbook_url'])}")
    text = "\n".join(lines) + "\n"
    # The hand-written emitter must say exactly what was meant.
    parsed = [(g["name"], g["rules"]) for g in yaml.safe_load(text)["groups"]]
    want = [(n, [{k: v for k, v in r.items() if k not in ("comment", "grafana")} for r in rs]) for n, rs in groups]
    if parsed != want:
        raise MixinError("internal error: alerts.yml does not parse back to the rules (a string YAML cannot fold?)")
    return text


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings (PromQL) as `|` literals, sequences indented."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


_Dumper.add_representer(
    str,
    lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None),
)


def dump(doc):
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)


def render_prometheusrule(config, recording_groups, alerts_text):
    alert_groups = yaml.safe_load(alerts_text)["groups"]
    pr = config["prometheusRule"]
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": pr.get("name", "aws-workflow-exporter"), "labels": dict(pr.get("labels") or {})},
        "spec": {"groups": recording_groups + alert_groups},
    }
    header = (
        f"# GENERATED by scripts/gen-mixin.py from {RECORDING} and {MIXIN}. Do not edit:\n"
        "# change those files (or pass --overrides) and run the script again.\n"
        "# Your Prometheus resource must select this object: kube-prometheus-stack wants the\n"
        "# label `release: <helm release name>` (config.prometheusRule.labels in the mixin)\n"
        "# unless ruleSelectorNilUsesHelmValues is false.\n"
    )
    return header + dump(doc)


def render_grafana(config, groups):
    rules = []
    for _, group_rules in groups:
        for r in group_rules:
            g = r.get("grafana")
            if not g:
                continue
            annotations = dict(r["annotations"])
            if g["description"]:
                annotations["description"] = g["description"]
            rules.append({
                "uid": g["uid"],
                "title": r["alert"],
                "condition": "C",
                "data": [
                    {"refId": "A", "relativeTimeRange": {"from": 600, "to": 0}, "datasourceUid": "prometheus",
                     "model": {"refId": "A", "editorMode": "code", "expr": g["query"], "instant": True,
                               "range": False, "intervalMs": 1000, "maxDataPoints": 43200}},
                    {"refId": "B", "datasourceUid": "__expr__",
                     "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last",
                               "settings": {"mode": "dropNN"}}},
                    {"refId": "C", "datasourceUid": "__expr__",
                     "model": {"refId": "C", "type": "threshold", "expression": "B",
                               "conditions": [{"evaluator": {"type": g["op"], "params": [g["limit"]]}}]}},
                ],
                "noDataState": g["noData"],
                "execErrState": "Error",
                "for": r.get("for", "0s"),
                "labels": dict(r["labels"]),
                "annotations": annotations,
                "isPaused": False,
            })
    doc = {"apiVersion": 1,
           "groups": [{"orgId": 1, "name": "aws-workflow-exporter", "folder": config["grafanaFolder"],
                       "interval": "1m", "rules": rules}]}
    header = (
        f"# GENERATED by scripts/gen-mixin.py from {MIXIN} (its alerts with a `grafana:` entry).\n"
        "# Do not edit. Grafana-managed counterparts of Prometheus alerts, for teams that alert\n"
        "# from Grafana: use one or the other, not both. They query the recording rules, so\n"
        "# Prometheus must load monitoring/recording.yml. datasourceUid `prometheus` is the uid\n"
        "# set in ../datasources/prometheus.yml.\n"
    )
    return header + dump(doc)


def generate(overrides_paths):
    mixin = load_yaml(REPO / MIXIN)
    if not isinstance(mixin, dict) or set(mixin) != {"config", "groups"}:
        raise MixinError(f"{MIXIN}: expected exactly the top-level keys `config` and `groups`")
    for path in overrides_paths:
        mixin = apply_overrides(mixin, load_yaml(path), path)
    groups = build_alerts(mixin)
    recording_text = (REPO / RECORDING).read_text(encoding="utf-8")
    recording_groups = (yaml.safe_load(recording_text) or {}).get("groups") or []
    header = [
        f"# GENERATED by scripts/gen-mixin.py from {MIXIN}. Do not edit: change the mixin (or",
        "# pass --overrides, see monitoring/README.md) and run the script again.",
        "# Load together with recording.yml: several alerts use its recording rules.",
    ]
    if overrides_paths:
        header.append("# Overrides: " + ", ".join(str(p) for p in overrides_paths))
    alerts_text = render_alerts(groups, header)
    return {
        "alerts": alerts_text,
        "prometheusrule": render_prometheusrule(mixin["config"], recording_groups, alerts_text),
        "grafana": render_grafana(mixin["config"], groups),
        "recording": recording_text,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overrides", action="append", default=[], metavar="FILE",
                        help="site overrides (repeatable, applied in order)")
    parser.add_argument("--out-dir", metavar="DIR", help="write the outputs flat into DIR instead of the repository")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a committed output is stale")
    args = parser.parse_args(argv)
    if args.check and (args.out_dir or args.overrides):
        parser.error("--check compares the repository's files with the defaults: no --out-dir/--overrides")

    try:
        texts = generate(args.overrides)
    except MixinError as exc:
        print(f"gen-mixin: {exc}", file=sys.stderr)
        return 2

    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for key, (_, flat) in list(OUTPUTS.items()) + [("recording", (RECORDING, "recording.yml"))]:
            (out / flat).write_text(texts[key], encoding="utf-8")
            print(f"gen-mixin: wrote {out / flat}")
        return 0

    stale = 0
    for key, (rel, _) in OUTPUTS.items():
        path = REPO / rel
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != texts[key]:
                stale += 1
                sys.stderr.writelines(difflib.unified_diff(
                    current.splitlines(keepends=True), texts[key].splitlines(keepends=True),
                    fromfile=f"{rel} (committed)", tofile=f"{rel} (generated)"))
                print(f"gen-mixin: {rel} is stale; run scripts/gen-mixin.py", file=sys.stderr)
            else:
                print(f"gen-mixin: {rel} is up to date")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(texts[key], encoding="utf-8")
            print(f"gen-mixin: wrote {rel}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
