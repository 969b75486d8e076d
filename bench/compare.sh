#!/usr/bin/env bash
# bench/compare.sh: noise-echo against its plaintext baseline, against TLS 1.3 with
# client certificates (rustls + aws-lc-rs, tools/tls), and against OpenSSH when
# installed, on loopback, in one run.
#
# Builds in release mode, starts `noise-echo serve`, tools/examples/plain_echo and
# one `tls-echo serve` per TLS suite on 127.0.0.1 with throw-away keys and a
# throw-away CA, runs every scenario against each alternately (A B C D A B C D ...,
# $ROUNDS rounds, each noise-echo suite in turn), and prints tables of medians and
# ratios. The
# machines this runs on are noisy, so every target is a ratio of figures measured
# in the same run, interleaved. For throughput and handshake it also prints the
# ceiling: the highest ratio this run's own baseline and in-memory figures
# (cipher-cpu, handshake-cpu, plain TCP sessions) allow; docs/BENCHMARKS.md
# derives both.
#
# If sshd and ssh are installed, it also starts a private sshd on 127.0.0.1 (run
# as root, temp config and keys, -D -e) and measures `ssh ... 'echo hello | tr
# a-z A-Z'` per invocation and 1 GiB through `tr`; without them it says so and
# skips that part.
#
# Everything is bounded: each bench run stops after --duration seconds (or a
# count), each ssh run is under `timeout`, and all servers are killed on exit.
# Typical total: 6 to 8 minutes with the default 3 rounds (about 10 with ROUNDS=5).
#
# Environment: ROUNDS (3), DURATION (3 seconds per run), IDLE_SESSIONS (10000),
# CONNECT_RUNS (20 per round), SSH_BYTES (1 GiB), BASE_PORT (27400: noise-echo,
# +1 the baseline, +2 and on the TLS servers, +22 sshd; the script stops if one is
# taken), NOISE_SUITES (the noise-echo cipher suites to measure, space-separated:
# by default every value `noise-echo bench --help` offers for --cipher, or the one
# built-in suite when it has no such option), TLS_SUITES ("aes256gcm chachapoly",
# the values of `tls-echo serve --suite`), SOCKET_BUFFER (each connection's kernel
# buffer, each way, given to noise-echo serve and to every tls-echo serve alike:
# by default both servers' default, 64 KiB; 0 for the kernel's tuning).

set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
IDLE_SESSIONS=${IDLE_SESSIONS:-10000}
CONNECT_RUNS=${CONNECT_RUNS:-20}
SSH_BYTES=${SSH_BYTES:-1073741824}
BASE_PORT=${BASE_PORT:-27400}
NOISE_PORT=$BASE_PORT
PLAIN_PORT=$((BASE_PORT + 1))
SSH_PORT=$((BASE_PORT + 22))
CPUS=$(nproc)
TLS_SUITES=${TLS_SUITES:-aes256gcm chachapoly}

cd "$(dirname "$0")/.."
echo "building (release)..." >&2
cargo build --release --quiet -p noise-echo-cli -p noise-echo-tools -p noise-echo-tls \
    --bin noise-echo --bin tls-echo --example plain_echo
BIN=$PWD/target/release/noise-echo
PLAIN=$PWD/target/release/examples/plain_echo
TLS=$PWD/target/release/tls-echo

# The noise-echo suites: what `bench` offers for --cipher ("[possible values: a,
# b]" in its short help), or "default" (no --cipher flag) before it has one.
offered_suites() {
    "$BIN" bench -h | awk '
        /^ *--cipher/ { on = 1 }
        on && /^ *-/ && !/--cipher/ { on = 0 }
        on { text = text " " $0 }
        END {
            if (match(text, /possible values: [^]]*/)) {
                values = substr(text, RSTART + 17, RLENGTH - 17)
                gsub(/,/, " ", values)
                print values
            }
        }'
}
NOISE_SUITES=${NOISE_SUITES:-$(offered_suites)}
NOISE_SUITES=$(echo ${NOISE_SUITES:-default})
# cipher_args SUITE: the bench flag that selects SUITE (none for "default").
cipher_args() { [ "$1" = default ] || echo "--cipher $1"; }
FIRST_NOISE=${NOISE_SUITES%% *}
echo "noise-echo suites: $NOISE_SUITES; TLS suites: $TLS_SUITES" >&2

