#!/usr/bin/env python3
"""Generate deploy/kubernetes/prometheusrule.yaml from the Prometheus rule files.

monitoring/recording.yml and monitoring/alerts.yml are ordinary Prometheus rule
files (a top-level `groups:` list). The Prometheus Operator wants the same groups
wrapped in a monitoring.coreos.com/v1 PrometheusRule object; this script writes
that object so the two never drift apart.

    scripts/gen-prometheusrule.py            # (re)write the PrometheusRule
    scripts/gen-prometheusrule.py --check    # exit 1 if the committed file is stale

Needs PyYAML. Runs from any directory: the default paths are relative to the
repository root, paths given as options to the working directory.
"""

import argparse
import difflib
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INPUTS = ["monitoring/recording.yml", "monitoring/alerts.yml"]
DEFAULT_OUTPUT = "deploy/kubernetes/prometheusrule.yaml"
DEFAULT_NAME = "aws-workflow-exporter"

# Fields the PrometheusRule CRD (monitoring.coreos.com/v1) knows. The API server
# prunes unknown fields silently, so a typo would vanish: refuse it here instead.
GROUP_KEYS = {"name", "interval", "rules", "limit", "query_offset", "partial_response_strategy", "labels"}
RULE_KEYS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


class RuleFileError(Exception):
    pass


def _string_map(value, where):
    """labels/annotations are map[string]string in the CRD: stringify scalars."""
    if not isinstance(value, dict):
        raise RuleFileError(f"{where}: must be a mapping")
    out = {}
    for key, val in value.items():
        if isinstance(val, bool):
            val = "true" if val else "false"
        elif isinstance(val, (int, float)):
            val = str(val)
        elif not isinstance(val, str):
            raise RuleFileError(f"{where}.{key}: must be a string, got {type(val).__name__}")
        out[str(key)] = val
    return out


def load_groups(path: Path):
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuleFileError(f"{path}: not found")
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{path}: invalid YAML: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise RuleFileError(f"{path}: expected a mapping with a top-level `groups:` list")
    extra = set(data) - {"groups"}
    if extra:
        raise RuleFileError(f"{path}: unexpected top-level keys {sorted(extra)}")
    groups = []
    for i, group in enumerate(data["groups"]):
        where = f"{path}: groups[{i}]"
        if not isinstance(group, dict):
            raise RuleFileError(f"{where}: must be a mapping")
        unknown = set(group) - GROUP_KEYS
        if unknown:
            raise RuleFileError(f"{where}: unknown keys {sorted(unknown)}")
        if not isinstance(group.get("name"), str) or not group["name"]:
            raise RuleFileError(f"{where}: needs a non-empty `name`")
        where = f"{path}: group {group['name']!r}"
        if not isinstance(group.get("rules"), list) or not group["rules"]:
            raise RuleFileError(f"{where}: needs a non-empty `rules` list")
        out_group = dict(group)
        if "labels" in group:
            out_group["labels"] = _string_map(group["labels"], f"{where}.labels")
        rules = []
        for j, rule in enumerate(group["rules"]):
            rwhere = f"{where} rules[{j}]"
            if not isinstance(rule, dict):
                raise RuleFileError(f"{rwhere}: must be a mapping")
            unknown = set(rule) - RULE_KEYS
            if unknown:
                raise RuleFileError(f"{rwhere}: unknown keys {sorted(unknown)}")
            if ("record" in rule) == ("alert" in rule):
                raise RuleFileError(f"{rwhere}: needs exactly one of `record` or `alert`")
            if "expr" not in rule or rule["expr"] in (None, ""):
                raise RuleFileError(f"{rwhere}: needs `expr`")
            out_rule = dict(rule)
            if not isinstance(out_rule["expr"], str):
                out_rule["expr"] = str(out_rule["expr"])
            for key in ("labels", "annotations"):
                if key in rule:
                    out_rule[key] = _string_map(rule[key], f"{rwhere}.{key}")
            rules.append(out_rule)
        out_group["rules"] = rules
        groups.append(out_group)
    return groups


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings (PromQL, descriptions) as `|` literals."""

    def increase_indent(self, flow=False, indentless=False):
        # Indent sequences inside mappings, as kubectl and most editors do.
        return super().increase_indent(flow, False)


def _str_representer(dumper, value):
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def render(inputs, name):
    """inputs: list of (display name, path)."""
    groups = []
    seen = {}
    for rel, path in inputs:
        for group in load_groups(path):
            if group["name"] in seen:
                raise RuleFileError(
                    f"group name {group['name']!r} appears in both {seen[group['name']]} and {rel}"
                )
            seen[group["name"]] = rel
            groups.append(group)
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "aws-workflow-exporter"},
        },
        "spec": {"groups": groups},
    }
    header = (
        "# GENERATED by scripts/gen-prometheusrule.py from "
        + " and ".join(rel for rel, _ in inputs)
        + ".\n# Do not edit: change the rule files and run the script again.\n"
        "# Your Prometheus resource must select this object (kube-prometheus-stack\n"
        "# wants the label `release: <helm release name>` unless\n"
        "# ruleSelectorNilUsesHelmValues is false).\n"
    )
    body = yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )
    return header + body


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--input",
        action="append",
        dest="inputs",
        metavar="RULES.yml",
        help=f"Prometheus rule file, repeatable, in output order (default: {' '.join(DEFAULT_INPUTS)})",
    )
    parser.add_argument("--output", help=f"default: {DEFAULT_OUTPUT}")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"metadata.name (default: {DEFAULT_NAME})")
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 (with a diff) if --output differs from what would be generated",
    )
    args = parser.parse_args(argv)
    # Defaults are relative to the repository root, paths given on the command
    # line to the working directory.
    if args.inputs:
        inputs = [(rel, Path(rel)) for rel in args.inputs]
    else:
        inputs = [(rel, REPO / rel) for rel in DEFAULT_INPUTS]
    output = REPO / DEFAULT_OUTPUT if args.output is None else Path(args.output)
    shown_output = args.output or DEFAULT_OUTPUT

    try:
        text = render(inputs, args.name)
    except RuleFileError as exc:
        print(f"gen-prometheusrule: {exc}", file=sys.stderr)
        return 2

    if args.check:
        try:
            current = output.read_text(encoding="utf-8")
        except FileNotFoundError:
            print(f"gen-prometheusrule: {shown_output} is missing; run scripts/gen-prometheusrule.py", file=sys.stderr)
            return 1
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{shown_output} (committed)",
                tofile=f"{shown_output} (generated)",
            )
            sys.stderr.writelines(diff)
            print(
                f"gen-prometheusrule: {shown_output} is stale; run scripts/gen-prometheusrule.py",
                file=sys.stderr,
            )
            return 1
        print(f"gen-prometheusrule: {shown_output} is up to date")
        return 0

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"gen-prometheusrule: wrote {shown_output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
