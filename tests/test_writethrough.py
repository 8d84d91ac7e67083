"""
The write-through fast path of ``ServerConnection.send``, and its fallback.

The fast path needs a real ``tcp.Connection`` with a real socket, so these
tests make one over a connected pair of loopback sockets and drive it by hand
(a ``MemoryReactorClock`` records what the transport asks to be watched; the
tests call ``doRead``/``doWrite`` as the reactor would).  That keeps them
synchronous and deterministic, so hypothesis can run them, on both paths:
``factory.writeThrough = False`` forces the public-API fallback
(``transport.write``) on the same real transport.

Properties checked on both paths: the echo is exact for any data and any
chunking, before and after the peer's half-close (the tail is not lost); a
peer that does not read makes the server stop reading with at most one read
buffered (fast path) or one read past the transport's high-water mark
(fallback); it resumes when the peer reads.  A real-reactor test counts that
the fast path is taken: no ``transport.write`` call at all for a ping-pong.
"""

from __future__ import annotations

import gc
import select
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import error, reactor, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHalfCloseableDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.internet.threads import deferToThread
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tcpproto import EchoFactory, ServerConnection, ThankYouFactory
from tcpproto._halfclose import writesTo
from tcpproto._proxy import _ProxiedTransport
from tcpproto._twisted import writeThroughSocket as _writeThroughSocket
from tcpproto.connection import ServerFactory
from tests.helpers import LOOPBACK, chunked, listenLocal, portNumber

PEER = IPv4Address("TCP", LOOPBACK, 40000)
#: Blocking socket calls in these tests fail after this many seconds.
SOCKET_TIMEOUT = 10.0
#: Bounds every hand-driven loop: far more turns than any example needs.
MAX_TURNS = 100_000


def tcpPair(smallBuffers: bool = False) -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on 127.0.0.1: (server side, non-blocking client side)."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        client = socket.socket()
        if smallBuffers:
            # The kernel's buffers fill after a few KiB, so the fast path
            # meets a full socket and must fall back mid-message.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.settimeout(SOCKET_TIMEOUT)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    if smallBuffers:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setblocking(False)
    return server, client


class Driven:
    """
    A server connection on a real ``tcp.Server`` transport, driven by hand.

    ``turn()`` does what one reactor iteration would: ``doRead`` if the
    transport is reading, ``doWrite`` if it is writing, and the
    disconnection handling of ``ReactorBase._disconnectSelectable``.
    """

    def __init__(self, factory: ServerFactory, smallBuffers: bool = False) -> None:
        self.reactor = MemoryReactorClock()
        server, self.client = tcpPair(smallBuffers)
        proto = factory.buildProtocol(PEER)
        assert isinstance(proto, ServerConnection)
        self.proto = proto
        self.transport = tcp.Server(server, proto, (LOOPBACK, 40000), None, 0, self.reactor)  # type: ignore[arg-type]
        proto.makeConnection(self.transport)
        self.lost = False
        self.received: list[bytes] = []
        self.clientEOF = False

    def close(self) -> None:
        self.client.close()
        if not self.lost:
            self.transport.socket.close()

    # -- the server side --------------------------------------------------

    @property
    def reading(self) -> bool:
        return self.transport in self.reactor.getReaders()

    @property
    def writing(self) -> bool:
        return self.transport in self.reactor.getWriters()

    def buffered(self) -> int:
        """Bytes the transport holds for the peer (not yet in the kernel)."""
        t = self.transport
        return len(t.dataBuffer) - t.offset + t._tempDataLen

    def turn(self) -> None:
        t = self.transport
        if self.lost:
            return
        if self.reading:
            why = t.doRead()
            if why:
                self._disconnect(why, isRead=True)
        if not self.lost and self.writing:
            why = t.doWrite()
            if why:
                self._disconnect(why, isRead=False)
        self.reactor.advance(0)  # abortConnection and friends use callLater(0)

    def _disconnect(self, why: Any, isRead: bool) -> None:
        t = self.transport
        self.reactor.removeReader(t)
        reason = Failure(why)
        if (
            isRead
            and isinstance(why, error.ConnectionDone)
            and IHalfCloseableDescriptor.providedBy(t)
        ):
            t.readConnectionLost(reason)
            return
        self.reactor.removeWriter(t)
        t.connectionLost(reason)
        self.lost = True

    # -- the client side --------------------------------------------------

    def clientSend(self, data: bytes) -> int:
        try:
            return self.client.send(data)
        except BlockingIOError:
            return 0

    def clientRead(self) -> int:
        got = 0
        while not self.clientEOF:
            try:
                chunk = self.client.recv(262144)
            except BlockingIOError:
                break
            if not chunk:
                self.clientEOF = True
                break
            self.received.append(chunk)
            got += len(chunk)
        return got

    def answer(self) -> bytes:
        return b"".join(self.received)

    def run(self, until: Callable[[], bool], read: bool = True) -> None:
        for _ in range(MAX_TURNS):
            if until():
                return
            self.turn()
            if read:
                self.clientRead()
        raise AssertionError("the hand-driven connection made no progress")


