#!/usr/bin/env bash
# Capture real packet traces of tcpproto sessions on loopback, for docs/tcp-lifecycle.rst.
#
# For each scenario it starts the installed `twistd tcpecho` on a free loopback port,
# captures that port with tcpdump while a client talks to it, and writes
#   OUTDIR/NAME.pcap  the capture (tcpdump -r FILE -nn, or Wireshark, reads it)
#   OUTDIR/NAME.txt   the capture rendered by scripts/render_trace.py, with the
#                     client's output, the server's log and the sockets left in TIME_WAIT
# Scenarios: echo-halfclose (client sends a line, half-closes, reads the echo),
# thankyou-once (the tutorial's server replies and closes first; then a restart on its
# port shows why SO_REUSEADDR matters), abort-rst (the client resets the connection).
#
# (The captures that need a network of their own, a retransmission under nftables loss
# and the connection states, are made by scripts/capture-netns.sh.)
#
# Needs: Debian packages tcpdump and iproute2 (for ss); root or CAP_NET_RAW to capture;
# a Python with tcpproto installed: PYTHON (default .venv/bin/python, else python3).
# Only 127.0.0.1 is used.  Usage: scripts/capture-trace.sh [OUTDIR]  (default docs/traces)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-docs/traces}
SCRIPT=capture-trace.sh
# shellcheck source=scripts/capture-common.sh
. scripts/capture-common.sh
need_tools "tcpdump iproute2" tcpdump ss
mkdir -p "$OUT"

# The server's tcpproto log lines, without timestamps.
server_events() {
    grep '\[tcpproto' "$WORK/server.log" | grep -v 'factory <' |
        sed -E 's/^[^ ]+ \[[^]]*\] /    /' || true
}

time_wait() {
    ss -tan state time-wait "( sport = :$PORT or dport = :$PORT )" | sed 's/^/    /'
}

# write NAME TITLE CLIENT_COMMAND: assemble OUTDIR/NAME.txt from what was collected.
write() {
    local name=$1 title=$2 command=$3
    cp "$WORK/$name.pcap" "$OUT/$name.pcap"
    {
        echo "$title"
        echo
        echo "server:  twistd -n tcpecho --listen $LISTEN${SERVER_ARGS:+ $SERVER_ARGS}"
        echo "         (server port: $PORT)"
        echo "client:  $command"
        echo "capture: tcpdump -i lo -w $name.pcap 'tcp port $PORT', rendered by scripts/render_trace.py"
        echo "         seq/ack are relative; window is the receive window in bytes"
        echo
        "$PYTHON" scripts/render_trace.py "$WORK/$name.pcap" "$PORT"
        echo
        echo "client output:"
        sed 's/^/    /' "$WORK/client.out"
        echo "server log:"
        server_events
        echo "sockets in TIME_WAIT just after (ss -tan state time-wait):"
        cat "$WORK/timewait.txt"
        [ -f "$WORK/extra.txt" ] && cat "$WORK/extra.txt"
    } >"$OUT/$name.txt"
    rm -f "$WORK/extra.txt"
    echo "wrote $OUT/$name.txt and $OUT/$name.pcap"
}

# 1. Echo: the client sends a line and half-closes; the server echoes, then closes.
SERVER_ARGS=
start_server
start_capture echo-halfclose
printf 'hello\n' | timeout 10 "$CLIENT" 127.0.0.1 "$PORT" >"$WORK/client.out" 2>&1
stop_capture 0.5 # the last ACK
time_wait >"$WORK/timewait.txt"
stop_server
write echo-halfclose "echo-halfclose: a line echoed, the client half-closes first" \
    "printf 'hello\\n' | tcpecho-client 127.0.0.1 $PORT"

# 2. The tutorial's server: it replies once and closes first, so its side ends in TIME_WAIT.
SERVER_ARGS="--mode thankyou --once"
start_server --mode thankyou --once
start_capture thankyou-once
# The client's input stays open for a second: it closes only when the server does.
(printf 'hello'; sleep 1) | timeout 10 "$CLIENT" 127.0.0.1 "$PORT" >"$WORK/client.out" 2>&1
echo >>"$WORK/client.out"
stop_capture 0.5 # the last ACK
time_wait >"$WORK/timewait.txt"
stop_server
{
    echo "restarting on port $PORT at once (the server's side is in TIME_WAIT):"
    echo "  python docs/examples/reuseaddr.py 127.0.0.1 $PORT"
    timeout 10 "$PYTHON" docs/examples/reuseaddr.py 127.0.0.1 "$PORT" | sed 's/^/    /'
    LISTEN_AGAIN="tcp:$PORT:interface=127.0.0.1"
    "$TWISTD" -n --pidfile= tcpecho --listen "$LISTEN_AGAIN" >"$WORK/restart.log" 2>&1 &
    SERVER_PID=$!
    wait_for "$WORK/restart.log" 'listening on|error'
    echo "  twistd -n tcpecho --listen $LISTEN_AGAIN  (Twisted sets SO_REUSEADDR):"
    grep -oE '(listening on|error).*' "$WORK/restart.log" | sed 's/^/    /'
    stop_server
} >"$WORK/extra.txt"
write thankyou-once "thankyou-once: the tutorial's server replies once and closes first" \
    "(printf 'hello'; sleep 1) | tcpecho-client 127.0.0.1 $PORT"

# 3. Abort: the client resets the connection (SO_LINGER 0, as abortConnection does).
SERVER_ARGS=
start_server
start_capture abort-rst
timeout 10 "$PYTHON" docs/examples/abort_client.py 127.0.0.1 "$PORT" >"$WORK/client.out" 2>&1
stop_capture 0.5 # the last ACK
time_wait >"$WORK/timewait.txt"
stop_server
write abort-rst "abort-rst: the client aborts the connection with RST" \
    "python docs/examples/abort_client.py 127.0.0.1 $PORT"
