#!/usr/bin/env bash
# Is it the gateway or the machine? Legitimate p99 alone and with 10,000 hostile connections
# held, Switchyard side by side with nginx, in alternating rounds (issue #7, item 7).
#
#   bash benches/slowloris/versus-nginx.sh
#
# One fast mock upstream (examples/load_upstream.rs), one Switchyard (release) and one nginx
# (2 workers, upstream keep-alive, as in benches/load/run.sh) run throughout. Each round, for
# each column:
#
#   switchyard          legit traffic to Switchyard; the attack held on Switchyard
#   nginx               legit traffic to nginx; the attack held on nginx
#   switchyard, attack on nginx
#                       legit traffic to Switchyard while the attack is held on nginx: what
#                       10,000 held sockets cost this machine, whoever holds them
#
# a window of legitimate traffic alone, then the attack (`examples/slowloris.rs attack`, 10,000
# connections of SLOWLORIS_MODE) opened, 2 s to settle, a window with it held, the attackers
# gone. Legitimate traffic: `examples/load_client.rs rate`, 2,000 req/s of 1.2 KB chat requests
# on 32 keep-alive connections, open loop. Both servers' header timeouts are 60 s, so nothing is
# closed inside a round. Prints each round and the median of the per-round ratios (held p99 over
# the same round's alone p99); results in target/slowloris/versus-nginx.{md,json}.
#
# Loopback only; about 5 minutes after the build. Needs nginx, jq and curl (benches/load/run.sh
# installs them). Knobs: VERSUS_ROUNDS (5), VERSUS_SECONDS per window (6), SLOWLORIS_MODE (idle;
# also slowloris, h2idle is Switchyard-only), SLOWLORIS_CONNECTIONS (10000), LOAD_SKIP_BUILD=1.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/target/slowloris
ROUNDS=${VERSUS_ROUNDS:-5}
SECS=${VERSUS_SECONDS:-6}
MODE=${SLOWLORIS_MODE:-idle}
N=${SLOWLORIS_CONNECTIONS:-10000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-versus.XXXXXX")
PIDS=()
log() { printf '[versus-nginx] %s\n' "$*" >&2; }
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    mkdir -p "$OUT/logs"
    cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NGINX_BIN=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
[ -n "$NGINX_BIN" ] || { log "error: nginx is not installed (bash benches/load/run.sh installs it)"; exit 1; }
for t in jq curl; do command -v "$t" >/dev/null || { log "error: $t is missing"; exit 1; }; done
if [ "${LOAD_SKIP_BUILD:-0}" != 1 ]; then
    log "building the gateway, load_upstream, load_client and slowloris (release)"
    cargo build --release --quiet --bin switchyard --example load_upstream --example load_client --example slowloris
fi
BIN=$ROOT/target/release
ulimit -n "$(ulimit -Hn)"

free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    return 1
}
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    log "error: nothing listens on $1"; return 1
}

UP_PORT=$(free_port); GW_PORT=$(free_port); ADMIN_PORT=$(free_port); NGX_PORT=$(free_port)
"$BIN/examples/load_upstream" "127.0.0.1:$UP_PORT" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/switchyard.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[limits]
header_read_timeout = "60s"
[upstreams.primary]
url = "http://127.0.0.1:$UP_PORT/v1"
[upstreams.secondary]
url = "http://localhost:$UP_PORT/v1"
[routing]
stateless = "primary"
stateful = "secondary"
[log]
level = "warn"
access_log = false
TOML
"$BIN/switchyard" serve --config "$WORK/switchyard.toml" >"$WORK/switchyard.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/nginx/tmp"
temp_paths="client_body_temp_path $WORK/nginx/tmp/body; proxy_temp_path $WORK/nginx/tmp/proxy;"
for m in fastcgi uwsgi scgi; do
    "$NGINX_BIN" -V 2>&1 | grep -q -- "--without-http_${m}_module" || temp_paths="$temp_paths ${m}_temp_path $WORK/nginx/tmp/$m;"
done
cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx-error.log warn;
worker_rlimit_nofile $(ulimit -n);
events { worker_connections 16384; }
http {
    access_log off;
    $temp_paths
    client_header_timeout 60s;
    client_body_buffer_size 2m;
    upstream mock { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering on;
        }
    }
}
NGINX
"$NGINX_BIN" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx-error.log" >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
wait_port "$UP_PORT"; wait_port "$GW_PORT"; wait_port "$NGX_PORT"

