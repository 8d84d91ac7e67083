"""
Test doubles for code built on tcpproto: in-memory connections that half-close.

Like :mod:`twisted.internet.testing` (whose
:class:`~twisted.internet.testing.StringTransport` cannot half-close) and
``treq.testing``, this module lets you test your own protocols -- a
:class:`~tcpproto.connection.ServerConnection` subclass, a client protocol --
without a reactor, a socket or a clock:

- :class:`MemoryPipe` connects a server and a client protocol in memory and
  moves bytes both ways on :meth:`MemoryPipe.flush`, with TCP's half-close
  (``loseWriteConnection`` becomes the peer's ``readConnectionLost``) and
  flow control (a streaming producer is paused past ``bufferLimit`` bytes,
  and a protocol that pauses its transport stops receiving);
- :func:`connectInMemory` connects one protocol a factory builds to a
  :class:`HalfCloseableStringTransport`, for tests that feed bytes with
  ``dataReceived`` and read ``transport.value()``;
- :class:`TLSLikeStringTransport` looks like Twisted's TLS transport (no
  half-close);
- :class:`CollectingClient` and :class:`HalfCloseableClient` are client
  protocols for a :class:`MemoryPipe` that keep what they receive.

A test of an echo server::

    from tcpproto import EchoFactory
    from tcpproto.testing import HalfCloseableClient, MemoryPipe

    client = HalfCloseableClient()
    pipe = MemoryPipe.fromFactory(EchoFactory(clock=Clock()), client)
    client.transport.write(b"hello")
    client.transport.loseWriteConnection()
    pipe.flush()
    assert client.received == b"hello" and pipe.closed

``docs/examples/test_subclass_connection.py`` is a complete, tested example.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IProducer,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    ISSLTransport,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from tcpproto.connection import ServerConnection

__all__ = [
    "MEMORY_HOST",
    "MEMORY_PEER",
    "CollectingClient",
    "HalfCloseableClient",
    "HalfCloseableStringTransport",
    "MemoryPipe",
    "MemoryTransport",
    "TLSLikeStringTransport",
    "connectInMemory",
]


#: The peer (client) and host (server) addresses of in-memory connections.
MEMORY_PEER = IPv4Address("TCP", "127.0.0.1", 40000)
MEMORY_HOST = IPv4Address("TCP", "127.0.0.1", 7788)


def connectInMemory(
    factory: IProtocolFactory,
    transport: StringTransport | None = None,
    peer: IPv4Address | IPv6Address = MEMORY_PEER,
) -> tuple[ServerConnection, StringTransport]:
    """
    A :class:`~tcpproto.connection.ServerConnection` from ``factory``,
    connected from ``peer`` on ``transport`` (by default a new
    :class:`~twisted.internet.testing.StringTransport`, which closes where
    TCP would half-close; pass a :class:`HalfCloseableStringTransport` to
    see half-closes); what it sends is ``transport.value()``.

    :raises AssertionError: if ``factory`` refuses the peer or builds
        something else.
    """
    proto = factory.buildProtocol(peer)
    assert isinstance(proto, ServerConnection), f"not a ServerConnection: {proto!r}"
    if transport is None:
        transport = StringTransport(hostAddress=MEMORY_HOST, peerAddress=peer)
    proto.makeConnection(transport)
    return proto, transport


class _TCPOptions:
    """The socket options of ``ITCPTransport``, kept as attributes."""

    noDelay = False
    keepAlive = False

    def getTcpNoDelay(self) -> bool:
        return self.noDelay

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = bool(enabled)

    def getTcpKeepAlive(self) -> bool:
        return self.keepAlive

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepAlive = bool(enabled)


class HalfCloseableStringTransport(StringTransport):
    """
    A :class:`~twisted.internet.testing.StringTransport` that can half-close.

    :ivar writeDisconnecting: whether ``loseWriteConnection`` was called.
    """

    writeDisconnecting = False

    def loseWriteConnection(self) -> None:
        self.writeDisconnecting = True


@implementer(ISSLTransport)
class TLSLikeStringTransport(_TCPOptions, HalfCloseableStringTransport):
    """
    Looks like Twisted's TLS wrapper: an ISSLTransport that *seems* to have
    ``loseWriteConnection`` (the wrapper forwards unknown attributes to the
    TCP transport below it), which must not be used under TLS.
    """

    def getPeerCertificate(self) -> None:
        return None


@implementer(ITCPTransport, IConsumer, IPushProducer)
class MemoryTransport(_TCPOptions):
    """
    One end of a :class:`MemoryPipe`: buffers what its protocol writes.

    It behaves like Twisted's TCP transport where tests care: writes are
    buffered until the pipe delivers them; a streaming producer is paused
    when more than ``bufferLimit`` bytes are waiting, and resumed (instead
    of the close going ahead, as Twisted does) once they are delivered;
    ``pauseProducing`` stops delivery *to* this end (reading);
    ``loseWriteConnection`` sends a FIN after the buffer, which reaches a
    half-closeable peer as ``readConnectionLost`` (any other peer is
    closed); ``loseConnection`` closes after the buffer; ``abortConnection``
    discards it and drops both ends with ``ConnectionLost``.
    """

    # The state of a new end, as class attributes (like StringTransport's).
    #: How many bytes are buffered, waiting for the pipe to deliver them.
    outgoingSize = 0
    #: The registered producer, whether it streams, and whether we paused it.
    producer: IProducer | None = None
    streaming = False
    producerPaused = False
    #: Whether the protocol asked (through pauseProducing) not to read.
    readingPaused = False
    #: loseConnection / loseWriteConnection called; FIN sent; FIN received.
    disconnecting = False
    writeDisconnecting = False
    finSent = False
    readClosed = False
    #: abortConnection called.
    aborted = False
    #: connectionLost delivered to this end's protocol.
    closed = False
    #: Bytes written after this end could no longer send them.
    dropped = 0
    #: How many times its producer was paused and resumed.
    pauses = 0
    resumes = 0

    def __init__(
        self,
        protocol: IProtocol,
        host: IPv4Address | IPv6Address,
        peer: IPv4Address | IPv6Address,
        bufferLimit: int,
    ) -> None:
        self.protocol = protocol
        self.host = host
        self.peer = peer
        self.bufferLimit = bufferLimit
        #: What its protocol wrote, not yet delivered.
        self.outgoing: list[bytes] = []

    # ITransport
    def write(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError("write() takes bytes")
        if self.closed or self.finSent or self.aborted:
            self.dropped += len(data)
            return
        if data:
            self.outgoing.append(data)
            self.outgoingSize += len(data)
            if (
                self.producer is not None
                and self.streaming
                and not self.producerPaused
                and self.outgoingSize > self.bufferLimit
            ):
                self.producerPaused = True
                self.pauses += 1
                cast(IPushProducer, self.producer).pauseProducing()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True

    def getPeer(self) -> IPv4Address | IPv6Address:
        return self.peer

    def getHost(self) -> IPv4Address | IPv6Address:
        return self.host

    # ITCPTransport
    def loseWriteConnection(self) -> None:
        self.writeDisconnecting = True

    def abortConnection(self) -> None:
        self.aborted = True
        self.outgoing = []
        self.outgoingSize = 0

    # IConsumer
    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError("a producer is already registered")
        self.producer = producer
        self.streaming = bool(streaming)
        self.producerPaused = False

    def unregisterProducer(self) -> None:
        self.producer = None
        self.producerPaused = False

    # IPushProducer: reading from the peer
    def pauseProducing(self) -> None:
        self.readingPaused = True

    def resumeProducing(self) -> None:
        self.readingPaused = False

    def stopProducing(self) -> None:
        self.loseConnection()

    def _lost(self, reason: BaseException) -> None:
        if self.closed:
            return
        self.closed = True
        self.disconnecting = True
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()
        self.protocol.connectionLost(Failure(reason))


class MemoryPipe:
    """
    A server and a client protocol connected in memory, synchronously.

    :meth:`flush` moves bytes both ways, at most ``chunkSize`` bytes per
    ``dataReceived``, until nothing more can move.  Unlike
    :func:`twisted.protocols.loopback.loopbackAsync` it needs no reactor
    and models half-close and flow control (see :class:`MemoryTransport`).
    """

    def __init__(
        self,
        server: IProtocol,
        client: IProtocol,
        chunkSize: int = 65536,
        bufferLimit: int = 65536,
        serverAddress: IPv4Address | IPv6Address | None = None,
        clientAddress: IPv4Address | IPv6Address | None = None,
    ) -> None:
        self.serverAddress = serverAddress or MEMORY_HOST
        self.clientAddress = clientAddress or MEMORY_PEER
        self.chunkSize = chunkSize
        self.server = server
        self.client = client
        self.serverTransport = MemoryTransport(
            server, self.serverAddress, self.clientAddress, bufferLimit
        )
        self.clientTransport = MemoryTransport(
            client, self.clientAddress, self.serverAddress, bufferLimit
        )
        server.makeConnection(self.serverTransport)
        client.makeConnection(self.clientTransport)

    @classmethod
    def fromFactory(
        cls, factory: IProtocolFactory, client: IProtocol, **kwargs: Any
    ) -> MemoryPipe:
        """Connect ``client`` to a protocol ``factory`` builds (it must admit it)."""
        clientAddress = kwargs.get("clientAddress") or MEMORY_PEER
        kwargs["clientAddress"] = clientAddress
        server = factory.buildProtocol(clientAddress)
        if server is None:
            raise AssertionError("the factory refused the connection")
        return cls(server, client, **kwargs)

    @property
    def closed(self) -> bool:
        """Whether both ends have been told connectionLost."""
        return self.serverTransport.closed and self.clientTransport.closed

    def flush(self, maxSteps: int = 1_000_000) -> None:
        """Move bytes (and FINs) until nothing more moves."""
        for _ in range(maxSteps):
            if not self._step():
                return
        raise AssertionError("the in-memory connection did not settle")

    def _step(self) -> bool:
        moved = self._move(self.clientTransport, self.serverTransport)
        return self._move(self.serverTransport, self.clientTransport) or moved

    def _move(self, src: MemoryTransport, dst: MemoryTransport) -> bool:
        if src.aborted and not src.closed:
            src._lost(ConnectionLost("aborted"))
            dst._lost(ConnectionLost("connection reset by peer"))
            return True
        if src.outgoing:
            if dst.closed:
                src.dropped += src.outgoingSize
                src.outgoing = []
                src.outgoingSize = 0
            elif dst.readingPaused:
                return False
            else:
                data = b"".join(src.outgoing)
                chunk, rest = data[: self.chunkSize], data[self.chunkSize :]
                src.outgoing = [rest] if rest else []
                src.outgoingSize = len(rest)
                dst.protocol.dataReceived(chunk)
                if not src.outgoing and src.producer is not None and src.producerPaused:
                    # Drained: Twisted resumes the producer (and does not
                    # close on this turn).
                    src.producerPaused = False
                    src.resumes += 1
                    cast(IPushProducer, src.producer).resumeProducing()
                return True
        if src.outgoing:
            return False
        if (src.disconnecting or src.writeDisconnecting) and not src.finSent and not src.closed:
            if src.producer is not None and src.producerPaused:
                src.producerPaused = False
                src.resumes += 1
                cast(IPushProducer, src.producer).resumeProducing()
                return True
            src.finSent = True
            if src.disconnecting:
                src._lost(ConnectionDone("closed"))
            else:
                half = IHalfCloseableProtocol(src.protocol, None)
                if half is not None:
                    half.writeConnectionLost()
            return True
        if src.finSent and not dst.readClosed and not dst.closed and not dst.readingPaused:
            dst.readClosed = True
            half = IHalfCloseableProtocol(dst.protocol, None)
            if half is not None:
                half.readConnectionLost()
            else:
                dst._lost(ConnectionDone("closed by peer"))
            return True
        if src.disconnecting and src.finSent and not src.closed:
            # loseConnection after loseWriteConnection: the FIN is out already.
            src._lost(ConnectionDone("closed"))
            return True
        return False


class CollectingClient(Protocol):
    """
    A client protocol that keeps what it receives and how its connection ended.

    It is not half-closeable: the server's FIN closes it (see
    :class:`HalfCloseableClient`).

    :ivar chunks: each ``dataReceived``, in order.
    :ivar reason: why the connection was lost (``None`` while it is open).
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.reason: Failure | None = None

    @property
    def received(self) -> bytes:
        """Everything received so far."""
        return b"".join(self.chunks)

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason


@implementer(IHalfCloseableProtocol)
class HalfCloseableClient(CollectingClient):
    """
    A :class:`CollectingClient` that can half-close: after its own
    ``transport.loseWriteConnection()`` it still reads, and it closes once
    the server has sent everything and its FIN (``readConnectionLost``).
    """

    def readConnectionLost(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass
