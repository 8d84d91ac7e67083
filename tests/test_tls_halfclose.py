"""
Half-close over TLS (:class:`tcpproto._tls.HalfCloseTLSFactory`): ``close_notify`` as a FIN.

In memory, two TLS protocols talk over :class:`MemoryPipe`, a pair of fake
TCP transports that can half-close, close and reset; over real 127.0.0.1
sockets, our server and client talk to each other and to peers nobody here
wrote: Python's :mod:`ssl` module and ``openssl s_client``.  Every case runs
with TLS 1.2 and TLS 1.3.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from OpenSSL import SSL
from twisted.internet import reactor, threads
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IListeningPort,
    IOpenSSLContextFactory,
    IProtocol,
    IPushProducer,
    IReactorProcess,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, connectionDone
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

LOOPBACK = "127.0.0.1"


# -- certificates ------------------------------------------------------------


class _PKI:
    """A CA and a server certificate for ``localhost`` / 127.0.0.1, made once."""

    _instance: ClassVar[_PKI | None] = None

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        caKey = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(name("half-close test CA"))
            .issuer_name(name("half-close test CA"))
            .public_key(caKey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(caKey, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(name("localhost"))
            .issuer_name(name("half-close test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
                ),
                critical=False,
            )
            .sign(caKey, hashes.SHA256())
        )
        self.caPEM = ca.public_bytes(serialization.Encoding.PEM)
        self.certPEM = server.public_bytes(serialization.Encoding.PEM)
        self.keyPEM = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.directory = tempfile.mkdtemp(prefix="tcpproto-tls-")
        self.caFile = self._write("ca.pem", self.caPEM)
        self.certFile = self._write("cert.pem", self.certPEM)
        self.keyFile = self._write("key.pem", self.keyPEM)

    def _write(self, filename: str, data: bytes) -> str:
        path = os.path.join(self.directory, filename)
        with open(path, "wb") as f:
            f.write(data)
        return path

    @classmethod
    def get(cls) -> _PKI:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def serverOptions(self, version: TLSVersion) -> Any:
        """Server options that speak exactly ``version``."""
        private = PrivateCertificate.loadPEM(self.certPEM + self.keyPEM)
        return _PinnedVersion(
            CertificateOptions(
                privateKey=private.privateKey.original, certificate=private.original
            ),
            version,
        )

    def clientOptions(self) -> Any:
        return optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(self.caPEM))

    def sslContext(self, version: ssl.TLSVersion) -> ssl.SSLContext:
        """A Python :mod:`ssl` client context trusting our CA, speaking exactly ``version``."""
        context = ssl.create_default_context(cadata=self.caPEM.decode("ascii"))
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


def tearDownModule() -> None:
    if _PKI._instance is not None:
        shutil.rmtree(_PKI._instance.directory, ignore_errors=True)
        _PKI._instance = None


# -- an in-memory TCP connection that can half-close ---------------------------


@implementer(ITCPTransport, IPushProducer)
class MemoryTCP:
    """
    One end of a :class:`MemoryPipe`: a TCP transport whose bytes, FIN and
    RST reach the other end when the pipe is pumped.

    :ivar finSent: our FIN went out (after every byte written before it).
    :ivar closed: this end's socket is closed; bytes that reach it are
        answered with a reset.
    """

    disconnecting = False

    def __init__(self, pipe: MemoryPipe, protocol: IProtocol, host: int, peer: int) -> None:
        self.pipe = pipe
        self.protocol = protocol
        self.host = IPv4Address("TCP", LOOPBACK, host)
        self.peer = IPv4Address("TCP", LOOPBACK, peer)
        self.outgoing: list[bytes] = []
        self.written: list[bytes] = []
        self.writeClosing = False
        self.finSent = False
        self.finReceived = False
        self.closed = False
        self.producer: Any = None
        self.lostReason: Failure | None = None

    # ITransport
    def write(self, data: bytes) -> None:
        if self.closed or self.finSent:
            return
        self.outgoing.append(data)
        self.written.append(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True

    def loseWriteConnection(self) -> None:
        self.writeClosing = True

    def abortConnection(self) -> None:
        self.pipe.reset(self, ConnectionAborted())

    def getPeer(self) -> IPv4Address:
        return self.peer

    def getHost(self) -> IPv4Address:
        return self.host

    # ITCPTransport extras
    def getTcpNoDelay(self) -> bool:
        return True

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def getTcpKeepAlive(self) -> bool:
        return False

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass

    # IConsumer / IPushProducer
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.loseConnection()

    def lose(self, reason: Exception) -> None:
        """This end's connection is over, for ``reason``."""
        if self.closed:
            return
        self.closed = True
        self.lostReason = Failure(reason)
        self.protocol.connectionLost(self.lostReason)


