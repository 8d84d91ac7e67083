"""
The PROXY protocol wrapper (``haproxy:`` listeners), and a real HAProxy in
front of two ``twistd tcpecho`` instances.

In memory: header parsing in any chunking, v1 and v2, LOCAL, bad and slow
headers, admission on the real client's address, half-close passed through.
On loopback sockets: a PROXY client that half-closes gets every byte back.
With HAProxy (skipped, saying why, when it is not installed): traffic goes
on through the other instance when one is killed, with no byte lost on the
connections that survive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tcpproto import _proxy as haproxy
from tcpproto._proxy import (
    BAD_PROXY_HEADER,
    HEADER_TIMEOUT,
    PROXY_HEADER_TIMEOUT,
    ProxyProtocolWrapper,
    ProxyServerEndpoint,
    ProxyWrappingFactory,
)
from tcpproto.client import exchange
from tcpproto.echo import EchoFactory
from tcpproto.testing import HalfCloseableStringTransport
from tcpproto.thankyou import ThankYouFactory
from tests.helpers import (
    CONTRIB,
    LOOPBACK,
    LogCapture,
    ServerProcess,
    connect,
    freePort,
    halfCloseExchange,
    haproxyExecutable,
    proxyV1,
    proxyV2,
    proxyV2Local,
    readUntil,
    shortTempDir,
    startServer,
    waitUntilBlocking,
)
from tests.test_attacks import proxyV2Unix, proxyV2Unspec

#: The real peer of the in-memory connections: the balancer.
BALANCER = IPv4Address("TCP", LOOPBACK, 5000)
#: What the headers say: the client behind the balancer.
CLIENT = ("127.0.0.5", 40001)
SERVER = (LOOPBACK, 7788)


class WrapperTests(SynchronousTestCase):
    """:class:`ProxyProtocolWrapper` in memory."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.log = LogCapture.install(self)

    def connect(
        self, factory: Factory | None = None, headerTimeout: float = HEADER_TIMEOUT
    ) -> tuple[ProxyProtocolWrapper, HalfCloseableStringTransport]:
        if factory is None:
            factory = EchoFactory(clock=self.clock)
        wrapping = ProxyWrappingFactory(factory, headerTimeout, clock=self.clock)
        wrapper = wrapping.buildProtocol(BALANCER)
        transport = HalfCloseableStringTransport(
            hostAddress=IPv4Address("TCP", LOOPBACK, 7788), peerAddress=BALANCER
        )
        wrapper.makeConnection(transport)
        return wrapper, transport

    def openPeers(self) -> list[str]:
        return [e["peer"] for e in self.log.withEvent("open")]

    def refusals(self) -> list[tuple[str, str]]:
        return [(e["peer"], e["reason"]) for e in self.log.withEvent("refused")]

    def test_v1HeaderAndDataInOneChunk(self) -> None:
        """The header is not echoed; what follows it in the same read is."""
        wrapper, transport = self.connect()
        wrapper.dataReceived(proxyV1(CLIENT, SERVER) + b"hello")
        self.assertEqual(transport.value(), b"hello")
        self.assertEqual(self.openPeers(), ["127.0.0.5:40001"])

    def test_v1ByteByByte(self) -> None:
        wrapper, transport = self.connect()
        for i, byte in enumerate(proxyV1(CLIENT, SERVER)):
            self.assertEqual(self.openPeers(), [], f"connected after {i} bytes")
            wrapper.dataReceived(bytes([byte]))
        self.assertEqual(self.openPeers(), ["127.0.0.5:40001"])
        wrapper.dataReceived(b"x")
        self.assertEqual(transport.value(), b"x")

    def test_v2InPiecesShorterThanItsFixedPart(self) -> None:
        """A v2 header split before its 16-byte fixed part is complete still parses
        (Twisted's wrapper drops such a connection)."""
        header = proxyV2(("::1", 40002), ("::1", 7788))
        wrapper, transport = self.connect()
        for piece in (header[:5], header[5:15], header[15:30], header[30:] + b"data"):
            wrapper.dataReceived(piece)
        self.assertEqual(transport.value(), b"data")
        self.assertEqual(self.openPeers(), ["[::1]:40002"])

    def test_v2Local(self) -> None:
        """A LOCAL header (the balancer's own connection) stands for the balancer."""
        wrapper, transport = self.connect()
        wrapper.dataReceived(proxyV2Local() + b"ping")
        self.assertEqual(transport.value(), b"ping")
        self.assertEqual(self.openPeers(), ["127.0.0.1:5000"])

    def test_v1Unknown(self) -> None:
        wrapper, transport = self.connect()
        wrapper.dataReceived(b"PROXY UNKNOWN\r\nping")
        self.assertEqual(transport.value(), b"ping")
        self.assertEqual(self.openPeers(), ["127.0.0.1:5000"])

    def test_hostIsTheHeaderDestination(self) -> None:
        wrapper, _transport = self.connect()
        wrapper.dataReceived(proxyV1(CLIENT, ("127.0.0.9", 7000)))
        assert wrapper.wrapped is not None
        inner = cast(Any, wrapper.wrapped).transport
        self.assertEqual(inner.getHost(), IPv4Address("TCP", "127.0.0.9", 7000))
        self.assertEqual(inner.getPeer(), IPv4Address("TCP", *CLIENT))

    def test_notAProxyHeader(self) -> None:
        """Anything else is refused at its first bytes, logged with the real peer."""
        wrapper, transport = self.connect()
        wrapper.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(transport.disconnected)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.refusals(), [("127.0.0.1:5000", BAD_PROXY_HEADER)])
        self.assertEqual(self.openPeers(), [])

    def test_badAddressInHeader(self) -> None:
        """A source that is not an IP address is refused (it would bypass --allow)."""
        wrapper, transport = self.connect()
        wrapper.dataReceived(b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\nx")
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.refusals(), [("127.0.0.1:5000", BAD_PROXY_HEADER)])

    def test_badPortInHeader(self) -> None:
        wrapper, transport = self.connect()
        wrapper.dataReceived(b"PROXY TCP4 127.0.0.5 127.0.0.1 port 2\r\n")
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.refusals(), [("127.0.0.1:5000", BAD_PROXY_HEADER)])

    def test_overlongV1Header(self) -> None:
        wrapper, transport = self.connect()
        wrapper.dataReceived(b"PROXY " + b"1" * 200)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.refusals(), [("127.0.0.1:5000", BAD_PROXY_HEADER)])

    def test_headerTimeout(self) -> None:
        wrapper, transport = self.connect(headerTimeout=5.0)
        wrapper.dataReceived(b"PROXY TCP4 ")
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.refusals(), [("127.0.0.1:5000", PROXY_HEADER_TIMEOUT)])

    def test_headerInTimeCancelsTheTimer(self) -> None:
        wrapper, transport = self.connect(
            EchoFactory(clock=self.clock, idleTimeout=0, maxLifetime=0)
        )
        wrapper.dataReceived(proxyV1(CLIENT, SERVER))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(HEADER_TIMEOUT * 2)
        self.assertFalse(transport.disconnecting)

    def test_closedBeforeAnyByte(self) -> None:
        """A balancer's TCP health check (connect, close) is closed silently."""
        wrapper, transport = self.connect()
        wrapper.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.refusals(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_partialHeaderThenFIN(self) -> None:
        wrapper, transport = self.connect()
        wrapper.dataReceived(b"PROXY TCP4 127.0")
        wrapper.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.refusals(), [("127.0.0.1:5000", BAD_PROXY_HEADER)])

    def test_halfClosePassedOn(self) -> None:
        """The client's FIN reaches the echo as a half-close: its tail is sent."""
        wrapper, transport = self.connect(EchoFactory("line", clock=self.clock))
        wrapper.dataReceived(proxyV1(CLIENT, SERVER) + b"one\ntwo")
        self.assertEqual(transport.value(), b"one\n")
        self.assertFalse(transport.disconnecting)
        wrapper.readConnectionLost()
        self.assertEqual(transport.value(), b"one\ntwo")
        self.assertTrue(transport.disconnecting)

    def test_writeConnectionLostPassedOn(self) -> None:
        calls: list[str] = []
        wrapper, _transport = self.connect()
        wrapper.dataReceived(proxyV1(CLIENT, SERVER))
        assert wrapper.wrapped is not None
        cast(Any, wrapper.wrapped).writeConnectionLost = lambda: calls.append("write")
        wrapper.writeConnectionLost()
        self.assertEqual(calls, ["write"])

    def test_protocolHalfClosesTheRealTransport(self) -> None:
        """``loseWriteConnection`` on the proxied transport half-closes the real one
        (thank-you --once replies, then half-closes)."""
        factory = ThankYouFactory(reply=b"ok", once=True, clock=self.clock)
        wrapper, transport = self.connect(factory)
        wrapper.dataReceived(proxyV1(CLIENT, SERVER) + b"hi")
        self.assertEqual(transport.value(), b"ok")
        self.assertTrue(transport.writeDisconnecting)
        self.assertFalse(transport.disconnecting)

    def test_bytesGoStraightToTheProtocol(self) -> None:
        """After the header, the transport calls the protocol's dataReceived itself."""
        wrapper, _transport = self.connect()
        wrapper.dataReceived(proxyV1(CLIENT, SERVER))
        assert wrapper.wrapped is not None
        self.assertEqual(wrapper.dataReceived, wrapper.wrapped.dataReceived)

    def test_connectionLostPassedOn(self) -> None:
        factory = EchoFactory(clock=self.clock)
        wrapper, _transport = self.connect(factory)
        wrapper.dataReceived(proxyV1(CLIENT, SERVER) + b"abc")
        wrapper.connectionLost()
        self.assertEqual(factory.limits.active, 0)
        closes = self.log.withEvent("close")
        self.assertEqual([(e["peer"], e["bytes_in"]) for e in closes], [("127.0.0.5:40001", 3)])

    def test_accessListAppliesToTheClient(self) -> None:
        """--allow is checked against the header's client, not the balancer."""
        factory = EchoFactory(clock=self.clock, allow=["127.0.0.5/32"])
        wrapper, transport = self.connect(factory)
        wrapper.dataReceived(proxyV1(CLIENT, SERVER) + b"in")
        self.assertEqual(transport.value(), b"in")
        wrapper, transport = self.connect(factory)
        wrapper.dataReceived(proxyV1(("127.0.0.6", 40001), SERVER) + b"out")
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.refusals(), [("127.0.0.6:40001", "not-allowed")])

    def test_familiesAgainstTheAccessList(self) -> None:
        """
        The rule (docs/limits.rst, issue 11): TCP4/TCP6 claims are judged by
        their source; LOCAL and v1 UNKNOWN by the balancer's address; a claim
        no access list can judge (UNIX, UNSPEC) is refused when there is one.
        """
        unix = proxyV2Unix(b"/run/client.sock")
        unspec = proxyV2Unspec()
        cases = {
            "TCP4": proxyV2(("10.1.2.3", 1), ("10.0.0.1", 7)),
            "TCP6 mapped": proxyV2(("::ffff:10.1.2.3", 1), ("::1", 7)),
            "TCP6 outside": proxyV2(("2001:db8::1", 1), ("::1", 7)),
            "UNIX": unix,
            "UNSPEC": unspec,
            "LOCAL": proxyV2Local(),
            "v1 UNKNOWN": b"PROXY UNKNOWN\r\n",
        }

        def outcomes(*allow: str) -> dict[str, bool]:
            factory = EchoFactory(clock=self.clock, allow=list(allow))
            found = {}
            for name, header in cases.items():
                wrapper, transport = self.connect(factory)
                wrapper.dataReceived(header + b"x")
                found[name] = transport.value() == b"x"
                wrapper.connectionLost(Failure(ConnectionDone()))
            return found

        self.assertEqual(
            outcomes("127.0.0.1/32", "10.0.0.0/8"),
            {
                "TCP4": True,
                "TCP6 mapped": True,
                "TCP6 outside": False,
                "UNIX": False,
                "UNSPEC": False,
                "LOCAL": True,
                "v1 UNKNOWN": True,
            },
        )
        # The balancer outside the list: its own health checks are refused too.
        only10 = outcomes("10.0.0.0/8")
        self.assertEqual((only10["LOCAL"], only10["v1 UNKNOWN"]), (False, False))
        # No access list: every well-formed claim is served.
        self.assertEqual(set(outcomes().values()), {True})
        # Each refusal counted (the log holds back all but one a second).
        factory = EchoFactory(clock=self.clock, allow=["10.0.0.0/8"])
        for header in (unix, unspec):
            wrapper, transport = self.connect(factory)
            wrapper.dataReceived(header)
            self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.stats.refused, {"not-allowed": 2})

    def test_scopedIPv6IsABadHeader(self) -> None:
        """``fe80::1%eth0`` names an interface of another host (and carries any text)."""
        wrapper, transport = self.connect()
        wrapper.dataReceived(b"PROXY TCP6 fe80::1%\nforged ::1 1 7\r\nx")
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.refusals(), [("127.0.0.1:5000", "bad-proxy-header")])

    def test_claimedNamesEscapedInTheLog(self) -> None:
        """A UNIX path claimed in a header reaches the log as one escaped line."""
        wrapper, transport = self.connect()
        wrapper.dataReceived(proxyV2Unix(b"/x\n2026 [tcpproto#info] forged\x1b[31m") + b"y")
        self.assertEqual(transport.value(), b"y")
        [peer] = self.openPeers()
        self.assertEqual(peer, "unix:/x\\n2026 [tcpproto#info] forged\\x1b[31m")

    def test_perPeerLimitCountsClients(self) -> None:
        """--max-per-peer counts each client behind the balancer separately."""
        factory = EchoFactory(clock=self.clock, maxPerPeer=1)
        first, t1 = self.connect(factory)
        first.dataReceived(proxyV1(CLIENT, SERVER))
        other, t2 = self.connect(factory)
        other.dataReceived(proxyV1(("127.0.0.6", 40001), SERVER))
        again, t3 = self.connect(factory)
        again.dataReceived(proxyV1((CLIENT[0], 40009), SERVER))
        self.assertEqual(
            (t1.disconnecting, t2.disconnecting, t3.disconnecting), (False, False, True)
        )
        self.assertEqual(self.refusals(), [("127.0.0.5:40009", "max-per-peer")])

    def test_anyTwistedFactory(self) -> None:
        """Other Twisted applications' factories work too; refusals are still logged."""

        class Echo(Protocol):
            def dataReceived(self, data: bytes) -> None:
                assert self.transport is not None
                self.transport.write(data)

        wrapper, transport = self.connect(Factory.forProtocol(Echo))
        wrapper.dataReceived(proxyV1(CLIENT, SERVER) + b"abc")
        self.assertEqual(transport.value(), b"abc")
        wrapper, transport = self.connect(Factory.forProtocol(Echo))
        wrapper.dataReceived(b"nonsense")
        self.assertEqual(self.refusals(), [("127.0.0.1:5000", BAD_PROXY_HEADER)])

    def test_serverFromString(self) -> None:
        """haproxy: descriptions get our wrapper; others are Twisted's endpoints."""
        endpoint = haproxy.serverFromString(reactor, "haproxy:tcp:0:interface=127.0.0.1")
        self.assertIsInstance(endpoint, ProxyServerEndpoint)
        self.assertIsInstance(cast(ProxyServerEndpoint, endpoint).wrapped, TCP4ServerEndpoint)
        self.assertIsInstance(
            haproxy.serverFromString(reactor, "tcp:0:interface=127.0.0.1"), TCP4ServerEndpoint
        )

    def test_proxyPrefixPlugin(self) -> None:
        """
        Any program's serverFromString knows proxy: (our parser plugin);
        haproxy: stays Twisted's own outside twistd tcpecho.
        """
        from twisted.internet import endpoints

        endpoint = endpoints.serverFromString(reactor, "proxy:tcp:0:interface=127.0.0.1")
        self.assertIsInstance(endpoint, ProxyServerEndpoint)
        self.assertIsInstance(cast(ProxyServerEndpoint, endpoint).wrapped, TCP4ServerEndpoint)
        self.assertNotIsInstance(
            endpoints.serverFromString(reactor, "haproxy:tcp:0:interface=127.0.0.1"),
            ProxyServerEndpoint,
        )