@contextmanager
def driven(
    factory: ServerFactory, writeThrough: bool, smallBuffers: bool = False
) -> Iterator[Driven]:
    factory.writeThrough = writeThrough
    d = Driven(factory, smallBuffers)
    try:
        yield d
    finally:
        d.close()


def answered(d: Driven, size: int) -> bool:
    return len(d.answer()) >= size


def echoFactory() -> EchoFactory:
    # No timers: nothing here runs the clock, and nothing must be left behind.
    return EchoFactory(clock=Clock(), idleTimeout=0, maxLifetime=0)


def countWrites(transport: tcp.Server) -> list[bytes]:
    """Record every ``transport.write`` from now on (and still write)."""
    calls: list[bytes] = []
    write = transport.write

    def spy(data: bytes) -> None:
        calls.append(data)
        write(data)

    transport.write = spy  # type: ignore[method-assign]
    return calls


# -- feature detection ------------------------------------------------------


class FeatureDetectionTests(SynchronousTestCase):
    """The fast path is used only on a plain TCP transport with what it relies on."""

    def test_realTCPTransport(self) -> None:
        with driven(echoFactory(), writeThrough=True) as d:
            self.assertIs(_writeThroughSocket(d.transport), d.transport.socket)
            self.assertIs(d.proto._sock, d.transport.socket)

    def test_transportKeepsCompactAttributes(self) -> None:
        """
        Connecting leaves the TCP transport's attributes in CPython's compact
        inline form: nothing asks for its ``__dict__``, which CPython builds
        on demand and which makes every later attribute read on the object
        slower (the write-through's checks and Twisted's ``doRead`` read
        them on every message: 1,400-1,800 more instructions per message at
        100 connections when ``writesTo`` asked for it; benchmarks/RESULTS.md).

        CPython 3.11 and 3.12 only: 3.13 keeps the inline values behind a
        dictionary built on request (reads stay fast, and the garbage
        collector sees the values either way, so there is nothing to check).
        """
        if sys.implementation.name != "cpython" or not (3, 11) <= sys.version_info < (3, 13):
            raise SkipTest("the __dict__ slowdown is CPython 3.11 and 3.12's")

        def hasDict(obj: object) -> bool:
            # An object with inline attributes refers to its values; once
            # its __dict__ is built, to that dictionary instead.
            return any(isinstance(r, dict) and "socket" in r for r in gc.get_referents(obj))

        server, client = tcpPair()
        self.addCleanup(client.close)
        self.addCleanup(server.close)
        proto = echoFactory().buildProtocol(PEER)
        assert isinstance(proto, ServerConnection)
        transport = tcp.Server(
            server, proto, (LOOPBACK, 40000), cast(Any, None), 0, MemoryReactorClock()
        )
        self.assertFalse(hasDict(transport))
        proto.makeConnection(transport)
        self.assertIs(proto._sock, server)
        self.assertFalse(hasDict(transport))
        vars(transport)
        self.assertTrue(hasDict(transport))  # the check can fail

    def test_switchedOff(self) -> None:
        with driven(echoFactory(), writeThrough=False) as d:
            self.assertIsNone(d.proto._sock)

    def test_notTCP(self) -> None:
        self.assertIsNone(_writeThroughSocket(StringTransport()))
        self.assertIsNone(_writeThroughSocket(object()))

    def test_overriddenWriteSomeData(self) -> None:
        """A TCP transport that writes differently (TLS, say) is left alone."""

        class Other(tcp.Server):
            def writeSomeData(self, data: bytes) -> int:
                return 0  # pragma: no cover - never called

        server, client = tcpPair()
        self.addCleanup(client.close)
        self.addCleanup(server.close)
        proto = echoFactory().buildProtocol(PEER)
        assert proto is not None
        transport = Other(server, proto, (LOOPBACK, 1), None, 0, MemoryReactorClock())  # type: ignore[arg-type]
        self.assertIsNone(_writeThroughSocket(transport))

    def test_behindTheProxyLayer(self) -> None:
        """
        The PROXY layer's transport only changes the addresses and writes to
        a plain TCP one: answers take the fast path behind it too.
        """
        server, client = tcpPair()
        self.addCleanup(client.close)
        self.addCleanup(server.close)
        proto = echoFactory().buildProtocol(PEER)
        assert isinstance(proto, ServerConnection)
        transport = tcp.Server(server, proto, (LOOPBACK, 40000), None, 0, MemoryReactorClock())  # type: ignore[arg-type]
        writes = countWrites(transport)
        claimed = IPv4Address("TCP", "127.0.0.2", 5000)
        proto.makeConnection(cast(Any, _ProxiedTransport(transport, claimed, transport.getHost())))
        self.assertIs(proto._sock, server)
        proto.dataReceived(b"hello")
        self.assertEqual(writes, [])
        self.assertEqual(select.select([client], [], [], SOCKET_TIMEOUT)[0], [client])
        self.assertEqual(client.recv(100), b"hello")

    def test_notPastAWrapperBehindTheProxyLayer(self) -> None:
        """
        A wrapper between the PROXY layer and the protocol (TLS, or any
        ProtocolWrapper, which pass unknown attribute names down) is not
        written past: over TLS that would send the answer unencrypted.
        """
        server, client = tcpPair()
        self.addCleanup(client.close)
        self.addCleanup(server.close)
        noPort: Any = None
        clock = MemoryReactorClock()
        transport = tcp.Server(server, Protocol(), (LOOPBACK, 40000), noPort, 0, clock)
        claimed = IPv4Address("TCP", "127.0.0.2", 5000)
        proxied = _ProxiedTransport(transport, claimed, transport.getHost())
        wrapper = ProtocolWrapper(WrappingFactory(Factory()), Protocol())
        wrapper.makeConnection(cast(Any, proxied))
        self.assertIs(writesTo(wrapper), wrapper)
        proto = echoFactory().buildProtocol(PEER)
        assert isinstance(proto, ServerConnection)
        proto.makeConnection(wrapper)
        self.assertIsNone(proto._sock)

    def test_missingAttributes(self) -> None:
        """Private attributes the fast path reads must all be there."""

        class Partial:
            writeSomeData = tcp.Connection.writeSomeData
            socket = socket.socket()
            dataBuffer = b""
            _tempDataLen = 0

        self.addCleanup(Partial.socket.close)
        self.assertIsNone(_writeThroughSocket(Partial()))


