"""
Hold a TCP connection still in each state of its life and show it with ``ss -tan``.

Run by ``scripts/capture-netns.sh`` inside a network namespace of its own (root,
nftables): it must not run anywhere else, because it adds nftables rules.  Plain
sockets on the namespace's 127.0.0.1 play client and server; to stop the connection
in a passing state (SYN-SENT, SYN-RECV, FIN-WAIT-1, LAST-ACK) an nftables rule drops
the one segment that would move it on, ``ss`` is asked, and the rule is removed so
that TCP's retransmission finishes the step.  Prints the report on standard output.

Usage (in a namespace): python scripts/capture_states.py
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time

TABLE = "tcpproto_states"
HOST = "127.0.0.1"
#: TCP flags, as nftables writes them: a segment that is a pure ACK.
PURE_ACK = "tcp flags & (fin | syn | rst | ack) == ack"
SYN_ONLY = "tcp flags & (fin | syn | rst | ack) == syn"


def nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True)


def drop(rule: str) -> None:
    """Drop the segments matching ``rule`` as they arrive (input hook)."""
    nft(f"add rule inet {TABLE} input {rule} drop\n")


def allow() -> None:
    nft(f"flush chain inet {TABLE} input\n")


def ss(port: int, *options: str) -> list[str]:
    """The ``ss`` lines of the sockets on ``port``, header first."""
    out = subprocess.run(
        ["ss", "-tan", *options, f"( sport = :{port} or dport = :{port} )"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [" ".join(line.split()) for line in out.splitlines() if line.strip()]


def waitFor(port: int, state: str, timeout: float = 10.0) -> list[str]:
    """Poll ``ss`` until a socket on ``port`` is in ``state`` (at most ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = ss(port)
        if any(line.split()[0] == state for line in lines[1:]):
            return lines
        if time.monotonic() > deadline:
            raise SystemExit(f"capture_states.py: no socket reached {state}: {lines}")
        time.sleep(0.05)


def table(lines: list[str]) -> list[str]:
    """``ss`` lines as aligned columns (state, queues, local, peer)."""
    rows = [line.split()[:5] for line in lines]
    return [f"    {r[0]:<11} {r[1]:>6} {r[2]:>6}  {r[3]:<21} {r[4]}" for r in rows]


class Report:
    def __init__(self, port: int) -> None:
        self.port = port
        self.out: list[str] = []
        self.header = False

    def state(self, title: str, lines: list[str], *want: str) -> None:
        """One step: what happened, then the ``ss`` lines of the states in ``want``."""
        rows = [line for line in lines[1:] if line.split()[0] in want]
        for w in want:
            if not any(r.split()[0] == w for r in rows):
                raise SystemExit(f"capture_states.py: {title}: no {w} in {lines}")
        self.out.append("")
        self.out.append(title)
        if not self.header:
            self.out.extend(table(["State Recv-Q Send-Q Local:Port Peer:Port"]))
            self.header = True
        self.out.extend(table(rows))


def lingerZero(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), leaving nothing behind."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def main() -> int:
    if os.geteuid() != 0:
        sys.stderr.write("capture_states.py: run it through scripts/capture-netns.sh (root)\n")
        return 1
    nft(
        f"table inet {TABLE} {{ chain input {{ type filter hook input priority 0; "
        "policy accept; }; }\n"
    )
    try:
        return run()
    finally:
        nft(f"delete table inet {TABLE}\n")


def run() -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(8)
    port: int = listener.getsockname()[1]
    r = Report(port)
    r.out.append(
        f"tcp-states: one connection held in each state, shown by ss -tan (server port: {port})"
    )
    r.out.append("")
    r.out.append("made by scripts/capture_states.py in a network namespace (its own loopback);")
    r.out.append("an nftables rule (input hook) drops the segment that would end a passing state,")
    r.out.append("then is removed, and the retransmitted segment moves the connection on.")
    r.out.append("ss writes the states of RFC 9293 with - for _, SYN_RCVD as SYN-RECV and")
    r.out.append("ESTABLISHED as ESTAB.")

    r.state("listen(): the server's socket waits for connections", ss(port), "LISTEN")

    # SYN-SENT: the SYN is lost, the client waits (and would retransmit it).
    drop(f"tcp dport {port} {SYN_ONLY}")
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setblocking(False)
    client.connect_ex((HOST, port))
    r.state(
        "connect(): SYN sent, no SYN+ACK yet (rule: drop the SYN)",
        waitFor(port, "SYN-SENT"),
        "SYN-SENT",
    )
    lingerZero(client)
    allow()

    # SYN-RECV: the client's ACK (handshake 3/3) is lost.
    drop(f"tcp dport {port} {PURE_ACK}")
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setblocking(False)
    client.connect_ex((HOST, port))
    r.state(
        "SYN and SYN+ACK arrived, the client's ACK did not (rule: drop it): the client is\n"
        "ESTABLISHED, the server's kernel waits in SYN-RECV (nothing to accept() yet)",
        waitFor(port, "SYN-RECV"),
        "SYN-RECV",
        "ESTAB",
    )
    lingerZero(client)
    allow()

    # ESTABLISHED, both sides.
    client = socket.create_connection((HOST, port), timeout=10)
    conn, _ = listener.accept()
    r.state("handshake done, accept() returned: both ESTABLISHED", ss(port), "ESTAB")
    established = [
        line
        for line in subprocess.run(
            ["ss", "-tin", "state", "established", f"( dport = :{port} )"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()[1:]
        if line.strip()
    ]
    r.out.append("    the client's socket seen from its kernel (ss -tin): cwnd is the congestion")
    r.out.append("    window in segments, never sent on the wire")
    r.out.extend("      " + " ".join(line.split()) for line in established)

    # FIN-WAIT-1: the client half-closes; the server's ACK of its FIN is lost.
    drop(f"tcp sport {port} {PURE_ACK}")
    client.shutdown(socket.SHUT_WR)
    r.state(
        "client shutdown(SHUT_WR): FIN sent, its ACK lost (rule): the client is in\n"
        "FIN-WAIT-1, the server got the FIN and is in CLOSE-WAIT",
        waitFor(port, "CLOSE-WAIT") and waitFor(port, "FIN-WAIT-1"),
        "FIN-WAIT-1",
        "CLOSE-WAIT",
    )
    allow()

    # FIN-WAIT-2 / CLOSE-WAIT: the FIN is retransmitted and acknowledged.
    r.state(
        "the FIN retransmitted and acknowledged: half-closed, the client in FIN-WAIT-2\n"
        "(it can still receive), the server in CLOSE-WAIT until it closes",
        waitFor(port, "FIN-WAIT-2"),
        "FIN-WAIT-2",
        "CLOSE-WAIT",
    )

    # LAST-ACK: the server closes; the client's ACK of that FIN is lost.
    drop(f"tcp dport {port} {PURE_ACK}")
    conn.close()
    r.state(
        "server close(): its FIN arrived, the client's ACK did not (rule): the server is\n"
        "in LAST-ACK, the client (it closed first) in TIME-WAIT",
        waitFor(port, "LAST-ACK"),
        "LAST-ACK",
        "TIME-WAIT",
    )
    allow()

    # TIME-WAIT: the server's FIN is retransmitted and acknowledged; only the
    # active closer's TIME-WAIT remains.
    deadline = time.monotonic() + 10
    while any(line.split()[0] == "LAST-ACK" for line in ss(port)[1:]):
        if time.monotonic() > deadline:
            raise SystemExit("capture_states.py: the server stayed in LAST-ACK")
        time.sleep(0.05)
    r.state(
        "the FIN retransmitted and acknowledged: the server's socket is gone, the\n"
        "client's stays in TIME-WAIT for 60 s",
        ss(port),
        "TIME-WAIT",
    )
    client.close()
    listener.close()
    sys.stdout.write("\n".join(r.out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