class HalfCloseOverSocketsTests(TestCase):
    """A PROXY client on real loopback sockets."""

    async def listen(self) -> int:
        self.factory = EchoFactory()
        endpoint = ProxyServerEndpoint(TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK))
        port = await endpoint.listen(self.factory)
        self.addCleanup(port.stopListening)
        return int(cast(Any, port.getHost()).port)

    async def test_halfCloseGetsEveryByteBack(self) -> None:
        """Header, 2 MB, FIN: all 2 MB come back, and the log names the client."""
        log = LogCapture.install(self)
        port = await self.listen()
        data = os.urandom(2 * 1024 * 1024)
        answer = await exchange(
            TCP4ClientEndpoint(reactor, LOOPBACK, port), proxyV1(CLIENT, SERVER) + data
        )
        self.assertEqual(len(answer), len(data))
        self.assertTrue(answer == data, "the echo differs")
        opens = log.withEvent("open")
        closes = log.withEvent("close")
        self.assertEqual([e["peer"] for e in opens], ["127.0.0.5:40001"])
        self.assertEqual(
            [(e["peer"], e["bytes_in"], e["bytes_out"], e["reason"]) for e in closes],
            [("127.0.0.5:40001", len(data), len(data), "closed")],
        )

    async def test_v2HalfClose(self) -> None:
        log = LogCapture.install(self)
        port = await self.listen()
        data = b"line\n" * 10000
        answer = await exchange(
            TCP4ClientEndpoint(reactor, LOOPBACK, port),
            proxyV2(("::1", 40002), ("::1", 7788)) + data,
        )
        self.assertEqual(answer, data)
        self.assertEqual([e["peer"] for e in log.withEvent("close")], ["[::1]:40002"])