CHAT='{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant for an online bookshop. Answer briefly and politely, cite the catalogue number of every book you mention, and never invent titles that are not in the catalogue. If the customer asks about delivery, explain the standard and express options and their prices."},{"role":"user","content":"Hello! I am looking for a present for my niece, who is twelve and loves adventure stories with dragons and maps. She has already read the first two books of the series you recommended last time."},{"role":"assistant","content":"Thank you for coming back! For a twelve-year-old who enjoys dragons and maps, the third book of that series (catalogue 4411-B) continues the story, and a standalone choice would be The Cartographer of Ember Isle (catalogue 5120-A)."},{"role":"user","content":"Which of the two is better as a gift, and could you deliver it before Friday to an address in another city? Please also tell me whether you can wrap it, and whether a handwritten card can go in the parcel with a short birthday message from her aunt."}],"temperature":0.7,"max_tokens":400,"user":"customer-8812"}'
printf '%s' "$CHAT" >"$WORK/chat.json"
legit() {
    "$BIN/examples/load_client" rate "127.0.0.1:$1" --rate 2000 --duration "$SECS" --connections 32 \
        --body "$WORK/chat.json" 2>>"$WORK/load_client.log"
}
for port in "$GW_PORT" "$NGX_PORT"; do SECS=1 legit "$port" >/dev/null; done   # warm-up

RUNS=$WORK/rounds.jsonl
: >"$RUNS"
for r in $(seq "$ROUNDS"); do
    for column in switchyard nginx cross; do
        case $column in
            switchyard) legit_port=$GW_PORT; attack_port=$GW_PORT ;;
            nginx) legit_port=$NGX_PORT; attack_port=$NGX_PORT ;;
            cross) legit_port=$GW_PORT; attack_port=$NGX_PORT ;;
        esac
        alone=$(legit "$legit_port")
        fifo=$WORK/attack.in; rm -f "$fifo"; mkfifo "$fifo"
        nice -n 10 "$BIN/examples/slowloris" attack "127.0.0.1:$attack_port" --mode "$MODE" --connections "$N" \
            --reconnect 0 --max-hold 300 <"$fifo" >"$WORK/attack.out" 2>>"$WORK/attack.log" &
        apid=$!; PIDS+=("$apid")
        exec {fd}>"$fifo"
        for _ in $(seq 400); do
            grep -q '^READY' "$WORK/attack.out" 2>/dev/null && break
            kill -0 "$apid" 2>/dev/null || break
            sleep 0.1
        done
        opened=$(sed -n 's/^READY //p' "$WORK/attack.out" | jq '.opened // 0')
        sleep 2
        held=$(legit "$legit_port")
        exec {fd}>&-
        wait "$apid" 2>/dev/null || true
        sleep 2
        jq -c -n --argjson r "$r" --arg c "$column" --argjson a "$alone" --argjson h "$held" --argjson o "${opened:-0}" \
            '{round: $r, column: $c, opened: $o, alone: $a, held: $h, p99_ratio: ($h.p99_us / $a.p99_us)}' | tee -a "$RUNS" \
            | jq -r '"round \(.round) \(.column): \(.opened) held; p99 alone \(.alone.p99_us) µs, held \(.held.p99_us) µs (\(.p99_ratio * 100 | round / 100)×); p99.9 \(.alone.p999_us) → \(.held.p999_us) µs"' >&2
    done
done

mkdir -p "$OUT"
jq -s --arg mode "$MODE" --argjson n "$N" --argjson secs "$SECS" \
    --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
    def med: sort | if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    { meta: { date: $date, commit: $commit, mode: $mode, hostile_connections: $n, window_s: $secs,
              legit: "2000 req/s, 32 keep-alive connections, open loop" },
      rounds: .,
      columns: (group_by(.column) | map({ column: .[0].column,
          alone_p99_us: (map(.alone.p99_us) | med), held_p99_us: (map(.held.p99_us) | med),
          alone_p999_us: (map(.alone.p999_us) | med), held_p999_us: (map(.held.p999_us) | med),
          p99_ratios: map(.p99_ratio), p99_ratio_median: (map(.p99_ratio) | med) })) }' "$RUNS" >"$OUT/versus-nginx.json"
jq -r '
    def f2: . * 100 | round / 100 | tostring;
    "Versus nginx: \(.meta.date), commit \(.meta.commit); \(.meta.hostile_connections) \(.meta.mode) connections held; legitimate \(.meta.legit), \(.meta.window_s) s windows; medians over \(.rounds | length / 3) rounds.",
    "",
    "| legitimate traffic to | attack held on | p99 alone (µs) | p99 held (µs) | held / alone, each round | **median** | p99.9 alone → held (µs) |",
    "|---|---|---|---|---|---|---|",
    (.columns[] | "| \(if .column == "nginx" then "nginx" else "switchyard" end) | \(if .column == "switchyard" then "switchyard" else "nginx" end) | \(.alone_p99_us) | \(.held_p99_us) | \(.p99_ratios | map(f2 + "×") | join(", ")) | **\(.p99_ratio_median | f2)×** | \(.alone_p999_us) → \(.held_p999_us) |")
' "$OUT/versus-nginx.json" | tee "$OUT/versus-nginx.md"
