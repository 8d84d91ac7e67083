"""
Faults and bad input, against ``twistd tcpecho`` with real sockets on loopback.

What the kernel does matters here (RST, half-close, unread data at close), so
the peers are plain sockets doing exactly the misbehaviour named, and the
server is the installed ``twistd``: after each fault it must still serve, and
have released the descriptors of the connections that went wrong.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import (
    LimitedServer,
    closedAtOnce,
    connect,
    recvExactly,
    recvUntilClosed,
    resetClose,
    startLimitedServer,
    waitUntilBlocking,
)

#: Bytes that are not text: NUL, every byte value, invalid and overlong UTF-8,
#: a lone surrogate, a BOM, ANSI escapes.
AWKWARD = (
    b"\x00\x00NUL\x00"
    + bytes(range(256))
    + b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\x28\xc0\xaf\xed\xa0\x80"
    + b"\xef\xbb\xbf\x1b[31mred\x1b[0m\r\x7f"
)


def echoes(server: LimitedServer, payload: bytes = b"are you there?") -> bool:
    """Whether a fresh client gets ``payload`` echoed (the server still serves)."""
    with connect(server.port) as c:
        c.sendall(payload)
        return recvExactly(c, len(payload)) == payload


def settledFds(server: LimitedServer, expected: int, timeout: float = 5.0) -> int:
    """Wait for the server's descriptor count to come back to ``expected``; the count."""
    with contextlib.suppress(AssertionError):
        waitUntilBlocking(lambda: server.fdCount() <= expected, timeout)
    return server.fdCount()


def baselineFds(server: LimitedServer, timeout: float = 5.0) -> int:
    """
    The server's descriptors once it has served one connection and closed it.

    Waits for the count to come back to what it was before that connection: a
    baseline taken while the server still held it would hide a one-descriptor
    leak from :func:`settledFds`.
    """
    before = server.fdCount()
    assert echoes(server)
    waitUntilBlocking(
        lambda: server.fdCount() <= before,
        timeout,
        lambda: f"the probe connection was not released: {server.fdCount()} > {before} fds",
    )
    return server.fdCount()


class PeerFaultTests(SynchronousTestCase):
    def test_resetMidStream(self) -> None:
        """A peer that resets (RST) while data flows both ways is forgotten cleanly."""
        server = startLimitedServer(self)
        fds = baselineFds(server)
        for _ in range(5):
            c = connect(server.port)
            c.sendall(b"r" * 200_000)  # the echo is still in flight ...
            recvExactly(c, 1000)
            resetClose(c)  # ... when the peer's kernel aborts
        server.waitForLog(r"closed \(lost\)", count=5)
        self.assertEqual(settledFds(server, fds), fds)
        self.assertTrue(echoes(server))
        self.assertNotIn("Traceback", server.output())

    def test_connectAndCloseAtOnce(self) -> None:
        """Connections closed (FIN or RST) right after connecting leave nothing behind."""
        server = startLimitedServer(self)
        fds = baselineFds(server)
        for i in range(100):
            c = connect(server.port)
            if i % 2:
                resetClose(c)
            else:
                c.close()
        self.assertEqual(settledFds(server, fds), fds)
        self.assertTrue(echoes(server))
        log = server.output()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)

    def test_halfCloseThenVanish(self) -> None:
        """
        A peer half-closes and goes away without reading: the server sends
        what it owes, closes, and forgets the connection.
        """
        server = startLimitedServer(self)
        fds = baselineFds(server)
        for _ in range(10):
            c = connect(server.port)
            c.sendall(b"v" * 10_000)
            c.shutdown(socket.SHUT_WR)
            c.close()  # unread echo: our kernel answers it with RST
        self.assertEqual(settledFds(server, fds), fds)
        self.assertTrue(echoes(server))

    def test_halfCloseThenStall(self) -> None:
        """
        A peer sends more than the buffers hold, half-closes, and never reads
        nor closes: the server, unable to finish, is freed by the idle timeout
        while the peer's socket is still open.
        """
        server = startLimitedServer(self, "--idle-timeout", "1")
        fds = baselineFds(server)
        c = connect(server.port)
        self.addCleanup(c.close)
        c.setblocking(False)
        sent = 0
        lastProgress = time.monotonic()
        while time.monotonic() - lastProgress < 0.3:
            try:
                sent += c.send(b"s" * 65536)
                lastProgress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        c.shutdown(socket.SHUT_WR)
        self.assertGreater(sent, 1_000_000)
        server.waitForLog(r"closed \(idle-timeout\)", timeout=5)
        self.assertEqual(settledFds(server, fds), fds)
        self.assertTrue(echoes(server))

    def test_sendsNothing(self) -> None:
        server = startLimitedServer(self, "--idle-timeout", "0.5")
        with connect(server.port) as c:
            started = time.monotonic()
            data, error = recvUntilClosed(c, 5.0)
            waited = time.monotonic() - started
        # A FIN (end of stream), not a reset: nothing was stuck in our output.
        self.assertEqual((data, error), (b"", None))
        self.assertGreater(waited, 0.45)
        self.assertLess(waited, 1.5)
        # Logged once our close has met the client's.
        server.waitForLog(r"closed \(idle-timeout\)")
        self.assertEqual(server.closeReasons(), ["idle-timeout"])


