"""
Reliable under real loss: the installed ``twistd tcpecho`` and
``tcpecho-client`` in a network namespace that drops packets.

The tutorial tcpproto grew from says TCP is reliable.  These tests show it,
for tcpproto, end to end: in a namespace of the test's own whose nftables
rule drops 1 %, 10 % or 30 % of the TCP packets each way (see
:mod:`tests.helpers.netns`), the echo comes back byte for byte, the half-close still
carries the stream's tail, TLS still works, and the idle timeout does not
take a connection that is only waiting for retransmissions for an idle one.

Each test prints one line with the time taken and what the kernel did
(segments retransmitted, retransmission timeouts, packets the rule dropped);
``pytest -s tests/test_loss.py`` shows them.  Skipped, with the reason,
without root or without the ``ip``/``nft`` commands (CI sets
``TCPPROTO_REQUIRE_NETNS=1``, which turns the skip into a failure).

These tests block (the server and client are other processes), so they are
synchronous test cases; the slow ones (30 % loss, and the paced stream that
must outlast the idle timeout) are marked ``stress``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import pytest
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import (
    LOOPBACK,
    ProcessResult,
    clientCommand,
    makePKI,
    runProcessSync,
    shortTempDir,
)
from tests.helpers.netns import (
    ECHO_CLIENT,
    Namespace,
    NamespacedServer,
    TCPCounters,
    startNamespacedServer,
)

KiB = 1024
MiB = 1024 * KiB

#: Seconds one transfer may take, at most, whatever the loss.
TRANSFER_TIMEOUT = 90.0


def report(
    what: str,
    percent: int,
    size: int,
    elapsed: float,
    ns: Namespace,
    before: TCPCounters,
    extra: str = "",
) -> TCPCounters:
    """Print the figures of one run (on stderr, one line); the counters' change."""
    counts = ns.counters() - before
    line = (
        f"[loss {percent:2d}%] {what}: {size} bytes byte-exact in {elapsed:.2f}s; "
        f"the rule dropped {counts.dropped} packets ({counts.outSegs} segments sent), the kernel "
        f"retransmitted {counts.retransSegs} ({counts.timeouts} timeouts){extra}"
    )
    print(line, file=sys.stderr)
    return counts


