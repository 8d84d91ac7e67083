# The part of scripts/capture-trace.sh and scripts/capture-netns.sh that is the same
# (sourced by them, not run): the Python and the installed commands, a work directory
# removed on exit along with the server and tcpdump still running, and starting and
# stopping both.
#
# Set before sourcing: SCRIPT, the name to start messages with.  After it:
#   PYTHON, TWISTD, CLIENT  the Python with tcpproto installed (PYTHON, default
#                           .venv/bin/python, else python3) and the commands next to it;
#   LISTEN                  a free port on 127.0.0.1, as twistd's --listen takes it;
#   WORK                    the work directory (kept if KEEP_WORK is set);
#   IN                      an array the server and tcpdump run under: empty here,
#                           (ip netns exec NS) to run them in a network namespace.
# A script that has more to undo on exit defines cleanup_more.

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
PYTHON=$(command -v "$PYTHON")
BIN=$("$PYTHON" -c 'import os, sys; print(os.path.dirname(sys.executable))')
TWISTD=$BIN/twistd
CLIENT=$BIN/tcpecho-client
LISTEN=tcp:0:interface=127.0.0.1
IN=()

# fail MESSAGE: say what went wrong, and exit 1.
fail() {
    echo "$SCRIPT: $*" >&2
    exit 1
}

# need_tools "PACKAGES" TOOL...: fail unless every TOOL is on PATH (PACKAGES install
# them), and twistd and tcpproto are installed for PYTHON.
need_tools() {
    local packages=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || fail "$tool not found (apt-get install $packages)"
    done
    [ -x "$TWISTD" ] || fail "no twistd next to $PYTHON"
    "$PYTHON" -c 'import tcpproto' 2>/dev/null || fail "tcpproto is not installed for $PYTHON"
}

WORK=$(mktemp -d)
SERVER_PID=
CAPTURE_PID=
cleanup() {
    [ -n "$CAPTURE_PID" ] && kill "$CAPTURE_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    if declare -F cleanup_more >/dev/null; then cleanup_more; fi
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for FILE REGEX: wait up to 10 s for REGEX to appear in FILE.
wait_for() {
    for _ in $(seq 100); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$SCRIPT: timed out waiting for '$2' in $1:" >&2
    cat "$1" >&2
    exit 1
}

# start_server ARGS...: run twistd tcpecho on a free loopback port; sets PORT.
start_server() {
    : >"$WORK/server.log"
    "${IN[@]}" "$TWISTD" -n --pidfile= tcpecho --listen "$LISTEN" "$@" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_for "$WORK/server.log" 'listening on 127\.0\.0\.1:[0-9]+'
    PORT=$(grep -oE 'listening on 127\.0\.0\.1:[0-9]+' "$WORK/server.log" | head -1 | cut -d: -f2)
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
}

# start_capture NAME: capture the server's port into WORK/NAME.pcap.
start_capture() {
    : >"$WORK/tcpdump.err"
    "${IN[@]}" tcpdump -i lo -nn -U --immediate-mode -s 0 -w "$WORK/$1.pcap" \
        "tcp port $PORT" 2>"$WORK/tcpdump.err" &
    CAPTURE_PID=$!
    wait_for "$WORK/tcpdump.err" 'listening on'
}

# stop_capture SECONDS: after SECONDS more (the last ACK, a late retransmission).
stop_capture() {
    sleep "$1"
    kill -INT "$CAPTURE_PID"
    wait "$CAPTURE_PID" || true
    CAPTURE_PID=
}
