"""
The protocols stand alone: under a plain ``Factory.forProtocol`` they are
correct echo and thank-you servers (half-close, flow control, write-through),
in memory and over 127.0.0.1; what ``ServerFactory`` adds comes through
:class:`~tcpproto.connection.IConnectionHooks`.

The issue's snippet::

    endpoints.serverFromString(reactor, "tcp:0").listen(Factory.forProtocol(EchoProtocol))
"""

from __future__ import annotations

import os
import socket
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import directlyProvides

from tcpproto import EchoFactory, EchoProtocol, LineEchoProtocol, ThankYouProtocol, exchange
from tcpproto.connection import IConnectionHooks, ServerConnection
from tcpproto.testing import (
    MEMORY_PEER,
    CollectingClient,
    HalfCloseableClient,
    HalfCloseableStringTransport,
    MemoryPipe,
    TLSLikeStringTransport,
    connectInMemory,
)
from tests.helpers import (
    LOCAL_TCP,
    LOOPBACK,
    LogCapture,
    assertSameBytes,
    clientDescription,
    listenLocal,
    portNumber,
    waitUntil,
)


class InMemoryTests(SynchronousTestCase):
    """Factory.forProtocol(...) in memory: nothing lost, memory bounded."""

    def test_echoTailAfterFIN(self) -> None:
        """Every byte sent before the client's FIN comes back, then the server closes."""
        client = HalfCloseableClient()
        pipe = MemoryPipe.fromFactory(Factory.forProtocol(EchoProtocol), client, chunkSize=7)
        data = os.urandom(2_000_000)
        assert client.transport is not None
        client.transport.write(data)
        cast(ITCPTransport, client.transport).loseWriteConnection()
        pipe.flush()
        assertSameBytes(self, client.received, data)
        self.assertTrue(pipe.closed)

    def test_lineEchoPartialLineAfterFIN(self) -> None:
        client = HalfCloseableClient()
        pipe = MemoryPipe.fromFactory(Factory.forProtocol(LineEchoProtocol), client)
        assert client.transport is not None
        client.transport.write(b"one\ntwo")
        cast(ITCPTransport, client.transport).loseWriteConnection()
        pipe.flush()
        self.assertEqual(client.received, b"one\ntwo")

    def test_thankYouDefaults(self) -> None:
        """ThankYouProtocol's settings are class attributes with the factory's defaults."""
        proto, transport = connectInMemory(Factory.forProtocol(ThankYouProtocol))
        proto.dataReceived(b"hello")
        self.assertEqual(transport.value(), b"thank you!")

    def test_subclassSettings(self) -> None:
        """Under any factory, a subclass sets the protocol's settings."""

        class Once(ThankYouProtocol):
            reply = b"ta"
            once = True

        proto, transport = connectInMemory(
            Factory.forProtocol(Once), HalfCloseableStringTransport()
        )
        proto.dataReceived(b"hi")
        self.assertEqual(transport.value(), b"ta")
        self.assertTrue(cast(HalfCloseableStringTransport, transport).writeDisconnecting)

    def test_nonReaderBounded(self) -> None:
        """
        A client that sends and never reads: the server stops reading once
        its transport's buffer is full, so what it holds stays bounded.
        """
        client = CollectingClient()
        pipe = MemoryPipe.fromFactory(Factory.forProtocol(EchoProtocol), client, bufferLimit=65536)
        client.transport.pauseProducing()  # type: ignore[union-attr]
        chunk = b"x" * 65536
        assert client.transport is not None
        for _ in range(1600):  # 100 MiB, bounded
            client.transport.write(chunk)
            pipe.flush()
            self.assertLessEqual(pipe.serverTransport.outgoingSize, 65536 + len(chunk))
        self.assertTrue(pipe.serverTransport.readingPaused)
        self.assertGreaterEqual(pipe.serverTransport.pauses, 1)

    def test_noHooksNoCounting(self) -> None:
        """A plain factory provides no hooks; nothing is logged; no error."""
        log = LogCapture.install(self)
        self.assertIsNone(IConnectionHooks(Factory.forProtocol(EchoProtocol), None))
        proto, transport = connectInMemory(Factory.forProtocol(EchoProtocol))
        proto.dataReceived(b"abc")
        proto.connectionLost(Failure(Exception("gone")))
        self.assertEqual(transport.value(), b"abc")
        self.assertEqual(log.events, [])

    def test_noFactory(self) -> None:
        """A protocol made by hand, with no factory at all, works too."""
        proto = EchoProtocol()
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b"abc")
        self.assertEqual(transport.value(), b"abc")

    def test_closingTransportNotResumed(self) -> None:
        """
        A transport closing while it had paused us resumes us instead of
        closing: we stop producing, so that it can close (over TLS the
        peer's close_notify does that, and the connection hung until the
        idle timeout).
        """
        proto, transport = connectInMemory(Factory.forProtocol(EchoProtocol))
        proto.pauseProducing()
        transport.loseConnection()
        proto.resumeProducing()
        self.assertIsNone(transport.producer)

    def test_ourFactoryProvidesHooks(self) -> None:
        factory = EchoFactory(clock=Clock())
        self.assertIs(IConnectionHooks(factory), factory)