class SlowDripTests(SynchronousTestCase):
    """
    One byte at a time, slowly.  In line framing nothing is answered until a
    line completes, so the idle timeout closes a drip that never makes one;
    in raw framing each byte is answered at once (an interactive session), so
    a drip is served, costing one connection slot bounded by
    ``--max-per-peer``/``--max-connections`` (documented in limits.rst).
    """

    def test_lineDripClosed(self) -> None:
        server = startLimitedServer(self, "--framing", "line", "--idle-timeout", "1")
        with connect(server.port) as c:
            c.settimeout(0.2)
            started = time.monotonic()
            ended = None
            while ended is None and time.monotonic() - started < 5:
                c.sendall(b"z")
                with contextlib.suppress(TimeoutError):
                    # The idle timeout's FIN: an end of stream, not a reset.
                    if c.recv(1) == b"":
                        ended = time.monotonic() - started
            self.assertIsNotNone(ended)
            self.assertLess(ended, 3.0)  # type: ignore[arg-type]
        server.waitForLog(r"closed \(idle-timeout\) after [\d.]+s: \d+ bytes in, 0 out")

    def test_rawDripAnswered(self) -> None:
        server = startLimitedServer(self, "--idle-timeout", "1", "--max-per-peer", "1")
        with connect(server.port) as c:
            for byte in b"drip!":
                c.sendall(bytes([byte]))
                self.assertEqual(recvExactly(c, 1), bytes([byte]))
                time.sleep(0.3)
            # A dripping peer holds one slot, no more.
            with connect(server.port) as second:
                self.assertTrue(closedAtOnce(second))
        self.assertNotIn("idle-timeout", server.closeReasons())


