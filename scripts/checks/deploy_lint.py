#!/usr/bin/env python3
"""Consistency checks of the deployment artifacts, run by scripts/checks/deploy.sh.

kubernetes-validate checks each core manifest against the Kubernetes schema;
hadolint checks the Dockerfile's style. This script checks what neither can:
that the pieces agree with each other and with the crate (port, binary name,
labels, probes, security settings), the Prometheus Operator objects (which
kubernetes-validate has no schema for), and the IAM documents.

    deploy_lint.py                          # run every check
    deploy_lint.py --extract-configs DIR    # also write each ConfigMap's config.yaml to DIR
    deploy_lint.py --extract-rules FILE     # also write the PrometheusRule's groups as a rule file
    deploy_lint.py --extract-dashboards FILE
                                            # also write the dashboards ConfigMap that
                                            # dashboards/kustomization.yaml generates

Run from the repository root. Needs PyYAML.
"""

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

DEFAULT_PORT = 9810
NONROOT_ID = 65532
KUBE_DIR = Path("deploy/kubernetes")
KUSTOMIZE_DIRS = [KUBE_DIR / "standalone", KUBE_DIR / "sidecar", KUBE_DIR / "sharded"]
# The downward-API label that gives a StatefulSet pod its index, passed as --shard.
POD_INDEX_FIELD = "metadata.labels['apps.kubernetes.io/pod-index']"
SERVICEMONITOR = KUBE_DIR / "servicemonitor.yaml"
PROMETHEUSRULE = KUBE_DIR / "prometheusrule.yaml"
IAM_DIR = Path("deploy/iam")
ANNOTATIONS_COMPONENT = KUBE_DIR / "components" / "prometheus-annotations" / "kustomization.yaml"
DASHBOARDS_KUSTOMIZATION = Path("dashboards/kustomization.yaml")
MIXIN = Path("monitoring/mixin.yaml")
# The label the ServiceMonitor takes the job name from, and its value on every Service.
JOB_LABEL = "app.kubernetes.io/name"
JOB = "aws-workflow-exporter"
CONFIG_MOUNT = "/etc/aws-workflow-exporter"

# Which actions the exporter needs has one source: the operation catalog in the code, which
# tests/docs.rs checks deploy/iam/policy.json against. This lint holds no list of actions; it
# checks the shape of whatever the policy grants: read-only verbs, every scoped action granted on
# an ARN of its own service, and "*" only for the listings of top-level resources (AWS's List
# calls without resource-level permissions).
READ_ONLY_VERB = re.compile(r"^[a-z0-9-]+:(List|Describe|Get)[A-Za-z]+$")
STAR_VERB = re.compile(r"^[a-z0-9-]+:List[A-Za-z]+$")


def resource_arn(action):
    """The ARN shape a scoped grant of `action` must have: its own service's resources."""
    service = re.escape(action.split(":", 1)[0])
    return re.compile(rf"^arn:aws[a-z-]*:{service}:[^:]+:[^:]+:[A-Za-z]+[:/].+$")


errors = []


def error(msg):
    errors.append(msg)