class NoDelayTests(SynchronousTestCase):
    """TCP_NODELAY only on TCP sockets (UNIX transports claim ITCPTransport too)."""

    def noDelay(self, host: Any) -> bool:
        transport = TLSLikeStringTransport(hostAddress=host, peerAddress=MEMORY_PEER)
        directlyProvides(transport, ITCPTransport)
        connectInMemory(Factory.forProtocol(EchoProtocol), transport)
        return transport.noDelay

    def test_tcp(self) -> None:
        self.assertTrue(self.noDelay(IPv4Address("TCP", LOOPBACK, 7788)))

    def test_unix(self) -> None:
        self.assertFalse(self.noDelay(UNIXAddress(b"/run/echo.sock")))


class LoopbackTests(TestCase):
    """The issue's snippet, over 127.0.0.1."""

    async def listen(self, factory: Factory) -> int:
        return portNumber(await listenLocal(self, factory, LOCAL_TCP))

    async def test_twoMegabytesHalfClose(self) -> None:
        """A 2 MB send, then FIN (``nc -N``): every byte comes back, byte-exact."""
        log = LogCapture.install(self)
        port = await self.listen(Factory.forProtocol(EchoProtocol))
        data = os.urandom(2 * 1024 * 1024)
        answer = await exchange(clientFromString(reactor, clientDescription(port)), data)
        assertSameBytes(self, answer, data)
        errors = [e for e in log.events if e.get("log_failure") is not None]
        self.assertEqual(errors, [])

    async def test_writeThroughUnderPlainFactory(self) -> None:
        """The write-through fast path is on under any factory."""
        made: list[ServerConnection] = []
        port = await self.listen(recordingFactory(made))
        sock = socket.create_connection((LOOPBACK, port), timeout=10)
        self.addCleanup(sock.close)
        await waitUntil(lambda: made, 10, "the connection")
        self.assertIsNotNone(made[0]._sock)

    async def test_nonReaderBounded(self) -> None:
        """
        A peer that sends (up to 100 MB) and never reads: the server stops
        reading, and what its transport buffers stays bounded.
        """
        made: list[ServerConnection] = []
        port = await self.listen(recordingFactory(made))
        sock = socket.create_connection((LOOPBACK, port), timeout=10)
        self.addCleanup(sock.close)
        sock.setblocking(False)
        await waitUntil(lambda: made, 10, "the connection")
        conn = made[0]
        transport = conn.transport
        chunk = b"x" * 65536
        total = 100 * 1024 * 1024
        sent = stalls = most = 0
        # Bounded: 100 MB at most; it ends once the kernel's buffers are
        # full both ways and the server has stopped reading (the sends stall).
        while sent < total and stalls < 100:
            try:
                sent += sock.send(chunk)
                stalls = 0
                continue
            except BlockingIOError:
                stalls += 1
            await deferLater(reactor, 0.002, lambda: None)
            most = max(most, _buffered(transport))
        self.assertTrue(conn.paused, "the server did not stop reading")
        self.assertLess(sent, total, "everything was taken: nothing pushed back")
        # Twisted's buffer is paused at its high-water mark (64 KiB); with the
        # write-through, at the first partial send: bounded, whatever the peer.
        self.assertLessEqual(most, 65536 + len(chunk))


def recordingFactory(made: list[ServerConnection]) -> Factory:
    """A plain Factory of EchoProtocols that appends each one made to ``made``."""

    class Recording(EchoProtocol):
        def connectionMade(self) -> None:
            super().connectionMade()
            made.append(self)

    return Factory.forProtocol(Recording)


def _buffered(transport: Any) -> int:
    """Bytes the TCP transport holds for the peer, not yet handed to the kernel."""
    return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)