# -- a real HAProxy ---------------------------------------------------------

HAPROXY_CONFIG = os.path.join(CONTRIB, "haproxy", "haproxy.cfg")


def _lines(prefix: bytes, tag: str, start: int, count: int) -> tuple[bytes, bytes]:
    """``count`` numbered lines, and their echo with ``prefix``."""
    sent = b"".join(
        b"%s %06d some payload to echo\n" % (tag.encode(), i) for i in range(start, start + count)
    )
    echoed = b"".join(prefix + b" " + line + b"\n" for line in sent.splitlines())
    return sent, echoed


class HAProxyTests(SynchronousTestCase):
    """``contrib/haproxy/haproxy.cfg`` with a real HAProxy and two tcpecho instances."""

    def setUp(self) -> None:
        executable = haproxyExecutable()
        if executable is None:
            raise SkipTest(
                "haproxy is not installed (CI installs Debian's package with .ci/system-deps.sh)"
            )
        self.haproxy = executable

    def startHAProxy(self, frontend: int, backends: list[int]) -> subprocess.Popen[bytes]:
        logPath = os.path.join(shortTempDir(self), "haproxy.log")
        env = dict(
            os.environ,
            TCPECHO_FRONTEND=f"{LOOPBACK}:{frontend}",
            TCPECHO_BACKEND1=f"{LOOPBACK}:{backends[0]}",
            TCPECHO_BACKEND2=f"{LOOPBACK}:{backends[1]}",
        )
        with open(logPath, "wb") as log:
            process = subprocess.Popen(
                [self.haproxy, "-db", "-f", HAPROXY_CONFIG],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        self.addCleanup(stop)
        self.haproxyLog = logPath

        def listening() -> bool:
            if process.poll() is not None:
                with open(logPath, "rb") as f:
                    raise AssertionError(f"haproxy exited: {f.read().decode()}")
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, frontend), 1):
                return True
            return False

        waitUntilBlocking(listening, 10, "haproxy to listen")
        return process

    def startPair(self, *extra: str) -> tuple[ServerProcess, ServerProcess, int]:
        """Instances A and B (line echo, prefixed A or B) behind HAProxy."""
        common = ["--framing", "line", "--listen", f"haproxy:tcp:0:interface={LOOPBACK}", *extra]
        a = startServer(self, *common, "--prefix", "A")
        b = startServer(self, *common, "--prefix", "B")
        frontend = freePort()
        self.startHAProxy(frontend, [a.port, b.port])
        return a, b, frontend

    def openClients(
        self, a: ServerProcess, b: ServerProcess, frontend: int
    ) -> tuple[list[socket.socket], list[bytes]]:
        """Six clients through HAProxy, with traffic; which instance has each."""
        clients = [connect((LOOPBACK, frontend)) for _ in range(6)]
        owners: list[bytes] = []
        for i, s in enumerate(clients):
            sent, _ = _lines(b"", f"c{i}", 0, 1)
            s.sendall(sent)
            answer = readUntil(s, len(sent) + 2)
            self.assertIn(answer[:2], (b"A ", b"B "), answer)
            self.assertEqual(answer[2:], sent)
            owners.append(answer[:1])
        # leastconn spreads them over both.
        self.assertEqual(sorted(set(owners)), [b"A", b"B"])
        # Each instance logged its clients' real addresses (PROXY v2 from HAProxy).
        expected = [
            (f"{LOOPBACK}:{s.getsockname()[1]} connected", a if owner == b"A" else b)
            for s, owner in zip(clients, owners, strict=True)
        ]
        waitUntilBlocking(
            lambda: all(line in server.stdout() for line, server in expected),
            5,
            f"each client's own address in its instance's log: {expected}",
        )
        for i, (s, owner) in enumerate(zip(clients, owners, strict=True)):
            sent, echoed = _lines(owner, f"c{i}", 1, 100)
            s.sendall(sent)
            self.assertEqual(readUntil(s, len(echoed)), echoed)
        return clients, owners

    def assertNewConnectionsReachB(self, frontend: int) -> None:
        """New connections all reach B, even before HAProxy's checks take A out
        (redispatch), each with its whole echo."""
        for i in range(6):
            sent, echoed = _lines(b"B", f"n{i}", 0, 500)
            answer = halfCloseExchange(connect((LOOPBACK, frontend)), sent)
            self.assertEqual(answer, echoed)

    def test_failover(self) -> None:
        """
        Kill one instance mid-run: its clients are cut, the others' connections
        carry on with every byte, and new connections all go to the survivor.
        """
        started = time.monotonic()
        a, b, frontend = self.startPair()
        clients, owners = self.openClients(a, b, frontend)
        a.kill()

        # A's clients are cut; B's carry on: 5000 more lines each, half-close,
        # and every byte comes back.
        survivors = 0
        for i, (s, owner) in enumerate(zip(clients, owners, strict=True)):
            if owner == b"A":
                with contextlib.suppress(ConnectionResetError):
                    self.assertEqual(readUntil(s, 1), b"")
                s.close()
                continue
            sent, echoed = _lines(b"B", f"c{i}", 101, 5000)
            self.assertEqual(halfCloseExchange(s, sent), echoed)
            survivors += 1
        self.assertEqual(survivors, owners.count(b"B"))
        self.assertNewConnectionsReachB(frontend)
        self.assertLess(time.monotonic() - started, 60)

    def test_gracefulStop(self) -> None:
        """
        Stop one instance with SIGTERM mid-run: it takes no new connection but
        finishes its open ones, so no client loses a byte; then it exits 0.
        """
        started = time.monotonic()
        a, b, frontend = self.startPair("--shutdown-timeout", "30")
        clients, owners = self.openClients(a, b, frontend)
        assert a.process is not None
        a.process.send_signal(signal.SIGTERM)
        waitUntilBlocking(lambda: "stopped listening" in a.stdout(), 10, "A to stop listening")
        self.assertNewConnectionsReachB(frontend)
        for i, (s, owner) in enumerate(zip(clients, owners, strict=True)):
            sent, echoed = _lines(owner, f"c{i}", 101, 5000)
            self.assertEqual(halfCloseExchange(s, sent), echoed)
        self.assertEqual(a.wait(), 0)
        self.assertLess(time.monotonic() - started, 60)