# Other work on the machine moves the figures more than most targets' margins
# (the throughput ratio went from 1.12 to 0.97 between two runs of the same code
# on a shared VM): the load average is shown beside the results.
LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
echo "load average at start: $LOAD_AT_START" >&2
WORK=$(mktemp -d /tmp/noise-echo-compare.XXXXXX)
NOISE_PID=
PLAIN_PID=
TLS_PIDS=
SSHD_PID=
cleanup() {
    for pid in $NOISE_PID $PLAIN_PID $TLS_PIDS $SSHD_PID; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Throw-away identities: the server's host key, our client key, its authorization.
"$BIN" keygen -N '' -f "$WORK/host" -C bench-host >/dev/null
"$BIN" keygen -N '' -f "$WORK/client" -C bench-client >/dev/null
"$BIN" authorize --authorized-keys "$WORK/authorized_keys" "$WORK/client.pub" >/dev/null 2>&1
FINGERPRINT=$("$BIN" fingerprint "$WORK/host.pub" | awk '{print $2}')
NOISE=(127.0.0.1:$NOISE_PORT -i "$WORK/client" --known-hosts "$WORK/known_hosts"
    --expect-fingerprint "$FINGERPRINT")
PLAINARGS=(127.0.0.1:$PLAIN_PORT --plain)
# The TLS servers' CA and certificates (Ed25519), and their ports.
"$TLS" certs "$WORK/pki" 2>/dev/null
declare -A TLS_PORT TLS_PID
port=$((BASE_PORT + 2))
for suite in $TLS_SUITES; do
    TLS_PORT[$suite]=$port
    port=$((port + 1))
done
# tls_args SUITE: the address and TLS arguments of `tls-echo bench` for SUITE's server.
tls_args() { echo "127.0.0.1:${TLS_PORT[$1]} --certs $WORK/pki --suite $1"; }

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in $NOISE_PORT $PLAIN_PORT "${TLS_PORT[@]}" $SSH_PORT; do
    port_free $port || { echo "port $port is taken: set BASE_PORT" >&2; exit 1; }
done

start_servers() {
    stop_servers
    "$BIN" serve --listen 127.0.0.1:$NOISE_PORT --host-key "$WORK/host" \
        --authorized-keys "$WORK/authorized_keys" --max-connections 12000 \
        --max-handshakes 12000 --penalty-exempt 127.0.0.0/8 \
        --max-sessions-per-key 0 ${SOCKET_BUFFER:+--socket-buffer "$SOCKET_BUFFER"} \
        2>>"$WORK/serve.log" &
    NOISE_PID=$!
    "$PLAIN" 127.0.0.1:$PLAIN_PORT 2>>"$WORK/plain.log" &
    PLAIN_PID=$!
    TLS_PIDS=
    for suite in $TLS_SUITES; do
        "$TLS" serve "127.0.0.1:${TLS_PORT[$suite]}" --certs "$WORK/pki" --suite "$suite" \
            ${SOCKET_BUFFER:+--socket-buffer "$SOCKET_BUFFER"} 2>>"$WORK/tls.log" &
        TLS_PID[$suite]=$!
        TLS_PIDS="$TLS_PIDS $!"
    done
    wait_port $NOISE_PORT
    wait_port $PLAIN_PORT
    for suite in $TLS_SUITES; do wait_port "${TLS_PORT[$suite]}"; done
    # Ours, not someone else's that took the port meanwhile.
    for pid in $NOISE_PID $PLAIN_PID $TLS_PIDS; do kill -0 "$pid"; done
}

stop_servers() {
    for pid in $NOISE_PID $PLAIN_PID $TLS_PIDS; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    NOISE_PID=
    PLAIN_PID=
    TLS_PIDS=
}

RESULTS=$WORK/results
: >"$RESULTS"

# record KEY VALUE: one measured figure.
record() { echo "$1 $2" >>"$RESULTS"; }

# field JSON NAME: a number from bench --json.
field() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" <<<"$1"; }

# bench LABEL ARGS...: one bounded bench run; the failure of any exchange stops
# the script (a fast wrong answer must not become a figure).
bench() {
    local label=$1
    shift
    local json
    if ! json=$("$@" --json -q); then
        echo "bench run failed: $label: $json" >&2
        exit 1
    fi
    echo "  $label: $json" >&2
    LAST=$json
}

pin_servers() { # CPU list: every thread of every server
    for pid in $NOISE_PID $PLAIN_PID $TLS_PIDS; do
        taskset -a -p -c "$1" "$pid" >/dev/null
    done
}

# CPU time, in clock ticks: a process's own (user + system), and what this
# script's finished children used (each bench client is one). Fields counted after
# the command name, which is in parentheses and may hold spaces.
CLOCK_TICKS=$(getconf CLK_TCK)
own_cpu() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
children_cpu() { sed 's/^.*) //' /proc/$$/stat | awk '{ print $14 + $15 }'; }

# cpu_begin PID, then cpu_end KEY after one bench run against server PID: records
# the server's and the client's CPU time per request of that run (microseconds;
# "ok" in its JSON) as cpu_server.KEY and cpu_client.KEY. Rates on these shared
# machines move with the load; the work done per request hardly does.
cpu_begin() {
    CPU_PID=$1
    CPU_SERVER=$(own_cpu "$1")
    CPU_CLIENT=$(children_cpu)
}
cpu_end() {
    local server client ok
    server=$(own_cpu "$CPU_PID")
    client=$(children_cpu)
    ok=$(field "$LAST" ok)
    record "cpu_server.$1" "$(awk -v a="$CPU_SERVER" -v b="$server" -v t="$CLOCK_TICKS" -v n="$ok" \
        'BEGIN { print (n > 0) ? (b - a) * 1e6 / t / n : "nan" }')"
    record "cpu_client.$1" "$(awk -v a="$CPU_CLIENT" -v b="$client" -v t="$CLOCK_TICKS" -v n="$ok" \
        'BEGIN { print (n > 0) ? (b - a) * 1e6 / t / n : "nan" }')"
}

# each_secure SCENARIO KEY FIELD [FIELD2 KEY2] [ARGS...]: runs SCENARIO once with each
# noise-echo suite and each TLS suite, recording FIELD of each as KEY.noise-SUITE /
# KEY.tls-SUITE (the first noise suite also as KEY.noise, for the plaintext table).
# PREFIX (taskset, say) goes before each command.
each_secure() {
    local scenario=$1 key=$2 field=$3 key2=$4 field2=$5
    shift 5
    local suite
    for suite in $NOISE_SUITES; do
        cpu_begin "$NOISE_PID"
        # shellcheck disable=SC2046 # cipher_args is zero or two words
        bench "$scenario noise ($suite)" $PREFIX "$BIN" bench "${NOISE[@]}" $(cipher_args "$suite") \
            --scenario "$scenario" "$@"
        cpu_end "$scenario.noise-$suite"
        record "$key.noise-$suite" "$(field "$LAST" "$field")"
        if [ -n "$key2" ]; then record "$key2.noise-$suite" "$(field "$LAST" "$field2")"; fi
        if [ "$suite" = "$FIRST_NOISE" ]; then
            record "$key.noise" "$(field "$LAST" "$field")"
            if [ -n "$key2" ]; then record "$key2.noise" "$(field "$LAST" "$field2")"; fi
        fi
    done
    for suite in $TLS_SUITES; do
        cpu_begin "${TLS_PID[$suite]}"
        # shellcheck disable=SC2046 # tls_args is several words, none with spaces
        bench "$scenario tls ($suite)" $PREFIX "$TLS" bench $(tls_args "$suite") \
            --scenario "$scenario" "$@"
        cpu_end "$scenario.tls-$suite"
        record "$key.tls-$suite" "$(field "$LAST" "$field")"
        if [ -n "$key2" ]; then record "$key2.tls-$suite" "$(field "$LAST" "$field2")"; fi
    done
    return 0
}
PREFIX=

start_servers
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2

    each_secure handshake handshake rate_per_s "" "" --duration "$DURATION"
    bench "handshake-cpu" "$BIN" bench --scenario handshake-cpu --duration "$DURATION"
    record handshake.cpu "$(field "$LAST" rate_per_s)"
    bench "handshake plain" "$BIN" bench "${PLAINARGS[@]}" --scenario handshake --duration "$DURATION"
    record handshake.plain "$(field "$LAST" rate_per_s)"

    # Latency: both ends on the same core, for both servers alike.
    pin_servers 0
    PREFIX="taskset -c 0"
    each_secure latency latency_p50 p50_us latency_p99 p99_us --duration "$DURATION"
    PREFIX=
    bench "latency plain" taskset -c 0 "$BIN" bench "${PLAINARGS[@]}" --scenario latency --duration "$DURATION"
    record latency_p50.plain "$(field "$LAST" p50_us)"
    record latency_p99.plain "$(field "$LAST" p99_us)"
    pin_servers "0-$((CPUS - 1))"

    each_secure throughput throughput mb_per_s "" "" --duration "$DURATION"
    bench "throughput plain" "$BIN" bench "${PLAINARGS[@]}" --scenario throughput --duration "$DURATION"
    record throughput.plain "$(field "$LAST" mb_per_s)"
    bench "cipher-cpu" "$BIN" bench --scenario cipher-cpu --duration "$DURATION"
    record cipher.cpu "$(field "$LAST" mb_per_s)"

    each_secure pipeline pipeline rate_per_s "" "" --duration "$DURATION"
    bench "pipeline plain" "$BIN" bench "${PLAINARGS[@]}" --scenario pipeline --duration "$DURATION"
    record pipeline.plain "$(field "$LAST" rate_per_s)"

    # One-shot connect: a whole process, wall time per invocation.
    for _ in $(seq 1 "$CONNECT_RUNS"); do
        start=$(date +%s%N)
        out=$("$BIN" connect "${NOISE[@]}" hello)
        end=$(date +%s%N)
        [ "$out" = HELLO ] || { echo "connect answered '$out'" >&2; exit 1; }
        record connect_ms.noise "$(awk "BEGIN{print ($end-$start)/1e6}")"
    done
done

# Idle: fresh servers each round, so "before" is a server that has done nothing.
for round in $(seq 1 "$ROUNDS"); do
    echo "idle round $round of $ROUNDS" >&2
    start_servers
    for suite in $NOISE_SUITES; do
        # A fresh server for each suite after the first: "before" must be idle.
        if [ "$suite" != "$FIRST_NOISE" ]; then start_servers; fi
        # shellcheck disable=SC2046
        bench "idle noise ($suite)" "$BIN" bench "${NOISE[@]}" $(cipher_args "$suite") \
            --scenario idle --sessions "$IDLE_SESSIONS" --duration 120 --server-pid "$NOISE_PID"
        record "idle_kib.noise-$suite" "$(field "$LAST" kib_per_session)"
        if [ "$suite" = "$FIRST_NOISE" ]; then
            record idle_kib.noise "$(field "$LAST" kib_per_session)"
        fi
    done
    for suite in $TLS_SUITES; do
        # shellcheck disable=SC2046
        bench "idle tls ($suite)" "$TLS" bench $(tls_args "$suite") --scenario idle \
            --sessions "$IDLE_SESSIONS" --duration 120 --server-pid "${TLS_PID[$suite]}"
        record "idle_kib.tls-$suite" "$(field "$LAST" kib_per_session)"
    done
    bench "idle plain" "$BIN" bench "${PLAINARGS[@]}" --scenario idle --sessions "$IDLE_SESSIONS" \
        --duration 120 --server-pid "$PLAIN_PID"
    record idle_kib.plain "$(field "$LAST" kib_per_session)"
done
stop_servers

# OpenSSH, when installed: a private sshd on loopback with throw-away keys.
SSHD=$(command -v sshd || true)
[ -z "$SSHD" ] && [ -x /usr/sbin/sshd ] && SSHD=/usr/sbin/sshd
if [ -n "$SSHD" ] && command -v ssh >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "OpenSSH: starting a private sshd on 127.0.0.1:$SSH_PORT" >&2
    ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh_host_ed25519_key" -C bench-sshd
    ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh_client" -C bench-ssh-client
    cp "$WORK/ssh_client.pub" "$WORK/ssh_authorized_keys"
    chmod 600 "$WORK/ssh_authorized_keys"
    mkdir -p /run/sshd
    cat >"$WORK/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $WORK/ssh_host_ed25519_key
AuthorizedKeysFile $WORK/ssh_authorized_keys
PidFile $WORK/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
LogLevel ERROR
EOF
    "$SSHD" -f "$WORK/sshd_config" -D -e 2>>"$WORK/sshd.log" &
    SSHD_PID=$!
    wait_port $SSH_PORT
    kill -0 "$SSHD_PID"
    SSH=(ssh -F /dev/null -i "$WORK/ssh_client" -p "$SSH_PORT"
        -o UserKnownHostsFile="$WORK/ssh_known_hosts" -o StrictHostKeyChecking=accept-new
        -o BatchMode=yes -o KexAlgorithms=curve25519-sha256
        -o Ciphers=chacha20-poly1305@openssh.com "$(id -un)@127.0.0.1")
    start_servers
    for round in $(seq 1 "$ROUNDS"); do
        echo "OpenSSH round $round of $ROUNDS" >&2
        for _ in $(seq 1 "$CONNECT_RUNS"); do
            start=$(date +%s%N)
            out=$(timeout 10 "${SSH[@]}" 'echo hello | tr a-z A-Z')
            end=$(date +%s%N)
            [ "$out" = HELLO ] || { echo "ssh answered '$out'" >&2; exit 1; }
            record connect_ms.ssh "$(awk "BEGIN{print ($end-$start)/1e6}")"
            start=$(date +%s%N)
            out=$("$BIN" connect "${NOISE[@]}" hello)
            end=$(date +%s%N)
            record connect_ms.noise2 "$(awk "BEGIN{print ($end-$start)/1e6}")"
        done
        start=$(date +%s%N)
        bytes=$(head -c "$SSH_BYTES" /dev/zero | tr '\0' a |
            timeout 120 "${SSH[@]}" 'tr a-z A-Z' | tr -d A | wc -c)
        end=$(date +%s%N)
        [ "$bytes" = 0 ] || { echo "ssh tr returned $bytes wrong bytes" >&2; exit 1; }
        record ssh_throughput "$(awk "BEGIN{print $SSH_BYTES/1e6/(($end-$start)/1e9)}")"
        bench "throughput noise (beside ssh)" "$BIN" bench "${NOISE[@]}" --scenario throughput \
            --duration "$DURATION"
        record throughput.noise2 "$(field "$LAST" mb_per_s)"
    done
    stop_servers
else
    echo "OpenSSH: sshd or ssh not installed (or not root): skipping the OpenSSH comparison" >&2
fi

# median KEY: the median of the recorded figures for KEY.
median() {
    awk -v key="$1" '$1 == key { print $2 }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# row SCENARIO METRIC A B TARGET_OP TARGET [CEILING]: ratio A/B against the target,
# and the highest ratio this run's own measurements allow, where one is known.
row() {
    local a b
    a=$(median "$3")
    b=$(median "$4")
    awk -v s="$1" -v m="$2" -v a="$a" -v b="$b" -v op="$5" -v t="$6" -v c="${7:--}" 'BEGIN {
        if (c != "-") c = sprintf("%.3f", c)
        if (a == "nan" || b == "nan" || b == 0) { printf "%-22s %-15s %12s %12s %8s %10s %8s  %s\n", s, m, a, b, "-", op t, c, "n/a"; exit }
        r = a / b
        ok = (op == ">=") ? (r >= t) : (r <= t)
        printf "%-22s %-15s %12.1f %12.1f %8.3f %10s %8s  %s\n", s, m, a, b, r, op t, c, ok ? "met" : "MISSED"
    }'
}

# The ceilings. A Noise echo does at least what the plaintext echo does, plus its
# cryptography, on the same two cores; so, per MB echoed, its CPU time is at least
# the baseline's plus sealing and opening every byte twice (request and reply), and
# per session at least a plain TCP session's plus one handshake pair:
#   throughput <= 1 / (1 + 2 * plain MB/s / cipher-cpu MB/s)   (as a ratio to plain)
#   handshake  <= 1 / (1 + handshake-cpu / plain sessions/s)   (as a ratio to handshake-cpu)
THROUGHPUT_CEILING=$(awk -v p="$(median throughput.plain)" -v c="$(median cipher.cpu)" \
    'BEGIN { if (p == "nan" || c == "nan" || c == 0) print "-"; else print 1 / (1 + 2 * p / c) }')
HANDSHAKE_CEILING=$(awk -v h="$(median handshake.cpu)" -v p="$(median handshake.plain)" \
    'BEGIN { if (h == "nan" || p == "nan" || p == 0) print "-"; else print 1 / (1 + h / p) }')

echo
echo "noise-echo vs baselines, medians of $ROUNDS interleaved rounds ($(nproc) CPUs: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))"
LOAD_AT_END=$(cut -d' ' -f1 /proc/loadavg)
echo "load average: $LOAD_AT_START at start, $LOAD_AT_END at the end (its own runs raise it while it runs)"
if awk "BEGIN{exit !($LOAD_AT_START > 0.5)}"; then
    echo "warning: the machine was busy before the run (load average $LOAD_AT_START): compare these ratios only with a run on a quiet machine"
fi
printf "%-22s %-15s %12s %12s %8s %10s %8s  %s\n" scenario metric noise baseline ratio target ceiling result
row "throughput 1 MiB" "MB/s" throughput.noise throughput.plain ">=" 0.5 "$THROUGHPUT_CEILING"
row "latency 16 B (pinned)" "p50 us" latency_p50.noise latency_p50.plain "<=" 1.15
row "latency 16 B (pinned)" "p99 us" latency_p99.noise latency_p99.plain "<=" 1.5
row "handshake, 16 conc." "sessions/s" handshake.noise handshake.cpu ">=" 0.9 "$HANDSHAKE_CEILING"
row "pipeline 16 B" "requests/s" pipeline.noise pipeline.plain ">=" 0.5
awk -v a="$(median idle_kib.noise)" -v b="$(median idle_kib.plain)" -v n="$IDLE_SESSIONS" 'BEGIN {
    printf "%-22s %-15s %12.2f %12.2f %8s %10s %8s  %s\n", "idle " n " sessions", "KiB/session", a, b, "-", "<=4 KiB", "-", (a <= 4) ? "met" : "MISSED"
}'
echo "  (handshake baseline: handshake-cpu pairs/s; plain TCP sessions/s: $(median handshake.plain);"
echo "   cipher-cpu: $(median cipher.cpu) MB/s sealed and opened in memory on all cores;"
echo "   ceiling: the highest ratio this run's baseline and in-memory figures allow (see docs/BENCHMARKS.md);"
echo "   idle target is absolute: noise <= 4 KiB per session, baseline shown for reference)"

