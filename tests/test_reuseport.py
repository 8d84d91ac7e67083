"""
``SO_REUSEPORT``: several listeners, and several ``twistd tcpecho``
processes, on one port; and ``--prefix``, which tells them apart.
"""

from __future__ import annotations

import io
import socket
import sys
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tcpproto import _tls, tap
from tcpproto._reuseport import (
    ReusePortReactor,
    ReusePortTCP4ServerEndpoint,
    ReusePortTCP6ServerEndpoint,
    _listenWithPortSubclass,
    listenTCPReusePort,
    reusePortAvailable,
    reusePortServerFromString,
)
from tcpproto._tls import ClientCAReactor, RequireClientCertificate
from tcpproto._wrapping import unparseEndpoint
from tcpproto.client import exchange
from tcpproto.echo import EchoFactory
from tcpproto.limits import ConnectionLimits
from tests.helpers import LOOPBACK, ServerProcess, connect, halfCloseExchange, makePKI, startServer


def reusesPort(port: IListeningPort) -> bool:
    sock = cast(Any, port).socket
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))


def portOf(port: IListeningPort) -> int:
    return int(cast(Any, port.getHost()).port)


class _Skip:
    def setUp(self) -> None:
        if not reusePortAvailable():
            raise SkipTest("this platform has no SO_REUSEPORT")


class ListenTests(_Skip, TestCase):
    """The helpers, in process, on loopback."""

    def track(self, port: IListeningPort) -> IListeningPort:
        self.addCleanup(port.stopListening)
        return port

    async def test_twoPortsShareOneAndBothServe(self) -> None:
        first = self.track(listenTCPReusePort(reactor, 0, EchoFactory(), interface=LOOPBACK))
        second = self.track(
            listenTCPReusePort(reactor, portOf(first), EchoFactory(), interface=LOOPBACK)
        )
        self.assertTrue(reusesPort(first) and reusesPort(second))
        self.assertEqual(portOf(first), portOf(second))
        for _ in range(4):
            answer = await exchange(TCP4ClientEndpoint(reactor, LOOPBACK, portOf(first)), b"hi")
            self.assertEqual(answer, b"hi")

    def test_withoutTheOptionThePortIsTaken(self) -> None:
        """The control: a plain listener cannot join a SO_REUSEPORT one."""
        first = self.track(listenTCPReusePort(reactor, 0, EchoFactory(), interface=LOOPBACK))
        self.assertRaises(
            CannotListenError,
            reactor.listenTCP,
            portOf(first),
            EchoFactory(),
            interface=LOOPBACK,
        )

    def test_portSubclass(self) -> None:
        """The path for Twisted without ``tcp.makeBinding``."""
        first = self.track(_listenWithPortSubclass(reactor, 0, EchoFactory(), 50, LOOPBACK))
        second = self.track(
            listenTCPReusePort(reactor, portOf(first), EchoFactory(), 50, LOOPBACK)
        )
        self.assertTrue(reusesPort(first) and reusesPort(second))

    async def test_ipv6(self) -> None:
        endpoint = ReusePortTCP6ServerEndpoint(reactor, 0, interface="::1")
        port = self.track(await endpoint.listen(EchoFactory()))
        self.assertTrue(reusesPort(port))
        self.assertEqual(cast(Any, port.getHost()).host, "::1")

    async def test_endpointClass(self) -> None:
        endpoint = ReusePortTCP4ServerEndpoint(reactor, 0, interface=LOOPBACK)
        port = self.track(await endpoint.listen(EchoFactory()))
        self.assertTrue(reusesPort(port))

    async def test_reuseportEndpointString(self) -> None:
        """The ``reuseport:`` prefix (a Twisted plugin) works in any endpoint string."""
        port = self.track(
            await serverFromString(reactor, f"reuseport:tcp:0:interface={LOOPBACK}").listen(
                EchoFactory()
            )
        )
        self.assertTrue(reusesPort(port))
        port6 = self.track(
            await serverFromString(reactor, "reuseport:tcp6:0:interface=\\:\\:1").listen(
                EchoFactory()
            )
        )
        self.assertTrue(reusesPort(port6))

    def test_reuseportWrapsTCPOnly(self) -> None:
        with self.assertRaises(ValueError) as caught:
            reusePortServerFromString(reactor, "unix:/tmp/x.sock")
        self.assertIn("reuseport: wraps", str(caught.exception))

    def test_unparse(self) -> None:
        self.assertEqual(
            unparseEndpoint(("tcp6", "7788"), {"interface": "::1"}),
            "tcp6:7788:interface=\\:\\:1",
        )

    def test_otherReactorMethodsAreTheReactors(self) -> None:
        proxy = ReusePortReactor(reactor)
        real = cast(Any, reactor)
        self.assertEqual(proxy.callLater, real.callLater)
        self.assertEqual(proxy.listenUNIX, real.listenUNIX)

    def _contextFactory(self) -> CertificateOptions:
        files = makePKI(self)
        with open(files.serverCert, "rb") as c, open(files.serverKey, "rb") as k:
            pem = c.read() + k.read()
        return cast(CertificateOptions, PrivateCertificate.loadPEM(pem).options())

    def test_listenSSL(self) -> None:
        port = self.track(
            ReusePortReactor(reactor).listenSSL(
                0, EchoFactory(), self._contextFactory(), interface=LOOPBACK
            )
        )
        self.assertTrue(reusesPort(port))
        self.assertIsInstance(cast(Any, port).factory, TLSMemoryBIOFactory)

    def test_composesWithClientCAReactor(self) -> None:
        """In either order, TLS listeners share the port and demand client certificates."""
        caFile = makePKI(self).caCert
        created: list[object] = []

        class Recording(RequireClientCertificate):
            def __init__(self, contextFactory: Any, caFile: str) -> None:
                created.append(self)
                super().__init__(contextFactory, caFile)

        self.patch(_tls, "RequireClientCertificate", Recording)
        for listening in (
            ReusePortReactor(ClientCAReactor(reactor, caFile)),
            ClientCAReactor(ReusePortReactor(reactor), caFile),
        ):
            port = self.track(
                listening.listenSSL(0, EchoFactory(), self._contextFactory(), interface=LOOPBACK)
            )
            self.assertTrue(reusesPort(port))
            tls = cast(Any, port).factory
            self.assertIsInstance(tls, TLSMemoryBIOFactory)
            self.assertEqual(len(created), 1)
            created.clear()


