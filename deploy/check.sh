#!/usr/bin/env bash
# Validates deploy/ with what this machine can run (CI runs it: .ci/run, "deploy/" step).
#
#   bash deploy/check.sh [path/to/switchyard]     (default: target/debug/switchyard)
#
# - Prometheus: `promtool check config` on prometheus.yml, `promtool check rules` and
#   `promtool test rules` on the alerts (installs Debian's `prometheus` package when promtool
#   is missing, as .ci/run does for redis-server).
# - Grafana: the dashboard is valid JSON, and every metric and label that it and the alert rules
#   use exists (check.py metrics).
# - Kubernetes: every manifest parses and validates against the Kubernetes API schema
#   (kubernetes-validate, pinned, in a venv under target/), the manifests, prometheus.yml, the
#   systemd unit and the Dockerfile agree with each other (check.py manifests), and the
#   ConfigMap's switchyard.toml passes `switchyard check`.
# - Docker: the HEALTHCHECK command, run against a live `switchyard demo`, passes while the
#   gateway is ready and fails against a closed port; hadolint lints the Dockerfile when it is on
#   PATH. The image itself is not built (no registry access here).
# - systemd: `systemd-analyze verify` on the unit (ExecStart pointed at the binary under test),
#   and `systemd-analyze security` holds its exposure level at 2.0 or below.
# Every check runs; the script exits 1 at the end if any failed.
set -euo pipefail
caller_pwd=$PWD
cd "$(dirname "$0")/.."
root=$PWD

if [ $# -ge 1 ]; then
  case $1 in /*) BIN=$1 ;; *) BIN=$caller_pwd/$1 ;; esac
else
  BIN=$root/target/debug/switchyard
fi
if [ ! -x "$BIN" ]; then
  echo "deploy/check.sh: no switchyard binary at $BIN (run cargo build first)" >&2
  exit 1
fi

KUBERNETES_VALIDATE_VERSION=1.37.0
VENV=$root/target/deploy-venv
tmp=$(mktemp -d)
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ]; then
    kill "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

failed=()
section() { printf -- '-- %s\n' "$*"; }
ok() { printf '  ok    %s\n' "$*"; }
skip() { printf '  skip  %s\n' "$*"; }
fail() {
  printf '  FAIL  %s\n' "$*"
  failed+=("$*")
}
# run NAME CMD...: run a command quietly; on failure show its output and record NAME.
run() {
  local name=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then
    ok "$name"
  else
    sed 's/^/        /' "$tmp/out"
    fail "$name"
  fi
}

section "tools"
if ! command -v promtool >/dev/null 2>&1; then
  # RUNLEVEL=1 asks the package's postinst not to start the Prometheus server.
  prom_log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive
  if ! RUNLEVEL=1 apt-get install -y -qq --no-install-recommends prometheus >"$prom_log" 2>&1; then
    apt-get update -qq >>"$prom_log" 2>&1 || true
    RUNLEVEL=1 apt-get install -y -qq --no-install-recommends prometheus >>"$prom_log" 2>&1 \
      || { cat "$prom_log"; echo "installing prometheus (for promtool) failed" >&2; exit 1; }
  fi
  rm -f "$prom_log"
fi
ok "$(promtool --version 2>&1 | head -n 1)"
# kubernetes-validate: the Kubernetes OpenAPI schemas, offline; brings PyYAML for check.py.
if [ ! -x "$VENV/bin/python" ] \
  || ! "$VENV/bin/python" -c "import importlib.metadata as m, sys, yaml; sys.exit(m.version('kubernetes-validate') != '$KUBERNETES_VALIDATE_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
if ! "$VENV/bin/python" -c "import tomllib" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "tomli==2.2.1"
fi
PY=$VENV/bin/python
ok "kubernetes-validate $KUBERNETES_VALIDATE_VERSION ($("$PY" --version))"

section "prometheus"
run "promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
run "promtool test rules deploy/prometheus/alerts_test.yml" promtool test rules deploy/prometheus/alerts_test.yml
# Debian builds promtool without Kubernetes service discovery ("field kubernetes_sd_configs not
# found"). Detect that with a minimal config; if so, check.py validates the kubernetes_sd_configs
# blocks and promtool checks the rest of the file with them swapped for static targets.
printf 'scrape_configs:\n  - job_name: probe\n    kubernetes_sd_configs:\n      - role: pod\n' >"$tmp/k8s-sd-probe.yml"
if promtool check config "$tmp/k8s-sd-probe.yml" >/dev/null 2>&1; then
  run "promtool check config deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
else
  mkdir "$tmp/prom"
  if "$PY" deploy/check.py prom-without-k8s-sd "$tmp/prom"; then
    run "promtool check config deploy/prometheus/prometheus.yml (this promtool lacks Kubernetes SD: kubernetes_sd_configs checked by check.py, the rest by promtool)" \
      promtool check config "$tmp/prom/prometheus.yml"
  else
    fail "prometheus.yml: kubernetes_sd_configs"
  fi
fi

section "grafana"
if "$PY" -m json.tool deploy/grafana/switchyard.json >"$tmp/out" 2>&1; then
  ok "deploy/grafana/switchyard.json is valid JSON"
  "$PY" deploy/check.py metrics || fail "metric names and labels in the dashboard and alert rules"
else
  sed 's/^/        /' "$tmp/out"
  fail "deploy/grafana/switchyard.json is not valid JSON (its metrics were not checked)"
fi

section "kubernetes"
yaml_files=(deploy/kubernetes/*.yaml deploy/prometheus/*.yml)
run "YAML parses: ${yaml_files[*]}" "$PY" -c '
import sys, yaml
for f in sys.argv[1:]:
    with open(f, encoding="utf-8") as fh:
        list(yaml.safe_load_all(fh))
' "${yaml_files[@]}"
# The ServiceMonitor's schema is the prometheus-operator's CRD, not part of Kubernetes: check.py
# checks its fields against the Service instead.
k8s_files=()
for f in deploy/kubernetes/*.yaml; do
  case $f in */servicemonitor.yaml | */kustomization.yaml) ;; *) k8s_files+=("$f") ;; esac