class MemoryPipe:
    """
    Two :class:`MemoryTCP` ends connecting ``client`` and ``server``
    protocols, with TCP's closing rules:

    - a FIN is sent once everything written before it has been delivered;
      an :class:`~twisted.internet.interfaces.IHalfCloseableProtocol` gets it
      as ``readConnectionLost``, any other protocol as ``connectionLost``;
    - ``loseConnection`` sends FIN and closes the socket; bytes that reach a
      closed socket make it answer with RST, which the sender sees as
      ``connectionLost`` with :class:`ConnectionLost`.
    """

    def __init__(self, client: IProtocol, server: IProtocol) -> None:
        self.client = MemoryTCP(self, client, 40000, 7788)
        self.server = MemoryTCP(self, server, 7788, 40000)

    def connect(self) -> MemoryPipe:
        self.server.protocol.makeConnection(self.server)
        self.client.protocol.makeConnection(self.client)
        return self

    def other(self, end: MemoryTCP) -> MemoryTCP:
        return self.server if end is self.client else self.client

    def reset(self, end: MemoryTCP, reason: Exception) -> None:
        """``end`` sends RST: both ends are lost."""
        other = self.other(end)
        end.outgoing.clear()
        end.lose(reason)
        other.outgoing.clear()
        other.lose(ConnectionLost())

    def _step(self, end: MemoryTCP) -> bool:
        other = self.other(end)
        if end.closed:
            return False
        moved = False
        if end.outgoing:
            data = b"".join(end.outgoing)
            end.outgoing.clear()
            if other.closed:
                # Bytes reaching a closed socket: it answers RST.
                end.lose(ConnectionLost())
                return True
            if not other.finReceived and not other.disconnecting:
                other.protocol.dataReceived(data)
            moved = True
            if end.closed or end.outgoing:
                return True
        if (end.writeClosing or end.disconnecting) and not end.finSent:
            end.finSent = True
            if not other.closed:
                other.finReceived = True
                if IHalfCloseableProtocol.providedBy(other.protocol):
                    cast(Any, other.protocol).readConnectionLost()
                else:
                    other.lose(ConnectionDone())
            if end.disconnecting:
                end.lose(ConnectionDone())
            elif IHalfCloseableProtocol.providedBy(end.protocol):
                cast(Any, end.protocol).writeConnectionLost()
            return True
        if end.disconnecting and not end.closed:
            end.lose(ConnectionDone())
            return True
        return moved

    def pump(self) -> None:
        """Move bytes, FINs and closes until nothing moves."""
        for _ in range(1000):
            moved = self._step(self.client)
            moved = self._step(self.server) or moved
            if not moved:
                return
        raise AssertionError("the pipe never settled")


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
class HalfCloseRecorder(Recorder):
    """
    A half-closeable recorder.

    :param send: written once the connection is made.
    :param halfClose: then ``loseWriteConnection``.
    :param answer: on the peer's end of input, write this (``None``: nothing)
        followed by a summary of what was received, and close.
    """

    def __init__(
        self,
        send: bytes = b"",
        halfClose: bool = False,
        answer: bytes | None = None,
        closeOnEnd: bool = True,
    ) -> None:
        super().__init__()
        self.send = send
        self.halfClose = halfClose
        self.answer = answer
        self.closeOnEnd = closeOnEnd

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


@dataclass
class TLSPair:
    """A client and a server protocol over half-close TLS over a :class:`MemoryPipe`."""

    pipe: MemoryPipe
    client: HalfCloseTLSProtocol
    server: HalfCloseTLSProtocol


