#!/usr/bin/env bash
# bench/flood.sh: honest clients against a distributed slowloris, on loopback.
#
# Builds in release mode, starts `noise-echo serve` on 127.0.0.1 with its default
# limits (2,048 handshakes in progress, 4,096 connections, 64 handshakes per
# source, penalties on) and throw-away keys, then runs the hidden `noise-echo
# attack flood` once per scenario: an attacker on $SOURCES loopback addresses
# (127.1.x.y, each under every per-source cap) holds more unfinished handshakes
# than the server has slots, while an honest client on 127.0.0.1 connects,
# handshakes and asks one echo every 250 ms. A fresh server for each scenario, so
# no penalty carries over. Prints, per scenario, the honest success rate and the
# p50/p99/max time of an honest connection (connect + handshake + one echo; a
# probe that gets no answer within 5 s is a failure).
#
# Scenarios (attack connections; each reopened when the server closes it):
#   silent         $SLOW silent connections, reopened after 100 ms
#   silent-refill  the same, reopened at once (the attacker retakes every slot)
#   stalled        $SLOW connections that send a whole message 1, then nothing,
#                  reopened at once: they cost the server its Diffie-Hellman work
#                  and wait where an honest client waits
#   mixed          silent, trickling (a byte a second) and stalled thirds, plus
#                  200 garbage connections a second
#
# Everything is bounded: each flood stops after $DURATION seconds (plus at most
# 10 s to collect), and the server is killed on exit. The figures are only as
# good as the machine is quiet: say how loaded it was when you quote them.
#
# Environment: DURATION (30 seconds per scenario), SOURCES (2000), SLOW (2500
# attack connections), SCENARIOS ("silent silent-refill stalled mixed"), PORT
# (27500; the script stops if it is taken), SERVER_BIN (the noise-echo binary to
# serve with, e.g. an older build for a before/after comparison; the attacker is
# always this tree's).

set -euo pipefail

DURATION=${DURATION:-30}
SOURCES=${SOURCES:-2000}
SLOW=${SLOW:-2500}
SCENARIOS=${SCENARIOS:-"silent silent-refill stalled mixed"}
PORT=${PORT:-27500}

cd "$(dirname "$0")/.."
echo "building (release)..." >&2
cargo build --release --quiet -p noise-echo-cli --bin noise-echo
BIN=$PWD/target/release/noise-echo
SERVER_BIN=${SERVER_BIN:-$BIN}

# The attacker's connections and the server's 4,096 each need a descriptor.
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/noise-echo-flood.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" keygen -f "$WORK/host" -C flood-host -N '' >/dev/null
"$BIN" keygen -f "$WORK/client" -C flood-client -N '' >/dev/null
"$BIN" authorize --authorized-keys "$WORK/authorized_keys" "$WORK/client.pub" >/dev/null 2>&1
FINGERPRINT=$("$BIN" fingerprint "$WORK/host.pub" | awk '{print $2}')

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_free "$PORT" || { echo "port $PORT is taken: set PORT" >&2; exit 1; }

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

start_server() {
    "$SERVER_BIN" serve --listen "127.0.0.1:$PORT" --host-key "$WORK/host" \
        --authorized-keys "$WORK/authorized_keys" 2>>"$WORK/serve-$1.log" &
    SERVER_PID=$!
    wait_port "$PORT"
    kill -0 "$SERVER_PID"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

attack_args() {
    local third=$((SLOW / 3))
    case $1 in
    silent) echo "--silent $SLOW --trickle 0 --stalled 0 --garbage-rate 0 --reopen-pause-ms 100" ;;
    silent-refill) echo "--silent $SLOW --trickle 0 --stalled 0 --garbage-rate 0 --reopen-pause-ms 0" ;;
    stalled) echo "--silent 0 --trickle 0 --stalled $SLOW --garbage-rate 0 --reopen-pause-ms 0" ;;
    mixed) echo "--silent $third --trickle $third --stalled $third --garbage-rate 200 --reopen-pause-ms 0" ;;
    *) echo "unknown scenario $1" >&2; exit 1 ;;
    esac
}

printf '%-14s %8s %10s %10s %10s %10s  %s\n' scenario probes success p50 p99 max "evictions (server log lines)"
for scenario in $SCENARIOS; do
    echo "scenario $scenario: $DURATION s..." >&2
    start_server "$scenario"
    # shellcheck disable=SC2046 # the arguments are words
    out=$("$BIN" attack flood --target "127.0.0.1:$PORT" -i "$WORK/client" --from 127.0.0.1 \
        --expect-fingerprint "$FINGERPRINT" --sources "$SOURCES" --duration "$DURATION" \
        $(attack_args "$scenario"))
    stop_server
    echo "$out" | sed 's/^/  /' >&2
    probes=$(sed -n 's/^probes ok \([0-9]*\) failed \([0-9]*\).*/\1+\2/p' <<<"$out")
    success=$(sed -n 's/.*(success \([^)]*\)).*/\1/p' <<<"$out")
    p50=$(sed -n 's/.*p50 \([^ ]* ms\|-\).*/\1/p' <<<"$out")
    p99=$(sed -n 's/.*p99 \([^ ]* ms\|-\).*/\1/p' <<<"$out")
    max=$(sed -n 's/.*max \([^ ]* ms\|-\).*/\1/p' <<<"$out")
    evictions=$(grep -c "closed the oldest unfinished handshake" "$WORK/serve-$scenario.log" || true)
    printf '%-14s %8s %10s %10s %10s %10s  %s\n' "$scenario" "$((probes))" "$success" "$p50" "$p99" "$max" "$evictions"
done
