"""
``twistd tcpecho``: the options and the service they build.

Modelled on Twisted's own ``twisted.web.tap``: an :class:`Options` class and a
:func:`makeService` that turns parsed options into an
:class:`~twisted.application.service.IService`.  Both are free of side
effects, so an application file or a test can use them:

- :class:`Options` parses and validates (endpoint strings included, without
  listening or importing the reactor); a bad option is a
  :class:`~twisted.python.usage.UsageError` from ``postOptions``;
- :func:`makeService` only builds services; the open-files limit is raised
  when the server service starts, and a listener that cannot listen raises
  then.

What only ``twistd`` should do lives in the twistd glue below
(:class:`TwistdOptions`, :func:`makeTwistdService`, named by the dropin in
``twisted/plugins/tcpecho.py``): a usage error is one line on stderr and
exit status 2, and the lean reactor (:mod:`tcpproto.reactor`) is the
default, installed just before the service is made unless ``twistd
--reactor`` chose one.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any, cast

from twisted.application.service import IService
from twisted.internet import endpoints
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python import usage

from tcpproto._proxy import ourPrefix
from tcpproto._reuseport import ReusePortReactor
from tcpproto._services import (
    FILE_HEADROOM,
    DatagramService,
    ListenerService,
    ServerService,
    somaxconn,
)
from tcpproto._tls import (
    ClientCAReactor,
    HalfCloseTLSReactor,
    HandshakeGateFactory,
    loadCertificates,
)
from tcpproto._version import __version__
from tcpproto._vocabulary import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_LIFETIME,
    DEFAULT_REPLY,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_UDP_RATE,
    ECHO,
    MODES,
    THANKYOU,
)
from tcpproto.connection import ServerFactory
from tcpproto.echo import EchoFactory
from tcpproto.framing import DEFAULT_MAX_LINE_LENGTH, FRAMINGS, LINE, RAW
from tcpproto.limits import ConnectionLimits, parseNetwork
from tcpproto.thankyou import ThankYouFactory
from tcpproto.udp import DatagramServer, parseUDPAddress

__all__ = [
    "DEFAULT_LISTEN",
    "Options",
    "TwistdOptions",
    "makeFactory",
    "makeService",
    "makeTwistdService",
]

DEFAULT_LISTEN = "tcp:7788"

log = Logger(namespace="tcpproto")


def _nonNegative(name: str, convert: type[float], what: str, doc: str) -> Any:
    """A usage.Options coercer: ``convert(text)``, 0 or more, or a one-line error."""

    def coerce(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise ValueError(f"--{name} takes {what}, not {text!r}") from None
        if not value >= 0:
            raise ValueError(
                f"--{name} must be 0 or more, not {value if convert is int else text}"
            )
        return value

    coerce.coerceDoc = doc  # type: ignore[attr-defined]
    return coerce


def _nonNegativeInt(name: str) -> Any:
    return _nonNegative(name, int, "a whole number", "A whole number, 0 or more.")


def _nonNegativeFloat(name: str) -> Any:
    return _nonNegative(name, float, "a number of seconds", "Seconds, 0 or more.")


def _nonNegativeFloatNumber(name: str) -> Any:
    return _nonNegative(name, float, "a number", "A number, 0 or more.")


def _positiveInt(name: str) -> Any:
    base = _nonNegative(name, int, "a whole number", "A whole number, 1 or more.")

    def coerce(text: str) -> int:
        value = int(base(text))
        if value < 1:
            raise ValueError(f"--{name} must be 1 or more, not {value}")
        return value

    coerce.coerceDoc = "A whole number, 1 or more."  # type: ignore[attr-defined]
    return coerce


class Options(usage.Options):
    """Command-line options of ``twistd tcpecho``."""

    synopsis = "[options]"
    longdesc = (
        "An RFC 862 echo server, or the tutorial's 'thank you' server, on any Twisted "
        "endpoint. Default: echo on tcp:7788."
    )

    optFlags = [
        ["once", None, "thankyou mode: reply to the first message only, then close."],
        [
            "idle-reset",
            None,
            "Cut connections past --idle-timeout with RST (nginx's "
            "reset_timedout_connection) instead of closing them with FIN.",
        ],
        [
            "udp-large-replies",
            None,
            "thankyou mode over --udp: also answer datagrams shorter than the reply "
            "(by default they get none: a reply larger than the request makes the "
            "server an amplifier for forged sources).",
        ],
        [
            "reuseport",
            None,
            "TCP and TLS listeners set SO_REUSEPORT, so that several twistd tcpecho "
            "processes can listen on one port and the kernel spreads connections "
            "across them (one process per core).",
        ],
    ]

    optParameters = [
        ["mode", "m", "echo", "What to answer: " + " or ".join(MODES) + "."],
        ["reply", None, DEFAULT_REPLY.decode(), "thankyou mode: the reply (UTF-8)."],
        [
            "framing",
            None,
            RAW,
            "raw: each read is a message (echo: the stream as is); "
            "line: each newline-terminated line is.",
        ],
        [
            "max-line-length",
            None,
            DEFAULT_MAX_LINE_LENGTH,
            "line framing: the longest line accepted, in bytes; a longer one gets an "
            "error line and the connection is closed.",
            _nonNegativeInt("max-line-length"),
        ],
        [
            "max-connections",
            None,
            DEFAULT_MAX_CONNECTIONS,
            "Open connections at most, over all listeners; more are closed at once (0: no limit).",
            _nonNegativeInt("max-connections"),
        ],
        [
            "max-per-peer",
            None,
            0,
            "Open connections at most from one IP address (0: no limit; behind a "
            "load balancer every connection comes from one address).",
            _nonNegativeInt("max-per-peer"),
        ],
        [
            "idle-timeout",
            None,
            DEFAULT_IDLE_TIMEOUT,
            "Close a connection after this many seconds without an answer: no traffic "
            "either way, or input that completes no line (0: never).",
            _nonNegativeFloat("idle-timeout"),
        ],
        [
            "max-lifetime",
            None,
            DEFAULT_MAX_LIFETIME,
            "Close any connection open this many seconds, busy or not (0: never); "
            "bounds a peer dripping a byte at a time.",
            _nonNegativeFloat("max-lifetime"),
        ],
        [
            "shutdown-timeout",
            None,
            DEFAULT_SHUTDOWN_TIMEOUT,
            "On SIGTERM/SIGINT, let open connections finish for this many seconds, "
            "then abort them.",
            _nonNegativeFloat("shutdown-timeout"),
        ],
        [
            "backlog",
            None,
            None,
            "The listen backlog of TCP, TLS and UNIX listeners: connections the kernel "
            "completes and queues before the server accepts them (default: "
            "--max-connections, at least 511, at most the kernel's "
            "net.core.somaxconn, which caps it anyway)",
            _positiveInt("backlog"),
        ],
        [
            "udp-rate",
            None,
            None,
            "Answers per second to one --udp source address, and the burst allowed "
            f"(0: no limit; default {DEFAULT_UDP_RATE:g} in thankyou mode, "
            "no limit in echo mode)",
            _nonNegativeFloatNumber("udp-rate"),
        ],
        [
            "prefix",
            None,
            None,
            "echo mode, line framing: send each line back as 'PREFIX line', so that a "
            "client behind a load balancer sees which instance answered.",
        ],
        [
            "client-ca",
            None,
            None,
            "ssl: listeners accept only clients presenting a certificate signed by a CA "
            "in this PEM file (mutual TLS); others are refused in the handshake.",
        ],
    ]

    compData = usage.Completions(
        optActions={
            "mode": usage.CompleteList(list(MODES)),
            "framing": usage.CompleteList(list(FRAMINGS)),
        }
    )

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []
        self["allow"] = []
        self["udp"] = []
        self["metrics"] = None

    def opt_listen(self, description: str) -> None:
        """A Twisted server endpoint string to listen on (repeatable; default tcp:7788), e.g. tcp:7788, tcp6:7788:interface=\\:\\:1, unix:/run/tcpecho.sock, ssl:7443:privateKey=key.pem, systemd:domain=INET:index=0."""  # noqa: E501
        self["listen"].append(description)

    opt_l = opt_listen

    def opt_version(self) -> None:
        """Display tcpproto's version and exit."""
        # usage.Options' own --version names Twisted's version only.
        from twisted import copyright

        print(f"twistd tcpecho (tcpproto) {__version__}")
        print("Twisted version:", copyright.version)
        sys.exit(0)

    def opt_allow(self, network: str) -> None:
        """Accept peers from this IPv4/IPv6 network only (CIDR, repeatable; default: everyone); others are closed before any byte is read."""  # noqa: E501
        try:
            self["allow"].append(parseNetwork(network))
        except ValueError as e:
            raise usage.UsageError(f"--allow: {e}") from None

    def opt_udp(self, address: str) -> None:
        """Also serve the mode over UDP on PORT or INTERFACE:PORT (repeatable; default interface: all IPv4, as tcp:PORT), each datagram one message."""  # noqa: E501
        try:
            self["udp"].append((address, *parseUDPAddress(address)))
        except ValueError as e:
            raise usage.UsageError(f"--udp: {e}") from None

    def opt_metrics(self, description: str) -> None:
        """Serve Prometheus metrics on /metrics at this server endpoint string, e.g. tcp:9100:interface=127.0.0.1 (needs prometheus-client: pip install 'tcpproto[metrics]')."""  # noqa: E501
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise usage.UsageError(
                "--metrics needs prometheus-client: pip install 'tcpproto[metrics]'"
            ) from None
        self["metrics"] = description

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        if self["mode"] not in MODES:
            raise usage.UsageError(
                f"--mode must be one of {', '.join(MODES)}, not {self['mode']!r}"
            )
        if self["framing"] not in FRAMINGS:
            raise usage.UsageError(
                f"--framing must be one of {', '.join(FRAMINGS)}, not {self['framing']!r}"
            )
        if self["max-line-length"] < 1:
            raise usage.UsageError("--max-line-length must be at least 1")
        if self["mode"] == ECHO and (self["once"] or self["reply"] != DEFAULT_REPLY.decode()):
            raise usage.UsageError("--once and --reply belong to --mode thankyou")
        if not self["reply"]:
            raise usage.UsageError("--reply must not be empty")
        if self["prefix"] is not None:
            if self["mode"] != ECHO or self["framing"] != LINE:
                raise usage.UsageError("--prefix needs --mode echo with --framing line")
            if not self["prefix"]:
                raise usage.UsageError("--prefix must not be empty")
            if self["udp"]:
                # Prefixed, a UDP echo would answer each datagram with a
                # larger one: an amplifier for forged sources.
                raise usage.UsageError(
                    "--prefix applies to TCP listeners only, not to --udp "
                    "(a prefixed reply would be larger than the datagram it answers)"
                )
        if not self["udp"] and (self["udp-large-replies"] or self["udp-rate"] is not None):
            raise usage.UsageError("--udp-large-replies and --udp-rate need a --udp listener")
        if self["client-ca"] is not None:
            if not any(_isTLS(d) for d in self["listen"]):
                raise usage.UsageError("--client-ca needs an ssl: --listen")
            try:
                loadCertificates(self["client-ca"])
            except ValueError as e:
                raise usage.UsageError(f"--client-ca: {e}") from None

        for description in self["listen"]:
            _checkEndpoint("--listen", description)
        if self["metrics"]:
            _checkEndpoint("--metrics", self["metrics"])


