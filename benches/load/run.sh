#!/usr/bin/env bash
# End-to-end load harness (issue #5, item 2): the same HTTP/1.1 keep-alive traffic sent
# directly to a fast mock upstream, through Switchyard, through the hyper floor (a bare
# hyper-to-hyper proxy, `examples/hyper_floor.rs`: what the stack Switchyard is built on costs
# without Switchyard's own work), and through nginx, in one run.
#
#   bash benches/load/run.sh
#
# Measured per target: saturation throughput (wrk), latency at concurrency 1 (wrk -c1), latency
# at a fixed request rate (open loop with coordinated-omission correction, like wrk2:
# `examples/load_client.rs rate`), 1 MiB bodies, SSE time to first byte (curl), CPU per 10k
# requests, RSS (every test but the last for the hyper floor); and once at the end, the memory
# of holding many idle SSE streams open
# (`examples/load_client.rs hold`). For that last test the proxies are second, fresh instances:
# Switchyard with an HTTP/2 cleartext upstream (`http2 = true`: 10k client connections plus
# 10k HTTP/1.1 upstream connections would not fit in one process's open-file limit), nginx with
# room for 10k streams per worker (`worker_connections`, `worker_rlimit_nofile`).
#
# Loopback only, bounded (about 4 minutes after the build on a 2-core machine). Installs `wrk`,
# `nginx-light` (or `nginx`), `jq` and `curl` from the OS packages if missing (root or
# passwordless sudo; nginx is skipped with a note when it cannot be installed), builds the
# gateway, `examples/load_upstream.rs`, `examples/load_client.rs` and `examples/hyper_floor.rs`
# in release mode, and stops
# everything it started on exit, even on failure. Results: target/load/results.md and
# target/load/results.json.
#
# Knobs (environment): LOAD_DURATION (seconds per wrk or fixed-rate run, default 5),
# LOAD_ROUNDS (default 2), LOAD_SSE_REQUESTS (curl requests per SSE measurement, default 50),
# LOAD_RATE (requests per second of the fixed-rate test, default 10000), LOAD_RATE_CONNECTIONS
# (its keep-alive connections, default 32), LOAD_IDLE_STREAMS (idle streams held open at once,
# default 10000; 0 skips the test), LOAD_IDLE_OPEN_TIMEOUT (seconds allowed to open them, per
# target, default 25), LOAD_SKIP_BUILD=1.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/target/load
DURATION=${LOAD_DURATION:-5}
ROUNDS=${LOAD_ROUNDS:-2}
SSE_N=${LOAD_SSE_REQUESTS:-50}
RATE=${LOAD_RATE:-10000}
RATE_CONNS=${LOAD_RATE_CONNECTIONS:-32}
IDLE_N=${LOAD_IDLE_STREAMS:-10000}
IDLE_OPEN_TIMEOUT=${LOAD_IDLE_OPEN_TIMEOUT:-25}
FD_LIMIT=$(ulimit -n)
FD_HARD_LIMIT=$(ulimit -Hn)
SAT_CONNS=32
BIG_CONNS=4
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-load.XXXXXX")
PIDS=()
START=$(date +%s)

log() { printf '[load] %s\n' "$*" >&2; }
skip() { printf '[load] SKIPPED: %s\n' "$*" >&2; SKIPS+=("$*"); }
SKIPS=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    mkdir -p "$OUT/logs"
    cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
    cp "$WORK"/nginx/*.log "$OUT/logs/" 2>/dev/null || true
    cp "$WORK"/nginx-hold/error.log "$OUT/logs/nginx-hold-error.log" 2>/dev/null || true
    rm -rf "$WORK"
    if [ "$rc" -ne 0 ]; then log "failed (exit $rc); process logs kept in $OUT/logs"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools ------------------------------------------------------------------------------

NGINX_BIN=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
if [ -z "$NGINX_BIN" ]; then
    if apt-cache show nginx-light >/dev/null 2>&1; then missing+=(nginx-light); else missing+=(nginx); fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else SUDO=(none); fi
    fi
    if [ "${SUDO[0]:-}" = none ] || ! command -v apt-get >/dev/null; then
        log "cannot install ${missing[*]} (need apt-get as root or passwordless sudo)"
    else
        log "installing ${missing[*]} from the OS packages"
        "${SUDO[@]}" apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
            || log "apt-get install ${missing[*]} failed"
    fi
    NGINX_BIN=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
fi
for tool in wrk jq; do
    command -v "$tool" >/dev/null || { log "error: $tool is required"; exit 1; }
done
HAVE_CURL=1; command -v curl >/dev/null || { HAVE_CURL=0; skip "SSE time to first byte (curl not available)"; }
[ -n "$NGINX_BIN" ] || skip "nginx column (nginx not installed and not installable here)"

if [ "${LOAD_SKIP_BUILD:-0}" != 1 ]; then
    log "building the gateway, the load upstream, the load client and the hyper floor (release)"
    cargo build --release --quiet --bin switchyard --example load_upstream --example load_client \
        --example hyper_floor
fi
GATEWAY_BIN=$ROOT/target/release/switchyard
UPSTREAM_BIN=$ROOT/target/release/examples/load_upstream
CLIENT_BIN=$ROOT/target/release/examples/load_client
FLOOR_BIN=$ROOT/target/release/examples/hyper_floor
for bin in "$CLIENT_BIN" "$FLOOR_BIN"; do
    [ -x "$bin" ] || { log "error: $bin is missing (build it or drop LOAD_SKIP_BUILD)"; exit 1; }
done

# ---- helpers ----------------------------------------------------------------------------

# switchyard_toml and nginx_conf, shared with benches/load/instructions.sh; free_port,
# wait_http and listening_on, shared with every bench script.
# shellcheck source=benches/load/targets.sh
. "$ROOT/benches/load/targets.sh"
# shellcheck source=benches/listening.sh
. "$ROOT/benches/listening.sh"



CLK_TCK=$(getconf CLK_TCK)
# utime+stime clock ticks summed over the given pids (fields 14 and 15 of /proc/PID/stat,
# counted after the parenthesised command name, which may contain spaces).
cpu_ticks() {
    local total=0 pid rest
    for pid in "$@"; do
        rest=$(sed 's/^.*) //' "/proc/$pid/stat")
        total=$((total + $(awk '{print $12 + $13}' <<<"$rest")))
    done
    echo "$total"
}
# CPU seconds (user+sys) of this shell's waited-for children so far (bash `times`, 2nd line),
# to see how much of a core the load generator itself used.
# Called as `children_cpu VAR` (not in a $(…) subshell, whose fork starts from zero).
children_cpu() {
    times >"$WORK/times"
    printf -v "$1" '%s' "$(tail -1 "$WORK/times" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%.3f", s }')"
}
# Sum of a /proc/PID/status field (kB) over the given pids.
status_kb() {
    local field=$1 total=0 pid; shift
    for pid in "$@"; do
        total=$((total + $(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status")))
    done
    echo "$total"
}
# Open file descriptors summed over the given pids (0 for a pid that is gone).
fd_count() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)))
    done
    echo "$total"
}
# Drop a pid from the cleanup list once its process has been waited for.
forget_pid() {
    local keep=() pid
    for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# ---- the upstream -----------------------------------------------------------------------

"$UPSTREAM_BIN" 127.0.0.1:0 >"$WORK/upstream.log" 2>&1 &
UPSTREAM_PID=$!; PIDS+=("$UPSTREAM_PID")
UP_ADDR=$(listening_on "$WORK/upstream.log") \
    || { log "error: the load upstream did not start (see $OUT/logs/upstream.log)"; exit 1; }
UP_PORT=${UP_ADDR##*:}
log "upstream (examples/load_upstream.rs) on $UP_ADDR, pid $UPSTREAM_PID"

# ---- switchyard -------------------------------------------------------------------------

GW_PORT=$(free_port); ADMIN_PORT=$(free_port)
switchyard_toml "$GW_PORT" "$ADMIN_PORT" false >"$WORK/switchyard.toml"
"$GATEWAY_BIN" check --config "$WORK/switchyard.toml" >/dev/null
"$GATEWAY_BIN" serve --config "$WORK/switchyard.toml" >"$WORK/switchyard.log" 2>&1 &
GW_PID=$!; PIDS+=("$GW_PID")
wait_http "http://127.0.0.1:$ADMIN_PORT/healthz"
log "switchyard on 127.0.0.1:$GW_PORT, pid $GW_PID"

# ---- the hyper floor --------------------------------------------------------------------

# As many workers as Switchyard starts by default (one per CPU), each with its own runtime.
"$FLOOR_BIN" 127.0.0.1:0 "127.0.0.1:$UP_PORT" "$(nproc)" >"$WORK/hyper_floor.log" 2>&1 &
FLOOR_PID=$!; PIDS+=("$FLOOR_PID")
FLOOR_ADDR=$(listening_on "$WORK/hyper_floor.log") \
    || { log "error: the hyper floor did not start (see $OUT/logs/hyper_floor.log)"; exit 1; }
FLOOR_PORT=${FLOOR_ADDR##*:}
log "hyper floor (examples/hyper_floor.rs) on $FLOOR_ADDR, pid $FLOOR_PID"

# ---- nginx ------------------------------------------------------------------------------


# start_nginx DIR PORT: starts nginx on DIR/nginx.conf; sets NGINX_STARTED (master pid) and
# NGINX_STARTED_WORKERS, or returns 1 when it does not come up.
start_nginx() {
    local dir=$1 port=$2
    "$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir.log" 2>&1 &
    NGINX_STARTED=$!; PIDS+=("$NGINX_STARTED")
    wait_http "http://127.0.0.1:$port/" || return 1
    sleep 0.2
    mapfile -t NGINX_STARTED_WORKERS < <(pgrep -P "$NGINX_STARTED")
    PIDS+=("${NGINX_STARTED_WORKERS[@]}")
}

NGINX_PORT=""; NGINX_PID=""; NGINX_WORKERS=()
if [ -n "$NGINX_BIN" ]; then
    NGINX_PORT=$(free_port)
    nginx_conf "$WORK/nginx" "$NGINX_PORT" 4096
    if start_nginx "$WORK/nginx" "$NGINX_PORT"; then
        NGINX_PID=$NGINX_STARTED; NGINX_WORKERS=("${NGINX_STARTED_WORKERS[@]}")
        log "nginx $("$NGINX_BIN" -v 2>&1 | sed 's/.*version: //') on 127.0.0.1:$NGINX_PORT, master $NGINX_PID, workers ${NGINX_WORKERS[*]}"
    else
        skip "nginx column (nginx did not start; see $OUT/logs/error.log)"
        NGINX_PORT=""
    fi
fi

TARGETS=(direct switchyard floor)
[ -n "$NGINX_PORT" ] && TARGETS+=(nginx)
port_of() { case $1 in direct) echo "$UP_PORT";; switchyard) echo "$GW_PORT";; floor) echo "$FLOOR_PORT";; nginx) echo "$NGINX_PORT";; esac; }
# The processes whose CPU and memory count as "the proxy".
proxy_pids() { case $1 in direct) ;; switchyard) echo "$GW_PID";; floor) echo "$FLOOR_PID";; nginx) echo "${NGINX_WORKERS[*]}";; esac; }

# ---- request bodies (wrk lua scripts) ---------------------------------------------------

SSE_BODY='{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Tell me a short story about a dragon who draws maps."}]}'

# wrk's done() prints one machine-readable line (latencies in microseconds).
WRK_DONE='
function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"seconds\":%.3f,\"rps\":%.1f,\"p50_us\":%d,\"p75_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"p999_us\":%d,\"max_us\":%d,\"errors\":%d,\"non_2xx\":%d}\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
'
{
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    printf 'wrk.body = [==[%s]==]\n' "$CHAT_BODY"
    echo "$WRK_DONE"
} >"$WORK/chat.lua"
{
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    # Exactly 1 MiB: one user message padded with a repeated sentence.
    echo 'local head = [[{"model":"gpt-4o","messages":[{"role":"user","content":"]]'
    echo 'local tail = [["}]}]]'
    echo 'local fill = string.rep("The quick brown fox jumps over the lazy dog. ", 30000)'
    echo 'wrk.body = head .. string.sub(fill, 1, 1048576 - #head - #tail) .. tail'
    echo "$WRK_DONE"
} >"$WORK/big.lua"
CHAT_BYTES=${#CHAT_BODY}
# The same bodies for the load client.
printf '%s' "$CHAT_BODY" >"$WORK/chat.json"
printf '%s' "$SSE_BODY" >"$WORK/sse.json"

# ---- measurements -----------------------------------------------------------------------

RUNS=$WORK/runs.jsonl
: >"$RUNS"

# run_wrk ROUND TARGET TEST CONNS SCRIPT [--latency]: one wrk run, with CPU of the proxy and of
# the upstream measured around it; appends one JSON line to $RUNS.
run_wrk() {
    local round=$1 target=$2 test=$3 conns=$4 script=$5
    local port pids p0 u0 w0 p1 u1 w1 line
    port=$(port_of "$target"); pids=$(proxy_pids "$target")
    # shellcheck disable=SC2086
    p0=$(cpu_ticks $pids); u0=$(cpu_ticks "$UPSTREAM_PID"); children_cpu w0
    line=$(wrk -t1 -c"$conns" -d"${DURATION}s" -s "$script" \
        "http://127.0.0.1:$port/v1/chat/completions" | sed -n 's/^WRKJSON //p')
    # shellcheck disable=SC2086
    p1=$(cpu_ticks $pids); u1=$(cpu_ticks "$UPSTREAM_PID"); children_cpu w1
    [ -n "$line" ] || { log "error: wrk printed no result for $target $test"; exit 1; }
    jq -c --argjson round "$round" --arg target "$target" --arg test "$test" \
        --argjson conns "$conns" --argjson pt "$((p1 - p0))" --argjson ut "$((u1 - u0))" \
        --argjson hz "$CLK_TCK" --argjson wrk_cpu "$(awk -v a="$w0" -v b="$w1" 'BEGIN {print b - a}')" --argjson has_proxy "$([ -n "$pids" ] && echo true || echo false)" '
        . + {round: $round, target: $target, test: $test, connections: $conns,
             proxy_cpu_s_per_10k: (if $has_proxy then ($pt / $hz) / (.requests / 10000) else null end),
             upstream_cpu_s_per_10k: (($ut / $hz) / (.requests / 10000)),
             loadgen_cpu_cores: ($wrk_cpu / .seconds)}' <<<"$line" >>"$RUNS"
    local bad
    bad=$(jq -r 'select(.errors > 0 or .non_2xx > 0) | "\(.errors) socket errors, \(.non_2xx) non-2xx"' <<<"$line")
    [ -z "$bad" ] || log "WARNING: $target $test round $round: $bad"
    jq -r '"  \(.target) \(.test): \(.rps|floor) req/s, p50 \(.p50_us) µs, p99 \(.p99_us) µs, wrk used \(.loadgen_cpu_cores * 100 | round)% of a core"' <<<"$(tail -1 "$RUNS")" >&2
}

# run_sse ROUND TARGET: SSE_N streamed requests with curl, one connection each; median time to
# the first byte of the response and to the end of the stream.
run_sse() {
    local round=$1 target=$2 port out
    port=$(port_of "$target")
    out=$WORK/sse-$target-$round.txt
    for _ in $(seq "$SSE_N"); do
        curl -s -N -o /dev/null -H 'content-type: application/json' --data-raw "$SSE_BODY" \
            -w '%{http_code} %{time_starttransfer} %{time_total}\n' \
            "http://127.0.0.1:$port/v1/chat/completions"
    done >"$out"
    awk -v round="$round" -v target="$target" '
        { n++; if ($1 != 200) bad++; t[n] = $2 * 1e6; tot[n] = $3 * 1e6 }
        function median(a, n,   i, j, x) {
            for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x }
            return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
        }
        END { printf "{\"round\":%d,\"target\":\"%s\",\"test\":\"sse\",\"requests\":%d,\"non_200\":%d,\"ttfb_p50_us\":%.0f,\"total_p50_us\":%.0f}\n",
              round, target, n, bad + 0, median(t, n), median(tot, n) }' "$out" >>"$RUNS"
    jq -r '"  \(.target) sse: ttfb p50 \(.ttfb_p50_us) µs, whole stream p50 \(.total_p50_us) µs, \(.non_200) non-200"' <<<"$(tail -1 "$RUNS")" >&2
}

# run_rate ROUND TARGET: RATE requests per second for DURATION seconds on RATE_CONNS
# connections (open loop, coordinated omission corrected); appends one JSON line to $RUNS.
run_rate() {
    local round=$1 target=$2 port pids p0 p1 w0 w1 line
    port=$(port_of "$target"); pids=$(proxy_pids "$target")
    # shellcheck disable=SC2086
    p0=$(cpu_ticks $pids); children_cpu w0
    line=$("$CLIENT_BIN" rate "127.0.0.1:$port" --rate "$RATE" --duration "$DURATION" \
        --connections "$RATE_CONNS" --body "$WORK/chat.json" 2>>"$WORK/load_client.log" || true)
    # shellcheck disable=SC2086
    p1=$(cpu_ticks $pids); children_cpu w1
    [ -n "$line" ] || { log "error: load_client printed no result for $target rate (see $OUT/logs/load_client.log)"; exit 1; }
    jq -c --argjson round "$round" --arg target "$target" --argjson pt "$((p1 - p0))" \
        --argjson hz "$CLK_TCK" --argjson gen_cpu "$(awk -v a="$w0" -v b="$w1" 'BEGIN {print b - a}')" \
        --argjson has_proxy "$([ -n "$pids" ] && echo true || echo false)" '
        . + {round: $round, target: $target, test: "rate",
             proxy_cpu_cores: (if $has_proxy and .seconds > 0 then ($pt / $hz) / .seconds else null end),
             loadgen_cpu_cores: (if .seconds > 0 then $gen_cpu / .seconds else null end)}' <<<"$line" >>"$RUNS"
    local bad
    bad=$(jq -r 'select(.errors > 0 or .non_2xx > 0 or .unsent > 0) | "\(.errors) errors, \(.non_2xx) non-2xx, \(.unsent) never sent"' <<<"$line")
    [ -z "$bad" ] || log "WARNING: $target rate round $round: $bad"
    jq -r '"  \(.target) rate: \(.rps|floor) req/s achieved, p50 \(.p50_us) µs, p99 \(.p99_us) µs, p99.9 \(.p999_us) µs, max \(.max_us) µs"' <<<"$(tail -1 "$RUNS")" >&2
}

declare -A IDLE_RSS_KB
for t in "${TARGETS[@]}"; do
    # shellcheck disable=SC2046
    [ "$t" = direct ] || IDLE_RSS_KB[$t]=$(status_kb VmRSS $(proxy_pids "$t"))
done

log "warm-up (1 s per target)"
for t in "${TARGETS[@]}"; do
    wrk -t1 -c"$SAT_CONNS" -d1s -s "$WORK/chat.lua" "http://127.0.0.1:$(port_of "$t")/v1/chat/completions" >/dev/null
done

for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS: throughput, 1.2 KB chat, wrk -t1 -c$SAT_CONNS -d${DURATION}s"
    for t in "${TARGETS[@]}"; do run_wrk "$round" "$t" saturation "$SAT_CONNS" "$WORK/chat.lua"; done
    log "round $round/$ROUNDS: latency at concurrency 1, wrk -t1 -c1 -d${DURATION}s"
    for t in "${TARGETS[@]}"; do run_wrk "$round" "$t" c1 1 "$WORK/chat.lua"; done
    log "round $round/$ROUNDS: latency at a fixed rate, $RATE req/s on $RATE_CONNS conns for ${DURATION}s (load_client rate)"
    for t in "${TARGETS[@]}"; do run_rate "$round" "$t"; done
    log "round $round/$ROUNDS: 1 MiB request bodies, wrk -t1 -c$BIG_CONNS -d${DURATION}s"
    for t in "${TARGETS[@]}"; do run_wrk "$round" "$t" big "$BIG_CONNS" "$WORK/big.lua"; done
    if [ "$HAVE_CURL" = 1 ]; then
        log "round $round/$ROUNDS: SSE time to first byte, $SSE_N curl requests"
        for t in "${TARGETS[@]}"; do run_sse "$round" "$t"; done
    fi
done

# Peak RSS after all the load.
PEAK_JSON='{}'
IDLE_JSON='{}'
for t in "${TARGETS[@]}"; do
    [ "$t" = direct ] && continue
    # shellcheck disable=SC2046
    peak=$(status_kb VmHWM $(proxy_pids "$t"))
    PEAK_JSON=$(jq -c --arg t "$t" --argjson v "$peak" '. + {($t): ($v / 1024)}' <<<"$PEAK_JSON")
    IDLE_JSON=$(jq -c --arg t "$t" --argjson v "${IDLE_RSS_KB[$t]}" '. + {($t): ($v / 1024)}' <<<"$IDLE_JSON")
done
UPSTREAM_PEAK_MB=$(awk '{print $1 / 1024}' <<<"$(status_kb VmHWM "$UPSTREAM_PID")")

# ---- idle streams -----------------------------------------------------------------------

# The pids among the given ones that still run.
alive() { local pid; for pid in "$@"; do [ -d "/proc/$pid" ] && echo "$pid"; done; return 0; }

# run_hold TARGET PORT UPSTREAM_PROTOCOL [PID...]: IDLE_N streaming requests held open at once
# through PORT, each idle after its first SSE event; RSS and open files of the proxy PIDs (and
# of the upstream) before and while they are open. Appends one JSON line to $RUNS; a run that
# opens fewer streams reports how many it reached.
run_hold() {
    local target=$1 port=$2 proto=$3; shift 3
    local in=$WORK/hold-$target.in out=$WORK/hold-$target.out
    local rss0 up0 cpid fd ready="" done_line="" rss1=null up1 pfds=null ufds cfds=0 per_fds="[]" pid
    # shellcheck disable=SC2046
    rss0=$(status_kb VmRSS $(alive "$@")); up0=$(status_kb VmRSS "$UPSTREAM_PID")
    rm -f "$in"; mkfifo "$in"
    "$CLIENT_BIN" hold "127.0.0.1:$port" --streams "$IDLE_N" --body "$WORK/sse.json" \
        --open-timeout "$IDLE_OPEN_TIMEOUT" --max-hold 120 <"$in" >"$out" 2>>"$WORK/load_client.log" &
    cpid=$!; PIDS+=("$cpid")
    exec {fd}>"$in"   # the client's stdin: closing it ends the test
    for _ in $(seq $(( (IDLE_OPEN_TIMEOUT + 10) * 10 ))); do
        ready=$(sed -n 's/^READY //p' "$out")
        [ -n "$ready" ] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -n "$ready" ]; then
        sleep 1   # let the proxies settle before reading their memory
        # shellcheck disable=SC2046
        rss1=$(status_kb VmRSS $(alive "$@")); pfds=$(fd_count "$@")
        per_fds=$(for pid in "$@"; do fd_count "$pid"; done | jq -sc .)
        cfds=$(fd_count "$cpid")
    fi
    up1=$(status_kb VmRSS "$UPSTREAM_PID"); ufds=$(fd_count "$UPSTREAM_PID")
    exec {fd}>&-
    for _ in $(seq 150); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    forget_pid "$cpid"
    done_line=$(sed -n 's/^DONE //p' "$out")
    [ -n "$ready" ] || ready="{\"streams\":$IDLE_N,\"opened\":0,\"failed\":0,\"pending\":$IDLE_N,\"seconds\":null,\"first_error\":\"no READY line from load_client (see $OUT/logs/load_client.log)\"}"
    [ $# -gt 0 ] || { rss0=null; rss1=null; pfds=null; }
    jq -c --arg target "$target" --arg proto "$proto" --argjson rss0 "$rss0" --argjson rss1 "$rss1" \
        --argjson up0 "$up0" --argjson up1 "$up1" --argjson pfds "$pfds" --argjson per_fds "$per_fds" \
        --argjson ufds "$ufds" --argjson cfds "$cfds" --argjson done "${done_line:-null}" '
        def mib: if . == null then null else . / 1024 end;
        def per1k(a; b): if a == null or b == null or .opened == 0 then null else (b - a) / 1024 / .opened * 1000 end;
        { round: 0, target: $target, test: "idle_streams", upstream_protocol: $proto,
          streams: .streams, opened: .opened, failed: .failed, pending: .pending,
          open_seconds: .seconds, first_error: .first_error,
          ended_early: (if $done == null then null else $done.ended_early end),
          rss_before_mib: ($rss0 | mib), rss_mib: ($rss1 | mib), mib_per_1k_streams: per1k($rss0; $rss1),
          proxy_fds: $pfds, proxy_fds_per_process: $per_fds, client_fds: $cfds,
          upstream_rss_before_mib: ($up0 | mib), upstream_rss_mib: ($up1 | mib),
          upstream_mib_per_1k_streams: per1k($up0; $up1), upstream_fds: $ufds }' <<<"$ready" >>"$RUNS"
    [ "$(jq -r .opened <<<"$ready")" = "$IDLE_N" ] \
        || log "WARNING: $target idle streams: opened $(jq -r '"\(.opened) of \(.streams), \(.failed) failed; first error: \(.first_error)"' <<<"$ready")"
    jq -r '"  \(.target) idle streams (upstream \(.upstream_protocol)): \(.opened)/\(.streams) open in \(.open_seconds // "?") s; proxy RSS \(.rss_before_mib // "—") -> \(.rss_mib // "—") MiB, \(.proxy_fds // "—") fds \(.proxy_fds_per_process); upstream RSS \(.upstream_rss_mib) MiB, \(.upstream_fds) fds"' <<<"$(tail -1 "$RUNS")" >&2
    # Let the proxy and the upstream close their side before the next target.
    for _ in $(seq 100); do
        [ "$(fd_count "$UPSTREAM_PID")" -lt 200 ] && [ "$(fd_count "$@")" -lt 200 ] && break
        sleep 0.1
    done
}

HOLD_NOTES=()
if [ "$IDLE_N" -gt 0 ]; then
    log "idle streams: $IDLE_N streaming requests held open at once per target (fd limit $FD_LIMIT)"
    # The proxies are second, fresh instances, started before any stream opens.
    # Switchyard: its primary upstream is h2c, so that the streams share a few upstream
    # connections (one process holding 10k client plus 10k upstream HTTP/1.1 connections would
    # pass the open-file limit).
    GW2_PORT=$(free_port); ADMIN2_PORT=$(free_port); GW2_PID=""
    switchyard_toml "$GW2_PORT" "$ADMIN2_PORT" true >"$WORK/switchyard-h2.toml"
    "$GATEWAY_BIN" serve --config "$WORK/switchyard-h2.toml" >"$WORK/switchyard-h2.log" 2>&1 &
    GW2_PID=$!; PIDS+=("$GW2_PID")
    if wait_http "http://127.0.0.1:$ADMIN2_PORT/healthz"; then
        log "switchyard (h2c upstream) on 127.0.0.1:$GW2_PORT, pid $GW2_PID"
    else
        skip "switchyard idle streams (the h2c instance did not start; see $OUT/logs/switchyard-h2.log)"
        GW2_PID=""
    fi
    # nginx: its workers may hold a client and an upstream connection per stream (HTTP/1.1
    # upstream, as in the other tests).
    NGINX_HOLD_PORT=""; NGINX_HOLD_WORKERS=()
    nofile=$FD_HARD_LIMIT; [ "$nofile" = unlimited ] && nofile=65536
    if [ -n "$NGINX_PORT" ]; then
        NGINX_HOLD_PORT=$(free_port)
        nginx_conf "$WORK/nginx-hold" "$NGINX_HOLD_PORT" 16384 "worker_rlimit_nofile $nofile;"
        if start_nginx "$WORK/nginx-hold" "$NGINX_HOLD_PORT"; then
            NGINX_HOLD_WORKERS=("${NGINX_STARTED_WORKERS[@]}")
            log "nginx (idle streams) on 127.0.0.1:$NGINX_HOLD_PORT, master $NGINX_STARTED, workers ${NGINX_HOLD_WORKERS[*]}"
        else
            skip "nginx idle streams (the second nginx did not start; see $OUT/logs/nginx-hold-error.log)"
            NGINX_HOLD_PORT=""
        fi
    fi
    run_hold direct "$UP_PORT" http1
    if [ -n "$GW2_PID" ]; then
        run_hold switchyard "$GW2_PORT" h2c "$GW2_PID"
        HOLD_NOTES+=("switchyard: a second instance whose upstream is HTTP/2 cleartext (\`http2 = true\`), because 10k client plus 10k HTTP/1.1 upstream connections would pass the $FD_HARD_LIMIT open-file limit")
    fi
    if [ -n "$NGINX_HOLD_PORT" ]; then
        run_hold nginx "$NGINX_HOLD_PORT" http1 "${NGINX_HOLD_WORKERS[@]}"
        HOLD_NOTES+=("nginx: a second instance with worker_connections 16384 and worker_rlimit_nofile $nofile (HTTP/1.1 upstream)")
    fi
else
    skip "idle streams (LOAD_IDLE_STREAMS=0)"
fi

# ---- report -----------------------------------------------------------------------------

mkdir -p "$OUT"
ELAPSED=$(( $(date +%s) - START ))
SKIPS_JSON=$(printf '%s\n' "${SKIPS[@]+"${SKIPS[@]}"}" | jq -R . | jq -sc 'map(select(. != ""))')
HOLD_NOTES_JSON=$(printf '%s\n' "${HOLD_NOTES[@]+"${HOLD_NOTES[@]}"}" | jq -R . | jq -sc 'map(select(. != ""))')
NGINX_VERSION=$([ -n "$NGINX_PORT" ] && "$NGINX_BIN" -v 2>&1 | sed 's/.*version: //' || echo "")
jq -s \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg host "$(uname -srm)" \
    --argjson cpus "$(nproc)" --arg cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
    --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --arg wrk "$(wrk -v 2>&1 | head -1)" --arg nginx "$NGINX_VERSION" \
    --argjson duration "$DURATION" --argjson rounds "$ROUNDS" --argjson sse_n "$SSE_N" \
    --argjson chat_bytes "$CHAT_BYTES" --argjson peak "$PEAK_JSON" --argjson idle "$IDLE_JSON" \
    --argjson up_peak "$UPSTREAM_PEAK_MB" --argjson skipped "$SKIPS_JSON" --argjson elapsed "$ELAPSED" \
    --argjson rate "$RATE" --argjson rate_conns "$RATE_CONNS" --argjson idle_n "$IDLE_N" \
    --arg fd_limit "$FD_LIMIT" --arg fd_hard "$FD_HARD_LIMIT" --argjson hold_notes "$HOLD_NOTES_JSON" '
    def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    . as $runs
    | ([$runs[].target] | unique) as $targets
    | def pick($t; $test; f): [$runs[] | select(.target == $t and .test == $test) | f | select(. != null)];
      def summary($t):
        { saturation: { rps: (pick($t; "saturation"; .rps) | median), rps_rounds: pick($t; "saturation"; .rps),
                        proxy_cpu_s_per_10k: (pick($t; "saturation"; .proxy_cpu_s_per_10k) | median),
                        upstream_cpu_s_per_10k: (pick($t; "saturation"; .upstream_cpu_s_per_10k) | median),
                        loadgen_cpu_cores: (pick($t; "saturation"; .loadgen_cpu_cores) | median),
                        p50_us: (pick($t; "saturation"; .p50_us) | median), p99_us: (pick($t; "saturation"; .p99_us) | median) },
          c1: ({ rps: (pick($t; "c1"; .rps) | median) } + ([ "p50_us", "p75_us", "p90_us", "p99_us", "p999_us" ]
                | map({ (.): (. as $k | pick($t; "c1"; .[$k]) | median) }) | add)
                + { p50_rounds: pick($t; "c1"; .p50_us), p99_rounds: pick($t; "c1"; .p99_us) }),
          big_1mib: { rps: (pick($t; "big"; .rps) | median), rps_rounds: pick($t; "big"; .rps),
                      p50_us: (pick($t; "big"; .p50_us) | median), p99_us: (pick($t; "big"; .p99_us) | median) },
          sse: { ttfb_p50_us: (pick($t; "sse"; .ttfb_p50_us) | median), ttfb_rounds: pick($t; "sse"; .ttfb_p50_us),
                 total_p50_us: (pick($t; "sse"; .total_p50_us) | median) },
          rate: (([ "rps", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us", "proxy_cpu_cores", "loadgen_cpu_cores" ]
                  | map({ (.): (. as $k | pick($t; "rate"; .[$k]) | median) }) | add)
                 + { errors: (pick($t; "rate"; .errors) | add), non_2xx: (pick($t; "rate"; .non_2xx) | add),
                     unsent: (pick($t; "rate"; .unsent) | add),
                     p50_rounds: pick($t; "rate"; .p50_us), p99_rounds: pick($t; "rate"; .p99_us) }),
          idle_streams: ([$runs[] | select(.target == $t and .test == "idle_streams")] | last),
          idle_rss_mib: $idle[$t], peak_rss_mib: $peak[$t] };
    ($targets | map({ (.): summary(.) }) | add) as $s
    | def ratio(a; b): if a == null or b == null then null else a / b end;
      def diff(a; b): if a == null or b == null then null else a - b end;
      # Per proxy: its figure minus direct (null where either is missing).
      def added(f): reduce ("switchyard", "floor", "nginx") as $x ({}; . + { ($x): diff($s[$x] | f; $s.direct | f) });
    { meta: { date: $date, commit: $commit, host: $host, cpus: $cpus, cpu: $cpu, wrk: $wrk, nginx: $nginx,
              duration_s: $duration, rounds: $rounds, sse_requests: $sse_n, chat_body_bytes: $chat_bytes,
              elapsed_s: $elapsed, upstream_peak_rss_mib: $up_peak, skipped: $skipped,
              rate_rps: $rate, rate_connections: $rate_conns, idle_streams: $idle_n,
              fd_limit: ($fd_limit | tonumber? // $fd_limit), fd_hard_limit: ($fd_hard | tonumber? // $fd_hard), idle_streams_instances: $hold_notes,
              rate_load_generator: "examples/load_client.rs rate: one current-thread tokio runtime, open loop on a 1 ms timer (requests leave in bursts of about rate/1000), latency from the due time when the connection was still busy, else from the send",
              load_generator: "wrk -t1 (one thread), sharing the machine with the proxy and the upstream" },
      summary: $s,
      comparisons: {
        throughput_switchyard_over_nginx: ratio($s.switchyard.saturation.rps; $s.nginx.saturation.rps),
        throughput_switchyard_over_direct: ratio($s.switchyard.saturation.rps; $s.direct.saturation.rps),
        throughput_nginx_over_direct: ratio($s.nginx.saturation.rps; $s.direct.saturation.rps),
        throughput_floor_over_nginx: ratio($s.floor.saturation.rps; $s.nginx.saturation.rps),
        throughput_switchyard_over_floor: ratio($s.switchyard.saturation.rps; $s.floor.saturation.rps),
        added_c1_p50_us: added(.c1.p50_us),
        added_c1_p99_us: added(.c1.p99_us),
        added_c1_p999_us: added(.c1.p999_us),
        added_big_p50_us: added(.big_1mib.p50_us),
        added_sse_ttfb_us: added(.sse.ttfb_p50_us),
        added_rate_p50_us: added(.rate.p50_us),
        added_rate_p99_us: added(.rate.p99_us),
        added_rate_p999_us: added(.rate.p999_us),
        idle_streams_rss_mib: { switchyard: $s.switchyard.idle_streams.rss_mib, nginx: $s.nginx.idle_streams.rss_mib },
        mib_per_1k_streams: { switchyard: $s.switchyard.idle_streams.mib_per_1k_streams, nginx: $s.nginx.idle_streams.mib_per_1k_streams },
        streams_memory_switchyard_over_nginx: ratio($s.switchyard.idle_streams.mib_per_1k_streams; $s.nginx.idle_streams.mib_per_1k_streams),
        cpu_switchyard_over_nginx: ratio($s.switchyard.saturation.proxy_cpu_s_per_10k; $s.nginx.saturation.proxy_cpu_s_per_10k),
        cpu_floor_over_nginx: ratio($s.floor.saturation.proxy_cpu_s_per_10k; $s.nginx.saturation.proxy_cpu_s_per_10k),
        cpu_switchyard_over_floor: ratio($s.switchyard.saturation.proxy_cpu_s_per_10k; $s.floor.saturation.proxy_cpu_s_per_10k)
      },
      runs: $runs }' "$RUNS" >"$OUT/results.json"

# Markdown: one row per metric, medians of the rounds (each round in brackets where it matters).
jq -r '
    def f0: if . == null then "—" else (. | round | tostring) end;
    def f2: if . == null then "—" else ((. * 100 | round) / 100 | tostring) end;
    def f3: if . == null then "—" else ((. * 1000 | round) / 1000 | tostring) end;
    def rounds(a): if (a | length) > 1 then " (" + (a | map(round | tostring) | join(", ")) + ")" else "" end;
    def plus: if . == null then "—" elif . >= 0 then "+" + (. | round | tostring) else (. | round | tostring) end;
    .summary as $s | .comparisons as $c | .meta as $m
    | ["direct", "switchyard", "floor", "nginx"] as $t
    # A row of figures over direct: "a / b / …" per proxy, from the comparisons named in keys.
    | def added(name; fields): "| " + name + " | — | "
        + (["switchyard", "floor", "nginx"] | map(. as $x | fields | map($c[.][$x] | plus) | join(" / ")) | join(" | ")) + " |";
      def row(name; f): "| " + name + " | " + ($t | map(. as $x | if $s[$x] == null then "—" else ($s[$x] | f) end) | join(" | ")) + " |";
    "Load harness: \($m.date), commit \($m.commit), \($m.cpus) CPUs (\($m.cpu)), \($m.wrk | split(" [")[0]), nginx \(if $m.nginx == "" then "absent" else $m.nginx end), open-file limit \($m.fd_limit).",
    "Medians of \($m.rounds) rounds of \($m.duration_s) s each (each round in brackets); one single-threaded load generator (`wrk -t1`, or `load_client` for the fixed rate and the idle streams) on the same machine.",
    "",
    "| measurement | direct | switchyard | hyper floor | nginx |",
    "|---|---|---|---|---|",
    row("throughput, \($m.chat_body_bytes) B chat, 32 conns (req/s)"; (.saturation.rps | f0) + rounds(.saturation.rps_rounds)),
    row("latency at saturation p50 / p99 (µs)"; (.saturation.p50_us | f0) + " / " + (.saturation.p99_us | f0)),
    row("latency c=1 p50 (µs)"; (.c1.p50_us | f0) + rounds(.c1.p50_rounds)),
    row("latency c=1 p75 / p90 (µs)"; (.c1.p75_us | f0) + " / " + (.c1.p90_us | f0)),
    row("latency c=1 p99 (µs)"; (.c1.p99_us | f0) + rounds(.c1.p99_rounds)),
    row("latency c=1 p99.9 (µs)"; .c1.p999_us | f0),
    added("added latency c=1 p50 / p99 / p99.9 over direct (µs)"; ["added_c1_p50_us", "added_c1_p99_us", "added_c1_p999_us"]),
    row("fixed rate \($m.rate_rps) req/s, \($m.rate_connections) conns: achieved req/s (errors + non-2xx)"; (.rate.rps | f0) + " (" + ((.rate.errors // 0) + (.rate.non_2xx // 0) | tostring) + ")"),
    row("latency at \($m.rate_rps) req/s p50 (µs)"; (.rate.p50_us | f0) + rounds(.rate.p50_rounds)),
    row("latency at \($m.rate_rps) req/s p90 (µs)"; .rate.p90_us | f0),
    row("latency at \($m.rate_rps) req/s p99 (µs)"; (.rate.p99_us | f0) + rounds(.rate.p99_rounds)),
    row("latency at \($m.rate_rps) req/s p99.9 / max (µs)"; (.rate.p999_us | f0) + " / " + (.rate.max_us | f0)),
    added("added latency at \($m.rate_rps) req/s p50 / p99 / p99.9 over direct (µs)"; ["added_rate_p50_us", "added_rate_p99_us", "added_rate_p999_us"]),
    row("proxy CPU at \($m.rate_rps) req/s (cores)"; .rate.proxy_cpu_cores | f2),
    row("proxy CPU s per 10k requests (saturation)"; .saturation.proxy_cpu_s_per_10k | f3),
    row("upstream CPU s per 10k requests (saturation)"; .saturation.upstream_cpu_s_per_10k | f3),
    row("load generator (wrk) CPU at saturation (cores)"; .saturation.loadgen_cpu_cores | f2),
    row("proxy RSS idle / peak (MiB)"; (.idle_rss_mib | f2) + " / " + (.peak_rss_mib | f2)),
    row("1 MiB bodies, 4 conns (req/s)"; (.big_1mib.rps | f0) + rounds(.big_1mib.rps_rounds)),
    row("1 MiB bodies p50 / p99 (µs)"; (.big_1mib.p50_us | f0) + " / " + (.big_1mib.p99_us | f0)),
    added("added 1 MiB p50 over direct (µs)"; ["added_big_p50_us"]),
    row("SSE time to first byte p50 (µs)"; (.sse.ttfb_p50_us | f0) + rounds(.sse.ttfb_rounds)),
    row("SSE whole stream p50 (µs)"; .sse.total_p50_us | f0),
    added("added SSE time to first byte over direct (µs)"; ["added_sse_ttfb_us"]),
    row("idle SSE streams open at once (of \($m.idle_streams)), seconds to open"; if .idle_streams == null then "—" else (.idle_streams.opened | tostring) + ", " + (.idle_streams.open_seconds | f2) + " s" end),
    row("upstream protocol in the idle-streams test"; .idle_streams.upstream_protocol // "—"),
    row("proxy RSS before / with the streams open (MiB)"; (.idle_streams.rss_before_mib | f2) + " / " + (.idle_streams.rss_mib | f2)),
    row("proxy memory per 1,000 idle streams (MiB)"; .idle_streams.mib_per_1k_streams | f2),
    row("proxy open files with the streams open"; .idle_streams.proxy_fds | f0),
    row("upstream (mock) RSS before / with the streams open (MiB, carried over between targets)"; (.idle_streams.upstream_rss_before_mib | f2) + " / " + (.idle_streams.upstream_rss_mib | f2)),
    "",
    "Throughput switchyard / nginx: **\($c.throughput_switchyard_over_nginx | f2)**, switchyard / direct: **\($c.throughput_switchyard_over_direct | f2)**, nginx / direct: \($c.throughput_nginx_over_direct | f2). Proxy CPU per request switchyard / nginx: \($c.cpu_switchyard_over_nginx | f2).",
    "Hyper floor (`examples/hyper_floor.rs`: hyper server to hyper client, one upstream connection per client connection, nothing inspected, nothing counted): throughput hyper floor / nginx \($c.throughput_floor_over_nginx | f2), switchyard / hyper floor \($c.throughput_switchyard_over_floor | f2); CPU per request hyper floor / nginx \($c.cpu_floor_over_nginx | f2), switchyard / hyper floor \($c.cpu_switchyard_over_floor | f2). The floor runs no idle-streams test.",
    "Fixed rate: `load_client rate`, open loop, coordinated omission corrected; requests leave on a 1 ms timer (bursts of about \($m.rate_rps / 1000 | round)), so these percentiles include that burstiness for every column alike.",
    (if ($m.idle_streams_instances | length) > 0 then "Idle streams (open-file limit \($m.fd_limit), hard \($m.fd_hard_limit)): fresh proxy instances; " + ($m.idle_streams_instances | join("; ")) + ". Memory per stream compares across columns; the RSS includes each instance'"'"'s idle baseline." else empty end),
    (if ($m.skipped | length) > 0 then "", "Skipped: " + ($m.skipped | join("; ")) else empty end)
' "$OUT/results.json" >"$OUT/results.md"

echo
cat "$OUT/results.md"
echo
log "done in ${ELAPSED}s: $OUT/results.md, $OUT/results.json"