# tls_row FIGURE METRIC KEY OP TARGET REFERENCE: for each noise-echo suite, its
# median, each TLS suite's, the ratios noise/TLS for each, and the target checked
# against REFERENCE: "max" (the best rustls figure when more is better), "min" (the
# best when less is better), or one TLS suite's name.
tls_row() {
    local figure=$1 metric=$2 key=$3 op=$4 target=$5 reference=$6 suite tls values
    for suite in $NOISE_SUITES; do
        values="$(median "$key.noise-$suite")"
        for tls in $TLS_SUITES; do values="$values $(median "$key.tls-$tls")"; done
        awk -v f="$figure" -v m="$metric" -v n="noise-$suite" -v vals="$values" -v op="$op" \
            -v t="$target" -v ref="$reference" -v names="$TLS_SUITES" 'BEGIN {
            count = split(vals, v, " ")
            split(names, name, " ")
            line = sprintf("%-22s %-12s %-17s %12.2f", f, m, n, v[1])
            best = ""
            for (i = 2; i <= count; i++) {
                line = line sprintf(" %15.2f", v[i])
                if (ref == "max" && (best == "" || v[i] > best)) best = v[i]
                if (ref == "min" && (best == "" || v[i] < best)) best = v[i]
                if (ref == name[i - 1]) best = v[i]
            }
            for (i = 2; i <= count; i++)
                line = line sprintf(" %13s", (v[i] > 0 && v[1] != "nan") ? sprintf("%.3f", v[1] / v[i]) : "-")
            if (best == "" || best == 0 || v[1] == "nan") { print line "  n/a"; exit }
            r = v[1] / best
            ok = (op == ">=") ? (r >= t) : (r <= t)
            printf "%s %8s %7.3f  %s\n", line, op t, r, ok ? "met" : "MISSED"
        }'
    done
}

