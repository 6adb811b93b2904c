#!/usr/bin/env bash
# Instructions per proxied request (issue #5): a count that this noisy, shared 2-core machine
# cannot blur. Each proxy runs under valgrind's cachegrind (`--cache-sim=no`: instruction
# counts only) twice, once idle and once carrying the same chat requests
# (`examples/load_client.rs rate`, a low fixed rate); the difference over the number of
# requests is what one request costs in user space: Switchyard's own work, hyper's and
# tokio's. Kernel time (system calls, wake-ups) is not counted; `benches/load/run.sh`
# measures that side by side in CPU seconds.
#
#   bash benches/load/instructions.sh
#
# Targets: Switchyard, the hyper floor (`examples/hyper_floor.rs`) and nginx (one process,
# `master_process off`, same proxy settings as run.sh), all in front of
# `examples/load_upstream.rs`. Installs valgrind and nginx-light from the OS packages if
# missing (nginx is skipped with a note when it cannot be). About 2 minutes after the build.
# Results: target/load/instructions.md and target/load/instructions.json.
#
# Knobs (environment): INSN_REQUESTS (requests per target, default 1000), INSN_RATE
# (requests per second, default 200: low enough for a proxy slowed down by valgrind),
# LOAD_SKIP_BUILD=1.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/target/load
REQUESTS=${INSN_REQUESTS:-1000}
RATE=${INSN_RATE:-200}
DURATION=$(( (REQUESTS + RATE - 1) / RATE ))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-insn.XXXXXX")
PIDS=()

log() { printf '[insn] %s\n' "$*" >&2; }
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    mkdir -p "$OUT/logs"
    cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
    rm -rf "$WORK"
    [ "$rc" -eq 0 ] || log "failed (exit $rc); logs in $OUT/logs"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=benches/listening.sh
. "$ROOT/benches/listening.sh"
# shellcheck source=benches/load/targets.sh
. "$ROOT/benches/load/targets.sh"

NGINX_BIN=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
[ -n "$NGINX_BIN" ] || missing+=(nginx-light)
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
    log "installing ${missing[*]} from the OS packages"
    "${SUDO[@]}" apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || log "apt-get install ${missing[*]} failed"
    NGINX_BIN=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
fi
for tool in valgrind jq curl; do
    command -v "$tool" >/dev/null || { log "error: $tool is required"; exit 1; }
done

if [ "${LOAD_SKIP_BUILD:-0}" != 1 ]; then
    log "building the gateway and the helpers (release)"
    cargo build --release --quiet --bin switchyard --example load_upstream --example load_client \
        --example hyper_floor
fi
BIN=$ROOT/target/release
for bin in "$BIN/switchyard" "$BIN/examples/load_upstream" "$BIN/examples/load_client" \
    "$BIN/examples/hyper_floor"; do
    [ -x "$bin" ] || { log "error: $bin is missing (build it or drop LOAD_SKIP_BUILD)"; exit 1; }
done

"$BIN/examples/load_upstream" 127.0.0.1:0 >"$WORK/upstream.log" 2>&1 &
PIDS+=("$!")
UP_ADDR=$(listening_on "$WORK/upstream.log") \
    || { log "error: the load upstream did not start"; exit 1; }
UP_PORT=${UP_ADDR##*:}
printf '%s' "$CHAT_BODY" >"$WORK/chat.json"

# start_target NAME PORT OUTFILE: the proxy NAME under cachegrind, listening on PORT; sets
# TARGET_PID once it answers.
start_target() {
    local name=$1 port=$2 cg=$3
    local vg=(valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$cg")
    case $name in
        switchyard)
            switchyard_toml "$port" "$((port + 1))" false >"$WORK/switchyard.toml"
            "${vg[@]}" "$BIN/switchyard" serve --config "$WORK/switchyard.toml" >>"$WORK/switchyard.log" 2>&1 &
            ;;
        floor)
            "${vg[@]}" "$BIN/examples/hyper_floor" "127.0.0.1:$port" "$UP_ADDR" 2 >>"$WORK/floor.log" 2>&1 &
            ;;
        nginx)
            # One process, so that cachegrind sees every request.
            nginx_conf "$WORK/nginx" "$port" 1024 "master_process off;"
            "${vg[@]}" "$NGINX_BIN" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >>"$WORK/nginx.log" 2>&1 &
            ;;
    esac
    TARGET_PID=$!
    PIDS+=("$TARGET_PID")
    # valgrind starts slowly: up to 30 s.
    wait_http "http://127.0.0.1:$port/" 300 || { log "error: $name did not start under valgrind"; exit 1; }
}

# measure NAME: instructions of an idle run and of a loaded one, the same length; prints one
# JSON line.
measure() {
    local name=$1 port idle_ir busy_ir line requests bad
    for run in idle busy; do
        port=$(free_port)
        start_target "$name" "$port" "$WORK/$name-$run.cg"
        if [ "$run" = busy ]; then
            line=$("$BIN/examples/load_client" rate "127.0.0.1:$port" --rate "$RATE" \
                --duration "$DURATION" --connections 8 --body "$WORK/chat.json" 2>>"$WORK/load_client.log")
        else
            sleep "$DURATION"
        fi
        kill -TERM "$TARGET_PID"
        wait "$TARGET_PID" 2>/dev/null || true
        [ -s "$WORK/$name-$run.cg" ] || { log "error: no cachegrind output for $name ($run)"; exit 1; }
        if [ "$run" = idle ]; then
            idle_ir=$(awk '/^summary:/ {print $2}' "$WORK/$name-$run.cg")
        else
            busy_ir=$(awk '/^summary:/ {print $2}' "$WORK/$name-$run.cg")
        fi
    done
    requests=$(jq -r .requests <<<"$line")
    bad=$(jq -r '.errors + .non_2xx + .unsent' <<<"$line")
    [ "$bad" = 0 ] || log "WARNING: $name: $bad requests failed or were not sent"
    jq -nc --arg target "$name" --argjson requests "$requests" --argjson idle "$idle_ir" \
        --argjson busy "$busy_ir" --argjson failed "$bad" \
        '{target: $target, requests: $requests, failed: $failed, idle_ir: $idle, busy_ir: $busy,
          ir_per_request: (($busy - $idle) / $requests | round)}'
}

TARGETS=(switchyard floor)
if [ -n "$NGINX_BIN" ]; then TARGETS+=(nginx); else log "nginx not available: its row is skipped"; fi
: >"$WORK/runs.jsonl"
for t in "${TARGETS[@]}"; do
    log "$t: $REQUESTS requests at $RATE/s under cachegrind, and an idle run as long"
    measure "$t" | tee -a "$WORK/runs.jsonl" >&2
done

mkdir -p "$OUT"
jq -s --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg valgrind "$(valgrind --version)" \
    '{meta: {commit: $commit, date: $date, valgrind: $valgrind}, runs: .}' \
    "$WORK/runs.jsonl" >"$OUT/instructions.json"
jq -r '
    (.runs | map({(.target): .ir_per_request}) | add) as $ir
    | "Instructions per request (user space, cachegrind): commit \(.meta.commit), \(.meta.date), \(.meta.valgrind).",
      "",
      "| target | requests | instructions per request | over the hyper floor |",
      "|---|---|---|---|",
      (.runs[] | "| \(.target) | \(.requests) | \(.ir_per_request) | \(if $ir.floor then ((.ir_per_request / $ir.floor * 100 | round) / 100 | tostring) + "×" else "—" end) |")
' "$OUT/instructions.json" >"$OUT/instructions.md"
echo
cat "$OUT/instructions.md"
