"""
The lean epoll reactor: the same behaviour as Twisted's, one layer less per event.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcpproto import EchoFactory, EchoProtocol, exchange
from tcpproto.reactor import LeanEPollReactor
from tests.helpers import (
    LOCAL_TCP,
    LOOPBACK,
    CommandServer,
    Silent,
    executable,
    runProcessSync,
    startServer,
)

T = TypeVar("T")


def runOnce(
    reactor: LeanEPollReactor, body: Callable[[], Coroutine[Any, Any, T]], timeout: float = 20
) -> T:
    """Run ``reactor`` (a private one, not the global) once, for ``body``; its result."""
    results: list[object] = []

    def start() -> None:
        d = Deferred.fromCoroutine(body())
        d.addBoth(results.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    guard = reactor.callLater(timeout, reactor.stop)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    if not results:
        raise AssertionError("timed out")
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result  # type: ignore[return-value]


class _Crash(Protocol):
    def dataReceived(self, data: bytes) -> None:
        raise ZeroDivisionError("a bug in application code")


class LeanReactorTests(SynchronousTestCase):
    """Run a private LeanEPollReactor on 127.0.0.1: the global reactor is untouched."""

    def setUp(self) -> None:
        self.reactor = LeanEPollReactor()
        self.addCleanup(self.closeReactor)
        self.general = 0
        original = self.reactor._doReadOrWrite

        def counting(*args: object) -> None:
            self.general += 1
            original(*args)

        self.reactor._doReadOrWrite = counting  # type: ignore[method-assign]

    def closeReactor(self) -> None:
        """Close the private reactor's epoll object and waker pipe."""
        waker = self.reactor.waker
        if waker is not None:
            self.reactor.removeReader(waker)
            waker.connectionLost(None)
        self.reactor._poller.close()

    async def echo(self, factory: Factory, data: bytes) -> bytes:
        port = await TCP4ServerEndpoint(self.reactor, 0, interface=LOOPBACK).listen(factory)
        try:
            number = port.getHost().port
            return await exchange(TCP4ClientEndpoint(self.reactor, LOOPBACK, number), data)
        finally:
            await port.stopListening()

    def test_echoAndHalfClose(self) -> None:
        """A multi-megabyte echo with a half-close comes back whole."""
        data = bytes(range(256)) * 8192  # 2 MiB: many reads each way
        answer = runOnce(self.reactor, lambda: self.echo(EchoFactory(clock=self.reactor), data))
        self.assertEqual(answer, data)

    def test_plainReadsSkipTheGeneralPath(self) -> None:
        """Readable-only events go straight to doRead; others still go through Twisted's code."""
        reads = 0
        factory = EchoFactory(clock=self.reactor)
        original = factory.protocol.dataReceived

        def counting(proto: EchoProtocol, data: bytes) -> None:
            nonlocal reads
            reads += 1
            original(proto, data)

        factory.protocol = type("Counting", (factory.protocol,), {"dataReceived": counting})
        data = b"x" * 4_000_000
        self.assertEqual(runOnce(self.reactor, lambda: self.echo(factory, data)), data)
        self.assertGreater(reads, 10)
        # Writable and hang-up events (connect, full buffers, close) still
        # take Twisted's general path: far fewer of them than reads.
        self.assertGreater(self.general, 0)
        self.assertLess(self.general, reads * 4)

    def test_errorInApplicationCodeDropsTheConnection(self) -> None:
        """As with Twisted's reactor: the error is logged and the connection closed."""

        async def body() -> None:
            endpoint = TCP4ServerEndpoint(self.reactor, 0, interface=LOOPBACK)
            port = await endpoint.listen(Factory.forProtocol(_Crash))
            try:
                client = Silent()
                number = port.getHost().port
                await connectProtocol(TCP4ClientEndpoint(self.reactor, LOOPBACK, number), client)
                assert client.transport is not None
                client.transport.write(b"boom")
                await client.lost
            finally:
                await port.stopListening()

        runOnce(self.reactor, body)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class ChoiceTests(SynchronousTestCase):
    """twistd tcpecho runs on the lean reactor unless the operator chose one."""

    def installIfNoneChosen(self, before: str = "") -> list[bytes]:
        """What installIfNoneChosen() returns, and the reactor then, in a fresh interpreter."""
        code = before + (
            "from tcpproto.reactor import installIfNoneChosen\n"
            "print(installIfNoneChosen())\n"
            "from twisted.internet import reactor\n"
            "print(type(reactor).__name__)\n"
        )
        result = runProcessSync([sys.executable, "-c", code])
        self.assertEqual(result.err, b"")
        return result.out.split()

    def test_installedWhenNoneChosen(self) -> None:
        self.assertEqual(self.installIfNoneChosen(), [b"True", b"LeanEPollReactor"])

    def test_keptWhenChosen(self) -> None:
        chosen = "from twisted.internet import epollreactor\nepollreactor.install()\n"
        self.assertEqual(self.installIfNoneChosen(chosen), [b"False", b"EPollReactor"])

    def test_twistdTcpechoUsesIt(self) -> None:
        server = startServer(self)
        self.assertIn("reactor class: tcpproto.reactor.LeanEPollReactor", server.stdout())

    def test_twistdReactorOptionOverrides(self) -> None:
        """``twistd --reactor=epoll tcpecho`` keeps Twisted's own (the lean one is a default)."""
        twistd = [executable("twistd"), "-n", "--pidfile=", "--reactor=epoll"]
        server = CommandServer([*twistd, "tcpecho", "--listen", LOCAL_TCP])
        self.addCleanup(server.cleanup)
        server.start()
        self.assertIn("reactor class: twisted.internet.epollreactor.EPollReactor", server.stdout())