def deterministic(size: int, seed: bytes) -> bytes:
    """``size`` bytes that differ from any shifted or truncated copy of themselves."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


class LossTestCase(SynchronousTestCase):
    """A namespace with the server running in it."""

    serverArgs: tuple[str, ...] = ()

    def startIn(self, *args: str) -> tuple[Namespace, NamespacedServer]:
        ns = Namespace.create(self)
        server = startNamespacedServer(self, ns, *args)
        return ns, server

    def runClient(
        self, ns: Namespace, data: bytes, *args: str
    ) -> tuple[ProcessResult, bytes, float]:
        """``tcpecho-client ARGS < data`` inside ``ns``: its result, output and time."""
        tmp = shortTempDir(self)
        inPath, outPath = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        with open(inPath, "wb") as f:
            f.write(data)
        started = time.monotonic()
        with open(inPath, "rb") as stdin, open(outPath, "wb") as stdout:
            result = runProcessSync(
                ns.command(clientCommand("--timeout", "60", *args)),
                stdin=stdin,
                stdout=stdout,
                timeout=TRANSFER_TIMEOUT,
            )
        elapsed = time.monotonic() - started
        with open(outPath, "rb") as f:
            return result, f.read(), elapsed

    def runScriptClient(
        self,
        ns: Namespace,
        port: int,
        total: int,
        chunk: int,
        interval: float = 0.0,
    ) -> dict[str, object]:
        """:data:`tests.helpers.netns.ECHO_CLIENT` inside ``ns``: its JSON summary."""
        result = runProcessSync(
            ns.command(
                [
                    sys.executable,
                    "-c",
                    ECHO_CLIENT,
                    LOOPBACK,
                    str(port),
                    str(total),
                    str(chunk),
                    str(interval),
                    str(TRANSFER_TIMEOUT - 10),
                ]
            ),
            timeout=TRANSFER_TIMEOUT,
        )
        self.assertEqual(result.status, 0, result.err.decode("utf-8", "replace"))
        summary: dict[str, object] = json.loads(result.out)
        return summary

    def assertEchoed(self, percent: int, size: int, framing: str = "raw") -> None:
        """``size`` bytes through ``tcpecho-client`` at ``percent`` % loss come back exact."""
        ns, server = self.startIn("--framing", framing)
        data = deterministic(size, b"echo-%d" % percent)
        if framing == "line":
            # Lines, then a tail with no newline: the server answers the
            # tail only when the client's FIN arrives (the half-close).
            data = data.replace(b"\n", b"-")
            data = b"\n".join(data[i : i + 999] for i in range(0, size, 999)) + b"\nthe tail"
        ns.setLoss(percent)
        before = ns.counters()
        result, out, elapsed = self.runClient(ns, data, LOOPBACK, str(server.port))
        self.assertEqual(result.status, 0, result.err)
        self.assertEqual(len(out), len(data))
        self.assertTrue(out == data, "the echo differs from what was sent")
        counts = report(f"echo ({framing} framing)", percent, len(data), elapsed, ns, before)
        if percent >= 10:
            self.assertGreater(counts.retransSegs, 0)
        ns.setLoss(0)
        self.assertEqual(server.stop(), 0, server.output())
        log = server.stdout()
        self.assertIn(f"{len(data)} bytes in, {len(data)} out", log)
        self.assertNotIn("closed (idle-timeout)", log)


class EchoUnderLossTests(LossTestCase):
    """``tcpecho-client`` through ``twistd tcpecho`` at 1 %, 10 % and 30 % loss."""

    def test_onePercent(self) -> None:
        self.assertEchoed(1, 1 * MiB)

    def test_tenPercent(self) -> None:
        self.assertEchoed(10, 1 * MiB)

    @pytest.mark.stress
    def test_thirtyPercent(self) -> None:
        self.assertEchoed(30, 200 * KiB)


class HalfCloseUnderLossTests(LossTestCase):
    """The stream's tail, answered after the client's FIN, survives loss."""

    def test_lineTailTenPercent(self) -> None:
        """Line framing: the unterminated last line is echoed after the FIN."""
        self.assertEchoed(10, 300 * KiB, framing="line")

    @pytest.mark.stress
    def test_lineTailThirtyPercent(self) -> None:
        self.assertEchoed(30, 100 * KiB, framing="line")

    def test_socketHalfCloseTenPercent(self) -> None:
        """
        A plain socket client sends, half-closes, and reads until the server
        closes: every byte comes back and the end is a FIN, not a reset.
        """
        ns, server = self.startIn()
        ns.setLoss(10)
        before = ns.counters()
        size = 512 * KiB
        summary = self.runScriptClient(ns, server.port, size, 64 * KiB)
        self.assertEqual(
            (summary["received"], summary["exact"], summary["closed"]), (size, True, "eof")
        )
        elapsed = float(summary["elapsed"])  # type: ignore[arg-type]
        report("half-close, socket client", 10, size, elapsed, ns, before)


class TLSUnderLossTests(LossTestCase):
    """TLS over a lossy path: the handshake and the echo complete."""

    def assertTLSEchoed(self, percent: int, size: int) -> None:
        pki = makePKI(self)
        ns, server = self.startIn("--listen", pki.serverDescription())
        data = deterministic(size, b"tls-%d" % percent)
        ns.setLoss(percent)
        before = ns.counters()
        result, out, elapsed = self.runClient(
            ns, data, "--connect", f"tls:{LOOPBACK}:{server.port}", "--cafile", pki.caCert
        )
        self.assertEqual(result.status, 0, result.err)
        self.assertEqual(len(out), len(data))
        self.assertTrue(out == data, "the echo differs from what was sent")
        report("echo over TLS", percent, size, elapsed, ns, before)

    def test_tenPercent(self) -> None:
        self.assertTLSEchoed(10, 512 * KiB)

    @pytest.mark.stress
    def test_thirtyPercent(self) -> None:
        self.assertTLSEchoed(30, 100 * KiB)


class IdleTimeoutUnderLossTests(LossTestCase):
    """Waiting for retransmissions is not being idle."""

    IDLE_TIMEOUT = 3.0

    @pytest.mark.stress
    def test_retransmittingIsNotIdle(self) -> None:
        """
        A client streams for more than twice the idle timeout at 10 % loss
        (each loss costs a retransmission, some a timeout of 0.2 s or
        more): the connection is served to the end, not cut as idle.
        """
        ns, server = self.startIn("--idle-timeout", str(self.IDLE_TIMEOUT))
        ns.setLoss(10)
        before = ns.counters()
        size, chunk, interval = 2 * MiB, 32 * KiB, 0.1
        summary = self.runScriptClient(ns, server.port, size, chunk, interval)
        self.assertEqual(
            (summary["received"], summary["exact"], summary["closed"]), (size, True, "eof")
        )
        elapsed = float(summary["elapsed"])  # type: ignore[arg-type]
        self.assertGreater(elapsed, 2 * self.IDLE_TIMEOUT)
        counts = report(
            "paced stream, --idle-timeout 3",
            10,
            size,
            elapsed,
            ns,
            before,
            f"; longest wait between two reads {summary['maxGap']:.2f}s",
        )
        self.assertGreater(counts.retransSegs, 0)
        ns.setLoss(0)
        self.assertEqual(server.stop(), 0, server.output())
        self.assertNotIn("idle-timeout", server.stdout())
