#!/usr/bin/env python3
"""Runs every dashboard and rule query against a real Prometheus scraping the exporter.

Usage (from the repository root):
    scripts/checks/prom_queries.py --exporter-cmd 'target/debug/aws-workflow-exporter demo --web.listen-address 127.0.0.1:{port}'

`--exporter-cmd` is split like a shell command line (no shell runs it) and `{port}` is
replaced by a free loopback port the script picked. The script then

  1. starts the exporter and waits (bounded) until /metrics answers;
  2. writes a temporary prometheus.yml that scrapes it every second as job
     `aws-workflow-exporter` (the job AwsWorkflowExporterDown matches) and loads
     monitoring/recording.yml and monitoring/alerts.yml with a 1 s evaluation interval;
  3. starts `prometheus` (storage in a temporary directory, listening on 127.0.0.1 only)
     and waits (bounded) for a few successful scrapes;
  4. waits (bounded, --alert-deadline seconds after Prometheus started) until the alert
     SfnMapRunFailureRatioNearTolerance is firing, via /api/v1/alerts; pending is reported
     on the way;
  5. runs, through /api/v1/query, every query: each panel target expr and each variable
     query of dashboards/*.json (with Grafana's variables substituted, see
     GRAFANA_SUBSTITUTIONS), the expr of every Grafana-managed alert rule in
     dashboards/provisioning/alerting/, and every expr of monitoring/recording.yml and
     monitoring/alerts.yml. Each must evaluate without error and, except as explained in
     ALERT CHECKS below, return data; queries without data are retried until
     --data-deadline seconds have passed, because a demo produces some series only after a
     while (the first finished run, the first step error).

It prints one line per check and a final line `N passed, M failed`, exits 1 if any check
failed, and always stops both processes (it started them in their own process groups and
signals those groups only).

ALERT CHECKS. An alerting expression returns nothing while the alert is not firing, which
is the normal state in a demo. So for each alerting rule there are two checks:
  - "expr": the full expression must evaluate without error (it may be empty);
  - "probe": the expression with its final comparison removed must return data. The probe
    is the leftmost operand of the top-level `or`, then of the top-level `and`/`unless`,
    then the left-hand side of the last top-level comparison (==, !=, >, <, >=, <=): for
    `x > 0.8 and ignoring (status) y == 1` it is `x`, for `time() - t > 3600` it is
    `time() - t`, for `up{...} == 0 or absent(up{...})` it is `up{...}`. The probe is the
    quantity the alert watches; when it is empty, the alert could never fire (a renamed
    metric, a label that never matches, a recording rule that records nothing).
  An alert whose probe cannot return data in a short demo may be listed in
  ALERT_PROBE_MAY_BE_EMPTY with the reason; its probe must still evaluate without error.
  Recording rules, dashboard queries and Grafana alert queries get no such allowance.

Only the Python standard library and PyYAML are used; nothing but 127.0.0.1 is contacted.
"""

import argparse
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

JOB = "aws-workflow-exporter"
ALERT_TO_FIRE = "SfnMapRunFailureRatioNearTolerance"

# Alerting rules whose probe (see the module docstring) may legitimately return no data in
# a demo of a few minutes, with the reason. Keep it empty unless a demo truly cannot
# produce the watched series.
ALERT_PROBE_MAY_BE_EMPTY = {
    # "AlertName": "why its probe is empty in a short demo",
    "AwsWorkflowExporterShardTotalMismatch": "the demo is one unsharded exporter (total_shards 1); "
    "the alert looks at sharded replicas only (monitoring/tests/sharding.yml covers it)",
    "AwsWorkflowExporterShardMissing": "the demo is one unsharded exporter (total_shards 1); "
    "the alert looks at sharded replicas only (monitoring/tests/sharding.yml covers it)",
}

