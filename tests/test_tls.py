"""
TLS: the handshake gate, mutual TLS on the server, trust roots from a file
in the client, and the echo's tail over TLS.
"""

from __future__ import annotations

import os
from typing import Any, cast

from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    clientFromString,
    connectProtocol,
    serverFromString,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import directlyProvides, providedBy

from tcpproto._tls import (
    TLS_BAD_CERTIFICATE,
    TLS_HANDSHAKE_FAILED,
    TLS_HANDSHAKE_TIMEOUT,
    TLS_NO_CERTIFICATE,
    ClientCAReactor,
    HalfCloseTLSFactory,
    HalfCloseTLSReactor,
    HandshakeGate,
    HandshakeGateFactory,
    TLSClientEndpoint,
    _refusalReason,
    clientEndpoint,
    failureReason,
    loadCertificates,
    splitDescription,
)
from tcpproto.client import exchange
from tcpproto.connection import ServerConnection
from tcpproto.echo import EchoFactory
from tests.helpers import (
    LOOPBACK,
    PKI,
    LogCapture,
    ServerProcess,
    Silent,
    connect,
    listenLocal,
    makePKI,
    portNumber,
    readUntil,
    runClientSync,
    runProcessSync,
    serverCommand,
    shortTempDir,
    startServer,
    waitUntil,
    waitUntilBlocking,
)


def sslFailure(message: str) -> Failure:
    return Failure(SSL.Error([("SSL routines", "", message)]))


class DescriptionTests(SynchronousTestCase):
    """Endpoint strings, split with Twisted's rules."""

    def test_positionalAndKeywords(self) -> None:
        self.assertEqual(
            splitDescription("tls:example.net:443:timeout=5"),
            (["tls", "example.net", "443"], {"timeout": "5"}),
        )

    def test_escapes(self) -> None:
        self.assertEqual(
            splitDescription("tls:\\:\\:1:7788:certificate=C\\:\\\\x.pem"),
            (["tls", "::1", "7788"], {"certificate": "C:\\x.pem"}),
        )

    def test_equalsInAValue(self) -> None:
        self.assertEqual(splitDescription("a:k=v=w"), (["a"], {"k": "v=w"}))

    def test_trailingBackslash(self) -> None:
        self.assertEqual(splitDescription("a\\"), (["a"], {}))


class ClientEndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pki = makePKI(self)

    def assertRefused(self, description: str, message: str, caFile: str | None = None) -> None:
        with self.assertRaises(ValueError) as caught:
            clientEndpoint(reactor, description, caFile or self.pki.caCert)
        self.assertIn(message, str(caught.exception))

    def test_errors(self) -> None:
        self.assertRefused("tcp:127.0.0.1:1", "a CA file goes with a tls:HOST:PORT")
        self.assertRefused("tls:127.0.0.1", "expected tls:HOST:PORT")
        self.assertRefused("tls:127.0.0.1:http", "not a port number")
        self.assertRefused("tls:127.0.0.1:1:trustRoots=/etc/ssl", "not both")
        self.assertRefused("tls:127.0.0.1:1:colour=blue", "unknown tls: option(s): colour")
        self.assertRefused("tls:127.0.0.1:1:timeout=soon", "timeout= takes seconds")
        self.assertRefused("tls:127.0.0.1:1:privateKey=k.pem", "privateKey= needs certificate=")
        self.assertRefused("tls:127.0.0.1:1:certificate=/nonexistent.pem", "cannot read")
        self.assertRefused(
            f"tls:127.0.0.1:1:certificate={self.pki.caCert}",
            "cannot load a client certificate",
        )
        self.assertRefused("tls:127.0.0.1:1", "cannot read", caFile="/nonexistent.pem")

    def test_halfCloseEndpoint(self) -> None:
        """The endpoint is tcpproto's, with half-close, whatever the trust roots."""
        for caFile, description in (
            (self.pki.caCert, "tls:127.0.0.1:1"),
            (None, f"tls:localhost:1:trustRoots={self.pki.caDir}"),
            (None, "tls:localhost:1"),  # the platform's trust store
        ):
            with self.subTest(caFile=caFile, description=description):
                endpoint = clientEndpoint(reactor, description, caFile)
                self.assertIsInstance(endpoint, TLSClientEndpoint)

    def test_trustRootsDirectory(self) -> None:
        """Twisted's trustRoots= (a directory of PEM files): errors on one line."""
        empty = shortTempDir(self)
        with open(os.path.join(empty, "notes.txt"), "w") as f:
            f.write("no certificate here\n")
        for directory, message in (
            ("/nonexistent-dir", "cannot read /nonexistent-dir"),
            (empty, "no PEM certificate found"),
        ):
            with self.subTest(directory=directory):
                with self.assertRaises(ValueError) as caught:
                    clientEndpoint(reactor, f"tls:localhost:1:trustRoots={directory}")
                self.assertIn(message, str(caught.exception))

    def test_loadCertificates(self) -> None:
        directory = shortTempDir(self)
        bundle = os.path.join(directory, "bundle.pem")
        with open(self.pki.caCert, "rb") as a, open(self.pki.rogueCA, "rb") as b:
            pems = a.read() + b.read()
        with open(bundle, "wb") as f:
            f.write(pems)
        self.assertEqual(len(loadCertificates(bundle)), 2)
        for name, content, message in (
            ("empty.pem", b"nothing here\n", "no PEM certificate"),
            (
                "broken.pem",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "not a valid PEM certificate",
            ),
        ):
            path = os.path.join(directory, name)
            with open(path, "wb") as f:
                f.write(content)
            with self.assertRaises(ValueError) as caught:
                loadCertificates(path)
            self.assertIn(message, str(caught.exception))


