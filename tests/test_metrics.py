"""Prometheus metrics: the collector in memory, /metrics over real sockets, and through twistd."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterable
from typing import Any, cast
from unittest import mock

from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import MultiService
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from tcpproto._metrics import (
    MetricsResource,
    ServerCollector,
    listenersOf,
    makeRegistry,
    metricsService,
)
from tcpproto._services import DatagramService, ListenerService
from tcpproto._stats import DURATION_BUCKETS
from tcpproto.connection import ServerConnection, ServerFactory
from tcpproto.echo import EchoFactory
from tcpproto.limits import MAX_CONNECTIONS, ConnectionLimits
from tcpproto.tap import Options, TwistdOptions, makeService
from tcpproto.testing import connectInMemory
from tcpproto.thankyou import ThankYouFactory
from tcpproto.udp import DatagramServer
from tests.helpers import LOCAL_TCP, LOOPBACK, listenLocal, portNumber, startServerAsync, waitUntil
from tests.test_udp import udpAddress, udpClient

_METRICS_URL = re.compile(r"serving metrics on http://127\.0\.0\.1:(\d+)/metrics")

reactor = cast(Any, _reactor)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parseExposition(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise AssertionError(f"no sample {name}{labels}; have {sorted(k[0] for k in samples)}")
    return samples[key]


def collected(collector: ServerCollector) -> Samples:
    out: Samples = {}
    for family in collector.collect():
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def memoryConnection(factory: ServerFactory, port: int = 40000) -> tuple[Any, StringTransport]:
    return connectInMemory(factory, peer=IPv4Address("TCP", "127.0.0.1", port))


def samples(found: Samples, labels: dict[str, str], **expected: float) -> dict[str, float]:
    """The values of the ``expected`` series (``reason`` labels as ``refused_REASON``)."""
    values = {}
    for key in expected:
        if key.startswith("refused_"):
            reason = key[len("refused_") :].replace("_", "-")
            values[key] = sample(found, "tcpproto_refused_total", reason=reason, **labels)
        else:
            values[key] = sample(found, f"tcpproto_{key}", **labels)
    return values


class CollectorTests(SynchronousTestCase):
    """The collector reads the counters, open connections included."""

    def test_connections(self) -> None:
        clock = Clock()
        limits = ConnectionLimits(maxConnections=2)
        echo = EchoFactory(clock=clock, limits=limits, listener="tcp:1")
        thanks = ThankYouFactory(clock=clock, limits=limits, listener="tcp:2")
        collector = ServerCollector(lambda: [echo, thanks])

        a, _ = memoryConnection(echo, 1)
        b, _ = memoryConnection(echo, 2)
        a.dataReceived(b"x" * 100)
        b.dataReceived(b"y" * 30)
        clock.advance(0.2)
        b.connectionLost(Failure(Exception("gone")))
        # The limit is 2 over both listeners: one is open, so one more fits.
        c, _ = memoryConnection(thanks, 3)
        refused = thanks.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4))
        self.assertNotIsInstance(refused, ServerConnection)
        c.dataReceived(b"hi")

        s = collected(collector)
        e = {"listener": "tcp:1", "mode": "echo"}
        t = {"listener": "tcp:2", "mode": "thankyou"}
        echoes = dict(
            connections_total=2,
            connections_active=1,
            received_bytes_total=130,
            sent_bytes_total=130,
            refused_not_allowed=0,
        )
        self.assertEqual(samples(s, e, **echoes), echoes)
        thanked = dict(
            connections_total=1,
            received_bytes_total=2,
            sent_bytes_total=len(b"thank you!"),
            refused_max_connections=1,
        )
        self.assertEqual(samples(s, t, **thanked), thanked)
        # The histogram: one closed connection of 0.2 s, cumulative buckets.
        self.assertEqual(sample(s, "tcpproto_connection_duration_seconds_count", **e), 1)
        self.assertAlmostEqual(sample(s, "tcpproto_connection_duration_seconds_sum", **e), 0.2)
        for bound in DURATION_BUCKETS:
            expected = 1 if bound >= 0.2 else 0
            le = repr(float(bound))
            self.assertEqual(
                sample(s, "tcpproto_connection_duration_seconds_bucket", le=le, **e),
                expected,
                le,
            )
        self.assertEqual(
            sample(s, "tcpproto_connection_duration_seconds_bucket", le="+Inf", **e), 1
        )
        # Open connections' bytes move into the closed totals without a jump.
        a.dataReceived(b"z" * 5)
        a.connectionLost(Failure(Exception("gone")))
        s = collected(collector)
        self.assertEqual(sample(s, "tcpproto_received_bytes_total", **e), 135)
        self.assertEqual(sample(s, "tcpproto_connections_active", **e), 0)

    def test_datagrams(self) -> None:
        udp = DatagramServer(
            limits=ConnectionLimits(allow=["10.0.0.0/8"]), listener="udp:9", clock=Clock()
        )
        sent: list[bytes] = []
        udp.makeConnection(cast(Any, mock.Mock(write=lambda d, a: sent.append(d))))
        udp.datagramReceived(b"abc", ("10.0.0.1", 5000))
        udp.datagramReceived(b"no", ("127.0.0.1", 5000))
        udp.datagramReceived(b"loop", ("10.0.0.1", 7))
        s = collected(ServerCollector(lambda: [udp]))
        u = {"listener": "udp:9", "mode": "echo"}
        expected = dict(
            datagrams_received_total=1,
            datagrams_sent_total=1,
            datagrams_dropped_total=0,
            received_bytes_total=3,
            sent_bytes_total=3,
            refused_not_allowed=1,
            refused_loop_port=1,
        )
        self.assertEqual(samples(s, u, **expected), expected)
        # No connection series for a UDP listener.
        self.assertNotIn(("tcpproto_connections_total", frozenset(u.items())), s)
        self.assertEqual(sent, [b"abc"])

    def test_listenersOf(self) -> None:
        """Listeners are found through the service tree, nested ones included."""
        top = MultiService()
        f1 = EchoFactory(clock=Clock(), listener="a")
        f2 = EchoFactory(clock=Clock(), listener="b")
        d = DatagramServer(clock=Clock(), listener="udp:c")
        ListenerService(serverFromString(reactor, LOCAL_TCP), f1, "a").setServiceParent(top)
        inner = MultiService()
        inner.setServiceParent(top)
        ListenerService(serverFromString(reactor, LOCAL_TCP), f2, "b").setServiceParent(inner)
        DatagramService(d, 0, LOOPBACK).setServiceParent(top)
        self.assertEqual(listenersOf(top), [f1, f2, d])


class OptionsTests(SynchronousTestCase):
    def test_withoutPrometheusClient(self) -> None:
        """--metrics without prometheus-client: one line saying what to install, status 2."""
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with (
            mock.patch.dict(sys.modules, {"prometheus_client": None}),
            self.assertRaises(SystemExit) as caught,
        ):
            TwistdOptions().parseOptions(["--metrics", "tcp:9100"])
        self.assertEqual(caught.exception.code, 2)
        lines = err.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("pip install 'tcpproto[metrics]'", lines[0])

    def test_badEndpoint(self) -> None:
        """A bad --metrics endpoint is a usage error when the options are parsed."""
        options = TwistdOptions()
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as caught:
            options.parseOptions(["--metrics", "nonsense:1"])
        self.assertEqual(caught.exception.code, 2)
        message = stderr.getvalue()
        self.assertIn("bad --metrics 'nonsense:1'", message)
        self.assertEqual(len(message.splitlines()), 1)

    def test_makeService(self) -> None:
        """The metrics service sees every listener of the server, UDP included."""
        options = Options()
        options.parseOptions(
            ["--listen", LOCAL_TCP, "--udp", f"{LOOPBACK}:0", "--metrics", LOCAL_TCP]
        )
        server = cast(MultiService, makeService(options))
        found = listenersOf(server)
        self.assertEqual([x.listener for x in found], [LOCAL_TCP, f"udp:{LOOPBACK}:0"])


class HTTPGet(Protocol):
    """A minimal HTTP/1.0 client: the server closes after the response."""

    def __init__(self, path: str, accept: str | None = None) -> None:
        self.request = f"GET {path} HTTP/1.0\r\nHost: {LOOPBACK}\r\n"
        if accept:
            self.request += f"Accept: {accept}\r\n"
        self.request += "\r\n"
        self.chunks: list[bytes] = []
        self.done: Deferred[tuple[int, dict[str, str], bytes]] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request.encode("ascii"))

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        head, _, body = b"".join(self.chunks).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        self.done.callback((status, headers, body))


async def httpGet(
    port: int, path: str = "/metrics", accept: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    proto = HTTPGet(path, accept)
    await connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=5), proto)
    proto.done.addTimeout(10, reactor)
    return await proto.done


async def scrape(port: int) -> Samples:
    status, headers, body = await httpGet(port)
    assert status == 200, (status, body)
    assert headers["content-type"].startswith("text/plain"), headers
    return parseExposition(body.decode("utf-8"))


class EchoClient(Protocol):
    """Sends what it is told and collects the echo."""

    def __init__(self) -> None:
        self.received = 0
        self._want: tuple[int, Deferred[None]] | None = None
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self._want is not None and self.received >= self._want[0]:
            d = self._want[1]
            self._want = None
            d.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)

    def exchange(self, data: bytes) -> Deferred[None]:
        """Send ``data``; fires once as many bytes have come back in total."""
        d: Deferred[None] = Deferred()
        self._want = (self.received + len(data), d)
        assert self.transport is not None
        self.transport.write(data)
        d.addTimeout(10, reactor)
        return d


async def connectEcho(port: int) -> EchoClient:
    client = EchoClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=5), client)
    return client


class ScrapeTests(TestCase):
    """/metrics on real loopback sockets while echo traffic flows."""

    async def startMetrics(self, listeners: Iterable[Any]) -> int:
        # interval=0: every scrape reads the counters anew (the test
        # changes them between scrapes a few milliseconds apart).
        service = metricsService(reactor, LOCAL_TCP, lambda: listeners, interval=0)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        assert service.port is not None
        return portNumber(service.port)

    async def startEcho(self) -> tuple[EchoFactory, IListeningPort]:
        factory = EchoFactory(listener="echo-under-test")
        port = await listenLocal(self, factory)
        # Let every server-side connection finish before the reactor is checked.
        self.addCleanup(lambda: factory.limits.whenEmpty().addTimeout(10, reactor))
        return factory, port

    async def test_scrapeWhileTrafficFlows(self) -> None:
        factory, port = await self.startEcho()
        metrics = await self.startMetrics([factory])
        labels = {"listener": "echo-under-test", "mode": "echo"}

        a = await connectEcho(portNumber(port))
        b = await connectEcho(portNumber(port))
        await a.exchange(b"a" * 1000)
        await b.exchange(b"b" * 300)
        s = await scrape(metrics)
        self.assertEqual(sample(s, "tcpproto_connections_total", **labels), 2)
        self.assertEqual(sample(s, "tcpproto_connections_active", **labels), 2)
        # Open connections only: their bytes are read on scrape.
        self.assertEqual(sample(s, "tcpproto_received_bytes_total", **labels), 1300)
        self.assertEqual(sample(s, "tcpproto_sent_bytes_total", **labels), 1300)
        self.assertEqual(sample(s, "tcpproto_connection_duration_seconds_count", **labels), 0)

        assert b.transport is not None
        b.transport.loseConnection()
        await b.closed
        await waitUntil(lambda: factory.active == 1)

        # Keep traffic flowing on `a`, scraping between round trips.
        sent = 1000
        previous = 1300.0
        for i in range(20):
            chunk = bytes([i]) * (1024 * (i + 1))
            await a.exchange(chunk)
            sent += len(chunk)
            s = await scrape(metrics)
            received = sample(s, "tcpproto_received_bytes_total", **labels)
            self.assertGreaterEqual(received, previous)
            self.assertEqual(received, sent + 300)
            previous = received
        self.assertEqual(sample(s, "tcpproto_connections_active", **labels), 1)
        self.assertEqual(sample(s, "tcpproto_connection_duration_seconds_count", **labels), 1)
        self.assertEqual(
            sample(s, "tcpproto_connection_duration_seconds_bucket", le="+Inf", **labels), 1
        )
        self.assertGreater(sample(s, "tcpproto_connection_duration_seconds_sum", **labels), 0)
        # prometheus-client's own process metrics are there too.
        self.assertGreater(sample(s, "process_open_fds"), 0)

        assert a.transport is not None
        a.transport.loseConnection()
        await a.closed
        await waitUntil(lambda: factory.active == 0)
        s = await scrape(metrics)
        self.assertEqual(sample(s, "tcpproto_received_bytes_total", **labels), sent + 300)
        self.assertEqual(sample(s, "tcpproto_sent_bytes_total", **labels), sent + 300)
        self.assertEqual(sample(s, "tcpproto_connection_duration_seconds_count", **labels), 2)

    async def test_http(self) -> None:
        """Only /metrics is served; OpenMetrics is negotiated with Accept."""
        factory, _ = await self.startEcho()
        metrics = await self.startMetrics([factory])
        status, _, _ = await httpGet(metrics, "/")
        self.assertEqual(status, 404)
        status, headers, body = await httpGet(
            metrics, accept="application/openmetrics-text; version=1.0.0"
        )
        self.assertEqual(status, 200)
        self.assertIn("application/openmetrics-text", headers["content-type"])
        self.assertTrue(body.rstrip().endswith(b"# EOF"))
        self.assertIn(b"tcpproto_connections_total", body)


class TwistdMetricsTests(TestCase):
    """``twistd tcpecho --metrics`` scraped while TCP and UDP traffic flows."""

    async def test_scrape(self) -> None:
        server = await startServerAsync(
            self,
            "--max-connections",
            "1",
            "--udp",
            f"{LOOPBACK}:0",
            "--metrics",
            LOCAL_TCP,
        )
        m = None
        for _ in range(500):
            m = _METRICS_URL.search(server.stdout())
            if m:
                break
            await deferLater(reactor, 0.02, lambda: None)
        assert m is not None, server.output()
        metrics = int(m.group(1))
        tcp = {"listener": LOCAL_TCP, "mode": "echo"}
        udp = {"listener": f"udp:{LOOPBACK}:0", "mode": "echo"}

        a = await connectEcho(server.port)
        await a.exchange(b"x" * 5000)
        # A second connection is over --max-connections 1: refused.
        b = await connectEcho(server.port)
        await b.closed
        client = udpClient(self)
        assert client.transport is not None
        client.transport.write(b"y" * 700, await udpAddress(server))
        await client.waitFor(1)

        s = await scrape(metrics)
        self.assertEqual(sample(s, "tcpproto_connections_total", **tcp), 1)
        self.assertEqual(sample(s, "tcpproto_connections_active", **tcp), 1)
        self.assertEqual(sample(s, "tcpproto_received_bytes_total", **tcp), 5000)
        self.assertEqual(sample(s, "tcpproto_sent_bytes_total", **tcp), 5000)
        self.assertEqual(sample(s, "tcpproto_refused_total", reason=MAX_CONNECTIONS, **tcp), 1)
        self.assertEqual(sample(s, "tcpproto_datagrams_received_total", **udp), 1)
        self.assertEqual(sample(s, "tcpproto_received_bytes_total", **udp), 700)
        self.assertEqual(sample(s, "tcpproto_sent_bytes_total", **udp), 700)

        await a.exchange(b"z" * 123)
        assert a.transport is not None
        a.transport.loseConnection()
        await a.closed
        for _ in range(500):
            s = await scrape(metrics)
            if sample(s, "tcpproto_connections_active", **tcp) == 0:
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(sample(s, "tcpproto_received_bytes_total", **tcp), 5123)
        self.assertEqual(sample(s, "tcpproto_connection_duration_seconds_count", **tcp), 1)
        self.assertEqual(server.stop(), 0)


class RenderCacheTests(SynchronousTestCase):
    """
    A scrape flood cannot stall the echo (issue 11): the registry is read at
    most once per interval, and each scrape is answered in a turn of its own.
    """

    def get(self, resource: MetricsResource, clock: Clock) -> bytes:
        request = DummyRequest([b"metrics"])
        self.assertEqual(resource.render_GET(cast(Any, request)), NOT_DONE_YET)
        self.assertEqual(request.written, [])  # not in this turn
        clock.advance(0)
        self.assertEqual(request.finished, 1)
        return b"".join(request.written)

    def test_renderedAtMostOncePerInterval(self) -> None:
        clock = Clock()
        reads: list[int] = []

        def listeners() -> list[Any]:
            reads.append(1)
            return []

        resource = MetricsResource(makeRegistry(listeners), clock, interval=1.0)
        first = self.get(resource, clock)
        self.assertIn(b"tcpproto_connections", first)
        for _ in range(100):
            self.get(resource, clock)
        self.assertEqual(len(reads), 1)
        clock.advance(1.0)
        self.get(resource, clock)
        self.assertEqual(len(reads), 2)

    def test_scraperGoneBeforeItsTurn(self) -> None:
        clock = Clock()
        resource = MetricsResource(makeRegistry(list), clock)
        request = DummyRequest([b"metrics"])
        resource.render_GET(cast(Any, request))
        request.processingFailed(Failure(ConnectionDone()))  # the scraper went away
        clock.advance(0)
        self.assertEqual(request.written, [])
