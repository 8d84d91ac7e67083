"""
A network namespace of a test's own, and real packet loss in it.

TCP's promise is that what one end sends arrives, whole and in order, at the
other, however many packets the network loses on the way.  To test that
promise end to end a test needs a network that loses packets, and nothing on
the machine's own network may be touched.  :class:`Namespace` gives a test
one:

- ``ip netns add`` makes a network namespace with a unique name; only its
  loopback interface exists, and it is brought up.  The namespace is deleted
  at the test's cleanup, whatever happens (the nftables table and every
  socket live and die with it).
- :meth:`Namespace.setLoss` adds an nftables table to the namespace whose
  input hook drops a random share of the TCP packets
  (``meta l4proto tcp numgen random mod 100 < N drop``).  Loopback packets
  pass the input hook once each, so both directions lose ``N`` percent of
  their packets: data segments, ACKs, SYNs and FINs alike.  (``tc netem``
  is not available on every kernel; nftables is.)
- the loopback interface gets a 1500-byte MTU and one segment per packet
  (``gso_max_segs 1``), as an Ethernet path has: a dropped packet is then
  one segment, not a 64 KiB super-packet.
- the namespace's TCP caps its retransmission timeout at 1 s
  (``net.ipv4.tcp_rto_max_ms``, Linux 6.15 and later) and allows 60
  retransmissions (``tcp_retries2``, ``tcp_orphan_retries``).  At 30 %
  loss both directions of a round trip get through only half the time, and
  the kernel's default exponential back-off (to 120 s) makes a run of bad
  luck cost minutes; the cap keeps the tests within seconds, and the larger
  retry count keeps the shorter back-off from giving up sooner than the
  default would.  What is retransmitted, and when, is still the kernel's
  own TCP.
- :meth:`Namespace.counters` reads the namespace's TCP counters
  (``/proc/net/snmp`` and ``/proc/net/netstat`` read from inside it), so a
  test can report how many segments the kernel retransmitted.

Processes run inside with :meth:`Namespace.command` (``ip netns exec NAME
...``): :class:`NamespacedServer` is ``twistd tcpecho`` in a namespace.

Needs Linux, root, and the ``ip`` (Debian package ``iproute2``) and ``nft``
(``nftables``) commands.  Where they are missing the tests are skipped with
the reason, unless the environment variable :data:`REQUIRED_ENV` is set (CI
sets it: there a skipped loss test is a failure).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.helpers.processes import ServerProcess, processEnv, serverCommand

#: Set (to anything but ``""`` or ``0``) to make a missing namespace facility
#: a test failure instead of a skip.
REQUIRED_ENV = "TCPPROTO_REQUIRE_NETNS"

#: The nftables table (family ``inet``) that holds the loss rule.
LOSS_TABLE = "tcpproto_loss"

#: Seconds any ``ip``/``nft``/``sysctl`` command may take.
COMMAND_TIMEOUT = 20.0

_counter = itertools.count()


def _run(argv: Sequence[str], input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        list(argv),
        input=input,
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def _firstLine(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "no message"


@functools.cache
def unavailable() -> str | None:
    """
    Why a test cannot have a network namespace with packet loss here, or
    ``None`` if it can.  Probed once per process (a namespace is created
    with an nftables table, then deleted).
    """
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"no {tool} command (Debian package {package})"
    name = f"tcpproto-probe-{os.getpid()}"
    made = _run(["ip", "netns", "add", name])
    if made.returncode != 0:
        return f"ip netns add failed: {_firstLine(made.stderr)}"
    try:
        nft = _run(
            ["ip", "netns", "exec", name, "nft", "-f", "-"],
            input=_lossRuleset(1).encode(),
        )
        if nft.returncode != 0:
            return f"nft cannot add the loss rule: {_firstLine(nft.stderr)}"
    finally:
        _run(["ip", "netns", "delete", name])
    return None


def requireNamespaces() -> None:
    """
    Skip the running test (raise :class:`SkipTest`) if namespaces with loss
    are not available; with :data:`REQUIRED_ENV` set, fail instead.
    """
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get(REQUIRED_ENV, "") not in ("", "0"):
        raise AssertionError(f"{REQUIRED_ENV} is set, but: {reason}")
    raise SkipTest(reason)


def _lossRuleset(percent: int) -> str:
    return (
        f"table inet {LOSS_TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"    meta l4proto tcp numgen random mod 100 < {percent} counter drop\n"
        "  }\n"
        "}\n"
    )


@dataclass(frozen=True)
class TCPCounters:
    """Some of the kernel's TCP counters for one namespace."""

    #: Segments sent, received, and sent again (``Tcp: OutSegs InSegs RetransSegs``).
    outSegs: int
    inSegs: int
    retransSegs: int
    #: Retransmission timeouts (``TcpExt: TCPTimeouts``).
    timeouts: int
    #: Packets the loss rule dropped so far (its nftables counter).
    dropped: int

    def __sub__(self, other: TCPCounters) -> TCPCounters:
        return TCPCounters(
            self.outSegs - other.outSegs,
            self.inSegs - other.inSegs,
            self.retransSegs - other.retransSegs,
            self.timeouts - other.timeouts,
            self.dropped - other.dropped,
        )


