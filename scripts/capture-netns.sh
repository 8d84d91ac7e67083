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
SCRIPT=capture-netns.sh
# shellcheck source=scripts/capture-common.sh
. scripts/capture-common.sh

[ "$(id -u)" -eq 0 ] || fail "needs root (network namespace, nftables, tcpdump)"
need_tools "iproute2 nftables tcpdump" ip ss nft tcpdump timeout

NS=tcpproto-capture-$$
cleanup_more() {
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$NS-small" 2>/dev/null || true
}

ip netns add "$NS"
IN=(ip netns exec "$NS")
"${IN[@]}" ip link set lo up
mkdir -p "$OUT"

# -- 1. retransmission ------------------------------------------------------------
capture_retransmit() {
    start_server

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
        start_capture retransmit
        # The input stays open a second, so that a lost segment is noticed by a timer
        # (no later segment of the client's, such as its FIN, reveals the gap first).
        (printf 'hello\n'; sleep 1) | "${IN[@]}" timeout 30 "$CLIENT" 127.0.0.1 "$PORT" \
            >"$WORK/client.out" 2>&1 || true
        stop_capture 1 # a late retransmission of the last FIN or ACK
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
    stop_server
    [ -n "$found" ] || fail "no retransmitted data segment in $attempt attempts"
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
    # The server, tcpdump and the client run in this namespace (start_server and
    # start_capture see this IN).
    local IN=(ip netns exec "$ns")
    "${IN[@]}" ip link set lo up
    # Small socket buffers (min, default, max), in this namespace only: the
    # windows close after a few segments instead of a few MiB.
    "${IN[@]}" sysctl -q -w net.ipv4.tcp_rmem="4096 16384 16384" net.ipv4.tcp_wmem="4096 16384 16384"
    start_server
    # Retried (at most 5 times) until the capture holds the whole conversation
    # (tcpdump can miss its end), both windows reached 0, and every byte came back.
    local attempt=0 complete=
    while [ "$attempt" -lt 5 ] && [ -z "$complete" ]; do
        attempt=$((attempt + 1))
        start_capture zero-window
        "${IN[@]}" timeout 60 "$PYTHON" docs/examples/slow_reader.py 127.0.0.1 "$PORT" 1 \
            >"$WORK/client.out" 2>&1 || true
        stop_capture 1 # the last ACK
        "$PYTHON" scripts/render_trace.py "$WORK/zero-window.pcap" "$PORT" >"$WORK/table.txt"
        if grep -q 'all intact' "$WORK/client.out" &&
            grep -q "ACK of the server's FIN" "$WORK/table.txt" &&
            grep -qE 'client -> server .*zero window' "$WORK/table.txt" &&
            grep -qE 'client <- server .*zero window' "$WORK/table.txt"; then
            complete=yes
        fi
    done
    stop_server
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
