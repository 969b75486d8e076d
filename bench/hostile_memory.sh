#!/usr/bin/env bash
# The memory-budget attack at full scale (issue 11, row 1): for each count in
# SESSIONS, a fresh `noise-echo serve` (release build, loopback) and that many
# authorized sessions sending 1 MiB requests of `ΐ` (3 MiB once uppercased) that
# never read a reply; reports the server's RSS, the kernel's TCP memory (the whole
# machine's, /proc/net/sockstat, and the server's sockets alone, ss -tm) and how long
# an honest client's requests (another key) took through the flood. The attacker's
# own sockets hold its unsent requests: about 1 GB at 1,000 sessions, 2.4 GB at
# 4,096, whatever the server does; not for a machine others are using. Extra `serve`
# flags go in SERVE_FLAGS, e.g. SERVE_FLAGS="--memory-budget 1TiB" for no effective
# budget, or "--socket-buffer 0" for the kernel's own buffer tuning.
#
#   bash bench/hostile_memory.sh                 # 100 and 1,000 sessions
#   SESSIONS="100 1000 4096" bash bench/hostile_memory.sh   # about 5 minutes
#
# Figures taken on a shared machine measure memory, not speed: the times only say
# the honest client was answered.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-"100 1000"}
REQUESTS=${REQUESTS:-1}
PORT=${PORT:-47311}
cargo build --release -q -p noise-echo-cli
cargo build --release -q -p noise-echo-tools --example hostile_memory
BIN=target/release/noise-echo
ATTACK=target/release/examples/hostile_memory
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
export XDG_CONFIG_HOME="$WORK/config" HOME="$WORK"
"$BIN" keygen -N '' -f "$WORK/client" -C hostile@bench >/dev/null
"$BIN" keygen -N '' -f "$WORK/honest" -C honest@bench >/dev/null
"$BIN" authorize --authorized-keys "$WORK/authorized_keys" "$WORK/client.pub" "$WORK/honest.pub" >/dev/null
# The flood needs more descriptors than a default soft limit of 1,024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for sessions in $SESSIONS; do
    # One key opens every session: lift the per-key cap; exempt loopback from
    # the per-source caps, as bench/compare.sh does.
    # shellcheck disable=SC2086
    "$BIN" serve --listen 127.0.0.1:$PORT --create-host-key --host-key "$WORK/host" \
        --authorized-keys "$WORK/authorized_keys" --max-connections 12000 \
        --max-handshakes 12000 --penalty-exempt 127.0.0.0/8 --max-sessions-per-key 0 \
        ${SERVE_FLAGS:-} 2>>"$WORK/serve.log" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    "$ATTACK" 127.0.0.1:$PORT "$WORK/client" "$WORK/honest" "$SERVER_PID" "$sessions" "$REQUESTS"
    kill "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
done
