"""UDP echo and thank-you: in memory, on real loopback sockets, and through twistd."""

from __future__ import annotations

import errno
import io
import re
import socket
import sys
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import error
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tcpproto._services import DatagramService
from tcpproto.limits import NOT_ALLOWED, ConnectionLimits, parseNetwork
from tcpproto.tap import Options, TwistdOptions
from tcpproto.udp import (
    LOOP_PORT,
    MAX_DATAGRAM,
    DatagramServer,
    parseUDPAddress,
)
from tests.helpers import LOOPBACK, LogCapture, ServerProcess, startServerAsync, waitUntil

reactor = cast(Any, _reactor)

PEER = ("127.0.0.1", 40000)


class FakeDatagramTransport:
    """Records what a datagram protocol sends; can be told to fail."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.fail = fail

    def write(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append((datagram, addr))


def connected(server: DatagramServer, fail: BaseException | None = None) -> FakeDatagramTransport:
    transport = FakeDatagramTransport(fail)
    server.makeConnection(transport)  # type: ignore[arg-type]
    return transport


class DatagramServerTests(SynchronousTestCase):
    """The protocol, with an in-memory transport."""

    def test_echo(self) -> None:
        """Each datagram goes back to its sender unchanged, and is counted."""
        server = DatagramServer(clock=Clock())
        t = connected(server)
        server.datagramReceived(b"hello", PEER)
        server.datagramReceived(b"", ("127.0.0.1", 40001))
        server.datagramReceived(b"\x00\xff" * 100, PEER)
        self.assertEqual(
            t.sent, [(b"hello", PEER), (b"", ("127.0.0.1", 40001)), (b"\x00\xff" * 100, PEER)]
        )
        s = server.stats
        self.assertEqual((s.datagramsIn, s.datagramsOut), (3, 3))
        self.assertEqual((s.closedBytesIn, s.closedBytesOut), (205, 205))
        self.assertEqual(s.connectionsTotal, 0)

    @given(st.binary(max_size=2048))
    def test_echoAnyBytes(self, data: bytes) -> None:
        """Echo is binary-safe."""
        server = DatagramServer(clock=Clock())
        t = connected(server)
        server.datagramReceived(data, PEER)
        self.assertEqual(t.sent, [(data, PEER)])

    def test_thankYou(self) -> None:
        """In thankyou mode every datagram gets the reply."""
        server = DatagramServer("thankyou", reply=b"merci", largerReplies=True, clock=Clock())
        t = connected(server)
        server.datagramReceived(b"one", PEER)
        server.datagramReceived(b"two\n", PEER)
        self.assertEqual(t.sent, [(b"merci", PEER), (b"merci", PEER)])
        self.assertEqual((server.stats.closedBytesIn, server.stats.closedBytesOut), (7, 10))

    def test_thankYouLines(self) -> None:
        """With line replies, the reply ends as the datagram did (``\\n`` by default)."""
        server = DatagramServer("thankyou", lineReplies=True, largerReplies=True, clock=Clock())
        t = connected(server)
        server.datagramReceived(b"hi\r\n", PEER)
        server.datagramReceived(b"hi\n", PEER)
        server.datagramReceived(b"hi", PEER)
        self.assertEqual(
            [d for d, _ in t.sent], [b"thank you!\r\n", b"thank you!\n", b"thank you!\n"]
        )

    def test_noReplyLargerThanTheRequest(self) -> None:
        """
        By default a thank-you reply is never larger than the datagram it
        answers (no amplification for forged sources): shorter ones are
        refused, counted and logged.
        """
        log = LogCapture.install(self)
        server = DatagramServer("thankyou", lineReplies=True, listener="udp:7", clock=Clock())
        t = connected(server)
        for datagram in (b"x", b"123456789\n", b"1234567890\n", b"a" * 1400):
            server.datagramReceived(datagram, PEER)
        self.assertEqual([d for d, _ in t.sent], [b"thank you!\n", b"thank you!\n"])
        self.assertEqual(server.stats.refused, {"reply-too-large": 2})
        [event] = log.withEvent("refused")
        self.assertEqual(event["reason"], "reply-too-large")

    def test_largerRepliesOptIn(self) -> None:
        server = DatagramServer("thankyou", largerReplies=True, clock=Clock())
        t = connected(server)
        server.datagramReceived(b"x", PEER)
        self.assertEqual(t.sent, [(b"thank you!", PEER)])

    def test_rateLimitPerSource(self) -> None:
        """
        One source gets ``rate`` answers at once, then ``rate`` a second;
        another source has its own allowance.
        """
        clock = Clock()
        server = DatagramServer("thankyou", rate=10, clock=clock)
        t = connected(server)
        other = ("127.0.0.2", 40000)
        for _ in range(25):
            server.datagramReceived(b"q" * 20, PEER)
        server.datagramReceived(b"q" * 20, other)
        self.assertEqual(len(t.sent), 11)
        self.assertEqual(server.stats.refused, {"rate-limited": 15})
        clock.advance(0.5)
        for _ in range(10):
            server.datagramReceived(b"q" * 20, PEER)
        self.assertEqual(len(t.sent), 16)

    def test_rateBelowOneASecond(self) -> None:
        """A rate below one a second still answers: one every 1/rate seconds."""
        clock = Clock()
        server = DatagramServer("thankyou", rate=0.5, clock=clock)
        t = connected(server)
        for _ in range(4):
            server.datagramReceived(b"q" * 20, PEER)
            clock.advance(1.0)
        self.assertEqual(len(t.sent), 2)
        self.assertEqual(server.stats.refused, {"rate-limited": 2})

    def test_rateLimitDefaults(self) -> None:
        """100 a second in thankyou mode; none in echo mode (the reply is the request)."""
        self.assertEqual(DatagramServer("thankyou", clock=Clock()).rate, 100)
        self.assertEqual(DatagramServer(clock=Clock()).rate, 0)
        echo = DatagramServer(clock=Clock())
        t = connected(echo)
        for _ in range(500):
            echo.datagramReceived(b"e", PEER)
        self.assertEqual(len(t.sent), 500)
        self.assertRaises(ValueError, DatagramServer, rate=-1, clock=Clock())

    def test_rateBucketsBounded(self) -> None:
        """Forged sources cannot grow the rate table without bound."""
        server = DatagramServer("thankyou", clock=Clock())
        connected(server)
        for i in range(5000):
            server.datagramReceived(b"q" * 20, (f"10.0.{i // 250}.{i % 250}", 40000))
        self.assertLessEqual(len(server._buckets), 4096)

    def test_accessList(self) -> None:
        """A sender outside the access list is not answered, counted and logged."""
        log = LogCapture.install(self)
        server = DatagramServer(
            limits=ConnectionLimits(allow=["10.0.0.0/8"]), listener="udp:7", clock=Clock()
        )
        t = connected(server)
        server.datagramReceived(b"no", PEER)
        server.datagramReceived(b"yes", ("10.1.2.3", 5000))
        self.assertEqual(t.sent, [(b"yes", ("10.1.2.3", 5000))])
        self.assertEqual(server.stats.refused[NOT_ALLOWED], 1)
        self.assertEqual((server.stats.datagramsIn, server.stats.closedBytesIn), (1, 3))
        [refused] = log.withEvent("refused")
        self.assertEqual(refused["peer"], "127.0.0.1:40000")
        self.assertEqual(refused["listener"], "udp:7")
        self.assertEqual(refused["mode"], "echo")
        self.assertEqual(refused["reason"], NOT_ALLOWED)

    def test_accessListIPv6(self) -> None:
        """IPv6 senders, and IPv4-mapped ones, are checked against the same list."""
        server = DatagramServer(limits=ConnectionLimits(allow=["10.0.0.0/8"]), clock=Clock())
        t = connected(server)
        server.datagramReceived(b"a", ("::ffff:10.0.0.1", 5000))
        server.datagramReceived(b"b", ("::1", 5000))
        self.assertEqual(t.sent, [(b"a", ("::ffff:10.0.0.1", 5000))])
        self.assertEqual(server.stats.refused[NOT_ALLOWED], 1)

    def test_accessListCache(self) -> None:
        """Decisions are remembered per sender, boundedly, and forgotten with the list."""
        limits = ConnectionLimits(allow=["10.0.0.0/8"])
        server = DatagramServer(limits=limits, clock=Clock())
        t = connected(server)
        for i in range(5000):
            server.datagramReceived(b"a", (f"10.0.{i // 250}.{i % 250}", 5000))
            server.datagramReceived(b"b", (f"11.0.{i // 250}.{i % 250}", 5000))
        self.assertEqual(len(t.sent), 5000)
        self.assertEqual(server.stats.refused[NOT_ALLOWED], 5000)
        self.assertLessEqual(len(server._allowed), 4096)
        limits.allow = (parseNetwork("11.0.0.0/8"),)
        server.datagramReceived(b"c", ("10.0.0.1", 5000))
        server.datagramReceived(b"d", ("11.0.0.1", 5000))
        self.assertEqual(t.sent[-1], (b"d", ("11.0.0.1", 5000)))
        self.assertEqual(len(t.sent), 5001)

    def test_loopPorts(self) -> None:
        """Datagrams from the small services' ports (and port 0) are never answered."""
        server = DatagramServer(clock=Clock())
        t = connected(server)
        for port in (0, 7, 13, 17, 19, 37):
            server.datagramReceived(b"loop", ("127.0.0.1", port))
        server.datagramReceived(b"ok", ("127.0.0.1", 1024))
        self.assertEqual(t.sent, [(b"ok", ("127.0.0.1", 1024))])
        self.assertEqual(server.stats.refused[LOOP_PORT], 6)

    def test_refusalLogRateLimited(self) -> None:
        """A flood of refusals logs one line per second, then how many were not logged."""
        log = LogCapture.install(self)
        clock = Clock()
        server = DatagramServer(limits=ConnectionLimits(allow=["10.0.0.0/8"]), clock=clock)
        connected(server)
        for _ in range(5):
            server.datagramReceived(b"x", PEER)
        self.assertEqual(len(log.withEvent("refused")), 1)
        clock.advance(1.5)  # the last of the held-back four, with the other three
        server.datagramReceived(b"x", PEER)  # within the second after that line
        events = log.withEvent("refused")
        self.assertEqual([e["suppressed"] for e in events], [0, 3])
        server.stopProtocol()
        events = log.withEvent("refused")
        self.assertEqual([e["suppressed"] for e in events], [0, 3, 0])
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(server.stats.refused[NOT_ALLOWED], 6)

    def test_sendFailure(self) -> None:
        """A failed send (full buffer, too long) drops the answer, counted and logged."""
        log = LogCapture.install(self)
        for failure in (
            OSError(errno.EAGAIN, "Resource temporarily unavailable"),
            error.MessageLengthError("message too long"),
        ):
            server = DatagramServer(clock=Clock())
            connected(server, failure)
            server.datagramReceived(b"x", PEER)
            self.assertEqual(server.stats.datagramsDropped, 1)
            self.assertEqual((server.stats.datagramsOut, server.stats.closedBytesOut), (0, 0))
        self.assertEqual(len(log.withEvent("send-failed")), 2)
        self.assertEqual(log.withEvent("send-failed")[0]["peer"], "127.0.0.1:40000")

    def test_badArguments(self) -> None:
        self.assertRaises(ValueError, DatagramServer, "chargen", clock=Clock())
        self.assertRaises(ValueError, DatagramServer, "thankyou", reply=b"", clock=Clock())