# -- which path is taken ------------------------------------------------------


class PathTakenTests(SynchronousTestCase):
    def pingPong(self, writeThrough: bool, messages: int = 50) -> tuple[Driven, list[bytes]]:
        with driven(echoFactory(), writeThrough) as d:
            writes = countWrites(d.transport)
            for i in range(messages):
                message = b"%d:" % i + b"m" * 100
                self.assertEqual(d.clientSend(message), len(message))
                before = len(d.answer())
                d.run(partial(answered, d, before + len(message)))
                self.assertEqual(d.answer()[before:], message)
            self.assertEqual(d.proto.bytesOut, len(d.answer()))
            return d, writes

    def test_fastPathWritesDirectly(self) -> None:
        """With the socket writable, no answer goes through transport.write."""
        d, writes = self.pingPong(writeThrough=True)
        self.assertEqual(writes, [])
        self.assertFalse(d.writing)

    def test_fallbackUsesTransportWrite(self) -> None:
        d, writes = self.pingPong(writeThrough=False, messages=50)
        self.assertEqual(len(writes), 50)
        self.assertEqual(b"".join(writes), d.answer())

    def test_fullSocketFallsBackAndPauses(self) -> None:
        """
        A partial send buffers the rest in the transport and stops reading at
        once; when the peer reads, the rest follows and reading resumes.
        """
        data = bytes(range(256)) * 4096  # 1 MiB: far more than the socket holds
        with driven(echoFactory(), writeThrough=True, smallBuffers=True) as d:
            writes = countWrites(d.transport)
            d.proto.dataReceived(data)
            [rest] = writes
            self.assertTrue(data.endswith(rest))
            self.assertLess(len(rest), len(data))
            self.assertEqual(d.buffered(), len(rest))
            self.assertTrue(d.proto.paused)
            self.assertFalse(d.reading)
            self.assertTrue(d.writing)
            # Once the peer has read a little the socket has room again, but
            # something sent while the buffer is not empty queues behind it.
            self.assertGreater(d.clientRead(), 0)
            d.proto.send(b"after")
            self.assertEqual(writes[1:], [b"after"])
            d.run(lambda: len(d.answer()) == len(data) + 5)
            self.assertTrue(d.answer() == data + b"after", "bytes out of order")
            self.assertFalse(d.proto.paused)
            self.assertTrue(d.reading)
            self.assertFalse(d.writing)
            self.assertEqual(d.proto._resumes, 1)

    def test_nothingAfterOurHalfClose(self) -> None:
        """After our FIN (loseWriteConnection) the fast path writes nothing."""
        factory = ThankYouFactory(clock=Clock(), idleTimeout=0, maxLifetime=0, once=True)
        with driven(factory, writeThrough=True) as d:
            d.clientSend(b"hello")
            d.run(lambda: d.clientEOF)
            self.assertEqual(d.answer(), factory.reply)
            self.assertTrue(d.transport._writeDisconnected)
            d.proto.send(b"late")
            d.turn()
            d.clientRead()
            self.assertEqual(d.answer(), factory.reply)


