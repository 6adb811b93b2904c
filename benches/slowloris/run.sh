#!/usr/bin/env bash
# Hostile idle and slow clients (issue #7, item 7): does legitimate traffic keep its latency,
# and the gateway its memory, while thousands of connections try to waste it?
#
#   bash benches/slowloris/run.sh
#
# Starts the load harness's fast mock upstream (examples/load_upstream.rs) and a large-response
# upstream (`examples/slowloris.rs upstream`: 1 MiB SSE answers, for slow readers). Then, for
# each attack kind, a fresh gateway (release build, config/reference.toml's limits and timeouts
# with header_read_timeout and send_timeout set to 30 s, plus SLOWLORIS_CONFIG_EXTRA), and
# SLOWLORIS_ROUNDS rounds (default 3) of:
#
# 1. baseline: legitimate traffic alone at a fixed rate (`examples/load_client.rs rate`: open
#    loop, coordinated omission corrected; 2,000 req/s of 1.2 KB chat requests, 5 s);
# 2. 10,000 hostile connections of the kind (`examples/slowloris.rs attack`), reopened 1 s after
#    the gateway closes them (as slowhttptest does), while the legitimate rate runs 5 s more:
#      idle       connects, sends nothing
#      slowloris  a request head that never ends, one byte every 5 s
#      slowpost   a complete head (content-length 32 MiB, the body limit), one body byte every 5 s
#      slowread   a streaming request for 1 MiB, 4 KiB receive buffer, reads 64 bytes every 5 s
#      h2idle     the HTTP/2 preface and SETTINGS, then nothing (SETTINGS and PING acknowledged)
#      h2slowread (not in the default phases) the slow reader over HTTP/2: SLOWLORIS_H2_STREAMS
#                 streams of 1 MiB per connection, the largest flow-control windows, 4 KiB receive
#                 buffer, 64 bytes read every 5 s; each stream holds an upstream connection
#      mixed      all of the above plus keepalive (one complete request, then an idle keep-alive
#                 connection), 10,000 in all
# 3. held: once the gateway is quiet again (under 0.2 of a core), the legitimate rate for 5 s:
#    p50 / p99 / p99.9 and the p99 over this round's baseline;
# 4. the last round only: the attack stays until both timeouts have fired (35 s after it began)
#    while the legitimate rate runs, which measures what the gateway's closing them costs;
# 5. the attackers leave.
# A phase reports the medians over its rounds: one 5 s window's p99 on this shared 2-core
# machine swings 2-4x by itself, so a single window against a single baseline says little.
# Throughout: the gateway's RSS (fresh, held, peak as the kernel marks it, after), virtual
# size, open files, client connections (switchyard_worker_connections), CPU, what it logged;
# which hostile connections it closed, after how long and with what; and the CPU other
# processes used, since p99 on a shared 2-core machine is noisy. The 0.5 s samples (memory,
# open files, connections, TCP memory) pause while legitimate traffic is measured (see
# `sampler`): peaks of open files, connections and TCP memory are the largest seen outside
# those windows (the held values are read just before the held window); peak RSS and virtual
# size are the kernel's own high-water marks.
#
# File descriptors: the soft limit is raised to the hard one. Each hostile connection costs the
# gateway one descriptor, and a slow reader two (its upstream HTTP/1.1 connection stays busy
# while it reads); a phase is cut down to what fits the limit (with 1,024 spare) and says so.
#
# Beware on a shared machine: 9,500 slow readers push the kernel's TCP buffer memory to its
# hard limit (net.ipv4.tcp_mem) for a few seconds, which drops loopback packets for every
# process on the machine, not only these.
#
# Loopback only; about 9 minutes after the build on a 2-core machine. Needs jq and curl
# (installed from the OS packages if missing, with root or passwordless sudo). Builds the
# gateway and the three examples in release mode unless LOAD_SKIP_BUILD=1, and stops
# everything it started on exit, even on failure. Results: target/slowloris/results.md and
# target/slowloris/results.json; the last generated config and the logs under target/slowloris/.
#
# Knobs (environment):
#   SLOWLORIS_CONNECTIONS      hostile connections per phase (default 10000)
#   SLOWLORIS_KINDS            phases, in order (default "idle slowloris slowpost slowread h2idle
#                              mixed"; also "keepalive" and "h2slowread")
#   SLOWLORIS_MIXED            the modes of "mixed" (default
#                              "idle,slowloris,slowpost,slowread,keepalive,h2idle")
#   SLOWLORIS_RATE             legitimate requests/s (default 2000)
#   SLOWLORIS_DURATION         seconds of legitimate traffic with the attack held (default 5)
#   SLOWLORIS_BASELINE         seconds of each phase's baseline (default 5)
#   SLOWLORIS_OPENING          seconds of legitimate traffic measured while an attack opens
#                              (default 5)
#   SLOWLORIS_RATE_CONNECTIONS keep-alive connections of the legitimate client (default 32)
#   SLOWLORIS_H2_STREAMS       streams per h2slowread connection (default 16)
#   SLOWLORIS_INTERVAL         seconds between a slow client's bytes (default 5)
#   SLOWLORIS_RECONNECT_DELAY  seconds before a closed hostile connection is reopened (default
#                              1; doubles up to 16 s while the gateway refuses them at once)
#   SLOWLORIS_ROUNDS           rounds per phase (default 3; see below)
#   SLOWLORIS_HEADER_TIMEOUT   limits.header_read_timeout (default "30s")
#   SLOWLORIS_SEND_TIMEOUT     limits.send_timeout (default "30s")
#   SLOWLORIS_POST_LENGTH      content-length of a slow POST (default 33554432 = max_body_bytes)
#   SLOWLORIS_SLOWREAD_BYTES   size of a slow reader's response (default 1048576)
#   SLOWLORIS_SLOWREAD_H2      true: the large-response upstream is h2c (default false)
#   SLOWLORIS_UPSTREAM_SNDBUF  SO_SNDBUF of the large-response upstream's sockets (default
#                              4096, 8 KiB once the kernel doubles it; 0: the kernel's
#                              autotuning). A real provider's send buffers are on another
#                              machine; here they would share this one's TCP memory
#                              (net.ipv4.tcp_mem) with the gateway's, so by default the mock
#                              keeps its own as small as it can and what
#                              is measured is the gateway. A loopback sender still queues up to
#                              one 64 KiB segment past it: ~44 KiB per slow reader's upstream
#                              connection, against ~165 KiB at 65536 (the default until
#                              2026-11-29), which put 1.5 GiB of the mock's own into the
#                              machine's TCP memory with 9,488 slow readers
#   SLOWLORIS_ATTACKER_NICE    nice level of the attacking process (default 10: it shares the
#                              machine; the point is the gateway, not a CPU race)
#   SLOWLORIS_CONFIG_EXTRA     TOML merged into the gateway's config: keys of a table that
#                              already exists ([server], [limits], [timeouts], …) replace or join
#                              its keys, new tables are appended. E.g.
#                              SLOWLORIS_CONFIG_EXTRA=$'[limits]\nmax_connections = 5000'
#   LOAD_SKIP_BUILD=1          use the release binaries already built
#   SLOWLORIS_GATEWAY_BIN      the gateway binary to run (default target/release/switchyard), e.g.
#                              an older build for a side-by-side comparison
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=benches/listening.sh
. "$ROOT/benches/listening.sh"
OUT=$ROOT/target/slowloris
N=${SLOWLORIS_CONNECTIONS:-10000}
KINDS=${SLOWLORIS_KINDS:-idle slowloris slowpost slowread h2idle mixed}
MIXED=${SLOWLORIS_MIXED:-idle,slowloris,slowpost,slowread,keepalive,h2idle}
H2_STREAMS=${SLOWLORIS_H2_STREAMS:-16}
RATE=${SLOWLORIS_RATE:-2000}
DURATION=${SLOWLORIS_DURATION:-5}
ROUNDS=${SLOWLORIS_ROUNDS:-3}
RATE_CONNS=${SLOWLORIS_RATE_CONNECTIONS:-32}
INTERVAL=${SLOWLORIS_INTERVAL:-5}
RECONNECT_DELAY=${SLOWLORIS_RECONNECT_DELAY:-1}
HEADER_TIMEOUT=${SLOWLORIS_HEADER_TIMEOUT:-30s}
SEND_TIMEOUT=${SLOWLORIS_SEND_TIMEOUT:-30s}
POST_LENGTH=${SLOWLORIS_POST_LENGTH:-33554432}
SLOWREAD_BYTES=${SLOWLORIS_SLOWREAD_BYTES:-1048576}
SLOWREAD_H2=${SLOWLORIS_SLOWREAD_H2:-false}
UPSTREAM_SNDBUF=${SLOWLORIS_UPSTREAM_SNDBUF:-4096}
NICE=${SLOWLORIS_ATTACKER_NICE:-10}
EXTRA=${SLOWLORIS_CONFIG_EXTRA:-}
OPENING=${SLOWLORIS_OPENING:-5}
BASE_SECONDS=${SLOWLORIS_BASELINE:-5}
# secs_of DURATION: seconds in "30s", "1500ms", "2m", "1h" (0 if it is none of these).
secs_of() { awk -v d="$1" 'BEGIN { n = d + 0; if (d ~ /^[0-9.]+ *ms$/) n /= 1000; else if (d ~ /^[0-9.]+ *m$/) n *= 60; else if (d ~ /^[0-9.]+ *h$/) n *= 3600; else if (d !~ /^[0-9.]+ *s$/) n = 0; print n }'; }
# The last round holds its attack until this many seconds after it began: both timeouts and 5 s.
CLOSE_AT=$(awk -v a="$(secs_of "$HEADER_TIMEOUT")" -v b="$(secs_of "$SEND_TIMEOUT")" 'BEGIN { if (a == 0 || b == 0) { print 0; exit } m = a > b ? a : b; print int(m + 5.999) }')
OPEN_TIMEOUT=30
SETTLE=1
SETTLE_MAX=30
# Kernel TCP buffer memory a round's baseline waits to be under (KiB; see wait_quiet).
TCP_QUIET_KB=65536
FD_SPARE=1024
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-slowloris.XXXXXX")
PIDS=()
T0=$(date +%s)
START=$T0

