"""The Python half of deploy/check.sh: checks that need parsing rather than a tool.

    python check.py metrics                 every metric and label the dashboard and the alert rules use exists
    python check.py manifests               Kubernetes, Prometheus, systemd and Docker files agree with each other
    python check.py extract-toml OUT        write the ConfigMap's switchyard.toml to OUT, print its ${VAR}s
    python check.py prom-without-k8s-sd DIR copy of prometheus.yml for a promtool built without Kubernetes SD
    python check.py healthcheck-argv        the Dockerfile's HEALTHCHECK command, one argument per line

Needs PyYAML (check.sh runs it from a venv that has it) and tomllib (Python 3.11+) or tomli.
Prints one line per problem and exits 1 if there is any.
"""

import json
import re
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

DEPLOY = Path(__file__).resolve().parent
K8S = DEPLOY / "kubernetes"
PROM = DEPLOY / "prometheus"

# Every metric the gateway exports, with its labels (README.md, "Metrics"; the config, shadow,
# audit and draining ones from issue #6). Histograms also have _bucket (with `le`), _sum, _count.
METRICS = {
    "switchyard_requests_total": ("route", "class", "upstream", "status"),
    "switchyard_request_duration_seconds": ("route", "class", "upstream"),
    "switchyard_upstream_first_byte_seconds": ("route", "upstream"),
    "switchyard_requests_in_flight": ("upstream",),
    "switchyard_decisions_total": ("class", "rule"),
    "switchyard_rejections_total": ("reason",),
    "switchyard_upstream_errors_total": ("upstream", "kind"),
    "switchyard_request_bytes_total": ("route", "upstream"),
    "switchyard_response_bytes_total": ("route", "upstream"),
    "switchyard_tls_handshake_errors_total": ("reason",),
    "switchyard_endpoint_up": ("upstream", "endpoint"),
    "switchyard_endpoint_requests_total": ("upstream", "endpoint"),
    "switchyard_endpoint_ejections_total": ("upstream", "endpoint"),
    "switchyard_health_checks_total": ("upstream", "endpoint", "result"),
    "switchyard_retries_total": ("upstream", "reason"),
    "switchyard_affinity_entries": ("upstream",),
    "switchyard_affinity_learned_total": ("upstream",),
    "switchyard_affinity_lookups_total": ("upstream", "result"),
    "switchyard_affinity_store_errors_total": ("op",),
    "switchyard_tokens_total": ("route", "upstream", "kind"),
    "switchyard_time_to_first_token_seconds": ("route", "upstream"),
    "switchyard_streams_total": ("route", "upstream", "outcome"),
    "switchyard_websocket_upgrades_total": ("route", "upstream", "result"),
    "switchyard_websocket_sessions_open": ("upstream",),
    "switchyard_websocket_bytes_total": ("upstream", "direction"),
    "switchyard_worker_connections": ("worker",),
    "switchyard_build_info": ("version",),
    "switchyard_config_reloads_total": ("result",),
    "switchyard_config_info": ("sha256",),
    "switchyard_config_restart_required": (),
    "switchyard_config_last_reload_success_timestamp_seconds": (),
    "switchyard_shadow_disagreements_total": ("enforced", "shadow", "rule"),
    "switchyard_shadow_evaluations_total": (),
    "switchyard_affinity_dropped_writes_total": (),
    "switchyard_audit_records_total": (),
    "switchyard_audit_dropped_total": ("reason",),
    "switchyard_audit_write_errors_total": ("op",),
    "switchyard_audit_queue_depth": (),
    "switchyard_audit_rotations_total": (),
    "switchyard_draining": (),
}
HISTOGRAMS = {
    "switchyard_request_duration_seconds",
    "switchyard_upstream_first_byte_seconds",
    "switchyard_time_to_first_token_seconds",
}
# Labels Prometheus attaches to every target (prometheus.yml's relabelling).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "app", "env"}

problems = []


def problem(msg):
    problems.append(msg)


def finish(ok_msg):
    for p in problems:
        print(f"  FAIL  {p}")
    if problems:
        sys.exit(1)
    print(f"  ok    {ok_msg}")


def series_labels(name):
    """The labels a series name may carry, or None for an unknown name."""
    if name in METRICS:
        return None if name in HISTOGRAMS else set(METRICS[name])
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and base in HISTOGRAMS:
            return set(METRICS[base]) | ({"le"} if suffix == "_bucket" else set())
    return None


