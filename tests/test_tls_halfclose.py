"""
Half-close over TLS (:class:`tcpproto._tls.HalfCloseTLSFactory`): ``close_notify`` as a FIN.

In memory, two TLS protocols talk over :class:`tcpproto.testing.MemoryPipe`
(fake TCP transports that half-close, close and reset); over real 127.0.0.1
sockets, our server and client talk to each other and to peers nobody here
wrote: Python's :mod:`ssl` module and ``openssl s_client``.  Every case runs
with TLS 1.2 and TLS 1.3.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from OpenSSL import SSL
from twisted.internet import reactor, threads
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IListeningPort,
    IOpenSSLContextFactory,
    IProtocol,
    IPushProducer,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    TLSVersion,
    optionsForClientTLS,
)
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tcpproto._halfclose import canHalfClose
from tcpproto._tls import HalfCloseTLSFactory, TLSClientEndpoint
from tcpproto._twisted import TLS_HALF_CLOSE_NAMES, HalfCloseTLSProtocol
from tcpproto.testing import MemoryPipe, MemoryTransport
from tests.helpers import LOOPBACK, ProcessResult, runProcess
from tests.helpers.pki import PKI, makePKI

# -- certificates ------------------------------------------------------------


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def serverOptions(pki: PKI, version: TLSVersion) -> Any:
    """Server options with ``pki``'s server certificate that speak exactly ``version``."""
    private = PrivateCertificate.loadPEM(_read(pki.serverCert) + _read(pki.serverKey))
    return _PinnedVersion(
        CertificateOptions(privateKey=private.privateKey.original, certificate=private.original),
        version,
    )


def clientOptions(pki: PKI) -> Any:
    """Client options trusting ``pki``'s CA, for ``localhost``."""
    return optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(_read(pki.caCert)))


