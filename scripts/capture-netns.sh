#!/usr/bin/env bash
# Capture what needs a network of its own, for docs/tcp-lifecycle.rst:
#
#   retransmit   tcpecho-client talks to twistd tcpecho while an nftables rule drops
#                a share of the TCP segments: the capture shows a segment sent again.
#                Writes OUTDIR/retransmit.pcap and OUTDIR/retransmit.txt (rendered by
#                scripts/render_trace.py, like the traces of scripts/capture-trace.sh).
#   zero-window  docs/examples/slow_reader.py (sends without reading) against twistd
#                tcpecho, in a namespace whose TCP buffers are 16 KiB (the sysctls
#                net.ipv4.tcp_rmem and tcp_wmem are per namespace): the receive
#                windows close and open again.  OUTDIR/zero-window.pcap and .txt.
#   tcp-states   one `ss -tan` line at each state of a connection's life (SYN-SENT,
#                SYN-RECV, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, LAST-ACK,
#                TIME-WAIT), each held still by an nftables rule that drops the segment
#                which would move it on (scripts/capture_states.py).  Writes
#                OUTDIR/tcp-states.txt.
#
# Everything runs in a network namespace made for the purpose (`ip netns add`), on its
# own loopback interface: no other interface, address or network is touched, and the
# nftables rules live and die with the namespace.
#
# Loss is random, so the retransmission capture is retried until it shows exactly one
# retransmitted segment, a data segment: at most ATTEMPTS (default 60) times and TIME_LIMIT
# (default 300) seconds in all; each attempt is bounded too.
#
# Needs root and the Debian packages iproute2 (ip, ss), nftables (nft) and tcpdump;
# a Python with tcpproto installed: PYTHON (default .venv/bin/python, else python3).
# Usage: scripts/capture-netns.sh [OUTDIR [retransmit|zero-window|states|all]]
#        (default: docs/traces, all)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-docs/traces}
WHAT=${2:-all}
case "$WHAT" in
retransmit | zero-window | states | all) ;;
*) echo "usage: capture-netns.sh [OUTDIR [retransmit|zero-window|states|all]]" >&2; exit 2 ;;
esac
LOSS=${LOSS:-10}             # percent of the segments dropped, each way
ATTEMPTS=${ATTEMPTS:-60}
TIME_LIMIT=${TIME_LIMIT:-300}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
PYTHON=$(command -v "$PYTHON")
BIN=$("$PYTHON" -c 'import os, sys; print(os.path.dirname(sys.executable))')
TWISTD=$BIN/twistd
CLIENT=$BIN/tcpecho-client

[ "$(id -u)" -eq 0 ] || { echo "capture-netns.sh: needs root (network namespace, nftables, tcpdump)" >&2; exit 1; }
for tool in ip ss nft tcpdump timeout; do
    command -v "$tool" >/dev/null || {
        echo "capture-netns.sh: $tool not found (apt-get install iproute2 nftables tcpdump)" >&2
        exit 1
    }
done
[ -x "$TWISTD" ] || { echo "capture-netns.sh: no twistd next to $PYTHON" >&2; exit 1; }