def _usageExit(message: str) -> SystemExit:
    """A usage error: one line on stderr, exit status 2 (as for any bad option)."""
    sys.stderr.write(f"twistd tcpecho: error: {message} (see twistd tcpecho --help)\n")
    return SystemExit(2)


def makeFactory(options: Options, limits: ConnectionLimits, listener: str = "") -> ServerFactory:
    """The protocol factory ``options`` ask for, sharing ``limits``."""
    common: dict[str, Any] = dict(
        idleTimeout=options["idle-timeout"],
        maxLifetime=options["max-lifetime"],
        limits=limits,
        listener=listener,
        maxLineLength=options["max-line-length"],
    )
    factory: ServerFactory
    if options["mode"] == THANKYOU:
        factory = ThankYouFactory(
            reply=options["reply"].encode("utf-8"),
            framing=options["framing"],
            once=bool(options["once"]),
            **common,
        )
    else:
        prefix = options["prefix"]
        factory = EchoFactory(
            framing=options["framing"],
            prefix=prefix.encode("utf-8") if prefix else b"",
            **common,
        )
    factory.idleReset = bool(options["idle-reset"])
    return factory


def makeService(options: Options) -> IService:
    """
    Build the server: a server service (it stops gracefully) with one
    listener service per ``--listen``, one datagram service per ``--udp``,
    and with ``--metrics`` a metrics service that finds them all in the
    server's service tree on each scrape.

    Nothing listens, and no process-wide setting changes, until the service
    starts.  ``options`` must have been parsed (and so validated).

    :raises usage.UsageError: for an endpoint string that does not parse.
    """
    from twisted.internet import reactor

    limits = ConnectionLimits(
        maxConnections=options["max-connections"],
        maxPerPeer=options["max-per-peer"],
        allow=options["allow"],
    )
    wanted = options["max-connections"] + FILE_HEADROOM if options["max-connections"] else 0
    server = ServerService(
        limits,
        shutdownTimeout=options["shutdown-timeout"],
        handleSignals=True,
        fileLimit=wanted,
    )
    # With --reuseport, TCP and TLS ports share (a reactor adapter: Twisted's
    # endpoints take no socket options); with --client-ca, ssl: listeners
    # demand client certificates (the one place to extend the ssl:
    # endpoint's context factory is its listenSSL call).
    listenReactor: Any = ReusePortReactor(reactor) if options["reuseport"] else reactor
    if options["client-ca"] is not None:
        listenReactor = ClientCAReactor(listenReactor, options["client-ca"])
    # ssl: listeners half-close over TLS (close_notify as a FIN: the one
    # place to choose the ssl: endpoint's TLS layer is its listenSSL call).
    listenReactor = HalfCloseTLSReactor(listenReactor)
    backlog = options["backlog"] or defaultBacklog(options["max-connections"])
    for description in options["listen"]:
        withBacklog, listenBacklog = _withBacklog(description, backlog)
        endpoint = _parseEndpoint("--listen", listenReactor, withBacklog)
        factory = makeFactory(options, limits, listener=description)
        listened: Any = factory
        if _isTLS(description):
            # The application's protocol is connected once the handshake is
            # done; the endpoint's TLS layer wraps the gate.
            listened = HandshakeGateFactory(factory, clock=cast(IReactorTime, reactor))
        ListenerService(endpoint, listened, description, listenBacklog).setServiceParent(server)  # type: ignore[no-untyped-call]
    for text, interface, port in options["udp"]:
        datagrams = DatagramServer(
            options["mode"],
            reply=options["reply"].encode("utf-8"),
            lineReplies=options["framing"] == LINE,
            limits=limits,
            listener=f"udp:{text}",
            largerReplies=bool(options["udp-large-replies"]),
            rate=options["udp-rate"],
        )
        DatagramService(datagrams, port, interface).setServiceParent(server)  # type: ignore[no-untyped-call]
    if options["metrics"]:
        # Imported here: prometheus-client is an optional dependency.
        from tcpproto._metrics import listenersOf, metricsService

        try:
            metrics = metricsService(reactor, options["metrics"], lambda: listenersOf(server))
        except Exception as e:  # endpoint parsers raise many kinds of error
            raise usage.UsageError(
                f"bad --metrics {options['metrics']!r}: {_oneLine(e)}"
            ) from None
        metrics.setServiceParent(server)  # type: ignore[no-untyped-call]
    return server