def _snmpTable(text: str, prefix: str) -> dict[str, int]:
    """The ``prefix`` table of a ``/proc/net/snmp``-style text (a header line, a values line)."""
    lines = [line.split() for line in text.splitlines() if line.startswith(prefix + ":")]
    for header, values in itertools.pairwise(lines):
        if not values[1:] or not values[1].lstrip("-").isdigit():
            continue
        return {k: int(v) for k, v in zip(header[1:], values[1:], strict=False)}
    return {}


class Namespace:
    """
    A network namespace made for one test: see the module documentation.

    Use :meth:`create`, which deletes it at the test's cleanup.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lossPercent = 0

    @classmethod
    def create(cls, testCase: SynchronousTestCase) -> Namespace:
        """
        A new namespace with its loopback up (see the module documentation),
        deleted when ``testCase`` ends.  Skips the test if namespaces are
        not available (see :func:`requireNamespaces`).
        """
        requireNamespaces()
        name = f"tcpproto-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
        made = _run(["ip", "netns", "add", name])
        if made.returncode != 0:
            raise AssertionError(f"ip netns add {name}: {_firstLine(made.stderr)}")
        ns = cls(name)
        testCase.addCleanup(ns.delete)
        ns.run(["ip", "link", "set", "lo", "mtu", "1500", "up"])
        # One segment per packet, as on a real path; older iproute2 or
        # kernels without the setting keep loopback's super-packets.
        ns.run(["ip", "link", "set", "lo", "gso_max_segs", "1"], check=False)
        for setting, value in (
            ("tcp_rto_max_ms", "1000"),
            ("tcp_retries2", "60"),
            ("tcp_orphan_retries", "60"),
        ):
            if os.path.exists(f"/proc/sys/net/ipv4/{setting}"):
                ns.run(["sysctl", "-qw", f"net.ipv4.{setting}={value}"], check=False)
        return ns

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: Sequence[str], input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a short command inside the namespace; with ``check``, fail on error."""
        done = _run(self.command(argv), input=input)
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} in {self.name} exited {done.returncode}: "
                f"{_firstLine(done.stderr)}"
            )
        return done

    def setLoss(self, percent: int) -> None:
        """Drop ``percent`` % of the TCP packets from now on (0: none)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be 0 to 100, not {percent}")
        # Flush and fill the table in one transaction.
        self.run(
            ["nft", "-f", "-"],
            input=(
                f"table inet {LOSS_TABLE}\ndelete table inet {LOSS_TABLE}\n"
                + _lossRuleset(percent)
            ).encode(),
        )
        self.lossPercent = percent

    def counters(self) -> TCPCounters:
        """The namespace's TCP counters now."""
        done = self.run(["cat", "/proc/net/snmp", "/proc/net/netstat"])
        text = done.stdout.decode()
        tcp = _snmpTable(text, "Tcp")
        ext = _snmpTable(text, "TcpExt")
        dropped = 0
        rules = self.run(["nft", "list", "table", "inet", LOSS_TABLE], check=False)
        m = re.search(rb"counter packets (\d+)", rules.stdout)
        if m is not None:
            dropped = int(m.group(1))
        return TCPCounters(
            tcp.get("OutSegs", 0),
            tcp.get("InSegs", 0),
            tcp.get("RetransSegs", 0),
            ext.get("TCPTimeouts", 0),
            dropped,
        )

    def delete(self) -> None:
        """Delete the namespace (its sockets, routes and nftables tables go with it)."""
        # Processes still inside would keep it alive: those are ours (the
        # test started them in this namespace), so end them by their id.
        pids = _run(["ip", "netns", "pids", self.name])
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        _run(["ip", "netns", "delete", self.name])


