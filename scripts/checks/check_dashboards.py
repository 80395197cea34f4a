#!/usr/bin/env python3
"""Structural checks of the Grafana dashboards and provisioning files.

Usage (from the repository root):
    scripts/checks/check_dashboards.py [METRICS_DOC]

METRICS_DOC defaults to docs/metrics.md, the generated reference of every metric the
exporter can emit: a markdown table whose first column holds the metric name in backticks.

For every dashboards/*.json it checks:
  - the file is valid JSON with a uid (unique across dashboards), title, tags and an integer
    schemaVersion;
  - panel ids are unique integers; gridPos has integer h, w, x, y inside the 24-column grid,
    and panels do not overlap;
  - every panel (other than rows) and every target uses the `${datasource}` variable as its
    data source, has a unit, and every target has a PromQL expr;
  - the templating has a `datasource` variable (type datasource, query prometheus), every
    query variable uses `${datasource}` too, the variables a dashboard must offer exist, and
    every `$variable` used is defined (or is a Grafana built-in such as $__rate_interval);
    multi-value variables are only used with the regex matchers =~ and !~;
  - every metric name in a panel expr or variable query is one the exporter emits (listed in
    METRICS_DOC; `_bucket`, `_sum` and `_count` of histograms), a recording rule of
    monitoring/recording.yml, or `up`.
  - grafana/dashboard-linter's rules, which CI has no Go toolchain to run:
      template-job-rule, template-instance-rule: `job` and `instance` query variables
        (label_values on ${datasource}, labelled job/instance, multi-value, include All
        with allValue `.+`);
      template-on-time-change-reload-rule: query variables refresh on time range change;
      template-uneditable-rule: the dashboard is not editable (the provisioning provider
        disallows UI updates too, so the files stay the source of truth);
      panel-title-description-rule, panel-units-rule: every panel has a title, a
        description and a known unit;
      target-job-rule, target-instance-rule: every selector of every target (and of the
        other variables' queries) has job=~"$job" and instance=~"$instance";
      target-rate-interval-rule: rate/irate/increase use [$__rate_interval]; the one
        exception, like a linter exclusion, is [$__range] in panels showing one value
        for the whole range (stat, bargauge, gauge, table);
      target-counter-agg-rule: a counter (_total, and a histogram's _bucket/_sum/_count)
        is only selected inside rate/irate/increase.
It also checks the metric names in the Grafana alert rules under
dashboards/provisioning/alerting/.

The PromQL helpers here (metric_names, load_documented_metrics, ...) are also used by
check_rules.py.
"""

import json
import pathlib
import re
import sys

import yaml

DASHBOARD_DIR = pathlib.Path("dashboards")
ALERTING_DIR = DASHBOARD_DIR / "provisioning" / "alerting"
RECORDING_RULES = pathlib.Path("monitoring/recording.yml")
DEFAULT_METRICS_DOC = pathlib.Path("docs/metrics.md")
DASHBOARD_PROVIDER = DASHBOARD_DIR / "provisioning" / "dashboards" / "provider.yml"

# Grafana unit ids the dashboards may use (panel-units-rule: a known unit, never empty).
KNOWN_UNITS = {
    "short", "none", "percent", "percentunit", "s", "ms", "dtdurations", "bytes", "decbytes",
    "Bps", "binBps", "reqps", "ops", "rps", "dateTimeAsIso", "dateTimeFromNow",
}
# Panels showing one value for the whole time range may use [$__range].
WHOLE_RANGE_PANELS = {"stat", "bargauge", "gauge", "table"}
COUNTER_SUFFIXES = ("_total", "_bucket", "_sum", "_count")
REQUIRED_MATCHERS = ('job=~"$job"', 'instance=~"$instance"')

# Dashboards that must exist, with the variables each must offer.
REQUIRED_DASHBOARDS = {
    "overview.json": ["datasource", "account_id", "region"],
    "sfn-map-runs.json": ["datasource", "account_id", "region", "state_machine"],
    "transfer-workflows.json": ["datasource", "account_id", "region", "workflow_id"],
    "appflow-flows.json": ["datasource", "account_id", "region", "flow"],
}
# Series that are not the exporter's but may be queried.
EXTRA_ALLOWED_METRICS = {"up"}
DATASOURCE_REFS = {"${datasource}", "$datasource"}

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "atan2", "inf", "nan",
}

# --------------------------------------------------------------------------- PromQL helpers

_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VAR_RE = re.compile(
    r"\$\{(?P<a>[A-Za-z0-9_]+)(?::[^}]*)?\}|\$(?P<b>[A-Za-z0-9_]+)|\[\[(?P<c>[A-Za-z0-9_]+)(?::[^\]]*)?\]\]"
)
_GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# A token is either something starting with a digit or a dot (a number or a duration such
# as 5m or 1h30m, skipped) or an identifier.
_TOKEN_RE = re.compile(r"[0-9.][A-Za-z0-9_.]*(?:[eE][+-]?[0-9]+)?|[A-Za-z_:][A-Za-z0-9_:]*")


def grafana_variables(text):
    """Names of the Grafana variables ($x, ${x}, ${x:fmt}, [[x]]) used in text."""
    return {m.group("a") or m.group("b") or m.group("c") for m in _GRAFANA_VAR_RE.finditer(text)}


def metric_names(expr):
    """The metric names a PromQL expression selects (Grafana variables allowed).

    A lexical approximation that is exact for the expressions this project writes: it drops
    string literals, Grafana variables, label matchers {...}, range and subquery brackets
    [...], comments and the label lists of by/without/on/ignoring/group_left/group_right;
    what remains is function and aggregation names (followed by "("), keywords, numbers,
    durations and metric names.
    """
    s = _STRING_RE.sub('""', expr)
    s = _GRAFANA_VAR_RE.sub(" ", s)
    s = re.sub(r"#[^\n]*", " ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _GROUPING_RE.sub(" ", s)
    names = set()
    for m in _TOKEN_RE.finditer(s):
        tok = m.group(0)
        if tok[0].isdigit() or tok[0] == ".":
            continue
        if tok.lower() in PROMQL_KEYWORDS:
            continue
        rest = s[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        names.add(tok)
    return names


_GROUPING_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregations may be followed by `by (...)` before their "(".
_AGGREGATIONS = {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk",
                 "quantile", "count_values"}


def _skip_string(expr, i):
    """Index just past the string literal starting at expr[i]."""
    quote, j = expr[i], i + 1
    while j < len(expr) and expr[j] != quote:
        j += 2 if expr[j] == "\\" and quote != "`" else 1
    return j + 1


def _matching(expr, i, close):
    """Index of the bracket `close` matching the opening one at expr[i] (strings skipped)."""
    opening, depth, j = expr[i], 0, i
    while j < len(expr):
        c = expr[j]
        if c in "\"'`":
            j = _skip_string(expr, j)
            continue
        if c == opening:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j
        j += 1
    raise ValueError(f"unbalanced {opening!r} in {expr!r}")


def vector_selectors(expr):
    """The vector selectors of a PromQL expression (Grafana variables allowed).

    Returns (start, end, name, matchers) for each `name`, `name{matchers}` or `{matchers}`
    (name None); matchers is the text between the braces, or None without braces. A
    lexical scan exact for this project's expressions: it skips strings, comments, range
    brackets, numbers and durations, $variables, function and aggregation names and the
    label lists of by/without/on/ignoring/group_left/group_right.
    """
    out, i, n = [], 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "#":
            while i < n and expr[i] != "\n":
                i += 1
        elif c == "[":
            i = _matching(expr, i, "]") + 1
        elif c == "$":
            m = re.compile(r"\$\{[^}]*\}|\$[A-Za-z0-9_]*").match(expr, i)
            i = m.end()
        elif c == "{":
            close = _matching(expr, i, "}")
            out.append((i, close + 1, None, expr[i + 1:close]))
            i = close + 1
        elif c.isdigit() or c == ".":
            i = re.compile(r"[0-9.][A-Za-z0-9_.]*(?:[eE][+-]?[0-9]+)?").match(expr, i).end()
        elif c.isalpha() or c in "_:":
            m = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*").match(expr, i)
            word, j = m.group(0), m.end()
            k = j
            while k < n and expr[k] in " \t\n":
                k += 1
            nxt = expr[k] if k < n else ""
            if word.lower() in _GROUPING_WORDS and nxt == "(":
                i = _matching(expr, k, ")") + 1
            elif nxt == "(" or word.lower() in PROMQL_KEYWORDS or word in _AGGREGATIONS:
                i = j
            elif nxt == "{":
                close = _matching(expr, k, "}")
                out.append((i, close + 1, word, expr[k + 1:close]))
                i = close + 1
            else:
                out.append((i, j, word, None))
                i = j
        else:
            i += 1
    return out


def variable_query_expr(query):
    """The PromQL part of a Grafana Prometheus variable query, or None if it has none."""
    q = query.strip()
    m = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", q, re.S)
    if m:
        return m.group(1)
    if re.fullmatch(r"label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)", q):
        return None
    m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
    if m:
        return m.group(1)
    m = re.fullmatch(r"label_names\((.*)\)", q, re.S)
    if m:
        return m.group(1) or None
    if re.fullmatch(r"metrics\(.*\)", q, re.S):
        return None
    return q


def load_documented_metrics(path):
    """Metric names listed in the first column of the markdown tables of path.

    Histograms and summaries (rows mentioning "histogram" or "summary") also allow their
    _bucket, _sum and _count series.
    """
    names = set()
    for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not cells:
            continue
        for code in re.findall(r"`([^`]+)`", cells[0]):
            name = re.sub(r"\{.*\}", "", code).strip()
            if not METRIC_NAME_RE.match(name):
                continue
            names.add(name)
            row = line.lower()
            if "histogram" in row or "summary" in row:
                names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    # The client library's process metrics, listed in a sentence after the tables.
    names.update(re.findall(r"`(process_[a-z_]+)`", pathlib.Path(path).read_text(encoding="utf-8")))
    return names


def load_recording_rule_names(path=RECORDING_RULES):
    doc = yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8")) or {}
    return {r["record"] for g in doc.get("groups", []) for r in g.get("rules", []) if "record" in r}


def allowed_metrics(metrics_doc):
    documented = load_documented_metrics(metrics_doc)
    if not documented:
        raise SystemExit(f"{metrics_doc}: no metric names found (expected a markdown table "
                         "whose first column is the metric name in backticks)")
    return documented | load_recording_rule_names() | EXTRA_ALLOWED_METRICS


# --------------------------------------------------------------------------- dashboards

GRAFANA_BUILTINS_PREFIX = "__"


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels") or [])


def check_dashboard(path, allowed, errors, uids):
    def err(msg):
        errors.append(f"{path}: {msg}")

    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        err(f"not valid JSON: {e}")
        return
    if not isinstance(d, dict):
        err("top level is not an object")
        return

    uid = d.get("uid")
    if not isinstance(uid, str) or not uid:
        err("no uid")
    elif uid in uids:
        err(f"uid {uid!r} also used by {uids[uid]}")
    else:
        uids[uid] = path
    if not d.get("title"):
        err("no title")
    if not isinstance(d.get("tags"), list) or not d["tags"]:
        err("no tags")
    if not isinstance(d.get("schemaVersion"), int) or isinstance(d.get("schemaVersion"), bool):
        err("schemaVersion is not an integer")

    # Variables.
    variables = {}
    for v in (d.get("templating") or {}).get("list") or []:
        name = v.get("name")
        if not name:
            err("a templating variable has no name")
            continue
        if name in variables:
            err(f"variable {name!r} defined twice")
        variables[name] = v
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        err("no `datasource` variable of type datasource with query prometheus")
    for name in REQUIRED_DASHBOARDS.get(path.name, []):
        if name not in variables:
            err(f"no `{name}` variable")
    multi = {n for n, v in variables.items() if v.get("multi") or v.get("includeAll")}

    # dashboard-linter: template-uneditable-rule, template-job-rule, template-instance-rule,
    # template-on-time-change-reload-rule.
    if d.get("editable") is not False:
        err("editable must be false: the file is the source of truth (template-uneditable-rule)")
    for name in ("job", "instance"):
        v = variables.get(name)
        if not v:
            err(f"no `{name}` variable (template-{name}-rule)")
            continue
        query = v.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if (v.get("type") != "query" or v.get("label") != name or v.get("multi") is not True
                or v.get("includeAll") is not True or v.get("allValue") != ".+"
                or not re.fullmatch(rf"label_values\(.*,\s*{name}\s*\)", query or "", re.S)):
            err(f"variable {name!r}: must be a multi-value query variable labelled {name!r}, "
                f"label_values(..., {name}), include All with allValue `.+` (template-{name}-rule)")
    for name, v in variables.items():
        if v.get("type") == "query" and v.get("refresh") != 2:
            err(f"variable {name!r}: refresh must be 2, on time range change "
                "(template-on-time-change-reload-rule)")

    def lint_expr(where, expr, panel_type, required=REQUIRED_MATCHERS):
        """dashboard-linter's target-job/instance, rate-interval and counter-agg rules."""
        for start, end, name, matchers in vector_selectors(expr):
            given = {m.strip() for m in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', matchers or "")}
            for req in required:
                if req not in given:
                    err(f"{where}: selector {expr[start:end]} lacks {req} (target-job/instance-rule)")
            if (name or "").endswith(COUNTER_SUFFIXES) and not re.search(r"\b(?:rate|irate|increase)\(\s*$", expr[:start]):
                err(f"{where}: counter {name} is not inside rate/irate/increase (target-counter-agg-rule)")
        for m in re.finditer(r"\b(?:rate|irate|increase)\s*\(", expr):
            call = expr[m.end():_matching(expr, m.end() - 1, ")")]
            for window in re.findall(r"\[([^\]]*)\]", call):
                if window == "$__rate_interval" or (window == "$__range" and panel_type in WHOLE_RANGE_PANELS):
                    continue
                err(f"{where}: range [{window}] of {m.group(0).rstrip('( ')}(): use [$__rate_interval]"
                    + (" ([$__range] only in stat, bargauge, gauge and table panels)" if window == "$__range" else "")
                    + " (target-rate-interval-rule)")

    def check_expr(where, expr):
        for var in grafana_variables(expr):
            if var not in variables and not var.startswith(GRAFANA_BUILTINS_PREFIX):
                err(f"{where}: uses undefined variable ${var}")
        for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=|!=)(?![=~])\s*"([^"]*)"', expr):
            used = grafana_variables(m.group(3)) & multi
            if used:
                err(f"{where}: multi-value variable ${sorted(used)[0]} used with "
                    f"{m.group(2)!r}; use =~ or !~")
        for name in sorted(metric_names(expr) - allowed):
            err(f"{where}: metric {name!r} is not emitted by the exporter "
                "(not in the metrics reference, not a recording rule)")

    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        if (v.get("datasource") or {}).get("uid") not in DATASOURCE_REFS:
            err(f"variable {name!r}: datasource is not ${{datasource}}")
        query = v.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if not isinstance(query, str) or not query.strip():
            err(f"variable {name!r}: no query")
            continue
        pq = variable_query_expr(query)
        if pq:
            check_expr(f"variable {name!r}", pq)
            # $job lists the jobs and $instance the job's instances; every other variable
            # is narrowed by both.
            lint_expr(f"variable {name!r}", pq, None,
                      {"job": (), "instance": REQUIRED_MATCHERS[:1]}.get(name, REQUIRED_MATCHERS))

    # Panels.
    ids = set()
    boxes = []
    panels = list(walk_panels(d.get("panels") or []))
    if not panels:
        err("no panels")
    for p in panels:
        pid = p.get("id")
        title = p.get("title", "?")
        where = f"panel {pid} {title!r}"
        if not isinstance(pid, int) or isinstance(pid, bool):
            err(f"panel {title!r}: id {pid!r} is not an integer")
        elif pid in ids:
            err(f"{where}: duplicate id")
        else:
            ids.add(pid)
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) and not isinstance(gp.get(k), bool) for k in "hwxy"):
            err(f"{where}: gridPos {gp} needs integer h, w, x and y")
        elif gp["x"] < 0 or gp["y"] < 0 or gp["w"] < 1 or gp["h"] < 1 or gp["x"] + gp["w"] > 24:
            err(f"{where}: gridPos {gp} is outside the 24-column grid")
        else:
            for other_where, o in boxes:
                if (gp["x"] < o["x"] + o["w"] and o["x"] < gp["x"] + gp["w"]
                        and gp["y"] < o["y"] + o["h"] and o["y"] < gp["y"] + gp["h"]):
                    err(f"{where}: overlaps {other_where}")
            boxes.append((where, gp))
        if p.get("type") == "row":
            if p.get("datasource") and p["datasource"].get("uid") not in DATASOURCE_REFS:
                err(f"{where}: datasource is not ${{datasource}}")
            continue
        if (p.get("datasource") or {}).get("uid") not in DATASOURCE_REFS:
            err(f"{where}: datasource is not ${{datasource}}")
        unit = ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if not unit:
            err(f"{where}: no unit (fieldConfig.defaults.unit) (panel-units-rule)")
        elif unit not in KNOWN_UNITS:
            err(f"{where}: unit {unit!r} is not one of {sorted(KNOWN_UNITS)} (panel-units-rule)")
        if not str(p.get("title", "")).strip() or not str(p.get("description", "")).strip():
            err(f"{where}: needs a title and a description (panel-title-description-rule)")
        targets = p.get("targets") or []
        if not targets:
            err(f"{where}: no targets")
        refs = set()
        for t in targets:
            ref = t.get("refId")
            twhere = f"{where} target {ref}"
            if ref in refs:
                err(f"{twhere}: duplicate refId")
            refs.add(ref)
            if (t.get("datasource") or {}).get("uid") not in DATASOURCE_REFS:
                err(f"{twhere}: datasource is not ${{datasource}}")
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                err(f"{twhere}: no expr")
                continue
            check_expr(twhere, expr)
            lint_expr(twhere, expr, p.get("type"))