NS=tcpproto-capture-$$
LISTEN=tcp:0:interface=127.0.0.1
WORK=$(mktemp -d)
SERVER_PID=
CAPTURE_PID=
cleanup() {
    [ -n "$CAPTURE_PID" ] && kill "$CAPTURE_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$NS-small" 2>/dev/null || true
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
IN=(ip netns exec "$NS")
"${IN[@]}" ip link set lo up
mkdir -p "$OUT"

wait_for() {  # FILE REGEX: up to 10 s
    for _ in $(seq 100); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "capture-netns.sh: timed out waiting for '$2' in $1:" >&2
    cat "$1" >&2
    exit 1
}

# -- 1. retransmission ------------------------------------------------------------
capture_retransmit() {

    "${IN[@]}" "$TWISTD" -n --pidfile= tcpecho --listen "$LISTEN" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_for "$WORK/server.log" 'listening on 127\.0\.0\.1:[0-9]+'
    PORT=$(grep -oE 'listening on 127\.0\.0\.1:[0-9]+' "$WORK/server.log" | head -1 | cut -d: -f2)

    # Drop LOSS% of the segments to and from the server port as they arrive (the input
    # hook runs after tcpdump has seen the segment on lo, so the capture shows both the
    # copy that was lost and the one sent again).
    RULES="table inet tcpproto_loss {
        chain input {
            type filter hook input priority 0; policy accept;
            tcp dport $PORT numgen random mod 100 < $LOSS drop
            tcp sport $PORT numgen random mod 100 < $LOSS drop
        }
    }"
    echo "$RULES" | "${IN[@]}" nft -f -

    DEADLINE=$((SECONDS + TIME_LIMIT))
    attempt=0
    found=
    while [ "$attempt" -lt "$ATTEMPTS" ] && [ "$SECONDS" -lt "$DEADLINE" ]; do
        attempt=$((attempt + 1))
        : >"$WORK/tcpdump.err"
        "${IN[@]}" tcpdump -i lo -nn -U --immediate-mode -s 0 -w "$WORK/retransmit.pcap" \
            "tcp port $PORT" 2>"$WORK/tcpdump.err" &
        CAPTURE_PID=$!
        wait_for "$WORK/tcpdump.err" 'listening on'
        # The input stays open a second, so that a lost segment is noticed by a timer
        # (no later segment of the client's, such as its FIN, reveals the gap first).
        (printf 'hello\n'; sleep 1) | "${IN[@]}" timeout 30 "$CLIENT" 127.0.0.1 "$PORT" \
            >"$WORK/client.out" 2>&1 || true
        sleep 1 # a late retransmission of the last FIN or ACK
        kill -INT "$CAPTURE_PID"
        wait "$CAPTURE_PID" || true
        CAPTURE_PID=
        "$PYTHON" scripts/render_trace.py "$WORK/retransmit.pcap" "$PORT" >"$WORK/table.txt"
        # Exactly one segment sent again, a data segment, by a timer (a trace a reader can follow),
        # and the echo came back whole.
        # A timer sent it (5 ms or more after the first copy), not a duplicate ACK.
        late=$(grep -oE 'row [0-9]+ sent again, [0-9.]+ ms later; [0-9]+ data bytes' "$WORK/table.txt" |
            awk '$5 >= 5 { n++ } END { print n + 0 }' || true)
        if [ "$(grep -c 'retransmission: row' "$WORK/table.txt" || true)" -eq 1 ] && [ "$late" -eq 1 ] &&
            grep -qx 'hello' "$WORK/client.out"; then
            found=yes
            break
        fi
    done
    "${IN[@]}" nft delete table inet tcpproto_loss
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
    if [ -z "$found" ]; then
        echo "capture-netns.sh: no retransmitted data segment in $attempt attempts" >&2
        exit 1
    fi
    cp "$WORK/retransmit.pcap" "$OUT/retransmit.pcap"
    {
        echo "retransmit: a line echoed while $LOSS% of the segments each way are dropped"
        echo
        echo "namespace: ip netns add NS; ip netns exec NS ip link set lo up (its own loopback)"
        echo "loss:      nftables, input hook: tcp dport/sport $PORT numgen random mod 100 < $LOSS drop"
        echo "server:    twistd -n tcpecho --listen $LISTEN"
        echo "           (server port: $PORT)"
        echo "client:    (printf 'hello\\n'; sleep 1) | tcpecho-client 127.0.0.1 $PORT   (attempt $attempt)"
        echo "capture:   tcpdump -i lo -w retransmit.pcap 'tcp port $PORT', rendered by scripts/render_trace.py"
        echo "           seq/ack are relative; window is the receive window in bytes; tcpdump sees"
        echo "           each segment before the rule drops it, so a lost segment is in the table too"
        echo
        cat "$WORK/table.txt"
        echo
        echo "client output:"
        sed 's/^/    /' "$WORK/client.out"
    } >"$OUT/retransmit.txt"
    echo "wrote $OUT/retransmit.txt and $OUT/retransmit.pcap"
}

