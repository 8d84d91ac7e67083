"""
The client when the server ends its side first (issue 10, sections 1 and 4).

A server may answer, end its side (FIN, or ``close_notify`` over TLS) and go
on reading, as TCP allows: ``tcpecho-client`` and ``exchange()`` then send
all their input before they close.  If the server had closed the whole
connection, the input it did not read is reported (one line, exit status 1;
:class:`~tcpproto.client.InputNotSent` from ``exchange()``).

Servers here are in this process, on 127.0.0.1, over TCP and over
tcpproto's TLS; the client runs as the installed command or as
``exchange()``.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString
from twisted.internet.interfaces import IHalfCloseableProtocol, IListeningPort
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tcpproto import EchoFactory
from tcpproto._tls import HalfCloseTLSFactory, TLSClientEndpoint
from tcpproto.client import InputNotSent, exchange
from tests.helpers import LOOPBACK, runClient
from tests.helpers.pki import PKI, makePKI

#: What the client sends: more than the socket buffers hold, so that a server
#: that stops reading is noticed.
INPUT = bytes(range(256)) * (5 * 4096)  # 5 MiB
#: The server that closes fully stops reading after this much.
RESET_AFTER = 1 << 20


@implementer(IHalfCloseableProtocol)
class FinFirst(Protocol):
    """
    Answers at once, ends its side (FIN or close_notify) and reads on; closes
    at the client's end.  With ``resetAfter``, it closes the whole connection
    (a reset) once it has read that much instead.
    """

    def __init__(self, resetAfter: int | None = None) -> None:
        self.resetAfter = resetAfter
        self.received = 0
        self.sawEnd = False
        self.lost: Deferred[int] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"hello")
        cast(Any, self.transport).loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.resetAfter is not None and self.received >= self.resetAfter:
            assert self.transport is not None
            cast(Any, self.transport).abortConnection()

    def readConnectionLost(self) -> None:
        self.sawEnd = True
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(self.received)


class _Servers(TestCase):
    """Listeners for :class:`FinFirst` over TCP and over tcpproto's TLS."""

    tls = False

    def setUp(self) -> None:
        self.pki: PKI = makePKI(self)
        self.protocols: list[FinFirst] = []

    def listen(self, resetAfter: int | None = None, factory: Factory | None = None) -> int:
        if factory is None:

            def build(addr: object) -> FinFirst:
                proto = FinFirst(resetAfter)
                self.protocols.append(proto)
                return proto

            factory = Factory()
            factory.buildProtocol = build  # type: ignore[method-assign]
        listened: Any = factory
        if self.tls:
            with open(self.pki.serverCert, "rb") as c, open(self.pki.serverKey, "rb") as k:
                private = PrivateCertificate.loadPEM(c.read() + k.read())
            listened = HalfCloseTLSFactory(private.options(), False, factory)
        port: IListeningPort = cast(Any, reactor).listenTCP(0, listened, interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        return cast(int, port.getHost().port)  # type: ignore[attr-defined]

    def clientArgs(self, port: int) -> list[str]:
        if self.tls:
            return ["--connect", f"tls:{LOOPBACK}:{port}", "--cafile", self.pki.caCert]
        return [LOOPBACK, str(port)]

    def endpoint(self, port: int) -> Any:
        tcp = TCP4ClientEndpoint(reactor, LOOPBACK, port)
        if not self.tls:
            return tcp
        with open(self.pki.caCert, "rb") as f:
            ca = Certificate.loadPEM(f.read())
        return TLSClientEndpoint(optionsForClientTLS("localhost", trustRoot=ca), tcp)


class CommandTests(_Servers):
    """``tcpecho-client`` against a server that ends its side first."""

    async def test_sendsAllInput(self) -> None:
        """All 5 MiB reach a server that half-closed first; exit 0, its answer printed."""
        port = self.listen()
        result = await runClient(*self.clientArgs(port), stdin=INPUT)
        self.assertEqual((result.status, result.errLines(), result.out), (0, [], b"hello"))
        server = self.protocols[0]
        self.assertEqual(await server.lost, len(INPUT))
        self.assertTrue(server.sawEnd)

    async def test_reportsLostInput(self) -> None:
        """A server that closed fully: one line saying input was lost, exit 1."""
        port = self.listen(resetAfter=RESET_AFTER)
        result = await runClient(*self.clientArgs(port), stdin=INPUT)
        self.assertEqual(result.status, 1, result.err)
        lines = result.errLines()
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(
            lines[0],
            r"^tcpecho-client: .* closed the connection before reading all our input "
            r"\([0-9,]+ bytes sent\)$",
        )
        self.assertEqual(result.out, b"hello")


class CommandTLSTests(CommandTests):
    """The same over TLS: the server's close_notify comes first."""

    tls = True


class ExchangeTests(_Servers):
    """``exchange()`` against a server that ends its side first."""

    async def test_sendsAllInput(self) -> None:
        port = self.listen()
        answer = await exchange(self.endpoint(port), INPUT)
        self.assertEqual(answer, b"hello")
        self.assertEqual(await self.protocols[0].lost, len(INPUT))

    async def test_reportsLostInput(self) -> None:
        port = self.listen(resetAfter=RESET_AFTER)
        failure = await self.assertFailure(exchange(self.endpoint(port), INPUT), InputNotSent)
        self.assertGreaterEqual(cast(InputNotSent, failure).bytesSent, RESET_AFTER)

    async def test_empty(self) -> None:
        """``exchange(endpoint, b"")``: the server sees the end at once, we get its answer."""
        port = self.listen(factory=EchoFactory())
        self.assertEqual(await exchange(self.endpoint(port), b""), b"")

    async def test_echo(self) -> None:
        port = self.listen(factory=EchoFactory())
        self.assertEqual(await exchange(self.endpoint(port), b"abc\ndef"), b"abc\ndef")


class ExchangeTLSTests(ExchangeTests):
    """The same over tcpproto's TLS endpoint (close_notify both ways)."""

    tls = True

    async def test_twistedTLSEndpoint(self) -> None:
        """
        Twisted's own ``tls:`` endpoint cannot half-close: the client closes
        once the handshake is done (not before: Twisted would abort), and a
        tcpproto server still answers everything, even nothing.
        """
        port = self.listen(factory=EchoFactory())
        endpoint = clientFromString(reactor, f"tls:localhost:{port}:trustRoots={self.pki.caDir}")
        self.assertEqual(await exchange(endpoint, b""), b"")
        self.assertEqual(await exchange(endpoint, b"abc\ndef"), b"abc\ndef")