def sslContext(pki: PKI, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A Python :mod:`ssl` client context trusting ``pki``'s CA, speaking exactly ``version``."""
    context = ssl.create_default_context(cafile=pki.caCert)
    context.minimum_version = version
    context.maximum_version = version
    return context


@implementer(IOpenSSLContextFactory)
class _PinnedVersion:
    """
    ``options``' context, speaking exactly ``version``.  (Set on the OpenSSL
    context: ``CertificateOptions(raiseMinimumTo=, lowerMaximumSecurityTo=)``
    pinned to TLS 1.3 leaves no protocol at all on Twisted 24.11.)
    """

    _VERSIONS: ClassVar[dict[TLSVersion, int]] = {
        TLSVersion.TLSv1_2: SSL.TLS1_2_VERSION,
        TLSVersion.TLSv1_3: SSL.TLS1_3_VERSION,
    }

    def __init__(self, options: CertificateOptions, version: TLSVersion) -> None:
        self._options = options
        self._version = self._VERSIONS[version]
        self._context: SSL.Context | None = None

    def getContext(self) -> SSL.Context:
        if self._context is None:
            context: SSL.Context = self._options.getContext()
            context.set_min_proto_version(self._version)
            context.set_max_proto_version(self._version)
            self._context = context
        return self._context


# -- the applications on top -------------------------------------------------


class Recorder(Protocol):
    """Records what happens to it; not half-closeable (see :class:`HalfCloseRecorder`)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.events: list[str] = []
        self.reason: Failure | None = None
        self.lost: Deferred[None] = Deferred()

    def data(self) -> bytes:
        return b"".join(self.received)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.events.append("connectionLost")
        self.reason = reason
        self.lost.callback(None)


class Echo(Recorder):
    """Twisted's echo: answers every chunk, knows nothing of half-close."""

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        assert self.transport is not None
        self.transport.write(data)


@implementer(IHalfCloseableProtocol)
@dataclass(eq=False)
class HalfCloseRecorder(Recorder):
    """
    A half-closeable recorder.

    :param send: written once the connection is made.
    :param halfClose: then ``loseWriteConnection``.
    :param answer: on the peer's end of input, write this (``None``: nothing)
        followed by a summary of what was received.
    :param closeOnEnd: and then close.
    """

    send: bytes = b""
    halfClose: bool = False
    answer: bytes | None = None
    closeOnEnd: bool = True

    def __post_init__(self) -> None:
        super().__init__()

    def connectionMade(self) -> None:
        assert self.transport is not None
        if self.send:
            self.transport.write(self.send)
        if self.halfClose:
            cast(Any, self.transport).loseWriteConnection()

    def readConnectionLost(self) -> None:
        self.events.append("readConnectionLost")
        assert self.transport is not None
        if self.answer is not None:
            self.transport.write(self.answer)
            # Several small writes after close_notify: all arrive, in order.
            for chunk in (b"[", str(len(self.data())).encode(), b"]"):
                self.transport.write(chunk)
        if self.closeOnEnd:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        self.events.append("writeConnectionLost")


@implementer(IHalfCloseableProtocol)
class LateWriter(HalfCloseRecorder):
    """
    Writes ``answer`` after the peer's end of input, then ends its own side
    in turn (``loseWriteConnection``) instead of closing.
    """

    def readConnectionLost(self) -> None:
        self.events.append("readConnectionLost")
        assert self.transport is not None
        self.transport.write(self.answer or b"")
        cast(Any, self.transport).loseWriteConnection()


@dataclass
class TLSPair:
    """A client and a server protocol over half-close TLS over a :class:`MemoryPipe`."""

    pipe: MemoryPipe
    client: HalfCloseTLSProtocol
    server: HalfCloseTLSProtocol


def tlsPair(pki: PKI, version: TLSVersion, client: IProtocol, server: IProtocol) -> TLSPair:
    """``client`` and ``server`` over half-close TLS ``version``, connected in memory."""
    clock = Clock()
    serverFactory = HalfCloseTLSFactory(
        serverOptions(pki, version), False, Factory.forProtocol(Protocol), clock
    )
    clientFactory = HalfCloseTLSFactory(
        clientOptions(pki), True, Factory.forProtocol(Protocol), clock
    )
    serverTLS = HalfCloseTLSProtocol(serverFactory, server)
    clientTLS = HalfCloseTLSProtocol(clientFactory, client)
    pipe = MemoryPipe(serverTLS, clientTLS)
    return TLSPair(pipe, clientTLS, serverTLS)


def assertLost(testCase: SynchronousTestCase, proto: Recorder, kind: type[Exception]) -> None:
    """``proto`` saw connectionLost with a ``kind`` reason."""
    testCase.assertIsNotNone(proto.reason, "connectionLost not called")
    assert proto.reason is not None
    testCase.assertTrue(proto.reason.check(kind), proto.reason)


def assertBothHalvesThenLost(testCase: SynchronousTestCase, proto: Recorder) -> None:
    """
    Both directions ended (in either order: the in-memory pipe may deliver
    the peer's close_notify before our FIN is out), then the connection.
    """
    testCase.assertEqual(
        sorted(proto.events[:2]), ["readConnectionLost", "writeConnectionLost"], proto.events
    )
    testCase.assertEqual(proto.events[2:], ["connectionLost"])


def readToEnd(tls: ssl.SSLSocket) -> bytes:
    """
    Everything a blocking Python :mod:`ssl` socket receives up to the peer's
    ``close_notify`` (``SSLZeroReturnError``) or a bare end of stream.
    """
    chunks = []
    while True:
        try:
            data = tls.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def negotiated(tls: TLSMemoryBIOProtocol) -> str:
    return cast(str, tls.getHandle().get_protocol_version_name())


# -- in memory ---------------------------------------------------------------


class InMemoryTests13(SynchronousTestCase):
    """Half-close over TLS in memory, TLS 1.3."""

    version = TLSVersion.TLSv1_3
    versionName = "TLSv1.3"

    def setUp(self) -> None:
        self.pki = makePKI(self)

    def handshake(self, client: IProtocol, server: IProtocol) -> TLSPair:
        """
        ``client`` and ``server`` over the version under test, with everything
        either wrote (the handshake, and what followed it) delivered.
        """
        pair = tlsPair(self.pki, self.version, client, server)
        pair.pipe.flush()
        return pair

    def test_versionNegotiated(self) -> None:
        """The pair speaks the version under test."""
        client, server = HalfCloseRecorder(), HalfCloseRecorder()
        pair = self.handshake(client, server)
        self.assertEqual(negotiated(pair.client), self.versionName)
        self.assertEqual(negotiated(pair.server), self.versionName)

    def test_clientHalfClose(self) -> None:
        """
        The client's close_notify (and FIN) reach the server as
        readConnectionLost; the server answers after it, every byte arrives,
        then close_notify and FIN close the connection cleanly both ways.
        """
        client = HalfCloseRecorder(send=b"abc\ndef", halfClose=True)
        server = HalfCloseRecorder(answer=b"tail:")
        pair = self.handshake(client, server)
        self.assertEqual(server.data(), b"abc\ndef")
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        self.assertEqual(client.data(), b"tail:[7]")
        assertBothHalvesThenLost(self, client)
        assertLost(self, client, ConnectionDone)
        assertLost(self, server, ConnectionDone)
        # The client half-closed TCP too, after its close_notify.
        self.assertTrue(pair.pipe.clientTransport.finSent)

    def test_emptyInput(self) -> None:
        """
        loseWriteConnection before the handshake is done waits for it, then
        sends close_notify: the server sees an empty stream and answers.
        """
        client = HalfCloseRecorder(halfClose=True)
        server = HalfCloseRecorder(answer=b"")
        self.handshake(client, server)
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        self.assertEqual(client.data(), b"[0]")
        assertLost(self, client, ConnectionDone)

    def test_serverHalfClosesFirst(self) -> None:
        """
        The server sends, half-closes and keeps reading; the client gets
        readConnectionLost, goes on writing, then half-closes: the server
        reads it all, and both close_notify alerts close the connection.
        """
        server = HalfCloseRecorder(send=b"hello", halfClose=True, closeOnEnd=False)
        client = LateWriter(answer=b"more " * 1000)
        self.handshake(client, server)
        self.assertEqual(client.data(), b"hello")
        self.assertEqual(server.data(), b"more " * 1000)
        assertBothHalvesThenLost(self, server)
        assertBothHalvesThenLost(self, client)
        assertLost(self, client, ConnectionDone)
        assertLost(self, server, ConnectionDone)

    def test_notHalfCloseable(self) -> None:
        """
        A protocol that is not half-closeable gets Twisted's behaviour: the
        peer's close_notify closes the connection, but every answer it wrote
        before is sent first, even when the close_notify came in the same read
        as the bytes answered (Twisted drops those answers).
        """
        client = HalfCloseRecorder(send=b"x", halfClose=True)
        server = Echo()
        self.handshake(client, server)
        self.assertEqual(client.data(), b"x")
        self.assertEqual(server.events, ["connectionLost"])
        assertLost(self, server, ConnectionDone)
        self.assertIn("readConnectionLost", client.events)

    def test_answersLeaveInTheSameTurn(self) -> None:
        """
        Answers written while received bytes are delivered are encrypted and
        handed to TCP before ``dataReceived`` returns (no reactor turn, no
        clock), several small writes as one piece, in order.
        """

        class Chatty(Recorder):
            def dataReceived(self, data: bytes) -> None:
                super().dataReceived(data)
                assert self.transport is not None
                for byte in data:
                    self.transport.write(bytes([byte]))
                self.transport.writeSequence([b"<", b">"])

        client = HalfCloseRecorder()
        server = Chatty()
        pair = self.handshake(client, server)
        before = len(pair.pipe.serverTransport.outgoing)
        assert pair.client.transport is not None
        pair.client.write(b"ordered")
        # Deliver the client's record to the server by hand: no pump, no clock.
        record = b"".join(pair.pipe.clientTransport.outgoing)
        pair.pipe.clientTransport.outgoing = []
        pair.pipe.clientTransport.outgoingSize = 0
        pair.server.dataReceived(record)
        self.assertEqual(len(pair.pipe.serverTransport.outgoing), before + 1)
        pair.pipe.flush()
        self.assertEqual(client.data(), b"ordered<>")

    def test_peerClosesWithoutReading(self) -> None:
        """
        A peer that sends close_notify and FIN, then closes its socket, never
        reads our answer: the answer meets a reset, and the protocol sees
        ConnectionLost, as over TCP.
        """

        @implementer(IHalfCloseableProtocol)
        class Leaver(HalfCloseRecorder):
            def writeConnectionLost(self) -> None:
                # Our FIN is out: close the socket without reading (a reset).
                super().writeConnectionLost()
                assert self.transport is not None
                cast(Any, self.transport).transport.abortConnection()

        client = Leaver(send=b"question", halfClose=True)
        server = HalfCloseRecorder(answer=b"x" * 100_000, closeOnEnd=False)
        self.handshake(client, server)
        self.assertEqual(server.data(), b"question")
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        assertLost(self, server, ConnectionLost)

    def test_reset(self) -> None:
        """A reset in the middle of the stream: ConnectionLost, nothing else."""
        client = HalfCloseRecorder(send=b"partial")
        server = HalfCloseRecorder()
        pair = self.handshake(client, server)
        pair.pipe.clientTransport.abortConnection()
        pair.pipe.flush()
        self.assertEqual(server.events, ["connectionLost"])
        assertLost(self, server, ConnectionLost)

    def test_finWithoutCloseNotify(self) -> None:
        """
        A TCP FIN without a close_notify may be a truncation: the protocol is
        not told "end of input" but ConnectionLost, as Twisted does.
        """
        client = HalfCloseRecorder(send=b"cut")
        server = HalfCloseRecorder(answer=b"never")
        pair = self.handshake(client, server)
        pair.pipe.clientTransport.loseWriteConnection()  # the TCP transport's, under TLS
        pair.pipe.flush()
        self.assertEqual(server.data(), b"cut")
        self.assertEqual(server.events, ["connectionLost"])
        assertLost(self, server, ConnectionLost)

    def test_bytesAfterCloseNotifyIgnored(self) -> None:
        """Whatever arrives after the peer's close_notify is ignored (RFC 8446 6.1)."""
        client = HalfCloseRecorder(send=b"a", halfClose=True)
        server = HalfCloseRecorder(closeOnEnd=False)
        pair = self.handshake(client, server)
        self.assertEqual(server.events, ["readConnectionLost"])
        pair.server.dataReceived(b"\x17\x03\x03\x00\x05junk!")
        self.assertEqual(server.data(), b"a")
        self.assertEqual(server.events, ["readConnectionLost"])
        pair.server.write(b"still writing")
        pair.server.loseConnection()
        pair.pipe.flush()
        self.assertEqual(client.data(), b"still writing")
        assertLost(self, server, ConnectionDone)

    def test_writeAfterLoseWriteConnectionDropped(self) -> None:
        """After loseWriteConnection nothing more is sent (as over TCP), and nothing breaks."""
        client = HalfCloseRecorder(send=b"one", halfClose=True)
        server = HalfCloseRecorder(answer=b"")
        pair = self.handshake(client, server)
        pair.client.write(b"two")
        self.assertEqual(server.data(), b"one")

    def test_loseWriteConnectionWaitsForProducer(self) -> None:
        """With a producer registered, our close_notify waits for its end."""

        @implementer(IPushProducer)
        class Producer:
            def pauseProducing(self) -> None:
                pass

            def resumeProducing(self) -> None:
                pass

            def stopProducing(self) -> None:
                pass

        client = HalfCloseRecorder()
        server = HalfCloseRecorder(answer=b"", closeOnEnd=True)
        pair = self.handshake(client, server)
        pair.client.registerProducer(Producer(), True)
        pair.client.write(b"body")
        pair.client.loseWriteConnection()
        pair.pipe.flush()
        self.assertEqual(server.events, [])
        self.assertEqual(server.data(), b"body")
        pair.client.unregisterProducer()
        pair.pipe.flush()
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        self.assertEqual(client.data(), b"[4]")

    def test_loseConnectionAfterLoseWriteConnection(self) -> None:
        """loseConnection after a half-close ends the connection cleanly."""
        client = HalfCloseRecorder(send=b"q", halfClose=True)
        server = HalfCloseRecorder(answer=b"a")
        pair = tlsPair(self.pki, self.version, client, server)
        pair.client.loseConnection()
        pair.pipe.flush()
        assertLost(self, client, ConnectionDone)
        assertLost(self, server, ConnectionDone)

    def test_writeConnectionLostWithoutTCPHalfClose(self) -> None:
        """
        Over a transport that cannot half-close, writeConnectionLost comes
        as soon as our close_notify is handed to it.
        """
        client = HalfCloseRecorder(send=b"q")
        server = HalfCloseRecorder(answer=b"a")
        pair = self.handshake(client, server)

        class NoHalfClose:
            def __init__(self, inner: MemoryTransport) -> None:
                self._inner = inner

            def __getattr__(self, name: str) -> Any:
                if name == "loseWriteConnection":
                    raise AttributeError(name)
                return getattr(self._inner, name)

        pair.client.transport = cast(Any, NoHalfClose(pair.pipe.clientTransport))
        pair.client.loseWriteConnection()
        self.assertEqual(client.events, ["writeConnectionLost"])
        self.assertFalse(pair.pipe.clientTransport.writeDisconnecting)
        pair.pipe.flush()
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        self.assertEqual(client.data(), b"a[1]")

    def test_loseWriteConnectionTwice(self) -> None:
        """A second loseWriteConnection does nothing."""
        client = HalfCloseRecorder(send=b"q", halfClose=True)
        server = HalfCloseRecorder(closeOnEnd=False)
        pair = self.handshake(client, server)
        pair.client.loseWriteConnection()
        pair.pipe.flush()
        self.assertEqual(client.events, ["writeConnectionLost"])
        self.assertEqual(server.events, ["readConnectionLost"])

    def test_loseWriteConnectionNotHalfCloseable(self) -> None:
        """
        A protocol that is not half-closeable may still end its side: it is
        not told (no writeConnectionLost), gets the answer, and the server's
        close_notify closes the connection.
        """

        class Asker(Recorder):
            def connectionMade(self) -> None:
                assert self.transport is not None
                self.transport.write(b"q")
                cast(Any, self.transport).loseWriteConnection()

        client = Asker()
        server = HalfCloseRecorder(answer=b"a")
        self.handshake(client, server)
        self.assertEqual(client.data(), b"a[1]")
        self.assertEqual(client.events, ["connectionLost"])
        assertLost(self, client, ConnectionDone)

    def test_abortOutsideDelivery(self) -> None:
        """abortConnection between deliveries: a reset, nothing more is sent."""
        client = HalfCloseRecorder(send=b"q")
        server = HalfCloseRecorder()
        pair = self.handshake(client, server)
        pair.server.abortConnection()
        pair.server.write(b"late")
        pair.pipe.flush()
        self.assertEqual(client.data(), b"")
        assertLost(self, client, ConnectionLost)

    def test_abortDuringDelivery(self) -> None:
        """Writes collected during a delivery are dropped by abortConnection."""

        class Aborter(Recorder):
            def dataReceived(self, data: bytes) -> None:
                super().dataReceived(data)
                assert self.transport is not None
                self.transport.write(b"never sent")
                cast(Any, self.transport).abortConnection()

        client = HalfCloseRecorder(send=b"go")
        server = Aborter()
        self.handshake(client, server)
        self.assertEqual(client.data(), b"")
        assertLost(self, client, ConnectionLost)

    def test_throughTheHandshakeGate(self) -> None:
        """
        tcpproto's server stack (TLS, the handshake gate, the echo with line
        framing): the unterminated tail is echoed after the end of input, as
        over TCP, and the thank-you reply is sent after it.
        """
        from tcpproto import EchoFactory, ThankYouFactory
        from tcpproto._tls import HandshakeGateFactory

        for factory, sent, expected in [
            (EchoFactory("line", clock=Clock()), b"abc\ndef", b"abc\ndef"),
            (EchoFactory("line", clock=Clock()), b"x", b"x"),
            (ThankYouFactory(clock=Clock()), b"hello", b"thank you!"),
        ]:
            with self.subTest(factory=type(factory).__name__, sent=sent):
                gate = HandshakeGateFactory(factory, clock=Clock())
                server = gate.buildProtocol(IPv4Address("TCP", LOOPBACK, 40000))
                client = HalfCloseRecorder(send=sent, halfClose=True)
                self.handshake(client, server)
                self.assertEqual(client.data(), expected)
                assertLost(self, client, ConnectionDone)


class InMemoryTests12(InMemoryTests13):
    """
    The same over TLS 1.2.  RFC 5246 made close_notify a full close, but
    OpenSSL lets both sides go on (writing after receiving one, reading
    after sending one) and so do we: a 1.2 peer that reads after its
    close_notify gets the whole answer.
    """

    version = TLSVersion.TLSv1_2
    versionName = "TLSv1.2"


# -- small parts -------------------------------------------------------------


class PartsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pki = makePKI(self)

    def test_canHalfClose(self) -> None:
        """Twisted's TLS transport cannot half-close (whatever it forwards); ours can; TCP can."""
        factory = TLSMemoryBIOFactory(
            clientOptions(self.pki), True, Factory.forProtocol(Protocol), Clock()
        )
        self.assertFalse(canHalfClose(TLSMemoryBIOProtocol(factory, Protocol())))
        ours = HalfCloseTLSFactory(
            clientOptions(self.pki), True, Factory.forProtocol(Protocol), Clock()
        )
        self.assertTrue(canHalfClose(HalfCloseTLSProtocol(ours, Protocol())))
        pipe = MemoryPipe(Protocol(), Protocol())
        self.assertTrue(canHalfClose(pipe.clientTransport))
        self.assertFalse(canHalfClose(object()))

    def test_factoryBuildsOurProtocol(self) -> None:
        factory = HalfCloseTLSFactory(
            clientOptions(self.pki), True, Factory.forProtocol(Protocol), Clock()
        )
        proto = factory.buildProtocol(IPv4Address("TCP", LOOPBACK, 1))
        self.assertIsInstance(proto, HalfCloseTLSProtocol)
        self.assertTrue(IHalfCloseableProtocol.providedBy(proto))


class LayerNameTests(SynchronousTestCase):
    """The TLS gate names itself in logs as the PROXY layer does (issue 10, section 5)."""

    def setUp(self) -> None:
        self.pki = makePKI(self)

    def test_sameForm(self) -> None:
        from tcpproto import EchoFactory
        from tcpproto._proxy import ProxyWrappingFactory
        from tcpproto._tls import HandshakeGateFactory

        echo = EchoFactory()
        gate = HandshakeGateFactory(echo, clock=Clock())
        proxy = ProxyWrappingFactory(echo, clock=Clock())
        self.assertEqual(proxy.logPrefix(), "EchoFactory (PROXY)")
        self.assertEqual(gate.logPrefix(), "EchoFactory (TLS)")
        # The TLS layer under the gate does not say it twice.
        tlsLayer = HalfCloseTLSFactory(clientOptions(self.pki), True, gate, Clock())
        self.assertEqual(tlsLayer.logPrefix(), "EchoFactory (TLS)")
        bare = HalfCloseTLSFactory(clientOptions(self.pki), True, echo, Clock())
        self.assertEqual(bare.logPrefix(), "EchoFactory (TLS)")


class TwistedPrivateNamesTests(SynchronousTestCase):
    """
    Guards for the private parts of Twisted's TLS transport that
    :class:`tcpproto._twisted.HalfCloseTLSProtocol` relies on (entry 10): a
    Twisted release that renames one fails here, not in the field.
    """

    def test_namesExist(self) -> None:
        client = HalfCloseRecorder()
        server = HalfCloseRecorder()
        pair = tlsPair(makePKI(self), TLSVersion.TLSv1_3, client, server)
        pair.pipe.flush()
        for name in TLS_HALF_CLOSE_NAMES:
            with self.subTest(name=name):
                self.assertTrue(
                    hasattr(TLSMemoryBIOProtocol, name) or name in vars(pair.server),
                    f"twisted.protocols.tls.TLSMemoryBIOProtocol.{name} is gone",
                )

    def test_overriddenLoopStillCalled(self) -> None:
        """Twisted's dataReceived still goes through _flushReceiveBIO (which we override)."""
        import inspect

        source = inspect.getsource(TLSMemoryBIOProtocol.dataReceived)
        self.assertIn("self._flushReceiveBIO()", source)
        source = inspect.getsource(TLSMemoryBIOProtocol._flushReceiveBIO)
        self.assertIn("ZeroReturnError", source)


# -- over real sockets -------------------------------------------------------


class _SocketBase(TestCase):
    version: ClassVar[TLSVersion]
    sslVersion: ClassVar[ssl.TLSVersion]
    versionName: ClassVar[str]

    def setUp(self) -> None:
        self.pki = makePKI(self)

    def listen(self, app: type[Protocol] | Any) -> int:
        pki = self.pki
        self.servers: list[Protocol] = []

        def build() -> Protocol:
            proto = app()
            self.servers.append(proto)
            return cast(Protocol, proto)

        appFactory = Factory()
        appFactory.buildProtocol = lambda addr: build()  # type: ignore[method-assign]
        factory = HalfCloseTLSFactory(serverOptions(pki, self.version), False, appFactory)
        port: IListeningPort = cast(Any, reactor).listenTCP(0, factory, interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        return cast(int, port.getHost().port)  # type: ignore[attr-defined]

    async def connect(self, port: int, proto: Protocol) -> None:
        endpoint = TLSClientEndpoint(
            clientOptions(self.pki), TCP4ClientEndpoint(reactor, LOOPBACK, port)
        )
        factory = Factory()
        factory.buildProtocol = lambda addr: proto  # type: ignore[method-assign]
        await endpoint.connect(factory)

    async def serverLost(self) -> HalfCloseRecorder:
        """The first connection's server protocol, once that connection is lost."""
        server = cast(HalfCloseRecorder, self.servers[0])
        await server.lost
        return server

    async def sClient(self, port: int, stdin: bytes, *flags: str) -> ProcessResult:
        """
        ``openssl s_client -quiet`` to our server on ``port``, speaking the
        version under test, verifying its certificate against our CA, with
        ``stdin`` as its input and ``flags`` added; skips without ``openssl``.
        """
        openssl = shutil.which("openssl")
        if openssl is None:
            self.skipTest("openssl is not installed")
        versionFlag = "-tls1_3" if self.version == TLSVersion.TLSv1_3 else "-tls1_2"
        return await runProcess(
            [
                openssl,
                "s_client",
                "-connect",
                f"{LOOPBACK}:{port}",
                "-servername",
                "localhost",
                "-CAfile",
                self.pki.caCert,
                "-verify_return_error",
                versionFlag,
                "-quiet",
                *flags,
            ],
            stdin=stdin,
        )


class SocketTests13(_SocketBase):
    """Half-close over TLS on 127.0.0.1, TLS 1.3."""

    version = TLSVersion.TLSv1_3
    sslVersion = ssl.TLSVersion.TLSv1_3
    versionName = "TLSv1.3"

    async def test_clientHalfClose(self) -> None:
        """Our client half-closes, our server answers after the end of input."""
        port = self.listen(lambda: HalfCloseRecorder(answer=b"tail:"))
        client = HalfCloseRecorder(send=b"abc\ndef", halfClose=True)
        await self.connect(port, client)
        await client.lost
        server = await self.serverLost()
        self.assertEqual(client.data(), b"tail:[7]")
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        self.assertEqual(
            client.events, ["writeConnectionLost", "readConnectionLost", "connectionLost"]
        )
        assertLost(self, client, ConnectionDone)

    async def test_largeAnswerAfterHalfClose(self) -> None:
        """A large answer after the end of input arrives whole (flow control, many records)."""
        port = self.listen(lambda: HalfCloseRecorder(answer=b"z" * 3_000_000))
        client = HalfCloseRecorder(send=b"q" * 500_000, halfClose=True)
        await self.connect(port, client)
        await client.lost
        self.assertEqual(client.data(), b"z" * 3_000_000 + b"[500000]")

    async def test_serverHalfClosesFirst(self) -> None:
        """The server half-closes first; our client still sends, and the server reads it."""
        port = self.listen(
            lambda: HalfCloseRecorder(send=b"banner", halfClose=True, closeOnEnd=True)
        )
        client = LateWriter(answer=b"late " * 20000)
        await self.connect(port, client)
        await client.lost
        server = await self.serverLost()
        self.assertEqual(client.data(), b"banner")
        self.assertEqual(server.data(), b"late " * 20000)
        assertLost(self, client, ConnectionDone)
        assertLost(self, server, ConnectionDone)

    async def test_pythonSSLUnwrapThenRead(self) -> None:
        """
        Python's ssl module: send, ``unwrap()`` (our close_notify... its
        close_notify), then read the answer until the server's close_notify.
        """
        port = self.listen(lambda: HalfCloseRecorder(answer=b"tail:"))
        context = sslContext(self.pki, self.sslVersion)

        def run() -> tuple[bytes, str]:
            with socket.create_connection((LOOPBACK, port), timeout=10) as raw:
                tls = context.wrap_socket(raw, server_hostname="localhost")
                version = tls.version() or ""
                tls.sendall(b"abc\ndef")
                tls.setblocking(False)
                with contextlib.suppress(ssl.SSLWantReadError):
                    tls.unwrap()  # sends close_notify; the peer's has not come yet
                tls.settimeout(10)
                return readToEnd(tls), version

        answer, version = await threads.deferToThread(run)
        self.assertEqual(version, self.versionName)
        self.assertEqual(answer, b"tail:[7]")
        server = await self.serverLost()
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])

    async def test_peerLeavesWithoutReading(self) -> None:
        """
        A peer that sends close_notify and closes its socket without reading
        our (large) answer: the answer meets a reset, the connection ends
        with ConnectionLost, nothing hangs.
        """
        port = self.listen(lambda: HalfCloseRecorder(answer=b"x" * 5_000_000))
        context = sslContext(self.pki, self.sslVersion)

        def run() -> None:
            with socket.create_connection((LOOPBACK, port), timeout=10) as raw:
                tls = context.wrap_socket(raw, server_hostname="localhost")
                tls.sendall(b"question")
                tls.setblocking(False)
                # (SSLError: the answer may already be in when unwrap() reads.)
                with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLError):
                    tls.unwrap()
                tls.close()  # with the answer unread: the kernel resets

        await threads.deferToThread(run)
        server = await self.serverLost()
        self.assertEqual(server.data(), b"question")
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        assertLost(self, server, ConnectionLost)

    async def test_pythonSSLServer(self) -> None:
        """
        Our client against a Python ssl server that reads to the end of input
        (our close_notify), answers, and sends its own close_notify.
        """
        pki = self.pki
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.serverCert, pki.serverKey)
        context.minimum_version = self.sslVersion
        context.maximum_version = self.sslVersion
        listener = socket.create_server((LOOPBACK, 0))
        self.addCleanup(listener.close)
        port = listener.getsockname()[1]

        def serve() -> bytes:
            listener.settimeout(10)
            conn, _ = listener.accept()
            with conn:
                tls = context.wrap_socket(conn, server_side=True)
                tls.settimeout(10)
                body = readToEnd(tls)
                tls.sendall(b"got " + body)
                tls.unwrap()
                return body

        served = threads.deferToThread(serve)
        client = HalfCloseRecorder(send=b"from twisted", halfClose=True)
        await self.connect(port, client)
        await client.lost
        self.assertEqual(await served, b"from twisted")
        self.assertEqual(client.data(), b"got from twisted")
        assertLost(self, client, ConnectionDone)

    async def test_opensslClient(self) -> None:
        """
        ``openssl s_client -quiet -no_ign_eof``: at the end of its input it
        prints ``DONE``, sends close_notify and a FIN, and reads for up to
        half a second more.  Our server sees the end of input as
        ``readConnectionLost``, answers, and the connection ends cleanly.
        (OpenSSL 3.0's s_client drains what arrives after its close_notify
        without printing it; ``-quiet`` alone means ``-ign_eof``: no
        close_notify at the end of input, it waits for the server to close.)
        """
        port = self.listen(lambda: HalfCloseRecorder(answer=b"tail:"))
        result = await self.sClient(port, b"abc\ndef", "-no_ign_eof")
        self.assertIn(b"DONE", result.err)
        server = await self.serverLost()
        self.assertEqual(server.data(), b"abc\ndef")
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        assertLost(self, server, ConnectionDone)

    async def test_opensslClientServerClosesFirst(self) -> None:
        """
        ``openssl s_client -quiet`` (``-ign_eof``) keeps reading after its
        input ends: it prints everything our server sends before the
        server's close_notify, then exits 0.
        """

        @implementer(IHalfCloseableProtocol)
        class Greeter(HalfCloseRecorder):
            def dataReceived(self, data: bytes) -> None:
                super().dataReceived(data)
                if data.endswith(b"\n"):
                    assert self.transport is not None
                    self.transport.write(b"you said: " + self.data())
                    self.transport.loseConnection()

        port = self.listen(Greeter)
        result = await self.sClient(port, b"hello\n")
        self.assertEqual(result.out, b"you said: hello\n", result.err)


class SocketTests12(SocketTests13):
    """The same over TLS 1.2."""

    version = TLSVersion.TLSv1_2
    sslVersion = ssl.TLSVersion.TLSv1_2
    versionName = "TLSv1.2"