# -- properties, on both paths ------------------------------------------------

SETTINGS = settings(max_examples=60, deadline=None)
CHUNKS = st.lists(st.binary(min_size=1, max_size=20000), min_size=1, max_size=12)
READS = st.lists(st.booleans(), min_size=1, max_size=12)


class EchoOnBothPaths(SynchronousTestCase):
    """For any chunks and any peer reading pattern, the echo is exact and bounded."""

    def check(self, writeThrough: bool, pieces: list[bytes], reads: list[bool]) -> None:
        data = b"".join(pieces)
        with driven(echoFactory(), writeThrough, smallBuffers=True) as d:
            limit = d.transport.bufferSize
            highest = 0
            for i, piece in enumerate(pieces):
                sent = 0
                for _ in range(MAX_TURNS):
                    if sent == len(piece):
                        break
                    sent += d.clientSend(piece[sent:])
                    d.turn()
                    highest = max(highest, d.buffered())
                    if reads[i % len(reads)] or not sent:
                        d.clientRead()  # also how a stuck peer unsticks
                else:
                    self.fail("could not send")
            d.client.shutdown(socket.SHUT_WR)
            d.run(lambda: d.clientEOF and d.lost)
            self.assertEqual(len(d.answer()), len(data))
            self.assertTrue(d.answer() == data, "echoed bytes differ")
            self.assertEqual((d.proto.bytesIn, d.proto.bytesOut), (len(data), len(data)))
            # Bounded: the fast path holds at most one read; the transport's
            # own high-water mark lets the fallback hold one read more.
            self.assertLessEqual(highest, limit if writeThrough else 2 * limit)

    @SETTINGS
    @given(pieces=CHUNKS, reads=READS)
    def test_fastPath(self, pieces: list[bytes], reads: list[bool]) -> None:
        self.check(True, pieces, reads)

    @SETTINGS
    @given(pieces=CHUNKS, reads=READS)
    def test_fallback(self, pieces: list[bytes], reads: list[bool]) -> None:
        self.check(False, pieces, reads)

    @SETTINGS
    @given(data=st.binary(max_size=5000), sizes=st.lists(st.integers(1, 64), min_size=1))
    def test_tailAfterHalfCloseFastPath(self, data: bytes, sizes: list[int]) -> None:
        """Small reads, then FIN at once: every byte comes back before our FIN."""
        for writeThrough in (True, False):
            with driven(echoFactory(), writeThrough) as d:
                for piece in chunked(data, sizes):
                    d.proto.dataReceived(piece)
                d.client.shutdown(socket.SHUT_WR)
                d.run(lambda: d.clientEOF and d.lost)
                self.assertEqual(d.answer(), data)