# Grafana's built-in variables, replaced by fixed values suitable for a short test: windows
# of at least a few 1 s scrapes, short enough for a Prometheus that has run ~2 minutes.
GRAFANA_SUBSTITUTIONS = [
    (r"\$\{?__rate_interval\}?", "1m"),
    (r"\$\{?__interval_ms\}?", "15000"),
    (r"\$\{?__interval\}?", "15s"),
    (r"\$\{?__range_ms\}?", "300000"),
    (r"\$\{?__range_s\}?", "300"),
    (r"\$\{?__range\}?", "5m"),
]
# Any other variable ($account_id, ${flow}, ${region:regex}, [[x]]) becomes `.*`: the
# dashboards only use them in regex matchers (check_dashboards.py enforces that), where
# `.*` means "All".
OTHER_VARIABLE_RE = re.compile(r"\$\{[A-Za-z0-9_]+(?::[^}]*)?\}|\$[A-Za-z0-9_]+|\[\[[A-Za-z0-9_]+(?::[^\]]*)?\]\]")


def substitute_grafana_variables(expr):
    for pattern, value in GRAFANA_SUBSTITUTIONS:
        expr = re.sub(pattern + r"(?![A-Za-z0-9_])", value, expr)
    return OTHER_VARIABLE_RE.sub(".*", expr)


# --------------------------------------------------------------------------- PromQL probe

_IDENT = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:")


def _top_level_positions(expr):
    """Yield the indexes of expr that are outside brackets, strings and comments."""
    depth = 0
    i = 0
    n = len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            i = j + 1
            continue
        if c == "#":
            while i < n and expr[i] != "\n":
                i += 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            yield i
        i += 1


def _first_operand(expr, keywords):
    """Text before the first top-level occurrence of one of the keyword operators."""
    for i in _top_level_positions(expr):
        if i > 0 and expr[i - 1] in _IDENT:
            continue
        for kw in keywords:
            end = i + len(kw)
            if expr.startswith(kw, i) and (end >= len(expr) or expr[end] not in _IDENT):
                return expr[:i]
    return expr


def _before_last_comparison(expr):
    """Text before the last top-level comparison operator (the whole expr if none)."""
    last = None
    skip_until = -1
    for i in _top_level_positions(expr):
        if i < skip_until:
            continue
        two = expr[i:i + 2]
        if two in ("==", "!=", ">=", "<="):
            last = i
            skip_until = i + 2
        elif expr[i] in "<>":
            last = i
    return expr if last is None else expr[:last]


def alert_probe(expr):
    """The alert's expression with its final comparison removed (see the docstring)."""
    probe = _first_operand(expr, ("or",))
    probe = _first_operand(probe, ("and", "unless"))
    probe = _before_last_comparison(probe)
    return " ".join(probe.split())


# --------------------------------------------------------------------------- processes

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log_path):
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        log.close()


def stop(proc, name):
    """Stop a process this script started, and its process group (and nothing else)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop after SIGTERM: SIGKILL", file=sys.stderr)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def tail(path, lines=30):
    try:
        return "\n".join(pathlib.Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_until(deadline, what, condition, procs=(), interval=0.5):
    """Poll condition() until it returns a true value or the deadline (monotonic) passes."""
    last_error = None
    while True:
        for name, proc, log in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode} while waiting for "
                                   f"{what}; last lines of its output:\n{tail(log)}")
        try:
            result = condition()
            if result:
                return result
        except (OSError, ValueError, KeyError, urllib.error.URLError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------- Prometheus API

class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr):
        """(result list or None, error string or None) of an instant query."""
        data = urllib.parse.urlencode({"query": expr}).encode()
        req = urllib.request.Request(self.base + "/api/v1/query", data=data,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                body = json.loads(e.read())
            except ValueError:
                return None, f"HTTP {e.code}"
        except (OSError, ValueError) as e:
            return None, str(e)
        if body.get("status") != "success":
            return None, f"{body.get('errorType')}: {body.get('error')}"
        result = body["data"]["result"]
        if body["data"]["resultType"] in ("scalar", "string"):
            return [result], None
        return result, None

    def alerts(self):
        _, raw = http_get(self.base + "/api/v1/alerts")
        return json.loads(raw)["data"]["alerts"]


# --------------------------------------------------------------------------- the checks

class Check:
    def __init__(self, kind, name, expr, must_have_data=True, note=""):
        self.kind = kind
        self.name = name
        self.expr = expr
        self.must_have_data = must_have_data
        self.note = note
        self.series = None
        self.error = None

    def run(self, prom):
        result, self.error = prom.query(self.expr)
        self.series = None if result is None else len(result)

    @property
    def ok(self):
        return self.error is None and (self.series or not self.must_have_data)

    @property
    def retryable(self):
        return self.error is None and not self.ok

    def line(self):
        status = "ok  " if self.ok else "FAIL"
        if self.error:
            detail = f"error: {self.error}"
        elif self.series:
            detail = f"{self.series} series"
        elif self.must_have_data:
            detail = "no data"
        else:
            detail = "no data (allowed" + (f": {self.note}" if self.note else "") + ")"
        return f"{status} {self.kind} {self.name}: {detail}\n       {self.expr}"


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels") or [])


def collect_checks(repo):
    checks = []
    for path in sorted((repo / "dashboards").glob("*.json")):
        d = json.loads(path.read_text(encoding="utf-8"))
        for v in (d.get("templating") or {}).get("list") or []:
            if v.get("type") != "query":
                continue
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", q or "", re.S)
            if m:
                # label_values(expr, label) lists the label's values on expr's series.
                expr = f"count by ({m.group(2)}) ({substitute_grafana_variables(m.group(1))})"
            else:
                expr = substitute_grafana_variables(q or "")
            checks.append(Check("variable", f"{path.name} ${v.get('name')}", expr))
        for p in walk_panels(d.get("panels") or []):
            for t in p.get("targets") or []:
                if t.get("expr"):
                    checks.append(Check("panel", f"{path.name} #{p.get('id')} {p.get('title')!r} {t.get('refId')}",
                                        substitute_grafana_variables(t["expr"])))
    for path in sorted((repo / "dashboards" / "provisioning" / "alerting").glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for g in doc.get("groups") or []:
            for r in g.get("rules") or []:
                for q in r.get("data") or []:
                    expr = (q.get("model") or {}).get("expr")
                    if expr:
                        checks.append(Check("grafana-alert", f"{path.name} {r.get('title')} {q.get('refId')}",
                                            " ".join(expr.split())))
    for path in (repo / "monitoring" / "recording.yml", repo / "monitoring" / "alerts.yml"):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for g in doc.get("groups") or []:
            for r in g.get("rules") or []:
                expr = " ".join(r["expr"].split())
                if "record" in r:
                    checks.append(Check("record", r["record"], expr))
                    continue
                name = r["alert"]
                checks.append(Check("alert-expr", name, expr, must_have_data=False,
                                    note="an alert that is not firing returns nothing"))
                reason = ALERT_PROBE_MAY_BE_EMPTY.get(name, "")
                checks.append(Check("alert-probe", name, alert_probe(r["expr"]),
                                    must_have_data=not reason, note=reason))
    return checks


def prometheus_config(path, exporter_port, repo):
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str((repo / "monitoring" / "recording.yml").resolve()),
                       str((repo / "monitoring" / "alerts.yml").resolve())],
        "scrape_configs": [{"job_name": JOB,
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exporter-cmd", required=True,
                    help="command that starts the exporter; {port} is replaced by the port to listen on")
    ap.add_argument("--prometheus", default="prometheus", help="Prometheus binary (default: prometheus)")
    ap.add_argument("--repo", default=".", help="repository root (default: .)")
    ap.add_argument("--start-timeout", type=float, default=60, help="seconds for the exporter to serve /metrics")
    ap.add_argument("--alert-deadline", type=float, default=150,
                    help=f"seconds after Prometheus starts by which {ALERT_TO_FIRE} must fire")
    ap.add_argument("--data-deadline", type=float, default=30,
                    help="seconds to keep retrying queries that return no data")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (logs, TSDB)")
    args = ap.parse_args()

    if "{port}" not in args.exporter_cmd:
        ap.error("--exporter-cmd must contain {port}")
    repo = pathlib.Path(args.repo)
    prom_bin = shutil.which(args.prometheus)
    if not prom_bin:
        ap.error(f"{args.prometheus} not found (Debian: apt-get install prometheus)")

    # Let SIGTERM unwind through the finally block below like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="prom-queries-"))
    exporter = prometheus = None
    exporter_log, prometheus_log = tmp / "exporter.log", tmp / "prometheus.log"
    passed = failed = 0
    try:
        exporter_port, prom_port = free_port(), free_port()
        while prom_port == exporter_port:
            prom_port = free_port()
        cmd = [a.replace("{port}", str(exporter_port)) for a in shlex.split(args.exporter_cmd)]
        print(f"starting exporter: {shlex.join(cmd)}", flush=True)
        exporter = start(cmd, exporter_log)
        procs = [("exporter", exporter, exporter_log)]
        wait_until(time.monotonic() + args.start_timeout, f"the exporter's /metrics on port {exporter_port}",
                   lambda: http_get(f"http://127.0.0.1:{exporter_port}/metrics")[0] == 200, procs)

        config = tmp / "prometheus.yml"
        prometheus_config(config, exporter_port, repo)
        print(f"starting prometheus on 127.0.0.1:{prom_port}", flush=True)
        prometheus = start([prom_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], prometheus_log)
        prom_started = time.monotonic()
        procs.append(("prometheus", prometheus, prometheus_log))
        prom = Prometheus(prom_port)
        wait_until(prom_started + 30, "Prometheus to be ready",
                   lambda: http_get(prom.base + "/-/ready")[0] == 200, procs)

        def scraped():
            result, error = prom.query(f'count_over_time(up{{job="{JOB}"}}[5m]) >= 5 '
                                       f'and on (instance) up{{job="{JOB}"}} == 1')
            return not error and bool(result)
        wait_until(prom_started + 40, "5 successful scrapes of the exporter", scraped, procs)
        print(f"scraping: ok after {time.monotonic() - prom_started:.0f}s", flush=True)

        # The alert must go inactive -> pending -> firing within the deadline.
        state = "inactive"
        alert_deadline = prom_started + args.alert_deadline
        while True:
            for name, proc, log in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {proc.returncode}; last lines of its output:\n{tail(log)}")
            states = {a["state"] for a in prom.alerts() if a["labels"].get("alertname") == ALERT_TO_FIRE}
            new = "firing" if "firing" in states else "pending" if "pending" in states else "inactive"
            if new != state:
                print(f"       {ALERT_TO_FIRE}: {new} after {time.monotonic() - prom_started:.0f}s", flush=True)
                state = new
            if state == "firing" or time.monotonic() >= alert_deadline:
                break
            time.sleep(1)
        if state == "firing":
            passed += 1
            print(f"ok   alert-fires {ALERT_TO_FIRE}: firing", flush=True)
        else:
            failed += 1
            print(f"FAIL alert-fires {ALERT_TO_FIRE}: {state}, not firing, {args.alert_deadline:.0f}s "
                  "after Prometheus started", flush=True)

        checks = collect_checks(repo)
        data_deadline = time.monotonic() + args.data_deadline
        pending = checks
        while True:
            for c in pending:
                c.run(prom)
            pending = [c for c in pending if c.retryable]
            if not pending or time.monotonic() >= data_deadline:
                break
            time.sleep(2)
        for c in checks:
            print(c.line(), flush=True)
            if c.ok:
                passed += 1
            else:
                failed += 1
    except RuntimeError as e:
        failed += 1
        print(f"FAIL setup: {e}", flush=True)
    finally:
        stop(prometheus, "prometheus")
        stop(exporter, "exporter")
        if failed:
            for name, log in (("exporter", exporter_log), ("prometheus", prometheus_log)):
                print(f"--- last lines of the {name} output:\n{tail(log, 15)}", file=sys.stderr)
        if args.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
