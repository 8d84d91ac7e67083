"""
Load and soak tests (pytest marker ``stress``), against ``twistd tcpecho``.

- a slow reader sending 100 MB without reading: bounded server memory,
  other clients unaffected, every byte delivered once it reads;
- file-descriptor exhaustion (EMFILE) under a lowered ``RLIMIT_NOFILE``;
- 20,000 connect-send-receive-close cycles: no descriptor or memory leak;
- 2,000 concurrent clients exchanging messages: no error, no byte lost or
  reordered.

Only 127.0.0.1; each test is bounded in count and in time.  The clients are
non-blocking sockets driven by :mod:`selectors` in this process, so that one
Python process can keep thousands of connections busy.
"""

from __future__ import annotations

import errno
import selectors
import socket
import statistics
import time
from dataclasses import dataclass, field

import pytest
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.helpers import (
    LimitedServer,
    connect,
    pattern,
    raiseOwnFileLimit,
    recvExactly,
    recvUntilClosed,
    startLimitedServer,
    waitUntilBlocking,
)

pytestmark = pytest.mark.stress

MiB = 1 << 20


def pingLatencies(sock: socket.socket, count: int, size: int = 64) -> list[float]:
    """Round-trip times, in seconds, of ``count`` echoes of ``size`` bytes."""
    times = []
    message = b"p" * size
    for _ in range(count):
        started = time.perf_counter()
        sock.sendall(message)
        recvExactly(sock, size)
        times.append(time.perf_counter() - started)
    return times


def pump(server: LimitedServer, size: int) -> None:
    """Echo ``size`` bytes through a fresh connection (warms the server up)."""
    with connect(server.port) as c:
        c.setblocking(False)
        _stream(c, size, 0, time.monotonic() + 30)


def _stream(sock: socket.socket, total: int, alreadySent: int, deadline: float) -> tuple[int, int]:
    """
    Send the pattern from ``alreadySent`` to ``total`` while reading its echo
    from the start, checking every byte; then half-close and expect EOF.

    :return: bytes sent and received (both ``total`` on success).
    """
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    sent, received = alreadySent, 0
    try:
        while received < total:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out: sent {sent}, received {received} of {total}")
            for _, events in sel.select(1.0):
                if events & selectors.EVENT_WRITE:
                    if sent < total:
                        sent += sock.send(pattern(sent, min(256 * 1024, total - sent)))
                    if sent == total:
                        sock.shutdown(socket.SHUT_WR)
                        sel.modify(sock, selectors.EVENT_READ)
                if events & selectors.EVENT_READ:
                    chunk = sock.recv(MiB)
                    if not chunk:
                        raise AssertionError(f"EOF after {received} of {total} bytes")
                    if chunk != pattern(received, len(chunk)):
                        raise AssertionError(f"wrong bytes at offset {received}")
                    received += len(chunk)
    finally:
        sel.close()
    sock.setblocking(True)
    assert recvUntilClosed(sock, max(deadline - time.monotonic(), 1.0)) == (b"", None)
    return sent, received


class SlowReaderTests(SynchronousTestCase):
    TOTAL = 100 * MiB

    def test_hundredMegabytesNeverRead(self) -> None:
        server = startLimitedServer(self)
        pump(server, 16 * MiB)  # the server's buffers and allocator are warm
        other = connect(server.port)
        self.addCleanup(other.close)
        before = statistics.median(pingLatencies(other, 200))
        rssBefore = server.rssKiB()

        slow = connect(server.port)
        self.addCleanup(slow.close)
        slow.setblocking(False)
        sent = 0
        lastProgress = time.monotonic()
        deadline = lastProgress + 30
        # Send without reading, until the kernel and the server stop taking more.
        while time.monotonic() - lastProgress < 1.0 and sent < self.TOTAL:
            self.assertLess(time.monotonic(), deadline)
            try:
                sent += slow.send(pattern(sent, 256 * 1024))
                lastProgress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        self.assertLess(sent, 64 * MiB, "the server never pushed back")
        rssStuck = server.rssKiB()
        during = pingLatencies(other, 200)
        # Memory: what the kernel buffers is not the server's; the server holds
        # about one buffer's worth for this connection.
        self.assertLess(rssStuck - rssBefore, 4 * 1024, f"RSS grew {rssStuck - rssBefore} KiB")
        # The other client's latency: as before, give or take scheduling noise.
        self.assertLess(statistics.median(during), max(5 * before, 0.005))
        self.assertLess(max(during), 0.5)

        # Now it reads: every byte comes back, in order, then the FIN.
        done = _stream(slow, self.TOTAL, sent, time.monotonic() + 60)
        self.assertEqual(done, (self.TOTAL, self.TOTAL))
        self.assertLess(server.rssKiB() - rssBefore, 8 * 1024)
        server.waitForLog(r"closed \(closed\) after [\d.]+s: 104857600 bytes in, 104857600 out")