echo
echo "noise-echo vs TLS 1.3 with client certificates (rustls + aws-lc-rs, tools/tls), medians of $ROUNDS interleaved rounds"
echo "(each connection's kernel buffers, the same for both servers: ${SOCKET_BUFFER:-their default, 64 KiB} each way; SOCKET_BUFFER=0 for the kernel's tuning)"
header=$(printf "%-22s %-12s %-17s %12s" scenario metric noise-echo value)
for tls in $TLS_SUITES; do header="$header$(printf " %15s" "tls-$tls")"; done
for tls in $TLS_SUITES; do header="$header$(printf " %13s" "n/$tls")"; done
echo "$header$(printf " %8s %7s  %s" target vs-ref result)"
tls_row "handshake, 16 conc." "sessions/s" handshake ">=" 1.2 max
tls_row "latency 16 B (pinned)" "p50 us" latency_p50 "<=" 0.95 min
tls_row "latency 16 B (pinned)" "p99 us" latency_p99 "<=" 0.95 min
tls_row "throughput 1 MiB" "MB/s" throughput ">=" 1.1 aes256gcm
tls_row "pipeline 16 B" "requests/s" pipeline ">=" 1.1 aes256gcm
tls_row "idle $IDLE_SESSIONS sessions" "KiB/session" idle_kib "<=" 0.35 min
echo "  (n/SUITE: noise-echo's figure over rustls's with SUITE; vs-ref: over the reference the target"
echo "   names: the faster rustls suite for handshakes, AES-256-GCM for throughput and pipeline, the"
echo "   better rustls figure for latency and idle memory; the throughput target is for noise-echo's"
echo "   fastest suite)"

