#!/usr/bin/env python3
"""Static checks of docker-compose.yml (no Docker engine needed).

Usage (from the repository root):
    scripts/checks/check_compose.py [COMPOSE_FILE]

  - the file is valid YAML with services;
  - every bind-mounted host path, env_file and build context/dockerfile exists in the repo;
  - the Prometheus service mounts the rule files its prometheus.yml loads (rule_files are
    resolved relative to the config file inside the container), and scrapes a service
    that exists;
  - Grafana mounts the directory its dashboard provider reads.
"""

import pathlib
import posixpath
import sys

import yaml


def bind_mounts(service):
    """(host source, container target) of each bind mount of a compose service."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            if len(parts) < 2:
                continue  # anonymous volume
            source, target = parts[0], parts[1]
            if not source.startswith((".", "/", "~")):
                continue  # named volume
        else:
            if v.get("type") != "bind":
                continue
            source, target = v.get("source"), v.get("target")
        out.append((source, target))
    return out


def container_path_mounted(path, mounts):
    """Whether container path is a mount target or under a directory mount target."""
    for source, target in mounts:
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source, target
    return None


def main(argv):
    compose = pathlib.Path(argv[1] if len(argv) > 1 else "docker-compose.yml")
    base = compose.parent
    errors = []
    try:
        doc = yaml.safe_load(compose.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise SystemExit(f"{compose}: {e}")
    services = (doc or {}).get("services") or {}
    if not services:
        errors.append(f"{compose}: no services")

    for name, svc in services.items():
        for source, _ in bind_mounts(svc):
            if not (base / source).exists():
                errors.append(f"{compose}: service {name}: mounted path {source} does not exist")
        env_files = svc.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file.get("path")
            if not (base / path).exists():
                errors.append(f"{compose}: service {name}: env_file {path} does not exist")
        build = svc.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not (base / context).is_dir():
                errors.append(f"{compose}: service {name}: build context {context} does not exist")
            elif not (base / context / dockerfile).is_file():
                errors.append(f"{compose}: service {name}: {posixpath.join(context, dockerfile)} does not exist")

        mounts = bind_mounts(svc)
        image = str(svc.get("image", ""))
        if "prometheus" in image:
            config_target = "/etc/prometheus/prometheus.yml"
            for arg in svc.get("command") or []:
                if str(arg).startswith("--config.file="):
                    config_target = str(arg).split("=", 1)[1]
            found = container_path_mounted(config_target, mounts)
            if not found:
                errors.append(f"{compose}: service {name}: {config_target} is not mounted")
                continue
            source, target = found
            host_config = base / source
            if target != config_target:  # the config is inside a mounted directory
                host_config = host_config / posixpath.relpath(config_target, target)
            try:
                prom = yaml.safe_load(host_config.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as e:
                errors.append(f"{compose}: service {name}: cannot read {host_config}: {e}")
                continue
            for rule_file in prom.get("rule_files") or []:
                in_container = posixpath.normpath(posixpath.join(posixpath.dirname(config_target), rule_file))
                if not container_path_mounted(in_container, mounts):
                    errors.append(f"{compose}: service {name}: rule file {in_container} "
                                  f"(rule_files of {host_config}) is not mounted")
            for job in prom.get("scrape_configs") or []:
                for sc in job.get("static_configs") or []:
                    for t in sc.get("targets") or []:
                        host = t.rsplit(":", 1)[0]
                        if host not in services and host not in ("localhost", "127.0.0.1"):
                            errors.append(f"{compose}: {host_config} job {job.get('job_name')} "
                                          f"scrapes {t}, but there is no service {host}")
        if "grafana" in image:
            for source, target in mounts:
                if target.rstrip("/") != "/etc/grafana/provisioning/dashboards":
                    continue
                for provider_file in sorted((base / source).glob("*.y*ml")):
                    pdoc = yaml.safe_load(provider_file.read_text(encoding="utf-8")) or {}
                    for provider in pdoc.get("providers") or []:
                        path = (provider.get("options") or {}).get("path")
                        if path and not container_path_mounted(path, mounts):
                            errors.append(f"{compose}: service {name}: dashboard provider path {path} "
                                          f"({provider_file}) is not mounted")

    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check_compose: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_compose: {compose} OK ({len(services)} services)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