class BadInputTests(SynchronousTestCase):
    def test_binaryRawEchoedExactly(self) -> None:
        server = startLimitedServer(self)
        noise = random.Random(862).randbytes(1 << 20)
        payload = AWKWARD * 50 + noise + AWKWARD
        with connect(server.port) as c:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recvUntilClosed(c, 10.0), (payload, None))

    def test_binaryLinesEchoedExactly(self) -> None:
        """Line framing is byte-exact too: NULs, CRLF, invalid UTF-8, a partial last line."""
        server = startLimitedServer(self, "--framing", "line")
        lines = [AWKWARD.replace(b"\n", b"") + b"\n", b"\x00\r\n", b"\xff\xfe\n", b"\n"]
        payload = b"".join(lines) * 20 + b"no newline \xc3\x28\x00"
        with connect(server.port) as c:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recvUntilClosed(c), (payload, None))

    def test_thankYouBinary(self) -> None:
        server = startLimitedServer(self, "--mode", "thankyou", "--framing", "line")
        with connect(server.port) as c:
            c.sendall(b"\xff\x00\r\n\x1b[2J\n")
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recvUntilClosed(c), (b"thank you!\r\nthank you!\n", None))

    def test_tenMegabyteLineRefused(self) -> None:
        """A 10 MB line gets one clear error line, then the close; others are unaffected."""
        server = startLimitedServer(self, "--framing", "line")
        rss = server.rssKiB()
        other = connect(server.port)
        self.addCleanup(other.close)
        c = connect(server.port)
        self.addCleanup(c.close)
        c.settimeout(10)
        # The server closes while we are still sending: expected.
        with contextlib.suppress(OSError):
            c.sendall(b"x" * 10_000_000 + b"\n")
        data, _ = recvUntilClosed(c)
        self.assertEqual(data, b"error: line longer than 65536 bytes\n")
        # The server half-closed after the error line and waits for our FIN.
        c.close()
        server.waitForLog(r"closed \(line-too-long\)")
        other.sendall(b"normal line\n")
        self.assertEqual(recvExactly(other, 12), b"normal line\n")
        self.assertLess(server.rssKiB() - rss, 4096)


class LogInjectionTests(SynchronousTestCase):
    """Peer data never reaches the log: not escaped, not at all."""

    MARK = b"INJECTED"
    EVIL = (
        b"\n2026-01-01T00:00:00+0000 [tcpproto#warn] INJECTED fake event\r\n"
        b"\x1b[2J\x1b[31mINJECTED\x1b[0m\x00INJECTED\x07\x08\x08\xe2\x80\xaeINJECTED\n"
    )

    def assertClean(self, server: LimitedServer) -> None:
        with open(server.outPath, "rb") as f:
            log = f.read()
        self.assertNotIn(self.MARK, log)
        self.assertNotIn(b"\x1b", log)
        self.assertNotIn(b"\x00", log)
        self.assertNotIn(b"\x07", log)
        self.assertNotIn(b"\xe2\x80\xae", log)  # RIGHT-TO-LEFT OVERRIDE
        self.assertNotIn(b"\r", log)
        # Every line is a log line, starting with a timestamp.
        for line in log.decode("utf-8").splitlines():
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT")

    def exercise(self, server: LimitedServer, *, lineMode: bool) -> None:
        with connect(server.port) as c:
            c.sendall(self.EVIL * 3)
            c.shutdown(socket.SHUT_WR)
            recvUntilClosed(c)
        if lineMode:
            with connect(server.port) as c:
                with contextlib.suppress(OSError):
                    c.sendall(self.EVIL.replace(b"\n", b" ") * 20)  # too long
                recvUntilClosed(c)
        with connect(server.port) as c:
            c.sendall(self.EVIL)
            resetClose(c)
        server.waitForLog(r"closed \(", count=3 if lineMode else 2)

    def test_rawEcho(self) -> None:
        server = startLimitedServer(self)
        self.exercise(server, lineMode=False)
        self.assertClean(server)

    def test_lineEcho(self) -> None:
        server = startLimitedServer(self, "--framing", "line", "--max-line-length", "200")
        self.exercise(server, lineMode=True)
        self.assertClean(server)
        self.assertIn("line-too-long", server.closeReasons())

    def test_thankYouAndRefused(self) -> None:
        server = startLimitedServer(
            self,
            "--mode",
            "thankyou",
            "--framing",
            "line",
            "--max-per-peer",
            "3",
            "--max-line-length",
            "200",
        )
        self.exercise(server, lineMode=True)
        held = [connect(server.port) for _ in range(3)]
        for c in held:
            self.addCleanup(c.close)
            c.sendall(b"hello\n")
            recvExactly(c, 11)
        with connect(server.port) as refused:
            refused.sendall(self.EVIL)
            recvUntilClosed(refused)
        server.waitForLog("max-per-peer")
        self.assertClean(server)
        self.assertRegex(server.stdout(), r"refused 127\.0\.0\.1:\d+ on \S+: max-per-peer")