class ParseUDPAddressTests(SynchronousTestCase):
    def test_valid(self) -> None:
        for text, expected in [
            ("7788", ("", 7788)),
            (" 0 ", ("", 0)),
            ("127.0.0.1:7", ("127.0.0.1", 7)),
            ("0.0.0.0:65535", ("0.0.0.0", 65535)),
            ("[::1]:7788", ("::1", 7788)),
            ("::1:7788", ("::1", 7788)),
            ("[::]:9", ("::", 9)),
        ]:
            self.assertEqual(parseUDPAddress(text), expected, text)

    def test_invalid(self) -> None:
        for text in ["", "echo", "65536", "-1", ":7", "localhost:7", "1.2.3.4:x", "[::1]"]:
            with self.assertRaises(ValueError, msg=text) as caught:
                parseUDPAddress(text)
            self.assertNotIn("\n", str(caught.exception))


class OptionsTests(SynchronousTestCase):
    def test_udpRepeatable(self) -> None:
        options = Options()
        options.parseOptions(["--udp", "7788", "--udp", "[::1]:0"])
        self.assertEqual(options["udp"], [("7788", "", 7788), ("[::1]:0", "::1", 0)])

    def test_udpDefaultNone(self) -> None:
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["udp"], [])

    def test_udpBad(self) -> None:
        """A bad --udp is one line on stderr and exit status 2."""
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as caught:
            TwistdOptions().parseOptions(["--udp", "nowhere:7"])
        self.assertEqual(caught.exception.code, 2)
        lines = err.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn("--udp", lines[0])
        self.assertIn("'nowhere'", lines[0])