done
# The oldest Kubernetes the example supports (the preStop sleep action) and the newest schema.
validate_k8s() {
  local v
  for v in 1.30.0 "$KUBERNETES_VALIDATE_VERSION"; do
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$@" || return 1
  done
}
run "kubernetes-validate --strict (Kubernetes 1.30 and $KUBERNETES_VALIDATE_VERSION): ${k8s_files[*]}" \
  validate_k8s "${k8s_files[@]}"
"$PY" deploy/check.py manifests || fail "manifests agree with each other"
# The ConfigMap's config through `switchyard check`, with throwaway values for its ${VAR}s.
if vars=$("$PY" deploy/check.py extract-toml "$tmp/switchyard.toml"); then
  env_args=()
  for v in $vars; do env_args+=("$v=check-placeholder"); done
  run "switchyard check on the ConfigMap's switchyard.toml (${vars//$'\n'/, } set to placeholders)" \
    env "${env_args[@]}" "$BIN" check --config "$tmp/switchyard.toml"
else
  fail "extracting switchyard.toml from deploy/kubernetes/configmap.yaml"
fi

section "docker"
# The HEALTHCHECK's exact argv, against a live gateway (the demo on ephemeral loopback ports):
# exit 0 while ready, non-zero when nothing listens.
mapfile -t hc < <("$PY" deploy/check.py healthcheck-argv)
if [ "${#hc[@]}" -lt 2 ] || [ "${hc[0]}" != /usr/local/bin/switchyard ]; then
  fail "Dockerfile HEALTHCHECK: expected CMD [\"/usr/local/bin/switchyard\", ...], got: ${hc[*]:-nothing}"
else
  "$BIN" demo --port 0 --admin-port 0 >"$tmp/demo.log" 2>&1 &
  demo_pid=$!
  admin=""
  for _ in $(seq 1 100); do
    admin=$(sed -n 's#^  metrics   http://\([^/]*\)/metrics.*#\1#p' "$tmp/demo.log" | head -n 1)
    [ -n "$admin" ] && break
    kill -0 "$demo_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$admin" ]; then
    sed 's/^/        /' "$tmp/demo.log"
    fail "switchyard demo did not start, so the HEALTHCHECK was not run"
  else
    live=("$BIN" "${hc[@]:1}")
    live=("${live[@]//127.0.0.1:9901/$admin}")
    run "HEALTHCHECK passes on a ready gateway: ${live[*]:1}" "${live[@]}"
    kill "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
    demo_pid=""
    if "${live[@]}" >/dev/null 2>&1; then
      fail "HEALTHCHECK passes with no gateway listening at $admin"
    else
      ok "HEALTHCHECK fails with no gateway listening"
    fi
  fi
fi
if command -v hadolint >/dev/null 2>&1; then
  run "hadolint deploy/Dockerfile" hadolint deploy/Dockerfile
else
  skip "hadolint is not installed: Dockerfile not linted"
fi
skip "docker build: no registry access on this machine; deploy/Dockerfile is checked by inspection and check.py only"

section "systemd"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  skip "systemd-analyze is not installed: deploy/systemd/switchyard.service not verified"
else
  # Can systemd-analyze verify units here at all (some containers cannot)? Try a trivial one.
  mkdir "$tmp/units"
  printf '[Unit]\nDescription=probe\n[Service]\nType=exec\nExecStart=/bin/true\n' >"$tmp/units/probe.service"
  if ! (cd "$tmp/units" && systemd-analyze verify ./probe.service) >"$tmp/out" 2>&1 || [ -s "$tmp/out" ]; then
    sed 's/^/        /' "$tmp/out"
    skip "systemd-analyze verify does not work in this environment: deploy/systemd/switchyard.service not verified"
  else
    # verify wants ExecStart to exist: point it at the binary under test.
    sed "s#/usr/local/bin/switchyard#$BIN#g" deploy/systemd/switchyard.service >"$tmp/units/switchyard.service"
    # verify exits 0 on some problems (an unknown value is "ignoring"): any output is a failure.
    if (cd "$tmp/units" && systemd-analyze verify ./switchyard.service) >"$tmp/out" 2>&1 && [ ! -s "$tmp/out" ]; then
      ok "systemd-analyze verify deploy/systemd/switchyard.service"
    else
      sed 's/^/        /' "$tmp/out"
      fail "systemd-analyze verify deploy/systemd/switchyard.service"
    fi
    # --threshold counts tenths: 20 is an overall exposure level of 2.0 ("OK" goes up to 4.9).
    if (cd "$tmp/units" && systemd-analyze security --offline=yes --threshold=20 ./switchyard.service) >"$tmp/out" 2>&1; then
      ok "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$tmp/out" | head -n 1 || true)"
    else
      { grep -E '✗|exposure|rror' "$tmp/out" || cat "$tmp/out"; } | sed 's/^/        /'
      fail "systemd-analyze security: exposure above 2.0 for deploy/systemd/switchyard.service"
    fi
  fi
fi

echo
if [ "${#failed[@]}" -gt 0 ]; then
  echo "deploy/check.sh: ${#failed[@]} check(s) failed:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "deploy/check.sh: all checks passed."
