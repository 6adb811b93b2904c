# Sourced by the bench scripts (benches/load/run.sh, benches/slowloris/run.sh).
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