def _parseEndpoint(option: str, reactor: Any, description: str) -> Any:
    """``description``'s server endpoint (``haproxy:`` read as ``proxy:``)."""
    try:
        return endpoints.serverFromString(reactor, ourPrefix(description))
    except Exception as e:  # endpoint parsers raise many kinds of error
        raise usage.UsageError(f"bad {option} {description!r}: {_oneLine(e)}") from None


def _checkEndpoint(option: str, description: str) -> None:
    """
    Parse ``description`` without listening and without the global reactor
    (endpoint parsers only keep the reactor they are given, for later), and
    check the port it would listen on: "listening" on a memory reactor
    records the port, where a real one would fail with a traceback.
    """
    from twisted.internet.protocol import Factory
    from twisted.internet.testing import MemoryReactorClock

    memory = MemoryReactorClock()
    endpoint = _parseEndpoint(option, memory, description)
    if _kind(description) not in ("tcp", "tcp6", "ssl"):
        # Only these take a port; "listening" on others may act (a systemd:
        # endpoint closes the descriptor it adopts).
        return
    try:
        endpoint.listen(Factory())
    except Exception:
        return
    for port, *_ in [*memory.tcpServers, *memory.sslServers]:
        if isinstance(port, int) and not 0 <= port <= 65535:
            raise usage.UsageError(f"bad {option} {description!r}: port {port} is not in 0-65535")


