# Sourced by the bench scripts (benches/load/*.sh, benches/slowloris/run.sh): finding a port,
# and waiting for what they start to listen. wait_http logs through the caller's `log`.
#
# listening_on LOG: the address a helper prints on its `listening on ADDR` line in LOG (the
# mock upstreams, the hyper floor), waiting up to ~10 s for it; fails when it never comes.
listening_on() {
    local addr=""
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on //p' "$1")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || return 1
    echo "$addr"
}

# A free port, below the ephemeral range when there is room there (the idle-streams test uses
# tens of thousands of ephemeral ports, which a connect probe cannot see).
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
    local p lo=20000 span=40000
    if [ "$EPHEMERAL_LOW" -ge 12000 ]; then lo=10000; span=$((EPHEMERAL_LOW - 10000)); fi
    for _ in $(seq 200); do
        p=$((lo + RANDOM % span))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    return 1
}

# wait_http URL [TRIES]: poll until URL answers (any HTTP status), TRIES times 0.1 s (100).
wait_http() {
    for _ in $(seq "${2:-100}"); do
        if curl -s -o /dev/null --max-time 1 "$1"; then return 0; fi
        sleep 0.1
    done
    log "error: $1 did not come up"; return 1
}