# cpu_row SCENARIO UNIT: for each noise-echo suite, the server's and the client's
# CPU time per UNIT, against rustls with the first TLS suite (both sides, and the
# sum); no target, it says where the time goes.
cpu_row() {
    local scenario=$1 unit=$2 suite ref
    ref=$(set -- $TLS_SUITES; echo "$1")
    for suite in $NOISE_SUITES; do
        awk -v f="$scenario" -v u="$unit" -v n="noise-$suite" \
            -v ns="$(median "cpu_server.$scenario.noise-$suite")" -v nc="$(median "cpu_client.$scenario.noise-$suite")" \
            -v ts="$(median "cpu_server.$scenario.tls-$ref")" -v tc="$(median "cpu_client.$scenario.tls-$ref")" 'BEGIN {
            ratio = "-"; server = "-"; client = "-"
            if (ts > 0) server = sprintf("%.3f", ns / ts)
            if (tc > 0) client = sprintf("%.3f", nc / tc)
            if (ts + tc > 0) ratio = sprintf("%.3f", (ns + nc) / (ts + tc))
            printf "%-22s %-12s %-17s %10.3f %10.3f %10.3f %10.3f %8s %8s %8s\n", f, u, n, ns, nc, ts, tc, server, client, ratio
        }'
    done
}