def metric_names_in_source():
    """Metric names registered as string literals under src/ (None without a source tree)."""
    src = DEPLOY.parent / "src"
    if not src.is_dir():
        return None
    names = set()
    for f in src.rglob("*.rs"):
        names.update(re.findall(r'"(switchyard_[a-z0-9_]+)"', f.read_text(encoding="utf-8")))
    return names


NAME = re.compile(r"\b(switchyard_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(switchyard_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def check_expr(where, expr, source_names):
    used = set(NAME.findall(expr))
    for name in sorted(used):
        allowed = series_labels(name)
        if allowed is None:
            problem(f"{where}: {name} is not a Switchyard metric (or is a histogram used without _bucket/_sum/_count)")
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name.endswith(("_bucket", "_sum", "_count")) else name
        if source_names is not None and base not in source_names:
            problem(f"{where}: {base} is not registered anywhere under src/ (no string literal \"{base}\")")
    # Label matchers inside selectors belong to that metric (or to the target).
    for name, body in SELECTOR.findall(expr):
        allowed = series_labels(name)
        if allowed is None:
            continue
        for label in MATCHER.findall(body):
            if label not in allowed | TARGET_LABELS:
                problem(f"{where}: {name} has no label {label!r} (has: {', '.join(sorted(allowed)) or 'none'})")
    # by (...) groups the first metric after it.
    for m in GROUPING.finditer(expr):
        after = NAME.search(expr, m.end())
        if not after:
            continue
        allowed = series_labels(after.group(1))
        if allowed is None:
            continue
        for label in (l.strip() for l in m.group(1).split(",")):
            if label and label not in allowed | TARGET_LABELS:
                problem(f"{where}: groups {after.group(1)} by {label!r}, which it does not have")


def walk_exprs(node, path="dashboard"):
    """Yield (where, expr) for every PromQL string in the dashboard JSON."""
    if isinstance(node, dict):
        title = node.get("title") or node.get("name") or ""
        here = f"{path} > {title}" if title else path
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield here, value
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                yield here, value["query"]
            else:
                yield from walk_exprs(value, here)
    elif isinstance(node, list):
        for item in node:
            yield from walk_exprs(item, path)


def cmd_metrics():
    source_names = metric_names_in_source()
    dashboard = json.loads((DEPLOY / "grafana" / "switchyard.json").read_text(encoding="utf-8"))
    count = 0
    for where, expr in walk_exprs(dashboard):
        check_expr(where, expr, source_names)
        count += 1
    if count < 20:
        problem(f"dashboard: only {count} queries found; did the panel layout change?")
    # Dashboard structure: panels use the datasource variable, ids are unique.
    if dashboard.get("schemaVersion", 0) < 36:
        problem(f"dashboard: schemaVersion {dashboard.get('schemaVersion')} is older than Grafana 9")
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for needed in ("datasource", "instance", "upstream"):
        if needed not in variables:
            problem(f"dashboard: no ${needed} variable")
    ids = []
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        if panel["type"] != "row" and panel.get("datasource", {}).get("uid") != "${datasource}":
            problem(f"dashboard > {panel['title']}: datasource is not ${{datasource}}")
        for t in panel.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${datasource}":
                problem(f"dashboard > {panel['title']}: a query's datasource is not ${{datasource}}")
        if "gridPos" not in panel:
            problem(f"dashboard > {panel['title']}: no gridPos")
    if len(ids) != len(set(ids)):
        problem("dashboard: panel ids repeat")

    rules = yaml.safe_load((PROM / "alerts.yml").read_text(encoding="utf-8"))
    n_rules = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            n_rules += 1
            name = rule.get("alert") or rule.get("record")
            check_expr(f"alerts.yml > {name}", rule["expr"], source_names)
            if "alert" in rule:
                if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                    problem(f"alerts.yml > {name}: severity must be critical, warning or info")
                for a in ("summary", "description"):
                    if not rule.get("annotations", {}).get(a):
                        problem(f"alerts.yml > {name}: no {a} annotation")
                if "for" not in rule:
                    problem(f"alerts.yml > {name}: no explicit `for:`")
    # Every alert is exercised by the unit tests, firing at least once.
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text(encoding="utf-8"))
    fired = {c["alertname"] for t in tests["tests"] for c in t.get("alert_rule_test", []) if c.get("exp_alerts")}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and rule["alert"] not in fired:
                problem(f"alerts_test.yml: no test shows {rule['alert']} firing")
    src_note = "checked against src/" if source_names is not None else "no src/ to check against"
    finish(f"metrics: {count} dashboard queries and {n_rules} alert rules use known metrics and labels ({src_note})")