class ReasonTests(SynchronousTestCase):
    def test_failureReason(self) -> None:
        self.assertEqual(
            failureReason(sslFailure("certificate verify failed")), "certificate verify failed"
        )
        self.assertEqual(
            failureReason(Failure(ConnectionDone("bye"))), "Connection was closed cleanly: bye."
        )

    def test_classification(self) -> None:
        self.assertEqual(
            _refusalReason(sslFailure("peer did not return a certificate")), TLS_NO_CERTIFICATE
        )
        self.assertEqual(
            _refusalReason(sslFailure("certificate verify failed")), TLS_BAD_CERTIFICATE
        )
        self.assertEqual(
            _refusalReason(sslFailure("tlsv1 alert unknown ca")), TLS_HANDSHAKE_FAILED
        )
        self.assertEqual(_refusalReason(sslFailure("wrong version number")), TLS_HANDSHAKE_FAILED)
        self.assertIsNone(_refusalReason(Failure(ConnectionDone())))


class GateTests(SynchronousTestCase):
    """:class:`HandshakeGate` in memory (the TLS layer played by a StringTransport)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.log = LogCapture.install(self)
        self.factory = EchoFactory(clock=self.clock)
        self.gates = HandshakeGateFactory(self.factory, handshakeTimeout=5, clock=self.clock)
        self.peer = IPv4Address("TCP", LOOPBACK, 6000)

    def gate(self, factory: Any = None) -> tuple[HandshakeGate, StringTransport]:
        gates = self.gates if factory is None else HandshakeGateFactory(factory, 5, self.clock)
        gate = gates.buildProtocol(self.peer)
        transport = StringTransport(peerAddress=self.peer)
        gate.makeConnection(transport)
        return gate, transport

    def test_handshakeDetailEscaped(self) -> None:
        """OpenSSL's words for a failed handshake reach the log as one line."""
        reason = Failure(SSL.Error([("SSL routines", "", "bad\nFORGED-LINE \x1b[31m")]))
        self.gates.logDetail(self.peer, reason)
        [event] = self.log.matching(lambda e: "detail" in e)
        self.assertEqual(event["detail"], "bad\\nFORGED-LINE \\x1b[31m")

    def test_handshakesInFlightCountAgainstTheLimits(self) -> None:
        """
        A connection in its handshake holds its place: many handshakes at
        once cannot go past --max-connections or --max-per-peer, and a failed
        handshake gives its place back.
        """
        for limits in ({"maxConnections": 1}, {"maxPerPeer": 1}):
            factory = EchoFactory(clock=self.clock, **limits)  # type: ignore[arg-type]
            first, _ = self.gate(factory)
            second, _ = self.gate(factory)
            self.assertIsNotNone(first.wrapped)
            self.assertIsNone(second.wrapped)  # refused at accept, before any handshake
            self.assertEqual(factory.limits.active, 1)
            first.connectionLost(Failure(ConnectionDone()))  # the handshake never finished
            self.assertEqual(factory.limits.active, 0)
            third, _ = self.gate(factory)
            self.assertIsNotNone(third.wrapped)

    def test_connectedAfterTheHandshakeOnly(self) -> None:
        gate, transport = self.gate()
        self.assertEqual(self.log.withEvent("open"), [])
        self.assertEqual(self.factory.limits.active, 1)  # counted while in the handshake
        gate.handshakeCompleted()
        self.assertEqual([e["peer"] for e in self.log.withEvent("open")], ["127.0.0.1:6000"])
        gate.dataReceived(b"hi")
        self.assertEqual(transport.value(), b"hi")
        assert gate.wrapped is not None
        self.assertEqual(gate.dataReceived, gate.wrapped.dataReceived)
        gate.handshakeCompleted()  # a renegotiation: nothing new
        self.assertEqual(len(self.log.withEvent("open")), 1)
        gate.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.factory.limits.active, 0)
        self.assertEqual(len(self.log.withEvent("close")), 1)

    def test_timeout(self) -> None:
        gate, transport = self.gate()
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnected)
        gate.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            [(e["peer"], e["reason"]) for e in self.log.withEvent("refused")],
            [("127.0.0.1:6000", TLS_HANDSHAKE_TIMEOUT)],
        )
        self.assertEqual(self.factory.stats.refused[TLS_HANDSHAKE_TIMEOUT], 1)

    def test_handshakeFailureIsARefusal(self) -> None:
        gate, _transport = self.gate()
        gate.connectionLost(sslFailure("peer did not return a certificate"))
        self.assertEqual(
            [(e["peer"], e["reason"]) for e in self.log.withEvent("refused")],
            [("127.0.0.1:6000", TLS_NO_CERTIFICATE)],
        )
        self.assertEqual(self.log.withEvent("open"), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_goneBeforeTheHandshakeIsQuiet(self) -> None:
        """A port probe (connect, close) is not worth a log line."""
        gate, _transport = self.gate()
        gate.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.log.withEvent("refused"), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refusedByTheFactoryBeforeTheHandshake(self) -> None:
        """Admission is decided first: no handshake for a peer outside --allow."""
        gate, transport = self.gate(EchoFactory(clock=self.clock, allow=["10.0.0.0/8"]))
        self.assertIsNone(gate.wrapped)
        self.assertTrue(transport.disconnected)
        gate.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([e["reason"] for e in self.log.withEvent("refused")], ["not-allowed"])

    def test_detailAtMostOnceASecond(self) -> None:
        for _ in range(3):
            gate, _transport = self.gate()
            gate.connectionLost(sslFailure("certificate verify failed"))
        details = [e for e in self.log.events if e.get("detail") == "certificate verify failed"]
        self.assertEqual(len(details), 1)
        self.clock.advance(1.5)
        gate, _transport = self.gate()
        gate.connectionLost(sslFailure("certificate verify failed"))
        details = [e for e in self.log.events if e.get("detail") == "certificate verify failed"]
        self.assertEqual(len(details), 2)


class FakeTimeReactor:
    """
    The reactor for sockets, a :class:`Clock` for timers: a real TLS listener
    whose handshake timeout the test advances.  :attr:`scheduled` fires at
    the first timer, i.e. once the server has accepted a connection.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.scheduled: Deferred[None] = Deferred()
        directlyProvides(self, providedBy(reactor))

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)

    def callLater(self, delay: float, f: Any, *args: Any, **kwargs: Any) -> IDelayedCall:
        call = self.clock.callLater(delay, f, *args, **kwargs)
        if not self.scheduled.called:
            self.scheduled.callback(None)
        return call

    def seconds(self) -> float:
        return self.clock.seconds()


class MutualTLSTests(TestCase):
    """An ``ssl:`` listener with a client CA, on loopback, in this process."""

    async def listen(
        self, factory: EchoFactory, via: Any = reactor, handshakeTimeout: float = 10.0
    ) -> int:
        self.pki: PKI = makePKI(self)
        listening = ClientCAReactor(via, self.pki.caCert)
        gate = HandshakeGateFactory(factory, handshakeTimeout, clock=via)
        port = cast(
            IListeningPort,
            await serverFromString(listening, self.pki.serverDescription()).listen(gate),
        )
        self.addCleanup(port.stopListening)
        return int(cast(Any, port.getHost()).port)

    async def test_goodClientGetsItsEchoWithTheTail(self) -> None:
        """A client with a certificate from the CA gets in, and gets every byte
        back: its end of input becomes close_notify, after the data."""
        log = LogCapture.install(self)
        port = await self.listen(EchoFactory())
        data = os.urandom(1024 * 1024)
        answer = await exchange(
            clientEndpoint(reactor, self.pki.clientDescription(port), self.pki.caCert), data
        )
        self.assertEqual(len(answer), len(data))
        self.assertTrue(answer == data, "the echo differs")
        # The client's end comes with the server's close_notify; the
        # server logs its close when TCP closes, a moment later.
        await waitUntil(lambda: bool(log.withEvent("close")))
        closes = log.withEvent("close")
        self.assertEqual([(e["bytes_in"], e["bytes_out"]) for e in closes], [(len(data),) * 2])
        self.assertEqual(log.withEvent("refused"), [])

    async def refusedClient(self, who: str | None) -> list[tuple[str, str]]:
        log = LogCapture.install(self)
        factory = EchoFactory()
        port = await self.listen(factory)
        endpoint = clientEndpoint(
            reactor, self.pki.clientDescription(port, withCertificate=who), self.pki.caCert
        )
        failure = None
        try:
            await exchange(endpoint, b"let me in")
        except Exception:
            failure = Failure()
        self.assertIsNotNone(failure, "the client was not refused")
        # The server's side of the refusal may come a moment after the client's.
        for _ in range(100):
            if log.withEvent("refused"):
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(log.withEvent("open"), [])
        self.assertEqual(factory.limits.active, 0)
        return [(e["peer"].split(":")[0], e["reason"]) for e in log.withEvent("refused")]

    async def test_noCertificateRefused(self) -> None:
        self.assertEqual(await self.refusedClient(None), [(LOOPBACK, TLS_NO_CERTIFICATE)])

    async def test_otherCAsCertificateRefused(self) -> None:
        self.assertEqual(await self.refusedClient("rogue"), [(LOOPBACK, TLS_BAD_CERTIFICATE)])

    async def test_handshakeTimeout(self) -> None:
        """
        A client that connects over a real socket and says nothing is dropped
        at the timeout, not before (the timeout runs on a fake clock).
        """
        log = LogCapture.install(self)
        timers = FakeTimeReactor()
        port = await self.listen(EchoFactory(), via=timers, handshakeTimeout=0.3)
        client = Silent()
        await connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, port), client)
        # Bounds against a hang only: nothing here waits for them to expire.
        timers.scheduled.addTimeout(5.0, reactor)
        client.lost.addTimeout(5.0, reactor)
        await timers.scheduled  # the server accepted: the gate's timer runs
        timers.clock.advance(0.29)
        self.assertEqual(len(timers.clock.getDelayedCalls()), 1)
        timers.clock.advance(0.01)
        self.assertEqual(timers.clock.getDelayedCalls(), [])
        await client.lost  # the server aborted, and logged why before closing
        self.assertEqual([e["reason"] for e in log.withEvent("refused")], [TLS_HANDSHAKE_TIMEOUT])


class HalfCloseTLSReactorTests(SynchronousTestCase):
    """``ssl:`` listeners get tcpproto's TLS layer (half-close) through the reactor adapter."""

    def test_listenSSL(self) -> None:
        from twisted.internet.ssl import CertificateOptions
        from twisted.internet.testing import MemoryReactor

        memory = MemoryReactor()
        adapter = HalfCloseTLSReactor(memory)
        context = CertificateOptions()
        factory = Factory.forProtocol(ServerConnection)
        adapter.listenSSL(7443, factory, context, 5, LOOPBACK)
        port, tlsFactory, backlog, interface = memory.tcpServers[0]
        self.assertEqual((port, backlog, interface), (7443, 5, LOOPBACK))
        assert isinstance(tlsFactory, HalfCloseTLSFactory)
        self.assertIs(tlsFactory.wrappedFactory, factory)
        # Everything else is the wrapped reactor's.
        self.assertEqual(adapter.listenTCP, memory.listenTCP)

    def test_contextFactoryExtended(self) -> None:
        """A wrapped reactor's ``wrapContextFactory`` (``--client-ca``) is applied."""
        from twisted.internet.ssl import CertificateOptions

        extended = CertificateOptions()

        class Inner:
            def __init__(self) -> None:
                self.wrapped: list[object] = []
                self.listened: list[object] = []

            def wrapContextFactory(self, contextFactory: object) -> object:
                self.wrapped.append(contextFactory)
                return extended

            def listenTCP(
                self, port: int, factory: object, backlog: int = 50, interface: str = ""
            ) -> object:
                self.listened.append(factory)
                return object()

        inner = Inner()
        context = object()
        HalfCloseTLSReactor(inner).listenSSL(7443, Factory.forProtocol(ServerConnection), context)
        self.assertEqual(inner.wrapped, [context])
        self.assertIsInstance(inner.listened[0], HalfCloseTLSFactory)


class WriteOrderTests(TestCase):
    """Over TLS, send() (written at once) and transport.write() (held until the
    reactor's next turn by Twisted's TLS transport) keep their order."""

    async def test_sendAfterTransportWrite(self) -> None:
        class Mixed(ServerConnection):
            def dataReceived(self, data: bytes) -> None:
                assert self.transport is not None
                self.transport.write(b"1:" + data)
                self.send(b"2:" + data)
                self.transport.write(b"3:" + data)
                self.send(b"4:" + data)

        pki = makePKI(self)
        factory = Factory.forProtocol(Mixed)
        port = await listenLocal(self, factory, pki.serverDescription())
        answer = await exchange(
            clientFromString(reactor, pki.trustingDescription(portNumber(port))), b"x"
        )
        self.assertEqual(answer, b"1:x2:x3:x4:x")


class EndToEndTests(SynchronousTestCase):
    """``twistd tcpecho --client-ca`` and ``tcpecho-client --cafile``."""

    def setUp(self) -> None:
        self.pki = makePKI(self)

    def startMutual(self) -> ServerProcess:
        return startServer(
            self, "--listen", self.pki.serverDescription(), "--client-ca", self.pki.caCert
        )

    def test_mutualTLS(self) -> None:
        server = self.startMutual()
        data = os.urandom(256 * 1024)
        good = runClientSync(
            "--connect",
            self.pki.clientDescription(server.port),
            "--cafile",
            self.pki.caCert,
            stdin=data,
        )
        self.assertEqual((good.status, good.err), (0, b""))
        self.assertTrue(good.out == data, "the echo differs")

        refused = runClientSync(
            "--connect",
            self.pki.clientDescription(server.port, withCertificate=None),
            "--cafile",
            self.pki.caCert,
            stdin=b"let me in",
        )
        self.assertEqual(refused.status, 1)
        self.assertEqual(refused.out, b"")
        self.assertEqual(len(refused.errLines()), 1, refused.err)
        self.assertIn("TLS:", refused.errLines()[0])

        # The server logged the refusal with the client's address and why.
        waitUntilBlocking(
            lambda: "tls-no-certificate" in server.stdout(), 5, "the refusal in the log"
        )
        log = server.stdout()
        self.assertRegex(log, r"refused 127\.0\.0\.1:\d+ on ssl:.*: tls-no-certificate")
        self.assertEqual(log.count(" connected to ssl:"), 1)

    def test_serverNotTrusted(self) -> None:
        """The client checks the server against --cafile only."""
        server = self.startMutual()
        result = runClientSync(
            "--connect",
            self.pki.clientDescription(server.port),
            "--cafile",
            self.pki.rogueCA,
            stdin=b"x",
        )
        self.assertEqual(result.status, 1)
        self.assertIn("TLS: certificate verify failed", result.err.decode())

    def test_plainTextToATLSPort(self) -> None:
        server = startServer(self, "--listen", self.pki.serverDescription())
        s = connect((LOOPBACK, server.port))
        s.sendall(b"hello, is this TLS?\r\n\r\n")
        answer = readUntil(s, 1 << 16)
        s.close()
        self.assertNotIn(b"hello", answer)
        waitUntilBlocking(
            lambda: "tls-handshake-failed" in server.stdout(), 5, "the refusal in the log"
        )
        self.assertRegex(
            server.stdout(), r"refused 127\.0\.0\.1:\d+ on ssl:.*: tls-handshake-failed"
        )

    def test_clientUsageErrors(self) -> None:
        for args, message in (
            (["--cafile", self.pki.caCert, LOOPBACK, "7"], "--cafile goes with --connect tls:"),
            (["--connect", "tls:127.0.0.1:7", "--cafile", "/nonexistent.pem"], "cannot read"),
            (["--connect", "tcp:127.0.0.1:7", "--cafile", self.pki.caCert], "--cafile goes with"),
        ):
            result = runClientSync(*args)
            self.assertEqual(result.status, 2, args)
            self.assertEqual(len(result.errLines()), 1, result.err)
            self.assertIn(message, result.errLines()[0])

    def test_serverUsageErrors(self) -> None:
        for args, message in (
            (["--client-ca", self.pki.caCert], "--client-ca needs an ssl: --listen"),
            (
                ["--listen", self.pki.serverDescription(), "--client-ca", "/nonexistent.pem"],
                "--client-ca: cannot read /nonexistent.pem",
            ),
        ):
            result = runProcessSync(serverCommand(*args))
            self.assertEqual(result.status, 2, result.err)
            self.assertEqual(len(result.errLines()), 1, result.err)
            self.assertIn(message, result.errLines()[0])