def check_provider(errors):
    """Dashboards are not editable, so the provider must not accept UI saves either."""
    doc = yaml.safe_load(DASHBOARD_PROVIDER.read_text(encoding="utf-8")) or {}
    for provider in doc.get("providers") or []:
        if provider.get("allowUiUpdates") is not False:
            errors.append(f"{DASHBOARD_PROVIDER}: provider {provider.get('name')!r}: allowUiUpdates must be "
                          "false, like the dashboards' editable: false")


def check_grafana_alert_rules(allowed, errors):
    for path in sorted(ALERTING_DIR.glob("*.y*ml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            errors.append(f"{path}: not valid YAML: {e}")
            continue
        if doc.get("apiVersion") != 1:
            errors.append(f"{path}: apiVersion is not 1")
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                refs = {q.get("refId") for q in rule.get("data") or []}
                if rule.get("condition") not in refs:
                    errors.append(f"{path}: rule {rule.get('title')!r}: condition "
                                  f"{rule.get('condition')!r} is not one of its refIds {sorted(refs)}")
                for q in rule.get("data") or []:
                    expr = (q.get("model") or {}).get("expr")
                    if expr:
                        for name in sorted(metric_names(expr) - allowed):
                            errors.append(f"{path}: rule {rule.get('title')!r} {q.get('refId')}: "
                                          f"metric {name!r} is not emitted by the exporter")


def main(argv):
    if len(argv) > 2:
        raise SystemExit(__doc__)
    metrics_doc = pathlib.Path(argv[1]) if len(argv) == 2 else DEFAULT_METRICS_DOC
    if not metrics_doc.is_file():
        raise SystemExit(f"{metrics_doc}: not found (the generated metrics reference)")
    allowed = allowed_metrics(metrics_doc)

    errors = []
    uids = {}
    paths = sorted(DASHBOARD_DIR.glob("*.json"))
    for name in REQUIRED_DASHBOARDS:
        if not (DASHBOARD_DIR / name).is_file():
            errors.append(f"{DASHBOARD_DIR / name}: missing")
    for path in paths:
        check_dashboard(path, allowed, errors, uids)
    check_grafana_alert_rules(allowed, errors)
    check_provider(errors)

    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check_dashboards: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_dashboards: {len(paths)} dashboards OK (metrics checked against {metrics_doc})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