def tlsPair(version: TLSVersion, client: IProtocol, server: IProtocol) -> TLSPair:
    """``client`` and ``server`` over half-close TLS ``version``, connected in memory."""
    pki = _PKI.get()
    clock = Clock()
    serverFactory = HalfCloseTLSFactory(
        pki.serverOptions(version), False, Factory.forProtocol(Protocol), clock
    )
    clientFactory = HalfCloseTLSFactory(
        pki.clientOptions(), True, Factory.forProtocol(Protocol), clock
    )
    serverTLS = HalfCloseTLSProtocol(serverFactory, server)
    clientTLS = HalfCloseTLSProtocol(clientFactory, client)
    pipe = MemoryPipe(clientTLS, serverTLS).connect()
    return TLSPair(pipe, clientTLS, serverTLS)


def assertLost(testCase: SynchronousTestCase, proto: Recorder, kind: type[Exception]) -> None:
    """``proto`` saw connectionLost with a ``kind`` reason."""
    testCase.assertIsNotNone(proto.reason, "connectionLost not called")
    assert proto.reason is not None
    testCase.assertTrue(proto.reason.check(kind), proto.reason)


def negotiated(tls: TLSMemoryBIOProtocol) -> str:
    return cast(str, tls.getHandle().get_protocol_version_name())


# -- in memory ---------------------------------------------------------------