log() { printf '[slowloris +%ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }

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
    cp "$WORK"/switchyard.toml "$OUT/" 2>/dev/null || true
    cp "$WORK"/attack-*.out "$OUT/logs/" 2>/dev/null || true
    rm -rf "$WORK"
    if [ "$rc" -ne 0 ]; then log "failed (exit $rc); process logs kept in $OUT/logs"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools ------------------------------------------------------------------------------

missing=()
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else SUDO=(none); fi
    fi
    if [ "${SUDO[0]:-}" = none ] || ! command -v apt-get >/dev/null; then
        log "error: ${missing[*]} missing and not installable (need apt-get as root or passwordless sudo)"; exit 1
    fi
    log "installing ${missing[*]} from the OS packages"
    "${SUDO[@]}" apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || { log "error: apt-get install ${missing[*]} failed"; exit 1; }
fi

if [ "${LOAD_SKIP_BUILD:-0}" != 1 ]; then
    log "building the gateway, load_upstream, load_client and slowloris (release)"
    cargo build --release --quiet --bin switchyard --example load_upstream --example load_client --example slowloris
fi
BUILD_S=$(( $(date +%s) - T0 ))
START=$(date +%s)
GATEWAY_BIN=${SLOWLORIS_GATEWAY_BIN:-$ROOT/target/release/switchyard}
UPSTREAM_BIN=$ROOT/target/release/examples/load_upstream
CLIENT_BIN=$ROOT/target/release/examples/load_client
ATTACK_BIN=$ROOT/target/release/examples/slowloris
for b in "$GATEWAY_BIN" "$UPSTREAM_BIN" "$CLIENT_BIN" "$ATTACK_BIN"; do
    [ -x "$b" ] || { log "error: $b is missing (build it or drop LOAD_SKIP_BUILD)"; exit 1; }
done

# ---- file descriptors -------------------------------------------------------------------

FD_HARD=$(ulimit -Hn)
if [ "$FD_HARD" = unlimited ]; then ulimit -n 1048576 2>/dev/null || true; else ulimit -n "$FD_HARD"; fi
FD_LIMIT=$(ulimit -n)
log "open-file limit raised to $FD_LIMIT (hard $FD_HARD) for every process started here"

# ---- helpers ----------------------------------------------------------------------------

# free_port and wait_http: benches/listening.sh (sourced above).
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
    local rest
    rest=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    awk '{print $12 + $13}' <<<"$rest"
}
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# Open client connections the gateway counts (sum of switchyard_worker_connections).
gw_conns() {
    curl -s --max-time 2 "http://127.0.0.1:$ADMIN_PORT/metrics" \
        | awk '/^switchyard_worker_connections/ {s += $NF} END {print s + 0}'
}
# Kernel memory of every TCP socket on the machine (pages of /proc/net/sockstat), KiB.
tcp_mem_kb() { awk '$1 == "TCP:" {for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) * 4}' /proc/net/sockstat; }
forget_pid() {
    local keep=() pid
    for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# merge_toml BASE EXTRA: BASE with EXTRA merged in (see SLOWLORIS_CONFIG_EXTRA above).
merge_toml() {
    awk '
    function keyof(line,   k) { k = line; sub(/=.*/, "", k); gsub(/[ \t"]/, "", k); return k }
    function iskey(line) { return line ~ /^[ \t]*[A-Za-z0-9_."-]+[ \t]*=/ }
    function header(line,   h) { h = line; sub(/#.*/, "", h); gsub(/[ \t]/, "", h); return h }
    FNR == NR {
        if ($0 ~ /^[ \t]*\[\[/) { sec = "@" (++arrays); hdr[sec] = $0; order[++n] = sec; next }
        if ($0 ~ /^[ \t]*\[/) { sec = header($0); if (!(sec in hdr)) { hdr[sec] = $0; order[++n] = sec }; next }
        lines[sec] = lines[sec] $0 "\n"
        if (iskey($0)) keys[sec, keyof($0)] = 1
        next
    }
    function flush() { if ((cur in lines) && !(cur in done)) { printf "%s", lines[cur] } done[cur] = 1 }
    /^[ \t]*\[/ { flush(); cur = header($0); if (cur ~ /^\[\[/) cur = "@base"; print; next }
    iskey($0) && ((cur, keyof($0)) in keys) { next }
    { print }
    END {
        flush()
        for (i = 1; i <= n; i++) { s = order[i]; if (s in done) continue; print ""; print hdr[s]; printf "%s", lines[s] }
    }' "$2" "$1"
}

# ---- the upstreams ----------------------------------------------------------------------

start_listener() {  # NAME CMD...: starts it, waits for "listening on ADDR"; sets STARTED_PID, STARTED_PORT
    local name=$1; shift
    : >"$WORK/$name.log"
    "$@" >>"$WORK/$name.log" 2>&1 &
    STARTED_PID=$!; PIDS+=("$STARTED_PID")
    local addr
    addr=$(listening_on "$WORK/$name.log") \
        || { log "error: $name did not start (see $OUT/logs/$name.log)"; exit 1; }
    STARTED_PORT=${addr##*:}
}
start_listener upstream "$UPSTREAM_BIN" 127.0.0.1:0
UPSTREAM_PID=$STARTED_PID; UP_PORT=$STARTED_PORT
start_listener big-upstream "$ATTACK_BIN" upstream 127.0.0.1:0 --bytes "$SLOWREAD_BYTES" --sndbuf "$UPSTREAM_SNDBUF"
BIG_PID=$STARTED_PID; BIG_PORT=$STARTED_PORT
sleep 0.2; BIG_FDS0=$(fd_count "$BIG_PID")
log "upstreams: load_upstream on :$UP_PORT (pid $UPSTREAM_PID), large responses on :$BIG_PORT (pid $BIG_PID)"

# ---- the gateway ------------------------------------------------------------------------

# Each phase gets a fresh gateway, so that one phase's memory high-water mark, pooled upstream
# connections or leftovers never count against the next.
cat >"$WORK/base.toml" <<TOML
# Generated by benches/slowloris/run.sh: config/reference.toml's limits and timeouts, except a
# 10 s header_read_timeout and send_timeout (SLOWLORIS_HEADER_TIMEOUT, SLOWLORIS_SEND_TIMEOUT)
# so that they fire within the run.
[server]
listen = "127.0.0.1:@GW_PORT@"

[admin]
listen = "127.0.0.1:@ADMIN_PORT@"

[limits]
max_body_bytes = "32 MiB"
max_header_bytes = "64 KiB"
header_read_timeout = "$HEADER_TIMEOUT"
send_timeout = "$SEND_TIMEOUT"

[timeouts]
connect = "5s"
first_byte = "300s"
idle = "120s"
request = "1800s"

# Legitimate traffic: the load harness's fast mock.
[upstreams.primary]
url = "http://127.0.0.1:$UP_PORT/v1"

# Slow readers' requests (x-slowloris-slowread) go here: large streamed answers.
[upstreams.secondary]
url = "http://127.0.0.1:$BIG_PORT/v1"
http2 = $SLOWREAD_H2

[routing]
stateless = "primary"
stateful = "secondary"

[log]
level = "warn"
access_log = false

[[rules]]
name = "slowread"
class = "stateful"
header_present = ["x-slowloris-slowread"]
TOML
printf '%s\n' "$EXTRA" >"$WORK/extra.toml"
merge_toml "$WORK/base.toml" "$WORK/extra.toml" >"$WORK/template.toml"
[ -z "$EXTRA" ] || { log "gateway config with SLOWLORIS_CONFIG_EXTRA merged in:"; sed 's/^/    /' "$WORK/template.toml" >&2; }

GW_PID=""; GW_PORT=""; ADMIN_PORT=""
# start_gateway NAME: a fresh gateway on new ports; sets GW_PID, GW_PORT, ADMIN_PORT.
start_gateway() {
    GW_PORT=$(free_port); ADMIN_PORT=$(free_port)
    sed -e "s/@GW_PORT@/$GW_PORT/" -e "s/@ADMIN_PORT@/$ADMIN_PORT/" "$WORK/template.toml" >"$WORK/switchyard.toml"
    "$GATEWAY_BIN" check --config "$WORK/switchyard.toml" >/dev/null \
        || { log "error: the generated config does not validate (kept in $OUT/switchyard.toml)"; exit 1; }
    "$GATEWAY_BIN" serve --config "$WORK/switchyard.toml" >"$WORK/switchyard-$1.log" 2>&1 &
    GW_PID=$!; PIDS+=("$GW_PID")
    wait_http "http://127.0.0.1:$ADMIN_PORT/healthz"
}
stop_gateway() {
    kill -TERM "$GW_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
    forget_pid "$GW_PID"
}

start_gateway check
log "switchyard (release) answers; header_read_timeout $HEADER_TIMEOUT"
# The slow readers' route must reach the large-response upstream, or that phase means nothing.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'content-type: application/json' \
    -H 'x-slowloris-slowread: 1' --data-raw '{"model":"gpt-4o","stream":true,"messages":[]}' \
    "http://127.0.0.1:$GW_PORT/v1/chat/completions")
[ "$code" = 200 ] || log "WARNING: a slow reader's request got HTTP $code (expected 200 from the large-response upstream)"
stop_gateway

# ---- measurements -----------------------------------------------------------------------

CHAT_BODY='{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant for an online bookshop. Answer briefly and politely, cite the catalogue number of every book you mention, and never invent titles that are not in the catalogue. If the customer asks about delivery, explain the standard and express options and their prices."},{"role":"user","content":"Hello! I am looking for a present for my niece, who is twelve and loves adventure stories with dragons and maps. She has already read the first two books of the series you recommended last time."},{"role":"assistant","content":"Thank you for coming back! For a twelve-year-old who enjoys dragons and maps, the third book of that series (catalogue 4411-B) continues the story, and a standalone choice would be The Cartographer of Ember Isle (catalogue 5120-A)."},{"role":"user","content":"Which of the two is better as a gift, and could you deliver it before Friday to an address in another city? Please also tell me whether you can wrap it, and whether a handwritten card can go in the parcel with a short birthday message from her aunt."}],"temperature":0.7,"max_tokens":400,"user":"customer-8812"}'
printf '%s' "$CHAT_BODY" >"$WORK/chat.json"
RUNS=$WORK/runs.jsonl
: >"$RUNS"

# Busy clock ticks of the whole machine (user+nice+system+irq+softirq+steal of /proc/stat).
machine_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
# children_cpu_s VAR: CPU seconds of this shell's waited-for children so far (`times`, second
# line), into VAR. Not called as $(…): a command substitution's subshell starts from zero.
children_cpu_s() {
    local f="$WORK/times.$BASHPID"
    times >"$f"
    printf -v "$1" '%s' "$(tail -1 "$f" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%.3f", s }')"
}
# Ticks of our long-running processes: the gateway, both upstreams and the attacker if any
# (its pid in $WORK/attack.pid, which background subshells see too).
our_ticks() {
    local t=0 pid
    local attacker=""; [ -s "$WORK/attack.pid" ] && attacker=$(cat "$WORK/attack.pid")
    for pid in "$GW_PID" "$UPSTREAM_PID" "$BIG_PID" $attacker; do t=$((t + $(cpu_ticks "$pid"))); done
    echo "$t"
}
# legit SECONDS: the legitimate fixed-rate run; prints its JSON line with the gateway's CPU and
# the CPU that other processes on the machine used meanwhile (noise: this is a shared box).
legit() {
    local secs=$1 g0 g1 m0 m1 o0 o1 c0 c1 line mark
    # The sampler pauses while this file exists, and a sample already under way ends first
    # (see `sampler`).
    mark=$WORK/measuring/$BASHPID; mkdir -p "$WORK/measuring"; : >"$mark"
    local waited=0
    while [ -e "$WORK/sampling" ]; do
        if [ "$waited" -ge 300 ]; then log "  NOTE: a sample still under way after 3 s; measuring anyway"; break; fi
        sleep 0.01; waited=$((waited + 1))
    done
    g0=$(cpu_ticks "$GW_PID"); m0=$(machine_ticks); o0=$(our_ticks); children_cpu_s c0
    line=$("$CLIENT_BIN" rate "127.0.0.1:$GW_PORT" --rate "$RATE" --duration "$secs" \
        --connections "$RATE_CONNS" --body "$WORK/chat.json" 2>>"$WORK/load_client.log" || true)
    g1=$(cpu_ticks "$GW_PID"); m1=$(machine_ticks); o1=$(our_ticks); children_cpu_s c1
    rm -f "$mark"
    [ -n "$line" ] || { log "error: load_client printed no result (see $OUT/logs/load_client.log)"; exit 1; }
    jq -c --argjson gt "$((g1 - g0))" --argjson mt "$((m1 - m0))" --argjson ot "$((o1 - o0))" \
        --argjson lg "$(awk -v a="$c0" -v b="$c1" 'BEGIN {print b - a}')" --argjson hz "$CLK_TCK" '
        . + (if .seconds > 0 then
              { gateway_cpu_cores: (($gt / $hz) / .seconds), loadgen_cpu_cores: ($lg / .seconds),
                machine_busy_cores: (($mt / $hz) / .seconds),
                other_processes_cores: ([((($mt - $ot) / $hz) - $lg) / .seconds, 0] | max) }
             else {} end)' <<<"$line"
}

# sampler FILE: every 0.5 s, "seconds rss_kb vmsize_kb fds conns tcp_mem_kb big_upstream_fds"
# (the last: open files of the large-response upstream)
# of the gateway, until killed. It skips its samples while legitimate traffic is measured:
# `legit` marks that with a file under $WORK/measuring/, then waits (at most 3 s) while
# $WORK/sampling says a sample is under way; each side writes its own file before it looks
# for the other's, so one of them always sees the other. A sample lists /proc/PID/fd, whose
# cost grows with the connections held, and with 10,000 of them the sampling alone took
# legitimate p99 from ~0.55 ms to 0.8-4.5 ms (three 5 s windows with and without it, same
# gateway, same held attack), which read as the attack's cost. Peak RSS and virtual size come
# from the kernel's own high-water marks (VmHWM, VmPeak), so no peak is missed meanwhile.
sampler() {
    local t0 now
    # However it ends (killed at the end of a phase, say), no sample stays marked under way.
    trap 'rm -f "$WORK/sampling"' EXIT
    trap exit TERM
    t0=$(date +%s.%N)
    while kill -0 "$GW_PID" 2>/dev/null; do
        : >"$WORK/sampling"
        if ! compgen -G "$WORK/measuring/*" >/dev/null; then
            now=$(date +%s.%N)
            echo "$(awk -v a="$t0" -v b="$now" 'BEGIN {printf "%.1f", b - a}') $(status_kb "$GW_PID" VmRSS) $(status_kb "$GW_PID" VmSize) $(fd_count "$GW_PID") $(gw_conns) $(tcp_mem_kb) $(fd_count "$BIG_PID")"
        fi
        rm -f "$WORK/sampling"
        sleep 0.5
    done >>"$1"
}

# wait_quiet [TCP_KB]: until the gateway, and the machine as a whole (the kernel freeing what
# slow readers held, say), each use under 0.2 of a core over half a second, and (with TCP_KB)
# the kernel's TCP buffer memory is back under TCP_KB: at most SETTLE_MAX s; fails if not.
# A baseline taken while the machine is still in TCP memory pressure from the last round's
# slow readers measured p99s of 20-40 ms with no CPU busy at all.
wait_quiet() {
    local c0 c1 m0 m1 tcp_max=${1:-}
    for _ in $(seq $((SETTLE_MAX * 2))); do
        c0=$(cpu_ticks "$GW_PID"); m0=$(machine_ticks); sleep 0.5; c1=$(cpu_ticks "$GW_PID"); m1=$(machine_ticks)
        [ $((m1 - m0)) -le $((CLK_TCK / 10)) ] || continue
        [ -z "$tcp_max" ] || [ "$(tcp_mem_kb)" -le "$tcp_max" ] || continue
        if [ $((c1 - c0)) -le $((CLK_TCK / 10)) ]; then return 0; fi
    done
    return 1
}

# attack_round KIND MODES N ROUND: one round on the running gateway: the legitimate baseline,
# then N hostile connections of KIND opened while legitimate traffic runs, held (the gateway
# quiet again) while it runs again, and (last round only) held on until the gateway's timeouts
# have fired, measuring what their closing costs; then the attackers leave. Prints one JSON line.
attack_round() {
    local kind=$1 modes=$2 n=$3 r=$4 fifo out cpid fd ready="" done_line=""
    fifo=$WORK/attack-$kind-$r.in; out=$WORK/attack-$kind-$r.out
    # The last round's leavers (thousands of closes, freed kernel buffers) are over first.
    wait_quiet "$TCP_QUIET_KB" || log "  NOTE: the machine was still busy (CPU or TCP memory $(( $(tcp_mem_kb) / 1024 )) MiB) after ${SETTLE_MAX}s"
    local conns0 base
    conns0=$(gw_conns)
    base=$(legit "$BASE_SECONDS")
    jq -r --arg r "$r" '"  round \($r): baseline p50 \(.p50_us) µs, p99 \(.p99_us) µs, p99.9 \(.p999_us) µs"' <<<"$base" >&2

    legit "$OPENING" >"$WORK/opening-$kind.json" &
    local lpid=$!; PIDS+=("$lpid")
    # Its connections are open before the attack's: it has marked its window (so no new
    # sample starts) and no sample is under way, then its client has had 0.3 s to connect.
    for _ in $(seq 400); do
        [ -e "$WORK/measuring/$lpid" ] && [ ! -e "$WORK/sampling" ] && break
        sleep 0.01
    done
    sleep 0.3
    local g_start t_attack
    g_start=$(cpu_ticks "$GW_PID"); t_attack=$(date +%s.%N)
    rm -f "$fifo"; mkfifo "$fifo"
    nice -n "$NICE" "$ATTACK_BIN" attack "127.0.0.1:$GW_PORT" --mode "$modes" --connections "$n" \
        --interval "$INTERVAL" --reconnect-delay "$RECONNECT_DELAY" --post-length "$POST_LENGTH" --streams "$H2_STREAMS" --open-timeout "$OPEN_TIMEOUT" \
        --max-hold 600 <"$fifo" >"$out" 2>>"$WORK/attack.log" &
    cpid=$!; PIDS+=("$cpid"); echo "$cpid" >"$WORK/attack.pid"
    exec {fd}>"$fifo"
    for _ in $(seq $(( (OPEN_TIMEOUT + 10) * 10 ))); do
        ready=$(sed -n 's/^READY //p' "$out")
        [ -n "$ready" ] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$ready" ] || ready='{"opened":0,"failed":0,"first_error":"no READY line (see logs/attack.log)"}'
    jq -r '"  opened \(.opened) of \(.connections // "?") in \(.seconds // "?") s (\(.failed) failed\(if .first_error then ": " + .first_error else "" end))"' <<<"$ready" >&2
    wait "$lpid" 2>/dev/null || true; forget_pid "$lpid"
    local opening; opening=$(cat "$WORK/opening-$kind.json")
    [ -n "$opening" ] || opening=null
    # Held: wait until the gateway is quiet again (under 0.2 of a core over half a second, at
    # most SETTLE_MAX s), so that the attack's opening is over.
    local settle_t0 settle_s quiet=false opening_cpu
    settle_t0=$(date +%s.%N)
    if wait_quiet; then quiet=true; fi
    settle_s=$(awk -v a="$settle_t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    opening_cpu=$(( $(cpu_ticks "$GW_PID") - g_start ))
    [ "$quiet" = true ] || log "  NOTE: the gateway was still busy after ${SETTLE_MAX}s"
    sleep "$SETTLE"
    local rss1 vsz1 fds1 conns1 tcp1 bigfds1
    rss1=$(status_kb "$GW_PID" VmRSS); vsz1=$(status_kb "$GW_PID" VmSize); fds1=$(fd_count "$GW_PID")
    conns1=$(gw_conns); tcp1=$(tcp_mem_kb); bigfds1=$(fd_count "$BIG_PID")
    log "  held: gateway RSS $((rss1 / 1024)) MiB, $fds1 fds, $conns1 client connections; legitimate traffic for ${DURATION}s"
    local a0 a1 line
    a0=$(cpu_ticks "$cpid")
    line=$(legit "$DURATION")
    a1=$(cpu_ticks "$cpid")
    local rss2 fds2
    rss2=$(status_kb "$GW_PID" VmRSS); fds2=$(fd_count "$GW_PID")
    jq -r '"  held: p50 \(.p50_us) µs, p99 \(.p99_us) µs, p99.9 \(.p999_us) µs"' <<<"$line" >&2

    # The last round holds on until the gateway's timeouts have fired (CLOSE_AT seconds after
    # the attack began) and measures legitimate traffic meanwhile: the closes, and the
    # attacker's reconnects a second later, land inside that window.
    local closing=null since left
    if [ "$r" = "$ROUNDS" ] && [ "$CLOSE_AT" -gt 0 ]; then
        since=$(awk -v a="$t_attack" -v b="$(date +%s.%N)" 'BEGIN {printf "%d", b - a}')
        left=$((CLOSE_AT - since))
        if [ "$left" -ge 1 ]; then
            log "  holding ${left}s more, until the gateway's timeouts fire (${CLOSE_AT}s after the attack began), legitimate traffic measured"
            closing=$(legit "$left")
            jq -r '"  while the gateway closes them: p50 \(.p50_us) µs, p99 \(.p99_us) µs, p99.9 \(.p999_us) µs"' <<<"$closing" >&2
        fi
    fi

    # The attackers leave: their process prints its tally and exits, closing every connection.
    exec {fd}>&-
    for _ in $(seq 100); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    forget_pid "$cpid"; : >"$WORK/attack.pid"
    done_line=$(sed -n 's/^DONE //p' "$out")
    local t_left release=null
    t_left=$(date +%s.%N)
    for _ in $(seq 150); do
        if [ "$(gw_conns)" -le "$conns0" ]; then
            release=$(awk -v a="$t_left" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
            break
        fi
        sleep 0.1
    done
    sleep 1
    jq -c -n --argjson r "$r" --argjson ready "$ready" --argjson done_ "${done_line:-null}" \
        --argjson base "$base" --argjson opening "$opening" --argjson held "$line" --argjson closing "$closing" \
        --argjson conns0 "$conns0" --argjson rss1 "$rss1" --argjson vsz1 "$vsz1" --argjson fds1 "$fds1" --argjson conns1 "$conns1" \
        --argjson tcp1 "$tcp1" --argjson bigfds1 "$((bigfds1 - BIG_FDS0))" --argjson rss2 "$rss2" --argjson fds2 "$fds2" \
        --argjson release "$release" --argjson at "$((a1 - a0))" --argjson hz "$CLK_TCK" \
        --argjson settle "$settle_s" --argjson quiet "$quiet" --argjson opening_cpu "$opening_cpu" '
        def ratio(a; b): if a == null or b == null or b == 0 then null else a / b end;
        { round: $r, ready: $ready, done: $done_, baseline: $base, opening: $opening, held: $held, closing: $closing,
          p99_ratio: ratio($held.p99_us; $base.p99_us), p999_ratio: ratio($held.p999_us; $base.p999_us),
          opening_p99_ratio: ratio($opening.p99_us; $base.p99_us),
          closing_p99_ratio: (if $closing == null then null else ratio($closing.p99_us; $base.p99_us) end),
          settle: { seconds: $settle, quiet: $quiet, gateway_cpu_s_from_attack_start: ($opening_cpu / $hz) },
          attacker_cpu_cores: (if $held.seconds > 0 then ($at / $hz) / $held.seconds else null end),
          conns_before: $conns0,
          held_state: { rss_kb: $rss1, vmsize_kb: $vsz1, fds: $fds1, conns: $conns1, tcp_mem_kb: $tcp1, big_upstream_fds: $bigfds1 },
          after_legit: { rss_kb: $rss2, fds: $fds2 },
          conns_released_s: $release }'
}

# run_phase KIND: a fresh gateway; ROUNDS rounds of baseline, attack held, attackers gone
# (attack_round); one JSON line per phase with the medians over the rounds.
run_phase() {
    local kind=$1 modes n k s cap note="" samples rounds
    if [ "$kind" = mixed ]; then modes=$MIXED; else modes=$kind; fi
    k=$(tr ',' '\n' <<<"$modes" | wc -l)
    # Slow readers hold an upstream HTTP/1.1 connection each: two descriptors in the gateway;
    # an h2slowread connection one per stream besides its own.
    s=0
    if [ "$SLOWREAD_H2" != true ]; then
        if tr ',' '\n' <<<"$modes" | grep -qx slowread; then s=$((s + 1)); fi
        if tr ',' '\n' <<<"$modes" | grep -qx h2slowread; then s=$((s + H2_STREAMS)); fi
    fi
    cap=$(( (FD_LIMIT - FD_SPARE) * k / (k + s) ))
    n=$N
    if [ "$n" -gt "$cap" ]; then
        n=$cap
        if [ "$s" != 0 ]; then
            note="$n instead of $N: the gateway's open-file limit is $FD_LIMIT and each slow reader costs it 2 descriptors (an h2slowread connection 1 + $H2_STREAMS)"
        else
            note="$n instead of $N: the open-file limit is $FD_LIMIT"
        fi
        log "NOTE: $kind: $note"
    fi
    samples=$WORK/samples-$kind.txt; rounds=$WORK/rounds-$kind.jsonl
    : >"$rounds"

    start_gateway "$kind"
    legit 1 >/dev/null   # warm-up: upstream connections, allocator
    local rss0 vsz0 fds0 conns0
    rss0=$(status_kb "$GW_PID" VmRSS); vsz0=$(status_kb "$GW_PID" VmSize); fds0=$(fd_count "$GW_PID"); conns0=$(gw_conns)
    log "$kind: fresh gateway (pid $GW_PID); $ROUNDS rounds of a ${BASE_SECONDS}s baseline, $n hostile connections ($modes) opened (${OPENING}s measured) and held (${DURATION}s measured)"
    sampler "$samples" &
    local spid=$!; PIDS+=("$spid")
    local r
    for r in $(seq "$ROUNDS"); do
        attack_round "$kind" "$modes" "$n" "$r" >>"$rounds"
    done
    kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; forget_pid "$spid"
    local after_rss after_fds peaks timeline warnings
    after_rss=$(status_kb "$GW_PID" VmRSS); after_fds=$(fd_count "$GW_PID")
    # RSS and virtual size: the kernel's high-water marks over the gateway's life (this phase);
    # the rest: the largest sample.
    peaks=$(awk -v r="$(status_kb "$GW_PID" VmHWM)" -v v="$(status_kb "$GW_PID" VmPeak)" 'BEGIN {f = 0; c = 0; m = 0; b = 0}
        NF >= 7 { if ($2 > r) r = $2; if ($3 > v) v = $3; if ($4 > f) f = $4; if ($5 > c) c = $5; if ($6 > m) m = $6; if ($7 > b) b = $7 }
        END {printf "{\"rss_kb\":%d,\"vmsize_kb\":%d,\"fds\":%d,\"conns\":%d,\"tcp_mem_kb\":%d,\"big_upstream_fds\":%d}", r, v, f, c, m, b}' "$samples")
    timeline=$(awk 'NF >= 7 {printf "%s[%s,%d,%d,%d]", (n++ ? "," : "["), $1, $2, $4, $5} END {if (!n) printf "["; print "]"}' "$samples")
    # What the gateway logged (level warn): counts of each distinct message.
    warnings=$(sed -e 's/\x1b\[[0-9;]*m//g' "$WORK/switchyard-$kind.log" | { grep -E ' (WARN|ERROR) ' || true; } \
        | sed -E 's/^[^ ]+ +(WARN|ERROR) +//; s/[0-9]+/N/g' | cut -c1-160 | sort | uniq -c | sort -rn | head -5 \
        | jq -R -s -c 'split("\n") | map(select(. != "") | capture("^ *(?<count>[0-9]+) (?<message>.*)$") | .count |= tonumber)')
    stop_gateway
    jq -c -s --arg phase "$kind" --arg modes "$modes" --argjson n "$n" --arg note "$note" \
        --argjson rss0 "$rss0" --argjson vsz0 "$vsz0" --argjson fds0 "$fds0" --argjson conns0 "$conns0" \
        --argjson after_rss "$after_rss" --argjson after_fds "$after_fds" --argjson peak "$peaks" \
        --argjson timeline "$timeline" --argjson warnings "$warnings" '
        def med: map(select(. != null)) | sort
            | if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
        def lat(f): map(f | select(. != null)) as $w
            | if ($w | length) == 0 then null else
              { p50_us: ($w | map(.p50_us) | med), p99_us: ($w | map(.p99_us) | med), p999_us: ($w | map(.p999_us) | med),
                errors: ($w | map(.errors) | add), non_2xx: ($w | map(.non_2xx) | add), unsent: ($w | map(.unsent) | add),
                other_processes_cores: ($w | map(.other_processes_cores) | med) } end;
        . as $rs | ($rs[0]) as $first | ($rs[-1]) as $last
        | { phase: $phase, modes: ($modes | split(",")), hostile: $n, note: (if $note == "" then null else $note end),
            rounds: $rs,
            ready: $first.ready, baseline: ($rs | lat(.baseline)), legit_opening: ($rs | lat(.opening)),
            legit: ($rs | lat(.held)), closing: $last.closing,
            p99_ratio: ($rs | map(.p99_ratio) | med), p99_ratios: ($rs | map(.p99_ratio)),
            p999_ratio: ($rs | map(.p999_ratio) | med),
            opening_p99_ratio: ($rs | map(.opening_p99_ratio) | med),
            closing_p99_ratio: $last.closing_p99_ratio,
            settle: $first.settle,
            attacker_cpu_cores: ($rs | map(.attacker_cpu_cores) | med),
            gateway: { fresh: { rss_kb: $rss0, vmsize_kb: $vsz0, fds: $fds0, conns: $conns0 },
                       held: ($first.held_state + { hostile_conns: ($first.held_state.conns - $first.conns_before),
                             kib_per_hostile_conn: (if ($first.held_state.conns - $first.conns_before) > 0
                                 then ($first.held_state.rss_kb - $rss0) / ($first.held_state.conns - $first.conns_before) else null end) }),
                       after_legit: $first.after_legit,
                       peak: $peak,
                       after_attack: { rss_kb: $after_rss, fds: $after_fds, conns_released_s: $last.conns_released_s },
                       log: $warnings },
            closed: (if $last.done == null then null else $last.done.modes end),
            attacker_timeline: (if $last.done == null then null else $last.done.timeline end),
            gateway_timeline: $timeline }' "$rounds" >>"$RUNS"
    jq -r '"  \(.phase): held p99 \(.p99_ratios | map(. * 100 | round / 100 | tostring + "×") | join(", ")) of each round'"'"'s baseline (median \(.p99_ratio * 100 | round / 100)×); gateway RSS \(.gateway.fresh.rss_kb / 1024 | round) → \(.gateway.held.rss_kb / 1024 | round) MiB (peak \(.gateway.peak.rss_kb / 1024 | round)), fds peak \(.gateway.peak.fds); closed by the gateway in the last round: \([.closed // {} | to_entries[] | "\(.key) \(.value.closed_by_server)"] | join(", "))"' <<<"$(tail -1 "$RUNS")" >&2
}

log "warm-up and checks done"
for kind in $KINDS; do
    case $kind in
        idle|slowloris|slowpost|slowread|keepalive|h2idle|h2slowread|mixed) run_phase "$kind" ;;
        *) log "error: unknown kind $kind"; exit 1 ;;
    esac
done

# ---- report -----------------------------------------------------------------------------

mkdir -p "$OUT"
cp "$WORK/switchyard.toml" "$OUT/switchyard.toml"
ELAPSED=$(( $(date +%s) - START ))
jq -s \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg host "$(uname -srm)" \
    --argjson cpus "$(nproc)" --arg cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
    --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --arg dirty "$(git status --porcelain -- src 2>/dev/null | wc -l)" \
    --argjson n "$N" --argjson rate "$RATE" --argjson duration "$DURATION" --argjson base_s "$BASE_SECONDS" \
    --argjson opening_s "$OPENING" --argjson rate_conns "$RATE_CONNS" --argjson rounds "$ROUNDS" --argjson close_at "$CLOSE_AT" \
    --argjson interval "$INTERVAL" --argjson reconnect_delay "$RECONNECT_DELAY" --arg header_timeout "$HEADER_TIMEOUT" --arg send_timeout "$SEND_TIMEOUT" --argjson upstream_sndbuf "$UPSTREAM_SNDBUF" --argjson post_length "$POST_LENGTH" \
    --argjson slowread_bytes "$SLOWREAD_BYTES" --arg slowread_h2 "$SLOWREAD_H2" --argjson nice "$NICE" \
    --arg extra "$EXTRA" --arg config "$(cat "$WORK/template.toml")" \
    --argjson fd_limit "$FD_LIMIT" --arg fd_hard "$FD_HARD" \
    --argjson elapsed "$ELAPSED" --argjson build "$BUILD_S" '
    . as $phases
    | { meta: { date: $date, commit: $commit, src_files_modified: ($dirty | tonumber), host: $host, cpus: $cpus, cpu: $cpu,
                hostile_connections: $n, legit_rate: $rate, legit_seconds: $duration, baseline_seconds: $base_s,
                opening_seconds: $opening_s, legit_connections: $rate_conns, rounds: $rounds, last_round_held_until_s: $close_at,
                slow_interval_s: $interval, reconnect_delay_s: $reconnect_delay, header_read_timeout: $header_timeout, send_timeout: $send_timeout, upstream_sndbuf: $upstream_sndbuf, slowpost_content_length: $post_length,
                slowread_response_bytes: $slowread_bytes, slowread_upstream_h2c: ($slowread_h2 == "true"),
                attacker_nice: $nice, config_extra: $extra, config: $config,
                fd_limit: $fd_limit, fd_hard_limit: $fd_hard, elapsed_s: $elapsed, build_s: $build,
                legit_load_generator: "examples/load_client.rs rate: open loop, coordinated omission corrected, one core",
                attacker: "examples/slowloris.rs attack: one core, reopens what the gateway closes" },
        phases: $phases }
    | .verdict = { worst_p99_ratio: ([.phases[] | .p99_ratio] | max),
                   p99_within_2x: ([.phases[] | .p99_ratio <= 2] | all),
                   worst_opening_p99_ratio: ([.phases[] | .opening_p99_ratio] | max),
                   peak_rss_mib: ([.phases[] | .gateway.peak.rss_kb] | max / 1024),
                   max_kib_per_hostile_conn: ([.phases[] | .gateway.held.kib_per_hostile_conn] | max) }' \
    "$RUNS" >"$OUT/results.json"

jq -r '
    def mib: if . == null then "—" else (. / 1024 | round | tostring) end;
    def f0: if . == null then "—" else (. | round | tostring) end;
    def f1: if . == null then "—" else (. * 10 | round / 10 | tostring) end;
    def f2: if . == null then "—" else (. * 100 | round / 100 | tostring) end;
    def lat: "\(.p50_us | f0) / \(.p99_us | f0) / \(.p999_us | f0)";
    .meta as $m
    | "Slow clients: \($m.date), commit \($m.commit)\(if $m.src_files_modified > 0 then " + \($m.src_files_modified) modified files in src/" else "" end), \($m.cpus) CPUs (\($m.cpu)), open-file limit \($m.fd_limit) (hard \($m.fd_hard_limit)); \($m.elapsed_s) s after a \($m.build_s) s build.",
      "Legitimate traffic: \($m.legit_rate) req/s of 1.2 KB chat requests on \($m.legit_connections) keep-alive connections, open loop, latency in µs. Each phase: a fresh gateway, then \($m.rounds) rounds of: a \($m.baseline_seconds) s baseline, \($m.opening_seconds) s while the attack opens, \($m.legit_seconds) s once it is held (the gateway quiet again), the attackers gone; the last round holds its attack until \($m.last_round_held_until_s) s after it began, so that the timeouts fire, and measures that too. Latencies are medians over the rounds; a round'"'"'s ratio is against its own baseline (one window'"'"'s p99 on this shared machine swings 2–4× by itself). Hostile: \($m.hostile_connections) connections per phase, one byte every \($m.slow_interval_s) s where they send any, reopened \($m.reconnect_delay_s) s after the gateway closes them (backing off to 16 s while refused); header_read_timeout \($m.header_read_timeout), send_timeout \($m.send_timeout); large-response upstream SO_SNDBUF \($m.upstream_sndbuf) bytes (0: autotuned); attacker at nice \($m.attacker_nice) on the same machine.",
      (if $m.config_extra != "" then "Config extra: `" + ($m.config_extra | gsub("\n"; " ")) + "`" else empty end),
      "",
      "| phase | hostile held (opened in all) | baseline p50 / p99 / p99.9 | held p50 / p99 / p99.9 | **held p99 / baseline**: rounds (median) | p99 while opening (× baseline) | p99 while the gateway closes them (× baseline) | legit errors | gateway quiet after (s); its CPU s | gateway RSS fresh → held → peak → after (MiB) | KiB per hostile conn | virtual peak (MiB) | fds peak | other processes on the machine, held (cores of \($m.cpus)) |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
      (.phases[] |
        "| \(.phase) | \(.gateway.held.hostile_conns) of \(.hostile) (\([.closed // {} | .[] | .opened] | add // 0))\(if .note then " ¹" else "" end) | \(.baseline | lat) | \(.legit | lat) | \(.p99_ratios | map(f2 + "×") | join(", ")) (**\(.p99_ratio | f2)×**) | \(.legit_opening.p99_us | f0) (\(.opening_p99_ratio | f1)×) | \(if .closing == null then "—" else "\(.closing.p99_us | f0) (\(.closing_p99_ratio | f1)×)" end) | \([.rounds[] | (.baseline, .opening, .held, .closing) | select(. != null) | .errors + .non_2xx + .unsent] | add) | \(.settle.seconds | f1)\(if .settle.quiet then "" else "+" end); \(.settle.gateway_cpu_s_from_attack_start | f1) | \(.gateway.fresh.rss_kb | mib) → \(.gateway.held.rss_kb | mib) → \(.gateway.peak.rss_kb | mib) → \(.gateway.after_attack.rss_kb | mib) | \(.gateway.held.kib_per_hostile_conn | f1) | \(.gateway.peak.vmsize_kb | mib) | \(.gateway.peak.fds) | \(.legit.other_processes_cores | f2) |"),
      "",
      "Hostile connections the gateway closed in each phase'"'"'s last round, which held its attack \($m.last_round_held_until_s) s (lifetime: from connect to close; when: seconds since the attack began):",
      "",
      "| phase | mode | opened (incl. reopened) | closed by the gateway | lifetime min / p50 / max (s) | first / last close at (s) | how, and what the gateway sent first |",
      "|---|---|---|---|---|---|---|",
      (.phases[] | . as $p | (.closed // {}) | to_entries[] |
        "| \($p.phase) | \(.key) | \(.value.opened) | \(.value.closed_by_server) | \(.value.lifetime_s.min | f1) / \(.value.lifetime_s.p50 | f1) / \(.value.lifetime_s.max | f1) | \(.value.closed_at_s.first | f1) / \(.value.closed_at_s.last | f1) | \(if (.value.endings | length) == 0 then "—" else ([.value.endings | to_entries[] | "\(.key) ×\(.value)"] | join("; ") | gsub("\\|"; "/")) end) |"),
      "",
      "Gateway connections to the large-response upstream while slow readers were held: \([.phases[] | select(.modes | index("slowread")) | "\(.phase) \(.gateway.held.big_upstream_fds)"] | join(", ") | if . == "" then "—" else . end). Kernel TCP buffer memory, all sockets on the machine, held: \([.phases[] | "\(.phase) \(.gateway.held.tcp_mem_kb | mib) MiB"] | join(", ")). Gateway open files once the attackers had left (pooled idle upstream connections count): \([.phases[] | "\(.phase) \(.gateway.after_attack.fds)"] | join(", ")).",
      (.phases[] | select((.gateway.log | length) > 0) | "Gateway log, \(.phase): " + ([.gateway.log[] | "\(.count)× `\(.message)`"] | join("; "))),
      (.phases[] | select(.note) | "¹ \(.phase): \(.note)."),
      "",
      "Worst held p99 (median of a phase'"'"'s rounds): **\(.verdict.worst_p99_ratio | f2)×** its baseline (target ≤ 2×: \(if .verdict.p99_within_2x then "met" else "NOT met" end)); worst p99 while an attack opened: \(.verdict.worst_opening_p99_ratio | f1)×; gateway peak RSS \(.verdict.peak_rss_mib | f0) MiB; at most \(.verdict.max_kib_per_hostile_conn | f1) KiB per hostile connection."
' "$OUT/results.json" >"$OUT/results.md"

echo
cat "$OUT/results.md"
echo
log "done in ${ELAPSED}s (after a ${BUILD_S}s build): $OUT/results.md, $OUT/results.json"