def ok(msg):
    print(f"ok   {msg}")


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def load_docs(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except (OSError, yaml.YAMLError) as exc:
        error(f"{path}: {exc}")
        return []


# ---------------------------------------------------------------- crate & image


def package_name():
    with open("Cargo.toml", "rb") as f:
        cargo = tomllib.load(f)
    return cargo["package"]["name"]


def dockerfile_instructions(text):
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def check_dockerfile(pkg):
    path = Path("Dockerfile")
    text = path.read_text(encoding="utf-8")
    instr = dockerfile_instructions(text)
    froms = [args for word, args in instr if word == "FROM"]
    if len(froms) < 2:
        error("Dockerfile: expected a multi-stage build (builder + runtime)")
        return
    builder = froms[0].split()[0]
    if not re.fullmatch(r"rust:\d+\.\d+(\.\d+)?-bookworm(@sha256:[0-9a-f]{64})?", builder):
        error(f"Dockerfile: builder image {builder!r} is not a pinned rust:<version>-bookworm tag")
    runtime = froms[-1].split()[0]
    if not runtime.startswith("gcr.io/distroless/cc-debian12:nonroot"):
        error(f"Dockerfile: runtime image {runtime!r} is not gcr.io/distroless/cc-debian12:nonroot")

    build_lines = [line for line in text.splitlines() if re.match(r"^RUN cargo build( |$)", line)]
    if build_lines != ["RUN cargo build --release --locked"]:
        error(f"Dockerfile: expected exactly one line `RUN cargo build --release --locked`, found {build_lines}")

    # Everything after the last FROM is the runtime stage.
    last_from = max(i for i, (word, _) in enumerate(instr) if word == "FROM")
    runtime_stage = instr[last_from:]

    exposes = [args for word, args in runtime_stage if word == "EXPOSE"]
    ports = [p.split("/")[0] for args in exposes for p in args.split()]
    if ports != [str(DEFAULT_PORT)]:
        error(f"Dockerfile: EXPOSE {ports} should be exactly the default port {DEFAULT_PORT}")
    else:
        ok(f"Dockerfile EXPOSE {DEFAULT_PORT}")

    entrypoints = [args for word, args in runtime_stage if word == "ENTRYPOINT"]
    binary = None
    if len(entrypoints) != 1:
        error("Dockerfile: the runtime stage needs exactly one ENTRYPOINT")
    else:
        try:
            argv = json.loads(entrypoints[0])
            binary = argv[0]
        except (ValueError, IndexError, TypeError):
            error(f"Dockerfile: ENTRYPOINT must be exec form (a JSON array), got {entrypoints[0]!r}")
    if binary is not None:
        if Path(binary).name != pkg:
            error(f"Dockerfile: ENTRYPOINT runs {binary!r}, but the Cargo package is {pkg!r}")
        else:
            ok(f"Dockerfile ENTRYPOINT {binary} matches package {pkg}")
        copies = [args for word, args in runtime_stage if word == "COPY" and "--from=" in args]
        want_src = f"target/release/{pkg}"
        if not any(args.split()[-2].endswith(want_src) and args.split()[-1] == binary for args in copies):
            error(f"Dockerfile: no `COPY --from=... .../{want_src} {binary}` in the runtime stage")

    users = [args for word, args in runtime_stage if word == "USER"]
    if users != [f"{NONROOT_ID}:{NONROOT_ID}"]:
        error(f"Dockerfile: runtime USER {users} should be {NONROOT_ID}:{NONROOT_ID}")
    labels = " ".join(args for word, args in runtime_stage if word == "LABEL")
    for key in ("title", "description", "licenses", "version", "revision"):
        if f"org.opencontainers.image.{key}=" not in labels:
            error(f"Dockerfile: missing LABEL org.opencontainers.image.{key}")


def check_default_port_in_source():
    """The Dockerfile and manifests hard-code 9810: make sure the code still does."""
    sources = list(Path("src").rglob("*.rs"))
    if not any(str(DEFAULT_PORT) in p.read_text(encoding="utf-8") for p in sources):
        error(f"src/: no mention of port {DEFAULT_PORT}; if the default listen port changed, update "
              "Dockerfile, deploy/ and DEFAULT_PORT in scripts/checks/deploy_lint.py")
    else:
        ok(f"src/ still uses port {DEFAULT_PORT}")


def check_dockerignore():
    """Files the build embeds must not be excluded from the Docker build context."""
    patterns = []
    for line in Path(".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line.rstrip("/"))
    for must in ("target", ".git", ".venv"):
        if must not in patterns:
            error(f".dockerignore: should exclude {must}/")
    needed = [Path("Cargo.toml"), Path("Cargo.lock"), Path("src")]
    if Path("build.rs").exists():
        needed.append(Path("build.rs"))
    include = re.compile(r"include_(?:str|bytes)!\s*\(\s*\"([^\"]+)\"")
    for rs in Path("src").rglob("*.rs"):
        for rel in include.findall(rs.read_text(encoding="utf-8")):
            target = (rs.parent / rel).resolve()
            try:
                needed.append(target.relative_to(Path.cwd().resolve()))
            except ValueError:
                error(f"{rs}: include of {rel!r} points outside the repository")
    for path in needed:
        parts = path.parts
        for pattern in patterns:
            if pattern.startswith("**/") or "*" in pattern:
                continue
            pparts = Path(pattern).parts
            if parts[: len(pparts)] == pparts:
                error(f".dockerignore: {pattern!r} excludes {path}, which the build needs")
    ok(".dockerignore keeps what `cargo build` reads")


# ------------------------------------------------------------------ kubernetes


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_kustomization(directory):
    kfile = directory / "kustomization.yaml"
    docs = load_docs(kfile)
    if not docs:
        error(f"{kfile}: missing or empty")
        return []
    listed = docs[0].get("resources", [])
    present = sorted(p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")
    for name in listed:
        if not (directory / name).is_file():
            error(f"{kfile}: lists {name}, which does not exist")
    for name in present:
        if name not in listed:
            error(f"{kfile}: does not list {name}")
    return [directory / name for name in listed if (directory / name).is_file()]


def check_exporter_container(where, pod_spec, container, configmaps):
    sc = container.get("securityContext") or {}
    pod_sc = pod_spec.get("securityContext") or {}

    def effective(key):
        return sc.get(key, pod_sc.get(key))

    if effective("runAsNonRoot") is not True:
        error(f"{where}: runAsNonRoot must be true")
    if effective("runAsUser") != NONROOT_ID:
        error(f"{where}: runAsUser must be {NONROOT_ID}")
    if sc.get("allowPrivilegeEscalation") is not False:
        error(f"{where}: allowPrivilegeEscalation must be false")
    if sc.get("readOnlyRootFilesystem") is not True:
        error(f"{where}: readOnlyRootFilesystem must be true")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        error(f"{where}: capabilities.drop must be [ALL]")
    if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
        error(f"{where}: seccompProfile must be RuntimeDefault")

    ports = {p.get("name"): p for p in container.get("ports", [])}
    if ports.get("metrics", {}).get("containerPort") != DEFAULT_PORT:
        error(f"{where}: needs a port named metrics with containerPort {DEFAULT_PORT}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in ("metrics", DEFAULT_PORT):
            error(f"{where}: {probe} must GET {path} on port metrics")

    res = container.get("resources") or {}
    for kind, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
        for key in keys:
            if key not in (res.get(kind) or {}):
                error(f"{where}: resources.{kind}.{key} is not set")

    if "aws-workflow-exporter" not in container.get("image", ""):
        error(f"{where}: image {container.get('image')!r} does not look like the exporter's")

    # --config.file must point into a mounted ConfigMap that has that key.
    args = container.get("args", [])
    config_file = None
    for i, arg in enumerate(args):
        if arg.startswith("--config.file="):
            config_file = arg.split("=", 1)[1]
        elif arg == "--config.file" and i + 1 < len(args):
            config_file = args[i + 1]
    if not config_file:
        error(f"{where}: no --config.file argument")
        return
    volumes = {v.get("name"): v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if config_file.startswith(prefix):
            if mount.get("readOnly") is not True:
                error(f"{where}: config mount {mount['mountPath']} should be readOnly")
            cm_name = ((volumes.get(mount["name"]) or {}).get("configMap") or {}).get("name")
            key = config_file[len(prefix):]
            if cm_name not in configmaps:
                error(f"{where}: --config.file {config_file} is not in a ConfigMap defined alongside")
            elif key not in (configmaps[cm_name].get("data") or {}):
                error(f"{where}: ConfigMap {cm_name} has no key {key!r}")
            return
    error(f"{where}: --config.file {config_file} is not under any volumeMount")


def check_config_shape(where, text):
    """Only that it is a YAML mapping: the exporter's check-config (deploy.sh) is the real check."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        error(f"{where}: config.yaml is not valid YAML: {exc}")
        return
    if not isinstance(config, dict):
        error(f"{where}: config.yaml must be a mapping")


def check_kubernetes(extract_dir):
    services = []  # (path, Service)
    for directory in KUSTOMIZE_DIRS:
        files = check_kustomization(directory)
        objs = [(path, doc) for path in files for doc in load_docs(path)]
        by_kind = {}
        for path, doc in objs:
            by_kind.setdefault(doc.get("kind"), []).append((path, doc))
            if "namespace" in (doc.get("metadata") or {}):
                error(f"{path}: {doc['kind']} sets metadata.namespace; the manifests are namespace-less")
        configmaps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
        accounts = {d["metadata"]["name"]: d for _, d in by_kind.get("ServiceAccount", [])}

        for path, cm in by_kind.get("ConfigMap", []):
            text = (cm.get("data") or {}).get("config.yaml")
            if text is None:
                error(f"{path}: ConfigMap has no config.yaml key")
                continue
            check_config_shape(str(path), text)
            if extract_dir:
                out = Path(extract_dir) / f"{directory.name}-{cm['metadata']['name']}.yaml"
                out.write_text(text, encoding="utf-8")

        for path, sa in by_kind.get("ServiceAccount", []):
            arn = ((sa.get("metadata") or {}).get("annotations") or {}).get("eks.amazonaws.com/role-arn", "")
            if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", arn):
                error(f"{path}: ServiceAccount needs an eks.amazonaws.com/role-arn annotation with a role ARN")

        workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
        if len(workloads) != 1:
            error(f"{directory}: expected exactly one Deployment or StatefulSet")
            continue
        dpath, dep = workloads[0]
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        pod_labels = spec["template"]["metadata"].get("labels") or {}
        if dep["kind"] == "StatefulSet":
            check_shards(dpath, spec, by_kind, pod_labels)
        elif spec.get("replicas") != 1:
            error(f"{dpath}: replicas should be 1 (one exporter per set of targets)")
        if not labels_match(spec["selector"].get("matchLabels"), pod_labels):
            error(f"{dpath}: selector does not match the pod template labels")
        if pod.get("serviceAccountName") not in accounts:
            error(f"{dpath}: serviceAccountName {pod.get('serviceAccountName')!r} is not defined alongside")
        before = len(errors)
        exporters = [c for c in pod.get("containers", []) if "aws-workflow-exporter" in c.get("image", "")]
        if len(exporters) != 1:
            error(f"{dpath}: expected exactly one exporter container")
        for c in exporters:
            check_exporter_container(f"{dpath} container {c['name']}", pod, c, configmaps)
        if len(errors) == before:
            ok(f"{dpath}: exporter container, ServiceAccount and ConfigMap agree")

        for path, svc in by_kind.get("Service", []):
            ports = {p.get("name"): p for p in svc["spec"].get("ports", [])}
            metrics = ports.get("metrics")
            if not metrics or metrics.get("port") != DEFAULT_PORT or metrics.get("targetPort") not in ("metrics", DEFAULT_PORT):
                error(f"{path}: needs port metrics {DEFAULT_PORT} -> targetPort metrics")
            if not labels_match(svc["spec"].get("selector"), pod_labels):
                error(f"{path}: selector does not select the workload's pods")
            services.append((path, svc))
    return services


def flag_value(args, name):
    """The value of `--name=value` or `--name value` in a container's args, or None."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def check_shards(path, spec, by_kind, pod_labels):
    """A sharded StatefulSet: every pod passes its index as --shard, --total-shards equals
    replicas, its serviceName is a headless Service alongside, and a PodDisruptionBudget
    covers its pods."""
    before = len(errors)
    exporters = [c for c in spec["template"]["spec"].get("containers", []) if "aws-workflow-exporter" in c.get("image", "")]
    for c in exporters:
        args = c.get("args", [])
        env = {e.get("name"): e for e in c.get("env", [])}
        total = flag_value(args, "--total-shards")
        if total is None or not total.isdigit() or int(total) != spec.get("replicas"):
            error(f"{path}: --total-shards ({total}) must equal replicas ({spec.get('replicas')})")
        if flag_value(args, "--shard") != "$(POD_INDEX)":
            error(f"{path}: container {c['name']} must pass --shard=$(POD_INDEX)")
        field = (((env.get("POD_INDEX") or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if field != POD_INDEX_FIELD:
            error(f"{path}: env POD_INDEX must come from the downward API field {POD_INDEX_FIELD}")
    services = {d["metadata"]["name"]: (p, d) for p, d in by_kind.get("Service", [])}
    headless = services.get(spec.get("serviceName"))
    if not headless or headless[1]["spec"].get("clusterIP") != "None":
        error(f"{path}: serviceName {spec.get('serviceName')!r} must be a headless Service (clusterIP: None) alongside")
    pdbs = [d for _, d in by_kind.get("PodDisruptionBudget", [])]
    if not any(labels_match((d["spec"].get("selector") or {}).get("matchLabels"), pod_labels) for d in pdbs):
        error(f"{path}: no PodDisruptionBudget alongside selects its pods")
    if len(errors) == before:
        ok(f"{path}: {spec.get('replicas')} shards, pod index as --shard, headless Service, PodDisruptionBudget")


def check_servicemonitor(services):
    docs = load_docs(SERVICEMONITOR)
    if len(docs) != 1:
        error(f"{SERVICEMONITOR}: expected one document")
        return
    sm = docs[0]
    if sm.get("apiVersion") != "monitoring.coreos.com/v1" or sm.get("kind") != "ServiceMonitor":
        error(f"{SERVICEMONITOR}: must be apiVersion monitoring.coreos.com/v1, kind ServiceMonitor")
    if not (sm.get("metadata") or {}).get("name"):
        error(f"{SERVICEMONITOR}: metadata.name is missing")
    spec = sm.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if set(spec.get("selector") or {}) - {"matchLabels", "matchExpressions"}:
        error(f"{SERVICEMONITOR}: spec.selector has unknown keys")
    if spec.get("jobLabel") != JOB_LABEL:
        error(f"{SERVICEMONITOR}: jobLabel must be {JOB_LABEL}, so standalone and sidecar share the job {JOB}")
    for path, svc in services:
        if (svc["metadata"].get("labels") or {}).get(JOB_LABEL) != JOB:
            error(f"{path}: label {JOB_LABEL} must be {JOB}: the ServiceMonitor's jobLabel makes it the job")
    selector_cfg = ((yaml.safe_load(MIXIN.read_text(encoding="utf-8")) or {}).get("config") or {}).get("selector", "")
    if f'job="{JOB}"' not in selector_cfg:
        error(f"{MIXIN}: config.selector {selector_cfg!r} does not select job=\"{JOB}\", the ServiceMonitor's job")
    endpoints = spec.get("endpoints") or []
    if not endpoints:
        error(f"{SERVICEMONITOR}: spec.endpoints is empty")
    for ep in endpoints:
        if ep.get("port") != "metrics":
            error(f"{SERVICEMONITOR}: endpoint port must be the named port `metrics`")
        if ep.get("interval") != "30s":
            error(f"{SERVICEMONITOR}: endpoint interval should be 30s")
        if ep.get("path", "/metrics") != "/metrics":
            error(f"{SERVICEMONITOR}: endpoint path should be /metrics")
    selected = [path for path, svc in services if labels_match(selector, svc["metadata"].get("labels") or {})]
    standalone = [path for path, _ in services if path.parent.name == "standalone"]
    sharded = [path for path, _ in services if path.parent.name == "sharded"]
    if not standalone or standalone[0] not in selected:
        error(f"{SERVICEMONITOR}: selector {selector} does not match the standalone Service's labels")
    elif not sharded or any(p not in selected for p in sharded):
        error(f"{SERVICEMONITOR}: selector {selector} does not match the sharded Service's labels")
    else:
        ok(f"{SERVICEMONITOR}: selects {', '.join(str(p) for p in selected)} on port metrics")


def check_annotations_component():
    """The optional prometheus.io/* component annotates the exporter's Services with its port."""
    docs = load_docs(ANNOTATIONS_COMPONENT)
    if len(docs) != 1 or docs[0].get("kind") != "Component":
        error(f"{ANNOTATIONS_COMPONENT}: expected one kustomize Component")
        return
    patches = docs[0].get("patches") or []
    found = False
    for patch in patches:
        target = patch.get("target") or {}
        if target.get("kind") != "Service" or target.get("labelSelector") != f"{JOB_LABEL}={JOB}":
            error(f"{ANNOTATIONS_COMPONENT}: patch target must be kind Service, labelSelector {JOB_LABEL}={JOB}")
        for op in yaml.safe_load(patch.get("patch") or "[]") or []:
            value = op.get("value") or {}
            if op.get("path") == "/metadata/annotations":
                found = True
                want = {"prometheus.io/scrape": "true", "prometheus.io/port": str(DEFAULT_PORT),
                        "prometheus.io/path": "/metrics"}
                if value != want:
                    error(f"{ANNOTATIONS_COMPONENT}: annotations {value} should be {want}")
    if not found:
        error(f"{ANNOTATIONS_COMPONENT}: no patch adding /metadata/annotations")
    else:
        ok(f"{ANNOTATIONS_COMPONENT}: prometheus.io/* annotations on port {DEFAULT_PORT}")


def check_dashboards_configmap(extract):
    """dashboards/kustomization.yaml ships every dashboard in a ConfigMap labelled for the
    Grafana sidecar. Builds that ConfigMap as kustomize's configMapGenerator does, so
    deploy.sh can validate it without kustomize."""
    docs = load_docs(DASHBOARDS_KUSTOMIZATION)
    if len(docs) != 1:
        error(f"{DASHBOARDS_KUSTOMIZATION}: missing or not one document")
        return
    k = docs[0]
    options = k.get("generatorOptions") or {}
    if (options.get("labels") or {}).get("grafana_dashboard") != "1":
        error(f"{DASHBOARDS_KUSTOMIZATION}: generatorOptions.labels needs grafana_dashboard: \"1\" (the sidecar's label)")
    if options.get("disableNameSuffixHash") is not True:
        error(f"{DASHBOARDS_KUSTOMIZATION}: set generatorOptions.disableNameSuffixHash: true (a stable name)")
    generators = k.get("configMapGenerator") or []
    listed = [f for g in generators for f in g.get("files") or []]
    present = sorted(p.name for p in DASHBOARDS_KUSTOMIZATION.parent.glob("*.json"))
    if sorted(listed) != present:
        error(f"{DASHBOARDS_KUSTOMIZATION}: configMapGenerator files {sorted(listed)} differ from "
              f"the dashboards {present}")
        return
    configmaps = []
    for g in generators:
        data = {f: (DASHBOARDS_KUSTOMIZATION.parent / f).read_text(encoding="utf-8") for f in g.get("files") or []}
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": g.get("name"), "labels": options.get("labels") or {},
                           "annotations": options.get("annotations") or {}},
              "data": data}
        size = sum(len(v.encode()) for v in data.values())
        # kubectl apply (client side) copies the object into an annotation, limited to 256 KiB.
        if size > 200 * 1024:
            error(f"{DASHBOARDS_KUSTOMIZATION}: ConfigMap {g.get('name')} holds {size} bytes; "
                  "split it (kubectl apply's annotation limit is 256 KiB)")
        configmaps.append(cm)
    if extract:
        Path(extract).write_text(yaml.safe_dump_all(configmaps, sort_keys=False), encoding="utf-8")
    ok(f"{DASHBOARDS_KUSTOMIZATION}: {len(listed)} dashboards in {len(configmaps)} ConfigMaps labelled grafana_dashboard")


def check_prometheusrule(extract_rules):
    docs = load_docs(PROMETHEUSRULE)
    if len(docs) != 1:
        error(f"{PROMETHEUSRULE}: expected one document (generate it: scripts/gen-mixin.py)")
        return
    pr = docs[0]
    if pr.get("apiVersion") != "monitoring.coreos.com/v1" or pr.get("kind") != "PrometheusRule":
        error(f"{PROMETHEUSRULE}: must be apiVersion monitoring.coreos.com/v1, kind PrometheusRule")
    if not (pr.get("metadata") or {}).get("name"):
        error(f"{PROMETHEUSRULE}: metadata.name is missing")
    groups = (pr.get("spec") or {}).get("groups")
    if not isinstance(groups, list) or not groups:
        error(f"{PROMETHEUSRULE}: spec.groups is empty")
        return
    names = set()
    count = 0
    for g in groups:
        if not g.get("name") or g["name"] in names:
            error(f"{PROMETHEUSRULE}: group names must be present and unique ({g.get('name')!r})")
        names.add(g.get("name"))
        rules = g.get("rules") or []
        if not rules:
            error(f"{PROMETHEUSRULE}: group {g.get('name')!r} has no rules")
        for r in rules:
            count += 1
            if ("record" in r) == ("alert" in r) or not r.get("expr"):
                error(f"{PROMETHEUSRULE}: group {g.get('name')!r}: every rule needs expr and one of record/alert")
            for key in ("labels", "annotations"):
                for k, v in (r.get(key) or {}).items():
                    if not isinstance(v, str):
                        error(f"{PROMETHEUSRULE}: {key}.{k} must be a string")
    ok(f"{PROMETHEUSRULE}: {len(groups)} groups, {count} rules")
    if extract_rules:
        Path(extract_rules).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")


# ------------------------------------------------------------------------- IAM


def check_iam():
    before = len(errors)
    docs = {}
    for path in sorted(IAM_DIR.glob("*.json")):
        try:
            docs[path.name] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            error(f"{path}: invalid JSON: {exc}")
    for name in ("policy.json", "assume-role-policy.json", "irsa-trust-policy.json"):
        if not (IAM_DIR / name).is_file():
            error(f"{IAM_DIR / name}: missing")
    for name, doc in docs.items():
        where = IAM_DIR / name
        if doc.get("Version") != "2012-10-17":
            error(f"{where}: Version must be 2012-10-17")
        statements = doc.get("Statement")
        if not isinstance(statements, list) or not statements:
            error(f"{where}: Statement must be a non-empty list")
            continue
        trust = "trust" in name
        sids = set()
        for st in statements:
            sid = st.get("Sid", "")
            if not re.fullmatch(r"[A-Za-z0-9]+", sid) or sid in sids:
                error(f"{where}: every statement needs a unique alphanumeric Sid ({sid!r})")
            sids.add(sid)
            if st.get("Effect") not in ("Allow", "Deny"):
                error(f"{where}: {sid}: Effect must be Allow or Deny")
            if trust and ("Principal" not in st or "Resource" in st):
                error(f"{where}: {sid}: a trust policy statement has a Principal and no Resource")
            if not trust and ("Principal" in st or "Resource" not in st):
                error(f"{where}: {sid}: an identity policy statement has a Resource and no Principal")
            for action in as_list(st.get("Action")):
                if "*" in action:
                    error(f"{where}: {sid}: wildcard action {action!r}")

    policy = docs.get("policy.json")
    if policy:
        actions = set()
        for st in policy.get("Statement", []):
            if st.get("Effect") != "Allow":
                continue
            resources = as_list(st.get("Resource"))
            for action in as_list(st.get("Action")):
                actions.add(action)
                for res in resources:
                    if res == "*":
                        if not STAR_VERB.match(action):
                            error(f"policy.json: {action} supports resource-level permissions; do not grant it on *")
                    elif not resource_arn(action).match(res):
                        error(f"policy.json: {action} on {res!r} is not a resource of its service")
        writes = sorted(a for a in actions if not READ_ONLY_VERB.match(a))
        if writes:
            error(f"policy.json: actions that are not read-only: {writes}")
        else:
            ok(f"policy.json grants {len(actions)} read-only actions, each on a resource of its service")
    assume = docs.get("assume-role-policy.json")
    if assume:
        for st in assume.get("Statement", []):
            if set(as_list(st.get("Action"))) != {"sts:AssumeRole"}:
                error("assume-role-policy.json: should grant only sts:AssumeRole")
            for res in as_list(st.get("Resource")):
                if not re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}|\*):role/.+", res):
                    error(f"assume-role-policy.json: {res!r} is not a role ARN")
    irsa = docs.get("irsa-trust-policy.json")
    if irsa:
        for st in irsa.get("Statement", []):
            if as_list(st.get("Action")) != ["sts:AssumeRoleWithWebIdentity"]:
                error("irsa-trust-policy.json: Action must be sts:AssumeRoleWithWebIdentity")
            cond = (st.get("Condition") or {}).get("StringEquals") or {}
            if not any(k.endswith(":sub") and v.startswith("system:serviceaccount:") for k, v in cond.items()):
                error("irsa-trust-policy.json: needs a StringEquals condition on <issuer>:sub")
            if not any(k.endswith(":aud") and v == "sts.amazonaws.com" for k, v in cond.items()):
                error("irsa-trust-policy.json: needs a StringEquals condition <issuer>:aud = sts.amazonaws.com")
    if len(errors) == before:
        ok(f"IAM documents: {', '.join(sorted(docs))}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extract-configs", metavar="DIR")
    parser.add_argument("--extract-rules", metavar="FILE")
    parser.add_argument("--extract-dashboards", metavar="FILE")
    args = parser.parse_args()

    pkg = package_name()
    check_dockerfile(pkg)
    check_default_port_in_source()
    check_dockerignore()
    services = check_kubernetes(args.extract_configs)
    check_servicemonitor(services)
    check_annotations_component()
    check_dashboards_configmap(args.extract_dashboards)
    check_prometheusrule(args.extract_rules)
    check_iam()

    for msg in errors:
        print(f"FAIL {msg}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