# -- 2. the states ------------------------------------------------------------------
capture_states() {
    "${IN[@]}" "$PYTHON" scripts/capture_states.py >"$WORK/tcp-states.txt"
    cp "$WORK/tcp-states.txt" "$OUT/tcp-states.txt"
    echo "wrote $OUT/tcp-states.txt"
}

# -- 3. flow control on the wire -----------------------------------------------------
capture_zero_window() {
    local ns=$NS-small
    ip netns add "$ns"
    local in=(ip netns exec "$ns")
    "${in[@]}" ip link set lo up
    # Small socket buffers (min, default, max), in this namespace only: the
    # windows close after a few segments instead of a few MiB.
    "${in[@]}" sysctl -q -w net.ipv4.tcp_rmem="4096 16384 16384" net.ipv4.tcp_wmem="4096 16384 16384"
    "${in[@]}" "$TWISTD" -n --pidfile= tcpecho --listen "$LISTEN" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_for "$WORK/server.log" 'listening on 127\.0\.0\.1:[0-9]+'
    PORT=$(grep -oE 'listening on 127\.0\.0\.1:[0-9]+' "$WORK/server.log" | head -1 | cut -d: -f2)
    # Retried (at most 5 times) until the capture holds the whole conversation
    # (tcpdump can miss its end), both windows reached 0, and every byte came back.
    local attempt=0 complete=
    while [ "$attempt" -lt 5 ] && [ -z "$complete" ]; do
        attempt=$((attempt + 1))
        : >"$WORK/tcpdump.err"
        "${in[@]}" tcpdump -i lo -nn -U --immediate-mode -s 0 -w "$WORK/zero-window.pcap" \
            "tcp port $PORT" 2>"$WORK/tcpdump.err" &
        CAPTURE_PID=$!
        wait_for "$WORK/tcpdump.err" 'listening on'
        "${in[@]}" timeout 60 "$PYTHON" docs/examples/slow_reader.py 127.0.0.1 "$PORT" 1 \
            >"$WORK/client.out" 2>&1 || true
        sleep 1 # the last ACK
        kill -INT "$CAPTURE_PID"
        wait "$CAPTURE_PID" || true
        CAPTURE_PID=
        "$PYTHON" scripts/render_trace.py "$WORK/zero-window.pcap" "$PORT" >"$WORK/table.txt"
        if grep -q 'all intact' "$WORK/client.out" &&
            grep -q "ACK of the server's FIN" "$WORK/table.txt" &&
            grep -qE 'client -> server .*zero window' "$WORK/table.txt" &&
            grep -qE 'client <- server .*zero window' "$WORK/table.txt"; then
            complete=yes
        fi
    done
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
    [ -n "$complete" ] || {
        echo "capture-netns.sh: zero-window: no complete capture in $attempt attempts:" >&2
        cat "$WORK/client.out" >&2
        exit 1
    }
    cp "$WORK/zero-window.pcap" "$OUT/zero-window.pcap"
    {
        echo "zero-window: a client that sends without reading, against the echo server"
        echo
        echo "namespace: ip netns add NS; ip netns exec NS ip link set lo up (its own loopback);"
        echo "           sysctl net.ipv4.tcp_rmem=\"4096 16384 16384\" net.ipv4.tcp_wmem=\"4096 16384 16384\""
        echo "server:    twistd -n tcpecho --listen $LISTEN"
        echo "           (server port: $PORT)"
        echo "client:    python docs/examples/slow_reader.py 127.0.0.1 $PORT 1"
        echo "capture:   tcpdump -i lo -w zero-window.pcap 'tcp port $PORT', rendered by scripts/render_trace.py"
        echo "           seq/ack are relative; window is the receive window in bytes"
        echo
        cat "$WORK/table.txt"
        echo
        echo "client output:"
        sed 's/^/    /' "$WORK/client.out"
    } >"$OUT/zero-window.txt"
    ip netns del "$ns"
    echo "wrote $OUT/zero-window.txt and $OUT/zero-window.pcap"
}

case "$WHAT" in
retransmit) capture_retransmit ;;
zero-window) capture_zero_window ;;
states) capture_states ;;
all)
    capture_retransmit
    capture_zero_window
    capture_states
    ;;
esac
