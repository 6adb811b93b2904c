#!/usr/bin/env bash
# SigV4 end to end, checked by an independent implementation: `switchyard serve` in front of a
# stand-in Bedrock upstream (tests/sdk/sigv4_upstream.py) that recomputes every request's
# signature with botocore and answers 403 on any mismatch. Three runs:
#   env      credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
#   profile  credentials from a shared credentials file and `profile = ...` in the config
#            (with other keys in the environment, which an explicit profile must ignore)
#   none     no credentials anywhere: `serve` must refuse to start and say why
# The gateway runs with a scrubbed environment (env -i) and AWS_CONFIG_FILE /
# AWS_SHARED_CREDENTIALS_FILE pointing at temp files, so nothing on this machine leaks in;
# instance metadata is disabled so no request leaves loopback.
# Usage: tests/sdk/sigv4_check.sh [path/to/switchyard]   (uses target/sdk-venv, adds botocore)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-./target/debug/switchyard}
BOTOCORE_VERSION=1.44.5
VENV=target/sdk-venv
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
fi
if ! "$PY" -c "import botocore, sys; sys.exit(botocore.__version__ != '$BOTOCORE_VERSION')" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "botocore==$BOTOCORE_VERSION"
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Test-only credentials (the AWS documentation's example keys, never valid anywhere).
KEY=AKIAIOSFODNN7EXAMPLE
SECRET=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
TOKEN=FwoGZXIvYXdzEXAMPLESESSIONTOKEN/with+slash=
PROFILE_KEY=AKIAI44QH8DHBEXAMPLE
PROFILE_SECRET=je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY
PROFILE_TOKEN=IQoJb3JpZ2luX2VjEXAMPLEPROFILETOKEN

# start_upstream NAME ARGS... : start sigv4_upstream.py, set $port to the port it listens on.
start_upstream() {
  local name=$1
  shift
  "$PY" tests/sdk/sigv4_upstream.py --record "$work/$name.jsonl" "$@" >"$work/$name.out" 2>&1 &
  pids+=($!)
  port=""
  for _ in $(seq 1 100); do
    port=$(head -n 1 "$work/$name.out" 2>/dev/null | grep -E '^[0-9]+$' || true)
    [ -n "$port" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/$name.out" >&2
  echo "upstream $name did not start" >&2
  exit 1
}

# write_config FILE PLAIN_PORT BEDROCK_PORT [EXTRA_BEDROCK_LINE]
write_config() {
  cat >"$1" <<EOF
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[upstreams.primary]
url = "http://127.0.0.1:$2/v1"
[upstreams.bedrock]
kind = "bedrock"
auth = "sigv4"
url = "http://127.0.0.1:$3/openai/v1"
region = "us-east-1"
service = "bedrock"
${4:-}
[routing]
stateless = "primary"
stateful = "bedrock"
[log]
format = "json"
EOF
}

# serve NAME CONFIG ENV... : start the gateway with only ENV, set $gateway to its address.
serve() {
  local name=$1 config=$2
  shift 2
  mkdir -p "$work/home"
  env -i PATH="$PATH" HOME="$work/home" AWS_EC2_METADATA_DISABLED=true "$@" \
    "$BIN" serve --config "$config" >"$work/$name.log" 2>&1 &
  pids+=($!)
  gateway=""
  for _ in $(seq 1 300); do
    gateway=$(grep -o '"proxy_addr":"[^"]*"' "$work/$name.log" 2>/dev/null | head -n 1 | cut -d'"' -f4 || true)
    [ -n "$gateway" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/$name.log" >&2
  echo "gateway ($name) did not start" >&2
  exit 1
}

: >"$work/empty"
status=0

echo "== sigv4 run 1: credentials from environment variables"
start_upstream plain1 --plain
plain1=$port
start_upstream bedrock1 --access-key "$KEY" --secret-key "$SECRET" --token "$TOKEN"
bedrock1=$port
write_config "$work/env.toml" "$plain1" "$bedrock1"
serve env "$work/env.toml" \
  AWS_ACCESS_KEY_ID="$KEY" AWS_SECRET_ACCESS_KEY="$SECRET" AWS_SESSION_TOKEN="$TOKEN" \
  AWS_CONFIG_FILE="$work/empty" AWS_SHARED_CREDENTIALS_FILE="$work/empty"
"$PY" tests/sdk/sigv4_requests.py "$gateway" "127.0.0.1:$bedrock1" \
  "$work/bedrock1.jsonl" "$work/plain1.jsonl" "$KEY" "$SECRET" "$TOKEN" || status=1

echo "== sigv4 run 2: credentials from a shared credentials file, profile set in the config"
cat >"$work/credentials" <<EOF
[default]
aws_access_key_id = AKIADEFAULTPROFILEXX
aws_secret_access_key = not-the-one

[sigv4-check]
aws_access_key_id = $PROFILE_KEY
aws_secret_access_key = $PROFILE_SECRET
aws_session_token = $PROFILE_TOKEN
EOF
start_upstream plain2 --plain
plain2=$port
start_upstream bedrock2 --access-key "$PROFILE_KEY" --secret-key "$PROFILE_SECRET" --token "$PROFILE_TOKEN"
bedrock2=$port
write_config "$work/profile.toml" "$plain2" "$bedrock2" 'profile = "sigv4-check"'
serve profile "$work/profile.toml" \
  AWS_ACCESS_KEY_ID=AKIAENVIRONMENTWRONG AWS_SECRET_ACCESS_KEY=wrong \
  AWS_CONFIG_FILE="$work/empty" AWS_SHARED_CREDENTIALS_FILE="$work/credentials"
"$PY" tests/sdk/sigv4_requests.py "$gateway" "127.0.0.1:$bedrock2" \
  "$work/bedrock2.jsonl" "$work/plain2.jsonl" "$PROFILE_KEY" "$PROFILE_SECRET" "$PROFILE_TOKEN" || status=1

echo "== sigv4 run 3: no credentials anywhere: serve must not start"
write_config "$work/none.toml" "$plain1" "$bedrock1"
env -i PATH="$PATH" HOME="$work/home" AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE="$work/empty" AWS_SHARED_CREDENTIALS_FILE="$work/empty" \
  "$BIN" serve --config "$work/none.toml" >"$work/none.log" 2>&1 &
none=$!
pids+=($none)
code=""
for _ in $(seq 1 600); do
  if ! kill -0 "$none" 2>/dev/null; then
    code=0
    wait "$none" || code=$?
    break
  fi
  grep -q 'switchyard listening' "$work/none.log" && break
  sleep 0.1
done
if [ -n "$code" ] && [ "$code" -ne 0 ] &&
  grep -q 'upstream bedrock: no usable AWS credentials' "$work/none.log"; then
  echo "ok   serve refused to start (exit $code): $(grep -o 'upstream bedrock: no usable AWS credentials.*' "$work/none.log" | head -n 1)"
else
  echo "FAIL serve without credentials: exit ${code:-none (still running)}, log:" >&2
  cat "$work/none.log" >&2
  status=1
fi

if [ "$status" -ne 0 ]; then
  for f in "$work"/*.log; do
    echo "--- $f" >&2
    tail -n 20 "$f" >&2
  done
  echo "sigv4 check FAILED" >&2
else
  echo "sigv4 check passed"
fi
exit "$status"