class Collector(DatagramProtocol):
    """A UDP client that collects the datagrams it receives."""

    noisy = False

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self._waiting: tuple[int, Deferred[None]] | None = None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, (addr[0], addr[1])))
        if self._waiting is not None and len(self.received) >= self._waiting[0]:
            d = self._waiting[1]
            self._waiting = None
            d.callback(None)

    def waitFor(self, count: int, timeout: float = 10.0) -> Deferred[None]:
        """Fires once ``count`` datagrams have arrived (fails after ``timeout``)."""
        d: Deferred[None] = Deferred()
        if len(self.received) >= count:
            d.callback(None)
        else:
            self._waiting = (count, d)
            d.addTimeout(timeout, self.clock)
        return d


def udpClient(testCase: SynchronousTestCase, interface: str = LOOPBACK) -> Collector:
    client = Collector(reactor)
    # Twisted's default maxPacketSize (8192) would truncate a large echo.
    port = reactor.listenUDP(0, client, interface=interface, maxPacketSize=MAX_DATAGRAM)
    testCase.addCleanup(port.stopListening)
    return client


def ipv6Available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


class DatagramServiceTests(TestCase):
    """The service on real loopback sockets."""

    def startService(self, server: DatagramServer, interface: str = LOOPBACK) -> IListeningPort:
        service = DatagramService(server, 0, interface)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        assert service.port is not None
        return service.port

    async def test_echo(self) -> None:
        """Datagrams, up to the largest IPv4 one, come back whole; the bound port is logged."""
        log = LogCapture.install(self)
        server = DatagramServer(listener="udp:test")
        port = self.startService(server)
        address = (LOOPBACK, port.getHost().port)  # type: ignore[attr-defined]
        await deferLater(_reactor, 0, lambda: None)  # announced once the reactor runs
        [listening] = log.withEvent("listening")
        self.assertEqual(listening["address"], f"{LOOPBACK}:{address[1]}")
        self.assertEqual(listening["listener"], "udp:test")

        client = udpClient(self)
        big = bytes(range(256)) * 255 + b"end"  # 65283 bytes, over Twisted's 8192 default
        messages = [b"one", b"two", big]
        assert client.transport is not None
        for m in messages:
            client.transport.write(m, address)
        await client.waitFor(3)
        self.assertEqual(sorted(d for d, _ in client.received), sorted(messages))
        self.assertEqual({a for _, a in client.received}, {address})
        self.assertEqual(server.stats.datagramsIn, 3)
        self.assertEqual(server.stats.closedBytesOut, sum(map(len, messages)))
        self.assertLessEqual(len(big), MAX_DATAGRAM)

    async def test_thankYou(self) -> None:
        server = DatagramServer("thankyou", reply=b"ack")
        port = self.startService(server)
        client = udpClient(self)
        assert client.transport is not None
        for m in (b"aaa", b"bbbb"):
            client.transport.write(m, (LOOPBACK, port.getHost().port))  # type: ignore[attr-defined]
        await client.waitFor(2)
        self.assertEqual([d for d, _ in client.received], [b"ack", b"ack"])

    async def test_ipv6(self) -> None:
        if not ipv6Available():
            self.skipTest("no IPv6 loopback")
        server = DatagramServer()
        port = self.startService(server, "::1")
        client = udpClient(self, "::1")
        assert client.transport is not None
        client.transport.write(b"six", ("::1", port.getHost().port))  # type: ignore[attr-defined]
        await client.waitFor(1)
        self.assertEqual(client.received[0][0], b"six")

    def test_portInUse(self) -> None:
        """Binding a port in use exits with one line naming the listener."""
        taken = reactor.listenUDP(0, DatagramProtocol(), interface=LOOPBACK)
        self.addCleanup(taken.stopListening)
        service = DatagramService(
            DatagramServer(listener="udp:busy"), taken.getHost().port, LOOPBACK
        )
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        message = str(caught.exception.code)
        self.assertIn("cannot listen on 'udp:busy'", message)
        self.assertNotIn("\n", message)