class InMemoryTests13(SynchronousTestCase):
    """Half-close over TLS in memory, TLS 1.3."""

    version = TLSVersion.TLSv1_3
    versionName = "TLSv1.3"

    def test_versionNegotiated(self) -> None:
        """The pair speaks the version under test."""
        client, server = HalfCloseRecorder(), HalfCloseRecorder()
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
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
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
        self.assertEqual(server.data(), b"abc\ndef")
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        self.assertEqual(client.data(), b"tail:[7]")
        self.assertEqual(
            client.events, ["writeConnectionLost", "readConnectionLost", "connectionLost"]
        )
        assertLost(self, client, ConnectionDone)
        assertLost(self, server, ConnectionDone)
        # The client half-closed TCP too, after its close_notify.
        self.assertTrue(pair.pipe.client.finSent)

    def test_emptyInput(self) -> None:
        """
        loseWriteConnection before the handshake is done waits for it, then
        sends close_notify: the server sees an empty stream and answers.
        """
        client = HalfCloseRecorder(halfClose=True)
        server = HalfCloseRecorder(answer=b"")
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        self.assertEqual(client.data(), b"[0]")
        assertLost(self, client, ConnectionDone)

    def test_serverHalfClosesFirst(self) -> None:
        """
        The server sends, half-closes and keeps reading; the client gets
        readConnectionLost, goes on writing, then half-closes: the server
        reads it all, and both close_notify alerts close the connection.
        """

        @implementer(IHalfCloseableProtocol)
        class Talker(HalfCloseRecorder):
            def readConnectionLost(self) -> None:
                self.events.append("readConnectionLost")
                assert self.transport is not None
                self.transport.write(b"more " * 1000)
                cast(Any, self.transport).loseWriteConnection()

        server = HalfCloseRecorder(send=b"hello", halfClose=True, closeOnEnd=False)
        client = Talker(closeOnEnd=False)
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
        self.assertEqual(client.data(), b"hello")
        self.assertEqual(server.data(), b"more " * 1000)
        self.assertEqual(
            server.events, ["writeConnectionLost", "readConnectionLost", "connectionLost"]
        )
        self.assertEqual(
            client.events, ["readConnectionLost", "writeConnectionLost", "connectionLost"]
        )
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
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
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
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
        before = len(pair.pipe.server.written)
        assert pair.client.transport is not None
        pair.client.write(b"ordered")
        # Deliver the client's record to the server by hand: no pump, no clock.
        record = b"".join(pair.pipe.client.outgoing)
        pair.pipe.client.outgoing.clear()
        pair.server.dataReceived(record)
        self.assertEqual(len(pair.pipe.server.written), before + 1)
        pair.pipe.pump()
        self.assertEqual(client.data(), b"ordered<>")

    def test_peerClosesWithoutReading(self) -> None:
        """
        A peer that sends close_notify and FIN, then closes its socket, never
        reads our answer: the answer meets a reset, and the protocol sees
        ConnectionLost, as over TCP.
        """
        client = HalfCloseRecorder(send=b"question", halfClose=True)
        server = HalfCloseRecorder(answer=b"x" * 100_000, closeOnEnd=False)
        pair = tlsPair(self.version, client, server)
        # Stop the pipe when the client's FIN is out, and close its socket.
        for _ in range(100):
            if pair.pipe.client.finSent:
                break
            if not pair.pipe._step(pair.pipe.client):
                pair.pipe._step(pair.pipe.server)
        pair.pipe.client.closed = True
        pair.pipe.pump()
        self.assertEqual(server.data(), b"question")
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        assertLost(self, server, ConnectionLost)

    def test_reset(self) -> None:
        """A reset in the middle of the stream: ConnectionLost, nothing else."""
        client = HalfCloseRecorder(send=b"partial")
        server = HalfCloseRecorder()
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
        pair.pipe.client.abortConnection()
        self.assertEqual(server.events, ["connectionLost"])
        assertLost(self, server, ConnectionLost)

    def test_finWithoutCloseNotify(self) -> None:
        """
        A TCP FIN without a close_notify may be a truncation: the protocol is
        not told "end of input" but ConnectionLost, as Twisted does.
        """
        client = HalfCloseRecorder(send=b"cut")
        server = HalfCloseRecorder(answer=b"never")
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
        pair.pipe.client.loseWriteConnection()  # the TCP transport's, under TLS
        pair.pipe.pump()
        self.assertEqual(server.data(), b"cut")
        self.assertEqual(server.events, ["connectionLost"])
        assertLost(self, server, ConnectionLost)

    def test_bytesAfterCloseNotifyIgnored(self) -> None:
        """Whatever arrives after the peer's close_notify is ignored (RFC 8446 6.1)."""
        client = HalfCloseRecorder(send=b"a", halfClose=True)
        server = HalfCloseRecorder(closeOnEnd=False)
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
        self.assertEqual(server.events, ["readConnectionLost"])
        pair.server.dataReceived(b"\x17\x03\x03\x00\x05junk!")
        self.assertEqual(server.data(), b"a")
        self.assertEqual(server.events, ["readConnectionLost"])
        pair.server.write(b"still writing")
        pair.server.loseConnection()
        pair.pipe.pump()
        self.assertEqual(client.data(), b"still writing")
        assertLost(self, server, ConnectionDone)

    def test_writeAfterLoseWriteConnectionDropped(self) -> None:
        """After loseWriteConnection nothing more is sent (as over TCP), and nothing breaks."""
        client = HalfCloseRecorder(send=b"one", halfClose=True)
        server = HalfCloseRecorder(answer=b"")
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
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
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
        pair.client.registerProducer(Producer(), True)
        pair.client.write(b"body")
        pair.client.loseWriteConnection()
        pair.pipe.pump()
        self.assertEqual(server.events, [])
        self.assertEqual(server.data(), b"body")
        pair.client.unregisterProducer()
        pair.pipe.pump()
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        self.assertEqual(client.data(), b"[4]")

    def test_loseConnectionAfterLoseWriteConnection(self) -> None:
        """loseConnection after a half-close ends the connection cleanly."""
        client = HalfCloseRecorder(send=b"q", halfClose=True)
        server = HalfCloseRecorder(answer=b"a")
        pair = tlsPair(self.version, client, server)
        pair.client.loseConnection()
        pair.pipe.pump()
        assertLost(self, client, ConnectionDone)
        assertLost(self, server, ConnectionDone)

    def test_writeConnectionLostWithoutTCPHalfClose(self) -> None:
        """
        Over a transport that cannot half-close, writeConnectionLost comes
        as soon as our close_notify is handed to it.
        """
        client = HalfCloseRecorder(send=b"q")
        server = HalfCloseRecorder(answer=b"a")
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()

        class NoHalfClose:
            def __init__(self, inner: MemoryTCP) -> None:
                self._inner = inner

            def __getattr__(self, name: str) -> Any:
                if name == "loseWriteConnection":
                    raise AttributeError(name)
                return getattr(self._inner, name)

        pair.client.transport = cast(Any, NoHalfClose(pair.pipe.client))
        pair.client.loseWriteConnection()
        self.assertEqual(client.events, ["writeConnectionLost"])
        self.assertFalse(pair.pipe.client.writeClosing)
        pair.pipe.pump()
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        self.assertEqual(client.data(), b"a[1]")

    def test_loseWriteConnectionTwice(self) -> None:
        """A second loseWriteConnection does nothing."""
        client = HalfCloseRecorder(send=b"q", halfClose=True)
        server = HalfCloseRecorder(closeOnEnd=False)
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
        pair.client.loseWriteConnection()
        pair.pipe.pump()
        self.assertEqual(client.events, ["writeConnectionLost"])
        self.assertEqual(server.events, ["readConnectionLost"])

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
        pair = tlsPair(self.version, client, server)
        pair.pipe.pump()
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
                pair = tlsPair(self.version, client, server)
                pair.pipe.pump()
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
    def test_canHalfClose(self) -> None:
        """Twisted's TLS transport cannot half-close (whatever it forwards); ours can; TCP can."""
        factory = TLSMemoryBIOFactory(
            _PKI.get().clientOptions(), True, Factory.forProtocol(Protocol), Clock()
        )
        self.assertFalse(canHalfClose(TLSMemoryBIOProtocol(factory, Protocol())))
        ours = HalfCloseTLSFactory(
            _PKI.get().clientOptions(), True, Factory.forProtocol(Protocol), Clock()
        )
        self.assertTrue(canHalfClose(HalfCloseTLSProtocol(ours, Protocol())))
        pipe = MemoryPipe(Protocol(), Protocol())
        self.assertTrue(canHalfClose(pipe.client))
        self.assertFalse(canHalfClose(object()))

    def test_factoryBuildsOurProtocol(self) -> None:
        factory = HalfCloseTLSFactory(
            _PKI.get().clientOptions(), True, Factory.forProtocol(Protocol), Clock()
        )
        proto = factory.buildProtocol(IPv4Address("TCP", LOOPBACK, 1))
        self.assertIsInstance(proto, HalfCloseTLSProtocol)
        self.assertTrue(IHalfCloseableProtocol.providedBy(proto))


