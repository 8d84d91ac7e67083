"""
Graceful shutdown: stop accepting at once, let open connections finish for up
to ``--shutdown-timeout`` seconds, cut the rest, log how many, exit 0.

In memory with a fake clock (the timing and the counting), in process with
real sockets (the listener closes while connections carry on), and end to
end with ``twistd tcpecho`` and real signals.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from typing import cast

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tcpproto._services import ListenerService, ServerService
from tcpproto.connection import SHUTDOWN
from tcpproto.echo import LINE, EchoFactory
from tcpproto.limits import ConnectionLimits
from tests.helpers import (
    LogCapture,
    Probe,
    connect,
    pattern,
    recvExactly,
    recvUntilClosed,
    refusedNow,
    startLimitedServer,
)

reactor = _reactor

#: The name the in-process tests give their listener child service.
LISTENER = "listener"


class FakeConnection:
    """An open connection as :class:`ServerService` sees it: it can be aborted."""

    def __init__(self, limits: ConnectionLimits, clock: MemoryReactorClock) -> None:
        self.limits = limits
        self.clock = clock
        self.aborted: list[str] = []
        limits.opened(self, None)

    def finish(self) -> None:
        self.limits.closed(self, None)

    def abort(self, reason: str) -> None:
        self.aborted.append(reason)
        # Like abortConnection: connectionLost on the reactor's next turn.
        self.clock.callLater(0, self.finish)


class ServerServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.limits = ConnectionLimits()
        self.service = ServerService(self.limits, shutdownTimeout=10, clock=self.clock)
        self.service.startService()
        self.log = LogCapture.install(self)

    def stop(self) -> list[object]:
        fired: list[object] = []
        self.service.stopService().addBoth(fired.append)
        return fired

    def test_noConnections(self) -> None:
        self.assertEqual(self.stop(), [None])
        self.assertEqual(self.service.aborted, 0)

    def test_finishWithinTimeout(self) -> None:
        conns = [FakeConnection(self.limits, self.clock) for _ in range(3)]
        fired = self.stop()
        self.clock.advance(9)
        self.assertEqual(fired, [])
        for c in conns:
            c.finish()
        self.assertEqual(fired, [None])
        self.assertEqual(self.service.aborted, 0)
        self.assertEqual([c.aborted for c in conns], [[], [], []])
        [done] = self.log.withEvent("shutdown-complete")
        self.assertEqual(done["count"], 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_restCutAfterTimeout(self) -> None:
        quick, slow = (FakeConnection(self.limits, self.clock) for _ in range(2))
        fired = self.stop()
        [drain] = self.log.withEvent("shutdown-drain")
        self.assertEqual((drain["count"], drain["timeout"]), (2, 10))
        quick.finish()
        self.clock.advance(9.9)
        self.assertEqual((fired, slow.aborted), ([], []))
        self.clock.advance(0.1)
        self.assertEqual(slow.aborted, [SHUTDOWN])
        self.clock.advance(0)
        self.assertEqual(fired, [None])
        self.assertEqual(self.service.aborted, 1)
        [cut] = self.log.withEvent("shutdown-aborted")
        self.assertEqual(cut["count"], 1)
        self.assertEqual(quick.aborted, [])

    def test_zeroTimeoutCutsAtOnce(self) -> None:
        self.service.shutdownTimeout = 0
        conn = FakeConnection(self.limits, self.clock)
        fired = self.stop()
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual((conn.aborted, fired), ([SHUTDOWN], [None]))

    def test_negativeTimeoutRejected(self) -> None:
        self.assertRaises(ValueError, ServerService, self.limits, shutdownTimeout=-1)

    def test_firstSignalStopsReactor(self) -> None:
        self.service.signalled("SIGTERM")
        self.assertTrue(self.clock.hasStopped)

    def test_secondSignalCutsNow(self) -> None:
        conn = FakeConnection(self.limits, self.clock)
        self.service.signalled("SIGINT")
        fired = self.stop()  # what the reactor's shutdown does
        self.clock.advance(1)
        self.assertEqual(conn.aborted, [])
        self.service.signalled("SIGINT")
        self.clock.advance(0)
        self.assertEqual((conn.aborted, fired), ([SHUTDOWN], [None]))
        self.assertEqual(self.service.aborted, 1)

    def test_secondSignalBeforeDraining(self) -> None:
        """A second signal before the listeners have closed skips the wait."""
        self.service.signalled("SIGTERM")
        self.service.signalled("SIGTERM")
        conn = FakeConnection(self.limits, self.clock)
        fired = self.stop()
        self.clock.advance(0)
        self.assertEqual((conn.aborted, fired), ([SHUTDOWN], [None]))


class ObservedListener(ListenerService):
    """A :class:`ListenerService` whose :attr:`closed` fires once its port has closed."""

    def __init__(self, endpoint: TCP4ServerEndpoint, factory: EchoFactory) -> None:
        super().__init__(endpoint, factory, "tcp:0")
        self.closed: Deferred[None] = Deferred()

    def stopService(self) -> Deferred[None]:
        stopping = cast("Deferred[None]", super().stopService())

        def stopped(result: object) -> object:
            self.closed.callback(None)
            return result

        return stopping.addBoth(stopped)


class InProcessShutdownTests(TestCase):
    """A real listener and real connections, stopped through the service."""

    async def _serve(self, timeout: float, factory: EchoFactory) -> tuple[ServerService, int]:
        service = ServerService(factory.limits, shutdownTimeout=timeout)
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        listener = ObservedListener(endpoint, factory)
        listener.setName(LISTENER)
        listener.setServiceParent(service)
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        while listener.port is None:
            await deferLater(reactor, 0.01, lambda: None)
        return service, int(listener.port.getHost().port)  # type: ignore[attr-defined]

    async def _client(self, port: int, payload: bytes = b"") -> Probe:
        probe = Probe(payload)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await connectProtocol(endpoint, probe)
        return probe

    async def test_stopsAcceptingButFinishesOpenConnections(self) -> None:
        factory = EchoFactory(LINE)
        service, port = await self._serve(5.0, factory)
        probe = await self._client(port, b"first\n")
        self.assertEqual(await probe.nextData(), b"first\n")
        stopped = service.stopService()
        # The listener child closes its port first; the drain waits on.
        listener = service.getServiceNamed(LISTENER)
        assert isinstance(listener, ObservedListener)
        await listener.closed
        self.assertFalse(stopped.called)
        # No new connection ...
        with self.assertRaises(ConnectionRefusedError):
            await self._client(port)
        # ... but the open one still answers, and its half-close is honoured:
        # the partial line it ends with is echoed before our FIN.
        assert probe.transport is not None
        probe.transport.write(b"second\npartial")
        probe.transport.loseWriteConnection()  # type: ignore[attr-defined]
        received = await probe.done
        self.assertEqual(received, b"first\nsecond\npartial")
        await stopped
        self.assertEqual(service.aborted, 0)

    async def test_cutAfterTimeout(self) -> None:
        factory = EchoFactory()
        service, port = await self._serve(0.3, factory)
        probe = await self._client(port, b"x")
        self.assertEqual(await probe.nextData(), b"x")
        started = reactor.seconds()
        await service.stopService()
        self.assertGreaterEqual(reactor.seconds() - started, 0.25)
        self.assertEqual(service.aborted, 1)
        await probe.done
        self.assertEqual(factory.limits.active, 0)


# -- end to end -----------------------------------------------------------------


class TwistdShutdownTests(SynchronousTestCase):
    def test_sigtermGraceful(self) -> None:
        """
        After SIGTERM: new connects are refused, a connection mid-conversation
        gets its echo and can half-close, one that stays open past
        ``--shutdown-timeout`` is cut, and twistd exits 0.
        """
        server = startLimitedServer(self, "--shutdown-timeout", "2")
        talker = connect(server.port)
        stayer = connect(server.port)
        self.addCleanup(talker.close)
        self.addCleanup(stayer.close)
        for c in (talker, stayer):
            c.sendall(b"hello")
            self.assertEqual(recvExactly(c, 5), b"hello")
        talker.sendall(b"in flight")
        sent = time.monotonic()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # Probing before the listener has closed would be accepted, and counted.
        server.waitForLog(r"stopped listening; waiting", 2.0)
        self.assertTrue(refusedNow(server.port), "still accepting after SIGTERM")
        self.assertEqual(recvExactly(talker, 9), b"in flight")
        talker.sendall(b"after the signal")
        self.assertEqual(recvExactly(talker, 16), b"after the signal")
        talker.sendall(b"last words")
        talker.shutdown(socket.SHUT_WR)
        self.assertEqual(recvUntilClosed(talker), (b"last words", None))
        # The silent one is cut at the timeout, not before.
        data, _ = recvUntilClosed(stayer, 5.0)
        cutAfter = time.monotonic() - sent
        self.assertEqual(data, b"")
        self.assertGreater(cutAfter, 1.8)
        self.assertLess(cutAfter, 4.0)
        self.assertEqual(server.wait(5.0), 0)
        log = server.stdout()
        self.assertIn("received SIGTERM: shutting down", log)
        self.assertIn("waiting up to 2.0s for 2 open connections", log)
        self.assertIn("shutdown: aborting 1 connections still open", log)
        self.assertEqual(sorted(server.closeReasons()), ["closed", "shutdown"])

    def test_inFlightDataEchoed(self) -> None:
        """Megabytes sent just before SIGTERM all come back, then our FIN."""
        server = startLimitedServer(self, "--shutdown-timeout", "10")
        size = 4 << 20
        with connect(server.port) as c:
            c.sendall(b"start")
            self.assertEqual(recvExactly(c, 5), b"start")
            assert server.process is not None
            c.setblocking(False)
            data = pattern(0, size)
            sent = 0
            received: list[bytes] = []
            got = 0
            signalled = False
            deadline = time.monotonic() + 20
            while got < size and time.monotonic() < deadline:
                if sent < size:
                    with contextlib.suppress(BlockingIOError):
                        sent += c.send(data[sent : sent + 65536])
                    if sent >= size // 2 and not signalled:
                        server.process.send_signal(signal.SIGTERM)
                        signalled = True
                    if sent == size:
                        c.shutdown(socket.SHUT_WR)
                try:
                    chunk = c.recv(1 << 20)
                    received.append(chunk)
                    got += len(chunk)
                except BlockingIOError:
                    time.sleep(0.001)
            self.assertTrue(signalled)
            self.assertEqual(got, size)
            self.assertEqual(b"".join(received), data)
            c.setblocking(True)
            self.assertEqual(recvUntilClosed(c), (b"", None))
        self.assertEqual(server.wait(5.0), 0)
        self.assertIn("all 1 open connections finished", server.stdout())

    def test_sigintNoConnections(self) -> None:
        server = startLimitedServer(self)
        started = time.monotonic()
        self.assertEqual(server.stop(signal.SIGINT, 10.0), 0)
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertIn("received SIGINT: shutting down", server.stdout())

    def test_secondSignalCutsAtOnce(self) -> None:
        server = startLimitedServer(self, "--shutdown-timeout", "60")
        with connect(server.port) as c:
            c.sendall(b"x")
            self.assertEqual(recvExactly(c, 1), b"x")
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            server.waitForLog("waiting up to 60.0s for 1 open connections")
            started = time.monotonic()
            server.process.send_signal(signal.SIGINT)
            self.assertEqual(server.wait(10.0), 0)
            self.assertLess(time.monotonic() - started, 3.0)
            self.assertEqual(recvUntilClosed(c)[0], b"")
        self.assertIn("received SIGINT again: cutting 1 open connections now", server.stdout())