_BACKLOG_KINDS = ("tcp", "tcp6", "ssl", "unix")


def _kind(description: str) -> str:
    """The endpoint type of ``description``, under any ``proxy:``/``haproxy:`` prefix."""
    kind, _, rest = description.partition(":")
    while kind in ("proxy", "haproxy"):
        kind, _, rest = rest.partition(":")
    return kind


def defaultBacklog(maxConnections: int) -> int:
    """
    The listen backlog ``twistd tcpecho`` asks for by default: room for a
    burst as large as ``--max-connections`` (at least nginx's 511), capped by
    the kernel's ``net.core.somaxconn`` (which caps any backlog silently).
    Twisted's default, 50, overflows under a burst of connects: the kernel
    then drops SYNs, and clients wait a second or more to retry.
    """
    wanted = max(maxConnections, 511) if maxConnections else 1 << 16
    cap = somaxconn()
    return wanted if cap is None else min(wanted, cap)


def _withBacklog(description: str, backlog: int) -> tuple[str, int | None]:
    """
    ``description`` with ``backlog=`` added where the endpoint takes one and
    does not set it, and the backlog it will have (``None``: not ours to say,
    as for ``systemd:`` sockets, listening before we start).
    """
    if _kind(description) not in _BACKLOG_KINDS:
        return description, None
    given = re.search(r"(?:^|:)backlog=(\d+)(?::|$)", description)
    if given is not None:
        return description, int(given.group(1))
    return f"{description}:backlog={backlog}", backlog