echo
echo "CPU time per request, microseconds (user + system, medians of $ROUNDS rounds): the work each"
echo "side did, which moves far less with the machine's load than the rates above do"
printf "%-22s %-12s %-17s %10s %10s %10s %10s %8s %8s %8s\n" scenario per noise-echo server client \
    "tls server" "tls client" n/server n/client n/both
cpu_row handshake session
cpu_row latency "round trip"
cpu_row throughput "1 MiB"
cpu_row pipeline request
echo "  (tls: rustls with $(set -- $TLS_SUITES; echo "$1"); n/...: noise-echo's time over rustls's; the client is"
echo "   each stack's load generator, the same code around each stack's own library)"

echo
if [ -n "$SSHD_PID" ]; then
    row "connect one-shot" "ms/process" connect_ms.noise2 connect_ms.ssh "<=" 0.0333
    row "vs ssh: throughput" "MB/s" throughput.noise2 ssh_throughput ">=" 1
    echo "  (OpenSSH: 'ssh ... echo hello | tr a-z A-Z' $(median connect_ms.ssh) ms per invocation;"
    echo "   $SSH_BYTES bytes through 'tr' over ssh: $(median ssh_throughput) MB/s)"
else
    echo "connect one-shot: $(median connect_ms.noise) ms per process (no OpenSSH to compare with)"
fi