def load_k8s():
    docs = {}
    for f in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            if doc is not None:
                docs.setdefault(doc["kind"], []).append((f.name, doc))
    return docs


def the(docs, kind):
    items = docs.get(kind, [])
    if len(items) != 1:
        problem(f"kubernetes/: expected one {kind}, found {len(items)}")
        return {}
    return items[0][1]


def configmap_toml(docs):
    cm = the(docs, "ConfigMap")
    text = cm.get("data", {}).get("switchyard.toml")
    if text is None:
        problem("configmap.yaml: no data.switchyard.toml")
        return "", {}
    return text, tomllib.loads(text)


def cmd_extract_toml(out):
    docs = load_k8s()
    text, _ = configmap_toml(docs)
    Path(out).write_text(text, encoding="utf-8")
    # ${VAR} references, for check.sh to give them throwaway values.
    for var in sorted(env_vars(tomllib.loads(text))):
        print(var)


def env_vars(value):
    """${VAR} references in the config's values (comments excluded; $$ is a literal $)."""
    if isinstance(value, dict):
        return set().union(*(env_vars(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(env_vars(v) for v in value)) if value else set()
    if isinstance(value, str):
        return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value.replace("$$", "")))
    return set()


def seconds(duration):
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)\s*", duration)
    if not m:
        raise ValueError(f"cannot read duration {duration!r}")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def cmd_manifests():
    docs = load_k8s()
    text, cfg = configmap_toml(docs)
    drain = seconds(cfg.get("server", {}).get("drain_timeout", "30s"))
    admin_port = port_of(cfg.get("admin", {}).get("listen", "127.0.0.1:9901"))

    # kustomization: every listed resource exists; the CRD-based file is left out.
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    for r in kust.get("resources", []):
        if not (K8S / r).is_file():
            problem(f"kustomization.yaml: resource {r} does not exist")
    if "servicemonitor.yaml" in kust.get("resources", []):
        problem("kustomization.yaml: servicemonitor.yaml needs the prometheus-operator CRD; keep it optional")

    dep = the(docs, "Deployment")
    pod = dep.get("spec", {}).get("template", {})
    spec = pod.get("spec", {})
    containers = {c["name"]: c for c in spec.get("containers", [])}
    sy = containers.get("switchyard")
    if sy is None:
        problem("deployment.yaml: no container named switchyard")
        return finish("manifests")
    pod_labels = pod.get("metadata", {}).get("labels", {})
    if dep["spec"]["selector"]["matchLabels"].items() - pod_labels.items():
        problem("deployment.yaml: selector does not match the pod labels")

    # The config: mounted as a directory (so ConfigMap edits arrive), path matches --config.
    args = sy.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in sy.get("volumeMounts", [])}
    cm_name = the(docs, "ConfigMap").get("metadata", {}).get("name")
    cfg_mount = next((m for m in sy.get("volumeMounts", [])
                      if volumes.get(m["name"], {}).get("configMap", {}).get("name") == cm_name), None)
    if cfg_mount is None:
        problem(f"deployment.yaml: the switchyard container does not mount ConfigMap {cm_name}")
    else:
        if "subPath" in cfg_mount:
            problem("deployment.yaml: the config is mounted with subPath, which never receives ConfigMap updates")
        if config_path != cfg_mount["mountPath"].rstrip("/") + "/switchyard.toml":
            problem(f"deployment.yaml: --config {config_path} is not {cfg_mount['mountPath']}/switchyard.toml")

    # Secrets: every ${VAR} in the config is in the container's environment.
    env = {e["name"]: e for e in sy.get("env", [])}
    for var in sorted(env_vars(cfg)):
        if var not in env:
            problem(f"deployment.yaml: the config uses ${{{var}}} but the switchyard container has no {var}")
        elif "secretKeyRef" not in env[var].get("valueFrom", {}):
            problem(f"deployment.yaml: {var} should come from a Secret (valueFrom.secretKeyRef)")

    # The audit file's directory is a volume (the root filesystem is read-only).
    audit = cfg.get("audit", {}).get("path")
    writable = [p for p, m in mounts.items() if not m.get("readOnly")]
    if audit and not any(audit.startswith(p.rstrip("/") + "/") for p in writable):
        problem(f"deployment.yaml: no writable volume holds the audit file {audit}")

    # Probes and ports.
    ports = {p.get("name"): p["containerPort"] for p in sy.get("ports", [])}
    if admin_port not in ports.values():
        problem(f"deployment.yaml: the admin port {admin_port} ([admin] listen) is not a containerPort")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = sy.get(probe, {}).get("httpGet", {})
        if get.get("path") != path:
            problem(f"deployment.yaml: {probe} should GET {path}")
        port = get.get("port")
        if (ports.get(port) if isinstance(port, str) else port) != admin_port:
            problem(f"deployment.yaml: {probe} does not target the admin port {admin_port}")
    ann = pod.get("metadata", {}).get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(admin_port):
        problem("deployment.yaml: prometheus.io/scrape and prometheus.io/port annotations missing or wrong")
    if not cfg.get("admin", {}).get("listen", "").startswith("0.0.0.0:"):
        problem("configmap.yaml: [admin] must listen on 0.0.0.0 for probes and scrapes to reach it")
    if not cfg.get("server", {}).get("listen", "").startswith("127.0.0.1:"):
        problem("configmap.yaml: [server] listen should stay on loopback in a sidecar")

    # Shutdown arithmetic: the grace period covers the preStop sleep and the whole drain.
    grace = spec.get("terminationGracePeriodSeconds", 30)
    pre = sy.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    if pre <= 0:
        problem("deployment.yaml: the switchyard container has no preStop sleep")
    if grace <= pre + drain:
        problem(f"deployment.yaml: terminationGracePeriodSeconds {grace} <= preStop {pre} + drain_timeout {drain:g}")

    # Liveness must not kill a gateway that is draining.
    live = sy.get("livenessProbe", {})
    if live.get("periodSeconds", 10) * live.get("failureThreshold", 3) <= drain:
        problem(f"deployment.yaml: livenessProbe periodSeconds x failureThreshold <= drain_timeout {drain:g}")

    # Hardening on every container.
    psc = spec.get("securityContext", {})
    if not psc.get("runAsNonRoot"):
        problem("deployment.yaml: pod securityContext.runAsNonRoot is not true")
    for name, c in containers.items():
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem"):
            problem(f"deployment.yaml: container {name} has a writable root filesystem")
        if sc.get("allowPrivilegeEscalation") is not False:
            problem(f"deployment.yaml: container {name} allows privilege escalation")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problem(f"deployment.yaml: container {name} does not drop ALL capabilities")
        if "resources" not in c:
            problem(f"deployment.yaml: container {name} has no resources")

    # Service and ServiceMonitor find the admin port.
    svc = the(docs, "Service")
    if svc.get("spec", {}).get("selector", {}).items() - pod_labels.items():
        problem("service.yaml: selector does not match the pod labels")
    svc_ports = {p.get("name"): p for p in svc.get("spec", {}).get("ports", [])}
    for p in svc_ports.values():
        tp = p.get("targetPort")
        if (ports.get(tp) if isinstance(tp, str) else tp) != admin_port:
            problem(f"service.yaml: port {p.get('name')} does not target the admin port")
    sm = the(docs, "ServiceMonitor")
    if sm.get("spec", {}).get("selector", {}).get("matchLabels", {}).items() - svc.get("metadata", {}).get("labels", {}).items():
        problem("servicemonitor.yaml: selector does not match the Service's labels")
    for ep in sm.get("spec", {}).get("endpoints", []):
        if ep.get("port") not in svc_ports:
            problem(f"servicemonitor.yaml: port {ep.get('port')} is not a port name of the Service")

    # Secret example carries the keys the Deployment reads.
    secret = the(docs, "Secret")
    for var, e in env.items():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and (ref["name"] != secret.get("metadata", {}).get("name") or ref["key"] not in secret.get("stringData", {})):
            problem(f"secret.example.yaml: no key {ref['key']} in Secret {ref['name']}")

    # Prometheus' Kubernetes job keeps exactly the switchyard container's admin port.
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    admin_name = next((n for n, p in ports.items() if p == admin_port), None)
    k8s_jobs = [j for j in prom["scrape_configs"] if "kubernetes_sd_configs" in j]
    if not k8s_jobs:
        problem("prometheus.yml: no kubernetes_sd_configs job")
    for job in k8s_jobs:
        keeps = [r.get("regex") for r in job.get("relabel_configs", []) if r.get("action") == "keep"]
        if f"switchyard;{admin_name}" not in keeps:
            problem(f"prometheus.yml: job {job['job_name']} does not keep container switchyard, port {admin_name}")
    if not any("static_configs" in j for j in prom["scrape_configs"]):
        problem("prometheus.yml: no static job")

    # systemd: the stop timeout covers the drain.
    unit = (DEPLOY / "systemd" / "switchyard.service").read_text(encoding="utf-8")
    m = re.search(r"^TimeoutStopSec=(\d+)s?$", unit, re.M)
    if not m or int(m.group(1)) <= drain:
        problem(f"systemd/switchyard.service: TimeoutStopSec must be above drain_timeout ({drain:g} s)")
    if not re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", unit, re.M):
        problem("systemd/switchyard.service: ExecReload does not send SIGHUP")

    # Dockerfile: consistent with the manifests, and every COPY source passes the ignore file.
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    if f"USER {psc.get('runAsUser')}:{psc.get('runAsGroup')}" not in dockerfile:
        problem("Dockerfile: USER differs from the pod's runAsUser:runAsGroup")
    if config_path and f'"--config", "{config_path}"' not in dockerfile:
        problem(f"Dockerfile: CMD does not read {config_path}")
    if f"127.0.0.1:{admin_port}/readyz" not in dockerfile:
        problem(f"Dockerfile: HEALTHCHECK does not probe 127.0.0.1:{admin_port}/readyz")
    if not re.search(rf"^EXPOSE .*\b{admin_port}\b", dockerfile, re.M):
        problem(f"Dockerfile: does not EXPOSE {admin_port}")
    allowed = [l[1:].rstrip("/") for l in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines() if l.startswith("!")]
    for line in dockerfile.splitlines():
        m = re.match(r"^COPY\s+(?!--from)(.*)$", line)
        if not m:
            continue
        srcs = [s for s in m.group(1).split() if not s.startswith("--")][:-1]
        for s in srcs:
            s = s.rstrip("/")
            if not (DEPLOY.parent / s).exists():
                problem(f"Dockerfile: COPY source {s} does not exist in the repository")
            if s not in allowed:
                problem(f"Dockerfile: COPY source {s} is excluded by Dockerfile.dockerignore")
    finish("manifests: Deployment, Service, ServiceMonitor, Secret, prometheus.yml, systemd unit and Dockerfile agree")