class FileDescriptorExhaustionTests(SynchronousTestCase):
    LIMIT = 64

    def test_emfile(self) -> None:
        """
        With ``RLIMIT_NOFILE`` at 64: connections fill the table, the server
        logs EMFILE and closes the ones it cannot take, keeps serving the
        others, does not spin, and accepts again once descriptors free up.
        """
        server = startLimitedServer(self, nofile=(self.LIMIT, self.LIMIT))
        self.assertIn("open-files limit 64 (hard 64) is below --max-connections", server.stdout())
        served: list[socket.socket] = []
        refused = 0
        for i in range(self.LIMIT + 20):
            c = connect(server.port)
            self.addCleanup(c.close)
            c.sendall(b"%d" % i)
            data, _ = _tryRecv(c)
            if data:
                served.append(c)
            else:
                refused += 1
        self.assertGreater(len(served), self.LIMIT // 2)
        self.assertGreaterEqual(refused, 20)
        self.assertGreaterEqual(server.fdCount(), self.LIMIT - 1)  # the table is full
        server.waitForLog("EMFILE encountered; releasing reserved file descriptor")
        # It keeps serving the connections it has, and does not spin.
        cpu = server.cpuSeconds()
        for c in served:
            c.sendall(b"still")
            self.assertEqual(recvExactly(c, 5), b"still")
        time.sleep(1.0)
        self.assertLess(server.cpuSeconds() - cpu, 0.5)
        # Free some descriptors: new connections are served again.
        for c in served[:5]:
            c.close()
        waitUntilBlocking(lambda: server.fdCount() <= self.LIMIT - 5, 5.0)
        for _ in range(3):
            with connect(server.port) as c:
                c.sendall(b"back")
                self.assertEqual(recvExactly(c, 4), b"back")
        self.assertNotIn("Traceback", server.output())


def _tryRecv(sock: socket.socket) -> tuple[bytes, int | None]:
    """One read: data, or ``b""`` and the errno if the server closed it."""
    try:
        return sock.recv(100), None
    except OSError as e:
        return b"", e.errno


# -- many connections, from one selector loop ---------------------------------------


@dataclass
class Lane:
    """One client connection's state in a selector loop."""

    sock: socket.socket
    offset: int  # where in the pattern this client's stream starts
    sent: int = 0
    received: int = 0
    inFlight: int = 0
    messages: int = 0
    closing: bool = False
    done: bool = False
    errors: list[str] = field(default_factory=list)


def _connectNonBlocking(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    rc = sock.connect_ex(("127.0.0.1", port))
    if rc not in (0, errno.EINPROGRESS):
        sock.close()
        raise OSError(rc, errno.errorcode.get(rc, "?"))
    return sock


class ChurnTests(SynchronousTestCase):
    CYCLES = 20_000
    LANES = 32
    MESSAGE = b"churn-test-message-0123456789abc"  # 32 bytes

    def test_churn(self) -> None:
        """20,000 connect-send-receive-close cycles leak no descriptor and no memory."""
        server = startLimitedServer(self)
        self._cycles(server, 1000)  # warm up
        waitUntilBlocking(lambda: server.stdout().count("closed (closed)") >= 1000, 10)
        fds, rss = server.fdCount(), server.rssKiB()
        started = time.monotonic()
        self._cycles(server, self.CYCLES)
        elapsed = time.monotonic() - started
        waitUntilBlocking(
            lambda: server.stdout().count("closed (closed)") >= 1000 + self.CYCLES,
            15,
            lambda: f"{server.stdout().count('closed (closed)')} closed",
        )
        waitUntilBlocking(
            lambda: server.fdCount() <= fds, 5, lambda: f"{server.fdCount()} > {fds} fds"
        )
        self.assertEqual(server.fdCount(), fds)
        self.assertLess(server.rssKiB() - rss, 2048, "memory grew")
        self.assertLess(elapsed, 90)
        self.assertNotIn("Traceback", server.output())

    def _cycles(self, server: LimitedServer, count: int) -> None:
        """Run ``count`` cycles on ``LANES`` connections at a time."""
        sel = selectors.DefaultSelector()
        started = 0
        finished = 0
        got: dict[socket.socket, bytes] = {}
        deadline = time.monotonic() + 120

        def begin() -> None:
            nonlocal started
            sock = _connectNonBlocking(server.port)
            got[sock] = b""
            sel.register(sock, selectors.EVENT_WRITE)
            started += 1

        for _ in range(min(self.LANES, count)):
            begin()
        try:
            while finished < count:
                self.assertLess(time.monotonic(), deadline, f"{finished} of {count} cycles")
                for key, events in sel.select(1.0):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if events & selectors.EVENT_WRITE:
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        self.assertEqual(err, 0, errno.errorcode.get(err))
                        sock.send(self.MESSAGE)
                        sel.modify(sock, selectors.EVENT_READ)
                        continue
                    chunk = sock.recv(4096)
                    self.assertTrue(chunk, "closed before the echo")
                    got[sock] += chunk
                    if len(got[sock]) == len(self.MESSAGE):
                        self.assertEqual(got[sock], self.MESSAGE)
                        sel.unregister(sock)
                        del got[sock]
                        sock.close()
                        finished += 1
                        if started < count:
                            begin()
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            sel.close()


class ConcurrencyTests(SynchronousTestCase):
    CLIENTS = 2000
    SECONDS = 4.0

    def test_twoThousandClients(self) -> None:
        """
        2,000 clients, each sending messages of varying size and checking
        each echo against the exact bytes it sent (its own stream, so loss,
        reordering and crossed wires all show), for several seconds.
        """
        if raiseOwnFileLimit(self.CLIENTS + 512) < self.CLIENTS + 512:
            raise SkipTest(f"the hard open-files limit is below {self.CLIENTS + 512}")
        server = startLimitedServer(self, "--listen", "tcp:0:interface=127.0.0.1:backlog=1024")
        fds = server.fdCount()
        sel = selectors.DefaultSelector()
        lanes: dict[socket.socket, Lane] = {}
        try:
            for k in range(self.CLIENTS):
                sock = _connectNonBlocking(server.port)
                lanes[sock] = Lane(sock, offset=k * 7919)
                sel.register(sock, selectors.EVENT_WRITE)
            self._exchange(sel, lanes)
        finally:
            sel.close()
            for sock in lanes:
                sock.close()
        errors = [e for lane in lanes.values() for e in lane.errors]
        self.assertEqual(errors, [])
        counts = [lane.messages for lane in lanes.values()]
        self.assertTrue(all(lane.done for lane in lanes.values()))
        self.assertGreaterEqual(min(counts), 3, "a client was starved")
        waitUntilBlocking(
            lambda: server.stdout().count("closed (closed)") >= self.CLIENTS,
            15,
            lambda: f"{server.stdout().count('closed (closed)')} of {self.CLIENTS} closed",
        )
        waitUntilBlocking(
            lambda: server.fdCount() <= fds, 5, lambda: f"{server.fdCount()} > {fds} fds"
        )
        self.assertNotIn("Traceback", server.output())
        self.assertNotIn("refused", server.stdout())

    def _exchange(self, sel: selectors.BaseSelector, lanes: dict[socket.socket, Lane]) -> None:
        started = time.monotonic()
        stopSending = started + self.SECONDS
        deadline = started + self.SECONDS + 60
        open_ = len(lanes)
        while open_:
            now = time.monotonic()
            if now > deadline:
                stuck = [lane for lane in lanes.values() if not lane.done]
                raise AssertionError(f"{len(stuck)} clients unfinished: {stuck[:3]}")
            for key, events in sel.select(1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                lane = lanes[sock]
                try:
                    if events & selectors.EVENT_WRITE:
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, errno.errorcode.get(err, "?"))
                        self._sendNext(lane)
                        sel.modify(sock, selectors.EVENT_READ)
                        continue
                    chunk = sock.recv(65536)
                    if not chunk:
                        if lane.closing and lane.inFlight == 0:
                            lane.done = True
                        else:
                            lane.errors.append(f"EOF with {lane.inFlight} bytes due")
                        sel.unregister(sock)
                        open_ -= 1
                        continue
                    expected = pattern(lane.offset + lane.received, len(chunk))
                    if chunk != expected or len(chunk) > lane.inFlight:
                        lane.errors.append(f"wrong bytes at {lane.received}")
                        sel.unregister(sock)
                        open_ -= 1
                        continue
                    lane.received += len(chunk)
                    lane.inFlight -= len(chunk)
                    if lane.inFlight == 0:
                        lane.messages += 1
                        if time.monotonic() < stopSending:
                            self._sendNext(lane)
                        else:
                            lane.closing = True
                            sock.shutdown(socket.SHUT_WR)
                except OSError as e:
                    lane.errors.append(repr(e))
                    sel.unregister(sock)
                    open_ -= 1

    @staticmethod
    def _sendNext(lane: Lane) -> None:
        size = 16 + (lane.offset + lane.messages * 131) % 2000
        data = pattern(lane.offset + lane.sent, size)
        # Small messages into an idle socket: the kernel takes them whole.
        n = lane.sock.send(data)
        if n != size:
            raise OSError(errno.EAGAIN, f"short send {n} of {size}")
        lane.sent += size
        lane.inFlight += size