_UDP_LISTENING = re.compile(r"listening on (\S+):(\d+) \(udp:")


async def udpAddress(server: ServerProcess, timeout: float = 10.0) -> tuple[str, int]:
    await waitUntil(
        lambda: _UDP_LISTENING.search(server.stdout()),
        timeout,
        lambda: f"no UDP listening line:\n{server.output()}",
    )
    m = _UDP_LISTENING.search(server.stdout())
    assert m is not None
    return m.group(1), int(m.group(2))


async def waitForLog(server: ServerProcess, pattern: str, timeout: float = 10.0) -> str:
    await waitUntil(
        lambda: re.search(pattern, server.stdout()),
        timeout,
        lambda: f"{pattern!r} not logged:\n{server.output()}",
    )
    m = re.search(pattern, server.stdout())
    assert m is not None
    return m.group(0)


class TwistdUDPTests(TestCase):
    """``twistd tcpecho --udp`` as users run it."""

    async def test_echo(self) -> None:
        """--udp 127.0.0.1:0 echoes datagrams and logs the port it bound; TCP still works."""
        server = await startServerAsync(self, "--udp", f"{LOOPBACK}:0")
        address = await udpAddress(server)
        self.assertEqual(address[0], LOOPBACK)
        client = udpClient(self)
        assert client.transport is not None
        client.transport.write(b"over udp", address)
        await client.waitFor(1)
        self.assertEqual(client.received, [(b"over udp", address)])
        self.assertNotEqual(server.port, 0)
        self.assertEqual(server.stop(), 0)

    async def test_thankYouLines(self) -> None:
        server = await startServerAsync(
            self,
            "--mode",
            "thankyou",
            "--framing",
            "line",
            "--reply",
            "got it",
            "--udp",
            f"{LOOPBACK}:0",
            "--udp-large-replies",
        )
        address = await udpAddress(server)
        client = udpClient(self)
        assert client.transport is not None
        client.transport.write(b"hello\r\n", address)
        await client.waitFor(1)
        self.assertEqual(client.received[0][0], b"got it\r\n")
        self.assertEqual(server.stop(), 0)

    async def test_accessList(self) -> None:
        """--allow applies to datagrams: a sender outside it is refused, and that is logged."""
        server = await startServerAsync(self, "--allow", "10.0.0.0/8", "--udp", f"{LOOPBACK}:0")
        address = await udpAddress(server)
        client = udpClient(self)
        assert client.transport is not None
        client.transport.write(b"let me in", address)
        line = await waitForLog(server, r"refused 127\.0\.0\.1:\d+ on udp:\S+: not-allowed")
        self.assertIn(f"udp:{LOOPBACK}:0", line)
        self.assertEqual(client.received, [])
        self.assertEqual(server.stop(), 0)