K8S_SD_ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}
K8S_SD_KEYS = {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata",
               "basic_auth", "authorization", "oauth2", "tls_config", "proxy_url", "follow_redirects",
               "enable_http2", "bearer_token", "bearer_token_file"}


def cmd_prom_without_k8s_sd(out_dir):
    """Debian's promtool is built without Kubernetes service discovery: check that part here and
    hand promtool the rest, with each kubernetes_sd_configs replaced by a static target."""
    out = Path(out_dir)
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    for job in prom.get("scrape_configs", []):
        sds = job.pop("kubernetes_sd_configs", None)
        if sds is None:
            continue
        for sd in sds:
            if sd.get("role") not in K8S_SD_ROLES:
                problem(f"prometheus.yml: job {job['job_name']}: kubernetes_sd role {sd.get('role')!r} is not one of {sorted(K8S_SD_ROLES)}")
            for key in set(sd) - K8S_SD_KEYS:
                problem(f"prometheus.yml: job {job['job_name']}: unknown kubernetes_sd_configs key {key!r}")
        job.setdefault("static_configs", []).append({"targets": ["kubernetes-sd-placeholder:9901"]})
    (out / "prometheus.yml").write_text(yaml.safe_dump(prom, sort_keys=False), encoding="utf-8")
    for rules in prom.get("rule_files", []):
        (out / rules).write_text((PROM / rules).read_text(encoding="utf-8"), encoding="utf-8")
    if problems:
        finish("")


def cmd_healthcheck_argv():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    m = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, re.M)
    if not m:
        print("  FAIL  Dockerfile: no HEALTHCHECK ... CMD [...] (exec form)")
        sys.exit(1)
    for arg in json.loads(m.group(1)):
        print(arg)


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:] or ["help"]
    if cmd == "metrics":
        cmd_metrics()
    elif cmd == "manifests":
        cmd_manifests()
    elif cmd == "extract-toml" and len(rest) == 1:
        cmd_extract_toml(rest[0])
    elif cmd == "prom-without-k8s-sd" and len(rest) == 1:
        cmd_prom_without_k8s_sd(rest[0])
    elif cmd == "healthcheck-argv":
        cmd_healthcheck_argv()
    else:
        print(__doc__)
        sys.exit(2)