class LayerNameTests(SynchronousTestCase):
    """The TLS gate names itself in logs as the PROXY layer does (issue 10, section 5)."""

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
        tlsLayer = HalfCloseTLSFactory(_PKI.get().clientOptions(), True, gate, Clock())
        self.assertEqual(tlsLayer.logPrefix(), "EchoFactory (TLS)")
        bare = HalfCloseTLSFactory(_PKI.get().clientOptions(), True, echo, Clock())
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
        pair = tlsPair(TLSVersion.TLSv1_3, client, server)
        pair.pipe.pump()
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

    def listen(self, app: type[Protocol] | Any) -> int:
        pki = _PKI.get()
        self.servers: list[Protocol] = []

        def build() -> Protocol:
            proto = app()
            self.servers.append(proto)
            return cast(Protocol, proto)

        appFactory = Factory()
        appFactory.buildProtocol = lambda addr: build()  # type: ignore[method-assign]
        factory = HalfCloseTLSFactory(pki.serverOptions(self.version), False, appFactory)
        port: IListeningPort = cast(Any, reactor).listenTCP(0, factory, interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        return cast(int, port.getHost().port)  # type: ignore[attr-defined]

    async def connect(self, port: int, proto: Protocol) -> None:
        endpoint = TLSClientEndpoint(
            _PKI.get().clientOptions(), TCP4ClientEndpoint(reactor, LOOPBACK, port)
        )
        factory = Factory()
        factory.buildProtocol = lambda addr: proto  # type: ignore[method-assign]
        await endpoint.connect(factory)


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
        server = cast(HalfCloseRecorder, self.servers[0])
        await server.lost
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

        @implementer(IHalfCloseableProtocol)
        class Late(HalfCloseRecorder):
            def readConnectionLost(self) -> None:
                self.events.append("readConnectionLost")
                assert self.transport is not None
                self.transport.write(b"late " * 20000)
                cast(Any, self.transport).loseWriteConnection()

        client = Late()
        await self.connect(port, client)
        await client.lost
        server = cast(HalfCloseRecorder, self.servers[0])
        await server.lost
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
        context = _PKI.get().sslContext(self.sslVersion)

        def run() -> tuple[bytes, str]:
            with socket.create_connection((LOOPBACK, port), timeout=10) as raw:
                tls = context.wrap_socket(raw, server_hostname="localhost")
                version = tls.version() or ""
                tls.sendall(b"abc\ndef")
                tls.setblocking(False)
                with contextlib.suppress(ssl.SSLWantReadError):
                    tls.unwrap()  # sends close_notify; the peer's has not come yet
                tls.settimeout(10)
                chunks = []
                while True:
                    try:
                        data = tls.recv(65536)
                    except ssl.SSLZeroReturnError:
                        break
                    if not data:
                        break
                    chunks.append(data)
                return b"".join(chunks), version

        answer, version = await threads.deferToThread(run)
        self.assertEqual(version, self.versionName)
        self.assertEqual(answer, b"tail:[7]")
        server = cast(HalfCloseRecorder, self.servers[0])
        await server.lost
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])

    async def test_pythonSSLServer(self) -> None:
        """
        Our client against a Python ssl server that reads to the end of input
        (our close_notify), answers, and sends its own close_notify.
        """
        pki = _PKI.get()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.certFile, pki.keyFile)
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
                received = []
                while True:
                    try:
                        data = tls.recv(65536)
                    except ssl.SSLZeroReturnError:
                        break
                    if not data:
                        break
                    received.append(data)
                body = b"".join(received)
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
        openssl = shutil.which("openssl")
        if openssl is None:
            self.skipTest("openssl is not installed")
        port = self.listen(lambda: HalfCloseRecorder(answer=b"tail:"))
        versionFlag = "-tls1_3" if self.version == TLSVersion.TLSv1_3 else "-tls1_2"
        _, err = await runProcess(
            openssl,
            [
                "s_client",
                "-connect",
                f"{LOOPBACK}:{port}",
                "-servername",
                "localhost",
                "-CAfile",
                _PKI.get().caFile,
                "-verify_return_error",
                versionFlag,
                "-quiet",
                "-no_ign_eof",
            ],
            b"abc\ndef",
        )
        self.assertIn("DONE", err)
        server = cast(HalfCloseRecorder, self.servers[0])
        await server.lost
        self.assertEqual(server.data(), b"abc\ndef")
        self.assertEqual(server.events, ["readConnectionLost", "connectionLost"])
        assertLost(self, server, ConnectionDone)

    async def test_opensslClientServerClosesFirst(self) -> None:
        """
        ``openssl s_client -quiet`` (``-ign_eof``) keeps reading after its
        input ends: it prints everything our server sends before the
        server's close_notify, then exits 0.
        """
        openssl = shutil.which("openssl")
        if openssl is None:
            self.skipTest("openssl is not installed")

        @implementer(IHalfCloseableProtocol)
        class Greeter(HalfCloseRecorder):
            def dataReceived(self, data: bytes) -> None:
                super().dataReceived(data)
                if data.endswith(b"\n"):
                    assert self.transport is not None
                    self.transport.write(b"you said: " + self.data())
                    self.transport.loseConnection()

        port = self.listen(Greeter)
        versionFlag = "-tls1_3" if self.version == TLSVersion.TLSv1_3 else "-tls1_2"
        out, err = await runProcess(
            openssl,
            [
                "s_client",
                "-connect",
                f"{LOOPBACK}:{port}",
                "-servername",
                "localhost",
                "-CAfile",
                _PKI.get().caFile,
                "-verify_return_error",
                versionFlag,
                "-quiet",
            ],
            b"hello\n",
        )
        self.assertEqual(out, b"you said: hello\n", err)


class SocketTests12(SocketTests13):
    """The same over TLS 1.2."""

    version = TLSVersion.TLSv1_2
    sslVersion = ssl.TLSVersion.TLSv1_2
    versionName = "TLSv1.2"


class _Collect(ProcessProtocol):
    def __init__(self, stdin: bytes) -> None:
        self.stdin = stdin
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.ended: Deferred[tuple[bytes, str]] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback((b"".join(self.out), b"".join(self.err).decode("utf-8", "replace")))


async def runProcess(executable: str, args: list[str], stdin: bytes) -> tuple[bytes, str]:
    """Run a command with ``stdin``; its output and error output, once it has exited."""
    proto = _Collect(stdin)
    process = cast(IReactorProcess, reactor).spawnProcess(
        proto, executable, [executable, *args], env={"PATH": os.environ.get("PATH", "")}
    )
    timer = cast(Any, reactor).callLater(30, process.signalProcess, "KILL")
    try:
        return await proto.ended
    finally:
        if timer.active():
            timer.cancel()
