"""
Prometheus metrics for tcpproto servers, computed when scraped.

Needs the optional ``prometheus-client`` (``pip install 'tcpproto[metrics]'``).

Nothing here runs on the data path: connections keep their own integers
(:attr:`~tcpproto.connection.ServerConnection.bytesIn`, ``bytesOut``),
listeners their statistics, the server's connection registry its open
connections, and
:class:`ServerCollector` reads them, plus the counters of the connections
still open, on each scrape.  Every series has the labels ``listener`` (the
endpoint string, or ``udp:...``) and ``mode``:

- ``tcpproto_connections_total``: connections accepted.
- ``tcpproto_connections_active``: connections open now.
- ``tcpproto_received_bytes_total``, ``tcpproto_sent_bytes_total``: bytes
  in and out, open connections included.
- ``tcpproto_refused_total`` (label ``reason``): connections (or datagrams)
  refused, by reason.
- ``tcpproto_connection_duration_seconds``: a histogram of the durations
  of closed connections.
- ``tcpproto_datagrams_received_total``, ``tcpproto_datagrams_sent_total``,
  ``tcpproto_datagrams_dropped_total``: on UDP listeners.

The ``process_*`` and ``python_*`` metrics of prometheus-client are
published too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from twisted.application.service import IServiceCollection
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import Factory
from twisted.web.iweb import IRequest
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tcpproto._addresses import formatAddress
from tcpproto._services import ListenerService, log
from tcpproto._timers import defaultClock
from tcpproto._vocabulary import (
    LOOP_PORT,
    MAX_CONNECTIONS,
    MAX_PER_PEER,
    NOT_ALLOWED,
    RATE_LIMITED,
    REPLY_TOO_LARGE,
)
from tcpproto.connection import ServerConnection, ServerFactory
from tcpproto.udp import DatagramServer

__all__ = [
    "DATAGRAM_REASONS",
    "STREAM_REASONS",
    "MetricsResource",
    "MetricsService",
    "ServerCollector",
    "listenersOf",
    "makeRegistry",
    "makeSite",
    "metricsService",
]

#: What the metrics are read from: TCP (and other stream) factories, and UDP servers.
Listener = ServerFactory | DatagramServer

#: Refusal reasons published (as 0) before they first happen, so that
#: ``rate()`` sees the first one.
STREAM_REASONS = (NOT_ALLOWED, MAX_CONNECTIONS, MAX_PER_PEER)
DATAGRAM_REASONS = (NOT_ALLOWED, LOOP_PORT, REPLY_TOO_LARGE, RATE_LIMITED)

_LABELS = ["listener", "mode"]


def listenersOf(parent: IServiceCollection) -> list[Listener]:
    """
    The listeners served by ``parent`` and its descendants.

    A service counts when it has a ``factory`` that is a
    :class:`~tcpproto.connection.ServerFactory` (as
    :class:`~tcpproto._services.ListenerService` has) or a ``protocol`` that
    is a :class:`~tcpproto.udp.DatagramServer` (as
    :class:`~tcpproto._services.DatagramService` has).  Read on each scrape, so
    listeners added later count too.
    """
    found: list[Listener] = []
    for service in parent:
        factory = getattr(service, "factory", None)
        for _ in range(4):  # through the TLS handshake gate and the like
            inner = getattr(factory, "wrappedFactory", None)
            if inner is None:
                break
            factory = inner
        protocol = getattr(service, "protocol", None)
        if isinstance(factory, ServerFactory):
            found.append(factory)
        elif isinstance(protocol, DatagramServer):
            found.append(protocol)
        if IServiceCollection.providedBy(service):
            found.extend(listenersOf(service))
    return found


class ServerCollector:
    """
    A prometheus-client collector that reads tcpproto's counters on scrape.

    :param listeners: called on each scrape for the listeners to publish,
        so that what it returns may change while the server runs.
    """

    def __init__(self, listeners: Callable[[], Iterable[Listener]]) -> None:
        self.listeners = listeners

    def collect(self) -> Iterator[Metric]:
        listeners = list(self.listeners())
        streams = [x for x in listeners if isinstance(x, ServerFactory)]
        datagrams = [x for x in listeners if isinstance(x, DatagramServer)]

        # Connections still open and their bytes, per factory: one pass
        # over each distinct connection registry (the one place open
        # connections are counted).
        live: dict[ServerFactory, list[int]] = {f: [0, 0, 0] for f in streams}
        for registry in {id(f.limits.registry): f.limits.registry for f in streams}.values():
            for conn in registry.connections:
                if not isinstance(conn, ServerConnection):
                    continue
                sums = live.get(conn.factory)
                if sums is not None:
                    sums[0] += 1
                    sums[1] += conn.bytesIn
                    sums[2] += conn.bytesOut

        total = _counter("tcpproto_connections", "Connections accepted.")
        active = GaugeMetricFamily(
            "tcpproto_connections_active", "Connections open now.", labels=_LABELS
        )
        received = _counter(
            "tcpproto_received_bytes", "Bytes received, open connections included."
        )
        sent = _counter("tcpproto_sent_bytes", "Bytes sent, open connections included.")
        refused = CounterMetricFamily(
            "tcpproto_refused",
            "Connections (or datagrams) refused, by reason.",
            labels=[*_LABELS, "reason"],
        )
        duration = HistogramMetricFamily(
            "tcpproto_connection_duration_seconds",
            "How long closed connections lasted.",
            labels=_LABELS,
        )
        datagramsIn = _counter(
            "tcpproto_datagrams_received", "UDP datagrams received and admitted."
        )
        datagramsOut = _counter("tcpproto_datagrams_sent", "UDP datagrams sent.")
        dropped = _counter(
            "tcpproto_datagrams_dropped",
            "UDP datagrams admitted but not answered (the send failed).",
        )

        for f in streams:
            labels = [f.listener, f.mode]
            s = f.stats
            open_, bytesIn, bytesOut = live[f]
            total.add_metric(labels, s.connectionsTotal)
            active.add_metric(labels, open_)
            received.add_metric(labels, s.closedBytesIn + bytesIn)
            sent.add_metric(labels, s.closedBytesOut + bytesOut)
            _addRefused(refused, labels, s.refused, STREAM_REASONS)
            duration.add_metric(
                labels,
                [(_bound(bound), count) for bound, count in s.closedDurations()],
                s.durationSum,
            )
        for d in datagrams:
            labels = [d.listener, d.mode]
            s = d.stats
            received.add_metric(labels, s.closedBytesIn)
            sent.add_metric(labels, s.closedBytesOut)
            _addRefused(refused, labels, s.refused, DATAGRAM_REASONS)
            datagramsIn.add_metric(labels, s.datagramsIn)
            datagramsOut.add_metric(labels, s.datagramsOut)
            dropped.add_metric(labels, s.datagramsDropped)

        yield from (total, active, received, sent, refused, duration)
        if datagrams:
            yield from (datagramsIn, datagramsOut, dropped)


def _counter(name: str, documentation: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, labels=_LABELS)


def _bound(bound: float) -> str:
    # Prometheus's spelling of a bucket bound: 0.5, 1.0, +Inf.
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _addRefused(
    family: CounterMetricFamily,
    labels: list[str],
    counts: dict[str, int],
    known: Iterable[str],
) -> None:
    for reason in sorted({*known, *counts}):
        family.add_metric([*labels, reason], counts.get(reason, 0))


def makeRegistry(listeners: Callable[[], Iterable[Listener]]) -> CollectorRegistry:
    """A registry with tcpproto's collector and prometheus-client's process ones."""
    registry = CollectorRegistry()
    registry.register(ServerCollector(listeners))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


#: Seconds a rendered scrape is served again before the registry is read anew.
RENDER_INTERVAL = 1.0


class MetricsResource(Resource):
    """
    ``GET /metrics``: the registry in Prometheus's text format (or
    OpenMetrics, if the scraper asks for it).

    We do not use ``prometheus_client.twisted.MetricsResource``: it renders
    in a thread pool (it wraps the WSGI app), while rendering here is quick
    and must read the counters on the reactor thread anyway.

    Quick, but not free: a render walks every open connection.  So that no
    scrape rate can stall the echo (500 pipelined scrapes with 1,500 open
    connections stopped it for half a second), the registry is rendered at
    most once per ``interval`` seconds (per format), and scrapes in between
    get that body; and each request is answered in a reactor turn of its
    own, so pipelined requests take turns with the connections' traffic.

    :param clock: the time source (the global reactor by default).
    :param interval: seconds a rendered body is served again (0: render
        every scrape).
    """

    isLeaf = True

    def __init__(
        self,
        registry: CollectorRegistry,
        clock: IReactorTime | None = None,
        interval: float = RENDER_INTERVAL,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registry = registry
        self.clock = defaultClock(clock)
        self.interval = interval
        #: Per content type: when it was rendered, and the body.
        self._rendered: dict[str, tuple[float, bytes]] = {}

    def render_GET(self, request: Request) -> int:
        accept = request.getHeader(b"accept")
        encoder, contentType = choose_encoder(accept.decode("latin-1") if accept else "")
        now = self.clock.seconds()
        cached = self._rendered.get(contentType)
        if cached is not None and 0 <= now - cached[0] < self.interval:
            body = cached[1]
        else:
            body = encoder(self.registry)
            self._rendered[contentType] = (now, body)
        request.setHeader(b"content-type", contentType.encode("ascii"))
        gone: list[object] = []
        request.notifyFinish().addErrback(gone.append)
        self.clock.callLater(0, self._answer, request, body, gone)
        return NOT_DONE_YET

    @staticmethod
    def _answer(request: Request, body: bytes, gone: list[object]) -> None:
        if not gone:  # the scraper may have gone meanwhile
            request.write(body)
            request.finish()


class _Root(Resource):
    """Only ``/metrics`` exists: everything else is a plain 404."""

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        return notFound()


def makeSite(
    registry: CollectorRegistry,
    clock: IReactorTime | None = None,
    interval: float = RENDER_INTERVAL,
) -> Site:
    """A web site serving ``registry`` on ``/metrics`` (and nothing else)."""
    root = _Root()  # type: ignore[no-untyped-call]
    root.putChild(b"metrics", MetricsResource(registry, clock, interval))
    site = Site(root)
    # No "Starting factory" line per listen, and no access log: a scrape
    # every few seconds would drown the connection events.
    site.noisy = False
    return site


class MetricsService(ListenerService):
    """Serves ``/metrics`` on an endpoint and logs its URL."""

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        log.info(
            "serving metrics on http://{address}/metrics ({listener})",
            event="metrics-listening",
            address=formatAddress(port.getHost()),
            listener=self.description,
        )
        return port


def metricsService(
    reactor: Any,
    description: str,
    listeners: Callable[[], Iterable[Listener]],
    interval: float = RENDER_INTERVAL,
) -> MetricsService:
    """
    A service serving the metrics of ``listeners`` on the server endpoint
    ``description`` (for example ``tcp:9100:interface=127.0.0.1``),
    rendered at most once per ``interval`` seconds (see :class:`MetricsResource`).

    :raises ValueError: (or another parser error) if ``description`` is not
        a valid endpoint string.
    """
    endpoint = serverFromString(reactor, description)
    site = cast(Factory, makeSite(makeRegistry(listeners), reactor, interval))
    return MetricsService(endpoint, site, description)