# -- the twistd glue -----------------------------------------------------------


class TwistdOptions(Options):
    """
    :class:`Options` as ``twistd tcpecho`` parses them: a usage error is one
    line on stderr and exit status 2, as for any bad option (``twistd``
    itself would print its whole help text before the error, and exit 1).
    """

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        try:
            super().parseOptions(options)  # type: ignore[no-untyped-call]
        except usage.UsageError as e:
            raise _usageExit(str(e)) from None


def makeTwistdService(options: Options) -> IService:
    """
    :func:`makeService` for ``twistd``, on the lean reactor by default.

    ``twistd`` imports the reactor for the first time when it makes the
    service, unless ``--reactor`` installed one while its options were
    parsed: so installing ours here, if none is installed yet, makes it the
    default that ``--reactor`` overrides (see :mod:`tcpproto.reactor`).
    """
    from tcpproto.reactor import installIfNoneChosen

    installIfNoneChosen()
    try:
        return makeService(options)
    except usage.UsageError as e:
        raise _usageExit(str(e)) from None


def _isTLS(description: str) -> bool:
    """Whether a --listen description is an ssl: one (perhaps behind proxy: or reuseport:)."""
    kind, _, rest = description.partition(":")
    while kind in ("haproxy", "proxy", "reuseport"):
        kind, _, rest = rest.partition(":")
    return kind == "ssl"


def _oneLine(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