class FlowControlOnBothPaths(SynchronousTestCase):
    """A peer that never reads stops the server reading, whichever path."""

    def stall(self, writeThrough: bool) -> None:
        block = b"q" * 65536
        with driven(echoFactory(), writeThrough, smallBuffers=True) as d:
            for _ in range(MAX_TURNS):
                if d.proto.paused:
                    break
                d.clientSend(block)
                d.turn()
            self.assertTrue(d.proto.paused)
            self.assertFalse(d.reading)
            held = d.proto.bytesIn
            # However long the peer pushes, nothing more is read.
            for _ in range(50):
                d.clientSend(block)
                d.turn()
            self.assertEqual(d.proto.bytesIn, held)
            limit = d.transport.bufferSize
            if writeThrough:
                # Paused as soon as the socket was full: one read held at most.
                self.assertLessEqual(d.buffered(), limit)
            else:
                # The transport pauses its producer past its high-water mark.
                self.assertGreater(d.buffered(), limit)
                self.assertLessEqual(d.buffered(), 2 * limit)
            # The peer reads: the server drains, resumes and catches up.
            d.client.shutdown(socket.SHUT_WR)
            d.run(lambda: d.clientEOF and d.lost)
            self.assertEqual(len(d.answer()), d.proto.bytesIn)
            self.assertGreater(d.proto._resumes, 0)

    def test_fastPath(self) -> None:
        self.stall(True)

    def test_fallback(self) -> None:
        self.stall(False)


# -- a real reactor -------------------------------------------------------------


def pingPongClient(port: int, messages: int) -> bytes:
    """Blocking: send a message, read its echo, ``messages`` times; then FIN."""
    s = socket.create_connection((LOOPBACK, port), timeout=SOCKET_TIMEOUT)
    answers = []
    try:
        for i in range(messages):
            message = b"%04d" % i + b"p" * 60
            s.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed early")
                got += chunk
            answers.append(got)
        s.shutdown(socket.SHUT_WR)
        if s.recv(1) != b"":
            raise ConnectionError("more than was sent")
        return b"".join(answers)
    finally:
        s.close()


class RealReactorTests(TestCase):
    timeout = 60

    async def pingPong(self, writeThrough: bool) -> None:
        messages = 100

        factory = EchoFactory()
        factory.writeThrough = writeThrough
        port = portNumber(await listenLocal(self, factory))
        spies: list[list[bytes]] = []
        original = ServerConnection.connectionMade

        def spying(conn: ServerConnection) -> None:
            original(conn)
            assert isinstance(conn.transport, tcp.Server)
            spies.append(countWrites(conn.transport))

        self.patch(ServerConnection, "connectionMade", spying)
        answer = await deferToThread(pingPongClient, port, messages)
        expected = b"".join(b"%04d" % i + b"p" * 60 for i in range(messages))
        self.assertEqual(answer, expected)
        d = factory.limits.whenEmpty()
        d.addTimeout(SOCKET_TIMEOUT, reactor)
        await d
        [recorded] = spies
        if writeThrough:
            self.assertEqual(recorded, [], "the fast path was not taken")
        else:
            self.assertEqual(len(recorded), messages)
        self.assertEqual(factory.stats.closedBytesOut, len(expected))
        await deferLater(reactor, 0, lambda: None)

    async def test_fastPathTaken(self) -> None:
        await self.pingPong(True)

    async def test_fallbackTaken(self) -> None:
        await self.pingPong(False)
