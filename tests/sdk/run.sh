#!/usr/bin/env bash
# The official OpenAI Python SDK against `switchyard demo`: every call must land on the upstream
# of its class. Installs the SDK (pinned) into a venv under target/, starts the demo on ephemeral
# loopback ports, runs tests/sdk/openai_sdk_check.py, and stops the demo.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-./target/debug/switchyard}
OPENAI_VERSION=3.57.0
VENV=target/sdk-venv

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$OPENAI_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION"
fi

log=$(mktemp)
"$BIN" demo --port 0 --admin-port 0 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

addr=""
for _ in $(seq 1 300); do
  addr=$(sed -n 's#^  gateway   http://\([^/]*\)/v1.*#\1#p' "$log" | head -n 1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "demo exited early" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { cat "$log"; echo "demo did not start within 30 s" >&2; exit 1; }
admin=$(sed -n 's#^  metrics   http://\([^/]*\)/metrics.*#\1#p' "$log" | head -n 1)

"$VENV/bin/python" tests/sdk/openai_sdk_check.py "http://$addr/v1" "http://$admin/metrics"