class NamespacedServer(ServerProcess):
    """``twistd -n --pidfile= tcpecho ARGS`` running inside ``namespace``."""

    def __init__(self, namespace: Namespace, args: Sequence[str]) -> None:
        super().__init__(args)
        self.namespace = namespace

    def spawn(self) -> None:
        # ``ip netns exec`` enters the namespace and execs the command: the
        # process we hold is twistd itself.
        with open(self.outPath, "wb") as out, open(self.errPath, "wb") as err:
            self.process = subprocess.Popen(
                self.namespace.command(serverCommand(*self.args)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workDir,
                env=processEnv(),
            )


def startNamespacedServer(
    testCase: SynchronousTestCase, namespace: Namespace, *args: str
) -> NamespacedServer:
    """
    Run ``twistd tcpecho ARGS`` in ``namespace`` until the test ends (on
    ``127.0.0.1`` port 0 there unless ``--listen`` is given).
    """
    argv = list(args)
    if "--listen" not in argv:
        argv = ["--listen", "tcp:0:interface=127.0.0.1", *argv]
    server = NamespacedServer(namespace, argv)
    testCase.addCleanup(server.cleanup)
    server.start()
    return server


#: A client run inside a namespace with ``sys.executable -c``: it sends
#: ``TOTAL`` bytes of a deterministic pattern to ``HOST PORT`` in ``CHUNK``-byte
#: pieces, one every ``INTERVAL`` seconds (0: as fast as TCP takes them),
#: reading the answer all along; then it half-closes (``shutdown(SHUT_WR)``)
#: and reads until the server closes.  It prints one JSON object: the bytes
#: received, whether they are exactly what was sent, how the server closed
#: (``"eof"`` or the error), the time taken and the longest wait between two
#: reads.  Every wait is bounded by ``DEADLINE`` seconds in all.
ECHO_CLIENT = r"""
import json, selectors, socket, sys, time
host, port, total, chunk, interval, deadline = sys.argv[1:7]
port, total, chunk = int(port), int(total), int(chunk)
interval, deadline = float(interval), float(deadline)
data = bytes((i * 7 + (i >> 8)) % 251 for i in range(total))
start = time.monotonic()
end = start + deadline
s = socket.create_connection((host, port), timeout=deadline)
s.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
sent, received, shut, closed = 0, [], False, None
lastRead, maxGap = time.monotonic(), 0.0
while closed is None and time.monotonic() < end:
    now = time.monotonic()
    allowed = total if interval <= 0 else min(total, chunk * (1 + int((now - start) / interval)))
    for _, events in sel.select(0.05):
        if events & selectors.EVENT_WRITE and sent < allowed:
            try:
                sent += s.send(data[sent:min(allowed, sent + chunk)])
            except BlockingIOError:
                pass
        if events & selectors.EVENT_READ:
            try:
                got = s.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError as e:
                closed = type(e).__name__
                break
            now = time.monotonic()
            maxGap, lastRead = max(maxGap, now - lastRead), now
            if not got:
                closed = "eof"
                break
            received.append(got)
    if sent == total and not shut:
        s.shutdown(socket.SHUT_WR)
        shut = True
        sel.modify(s, selectors.EVENT_READ)
answer = b"".join(received)
print(json.dumps({
    "received": len(answer), "exact": answer == data, "closed": closed,
    "elapsed": time.monotonic() - start, "maxGap": maxGap,
}))
"""