class TwoProcessesTests(_Skip, SynchronousTestCase):
    """Two ``twistd tcpecho --reuseport`` processes on one port both serve."""

    def test_bothServe(self) -> None:
        common = ["--reuseport", "--framing", "line"]
        a = startServer(self, "--listen", f"tcp:0:interface={LOOPBACK}", *common, "--prefix", "A")
        b = startServer(
            self, "--listen", f"tcp:{a.port}:interface={LOOPBACK}", *common, "--prefix", "B"
        )
        self.assertEqual(a.port, b.port)
        answers = []
        clientPorts = []
        for i in range(40):
            s = connect((LOOPBACK, a.port))
            clientPorts.append(s.getsockname()[1])
            answers.append(halfCloseExchange(s, b"hello %d\n" % i))
        who = [answer[:1] for answer in answers]
        self.assertEqual(
            [answer[2:] for answer in answers], [b"hello %d\n" % i for i in range(40)]
        )
        # The kernel spread the connections: 40 to one process has odds 2**-39.
        self.assertEqual(sorted(set(who)), [b"A", b"B"])
        # And each process logged exactly the connections it answered.
        for server, tag in ((a, b"A"), (b, b"B")):
            log = server.stdout()
            for port, answeredBy in zip(clientPorts, who, strict=True):
                self.assertEqual(
                    f"{LOOPBACK}:{port} connected" in log,
                    answeredBy == tag,
                    f"client port {port} answered by {answeredBy!r}:\n{log}",
                )

    def test_withoutReuseportTheSecondCannotListen(self) -> None:
        a = startServer(self, "--listen", f"tcp:0:interface={LOOPBACK}")
        second = ServerProcess(["--listen", f"tcp:{a.port}:interface={LOOPBACK}"])
        self.addCleanup(second.cleanup)
        second.spawn()
        status = second.wait()
        self.assertEqual(status, 1)
        self.assertIn("Address already in use", second.output())


class PrefixOptionTests(SynchronousTestCase):
    """``--prefix``: each echoed line says which instance answered."""

    def parse(self, *args: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(args))
        return options

    def refused(self, *args: str) -> str:
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as caught:
            tap.TwistdOptions().parseOptions(list(args))
        self.assertEqual(caught.exception.code, 2)
        return err.getvalue()

    def test_prefixesEachLine(self) -> None:
        options = self.parse("--framing", "line", "--prefix", "echo-1")
        factory = tap.makeFactory(options, ConnectionLimits())
        factory.clock = Clock()  # no timers on the global reactor
        proto = factory.buildProtocol(IPv4Address("TCP", LOOPBACK, 40000))
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b"one\ntwo\r\nthr")
        cast(Any, proto).readConnectionLost()
        self.assertEqual(transport.value(), b"echo-1 one\necho-1 two\r\necho-1 thr")

    def test_needsLineFramingAndEcho(self) -> None:
        for args in (
            ("--prefix", "x"),
            ("--prefix", "x", "--framing", "raw"),
            ("--prefix", "x", "--framing", "line", "--mode", "thankyou"),
        ):
            self.assertIn("--prefix needs --mode echo with --framing line", self.refused(*args))

    def test_notEmpty(self) -> None:
        self.assertIn(
            "--prefix must not be empty", self.refused("--framing", "line", "--prefix", "")
        )
