"""
Echo and "thank you" over UDP: RFC 862 defines a datagram echo service too.

Each datagram is one message, whatever the TCP framing: in echo mode it is
sent back to its sender as is; in thank-you mode its sender gets the reply
(in line framing, the reply ends with the datagram's line ending, so that
``nc -u`` users see whole lines).  There is no connection, so no connection
limit, idle timeout or ``--once``; the access list
(:meth:`~tcpproto.limits.ConnectionLimits.isAllowed`) applies to every
datagram, and the listener's counters (its ``stats``) count
datagrams and their bytes.

Datagrams are not logged one by one (a busy UDP port would drown the log):
the listener logs where it is bound, and refusals and send failures are
logged at most once per second per reason, like TCP refusals.

UDP echo is a classic reflector: a forged source address makes the server
send to a victim, and two echo services forged to talk to each other bounce
a datagram forever.  So datagrams from the source ports of the classic small
UDP services (echo, daytime, quote of the day, chargen, time) and from port
0 are dropped without an answer, and ``--allow`` should restrict who is
served on any network that is not trusted.

A reply larger than the request turns a reflector into an amplifier (the
abuse that retired chargen and public QOTD services): a 1-byte datagram
forged from a victim's address would make the thank-you server send it 10
bytes.  So by default a thank-you reply is never larger than the datagram it
answers (a shorter datagram gets no answer, refused as
``reply-too-large``), unless the operator says otherwise
(``largerReplies``, ``--udp-large-replies``); and one source address gets at
most ``rate`` answers a second (a token bucket with a burst of as many;
``--udp-rate``; 100 by default in thank-you mode, no limit in echo mode,
whose reply is the request itself), the rest refused as ``rate-limited``.
Refusals are counted and logged at most once a second per reason.
"""

from __future__ import annotations

import ipaddress
import warnings
from typing import Any

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReactorTime, IUDPTransport
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from tcpproto._addresses import Network, formatAddress, peerIP
from tcpproto._ratelimit import RateLimitedLog
from tcpproto._stats import ListenerStats
from tcpproto._timers import defaultClock
from tcpproto._vocabulary import (
    DEFAULT_REPLY,
    DEFAULT_UDP_RATE,
    ECHO,
    LOOP_PORT,
    MODES,
    NOT_ALLOWED,
    RATE_LIMITED,
    REPLY_TOO_LARGE,
    THANKYOU,
)
from tcpproto.connection import recordRefusal
from tcpproto.framing import terminator
from tcpproto.limits import ConnectionLimits

__all__ = [
    "LOOP_PORT",
    "LOOP_PORTS",
    "MAX_DATAGRAM",
    "MODES",
    "SEND_FAILED",
    "DatagramServer",
    "parseUDPAddress",
]
#: Why a datagram was not answered although admitted (counted as dropped).
SEND_FAILED = "send-failed"

#: Source ports never answered: port 0 cannot be answered, the others are
#: the classic small UDP services (echo, daytime, qotd, chargen, time),
#: which would answer our answer, and so on forever.
LOOP_PORTS: frozenset[int] = frozenset({0, 7, 13, 17, 19, 37})

#: The largest datagram read in full (Twisted's default would truncate
#: anything over 8192 bytes, and an echo must not change the message).
MAX_DATAGRAM = 65535

# How many senders' access-list decisions, and rate buckets, are remembered.
_ALLOWED_CACHE = 4096
_BUCKETS = 4096

log = Logger(namespace="tcpproto")


def parseUDPAddress(text: str) -> tuple[str, int]:
    """
    Parse a ``--udp`` value: ``PORT``, ``INTERFACE:PORT`` or ``[IPv6]:PORT``.

    The interface must be an IP address (``0.0.0.0`` or ``::`` for all);
    without one the port is bound on every IPv4 interface, as ``tcp:PORT``
    is.

    :return: the interface (``""`` for the default) and the port.
    :raises ValueError: with a one-line message naming ``text``.
    """
    value = text.strip()
    interface, sep, portText = value.rpartition(":")
    if not sep:
        interface, portText = "", value
    elif not interface:
        raise ValueError(f"no interface before ':' in {text!r}")
    if interface.startswith("[") and interface.endswith("]"):
        interface = interface[1:-1]
    try:
        port = int(portText)
    except ValueError:
        raise ValueError(f"not PORT or INTERFACE:PORT: {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range 0-65535 in {text!r}")
    if interface:
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            raise ValueError(f"the interface must be an IP address, not {interface!r}") from None
    return interface, port


def _address(host: str, port: int) -> IPv4Address | IPv6Address:
    return IPv6Address("UDP", host, port) if ":" in host else IPv4Address("UDP", host, port)


class DatagramServer(DatagramProtocol):
    """
    Answers datagrams: an echo, or the thank-you reply.

    :param mode: ``"echo"`` or ``"thankyou"``.
    :param reply: thankyou mode: what each datagram is answered with.
    :param lineReplies: thankyou mode: end each reply with the datagram's
        line ending (``\\n`` unless it ends with ``\\r\\n``).
    :param limits: the access list to apply (shared with the TCP listeners);
        its connection limits do not apply to datagrams.
    :param listener: a name for the listener, in logs and metrics.
    :param clock: the time source for log rate limiting (tests).
    :param largerReplies: thankyou mode: answer datagrams shorter than the
        reply too (by default they get no answer: see the module
        documentation).
    :param rate: answers per second to one source address, and the burst
        allowed (0: no limit); ``None``: 100 in thankyou mode, no limit in
        echo mode.
    """

    #: As a class attribute, the Logger names events after the concrete class
    #: (``tcpproto.echo.EchoFactory``) and carries the factory as their source.
    log = Logger()
    #: No "Starting protocol" line: the service logs where it listens.
    noisy = False
    transport: IUDPTransport | None

    def __init__(
        self,
        mode: str = ECHO,
        *,
        reply: bytes = DEFAULT_REPLY,
        lineReplies: bool = False,
        limits: ConnectionLimits | None = None,
        listener: str = "",
        clock: IReactorTime | None = None,
        largerReplies: bool = False,
        rate: float | None = None,
    ) -> None:
        if rate is not None and not rate >= 0:
            raise ValueError("rate must be 0 (no limit) or positive")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == THANKYOU and not reply:
            raise ValueError("the reply must not be empty")
        clock = defaultClock(clock)
        self.mode = mode
        self.reply: bytes | None = reply if mode == THANKYOU else None
        self.lineReplies = lineReplies
        self.limits = limits if limits is not None else ConnectionLimits()
        self.listener = listener
        self.clock = clock
        self.stats = ListenerStats()
        self._limitedLog = RateLimitedLog(self.log, clock)
        self._allowed: dict[str, bool] = {}
        self._allowedFor: tuple[Network, ...] = ()
        self.largerReplies = largerReplies
        if rate is None:
            rate = DEFAULT_UDP_RATE if mode == THANKYOU else 0.0
        self.rate = rate
        #: Per source host: tokens left, and when they were counted.
        self._buckets: dict[str, list[float]] = {}

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        host: str = addr[0]
        port: int = addr[1]
        if port in LOOP_PORTS:
            self._refuse(host, port, LOOP_PORT)
            return
        if self.limits.allow and not self._isAllowed(host):
            self._refuse(host, port, NOT_ALLOWED)
            return
        reply = self.reply
        if reply is None:
            answer = datagram
        else:
            answer = reply + terminator(datagram) if self.lineReplies else reply
            if len(answer) > len(datagram) and not self.largerReplies:
                self._refuse(host, port, REPLY_TOO_LARGE)
                return
        if self.rate and not self._withinRate(host):
            self._refuse(host, port, RATE_LIMITED)
            return
        stats = self.stats
        stats.datagramsIn += 1
        stats.closedBytesIn += len(datagram)
        assert self.transport is not None
        try:
            self.transport.write(answer, (host, port))
        except (OSError, error.MessageLengthError) as e:
            # The socket buffer is full (EAGAIN) or the network refuses: UDP
            # may drop, and so do we, counted and logged.
            stats.datagramsDropped += 1
            self._logLimited(
                SEND_FAILED,
                "could not answer {peer} on {listener}: {error}",
                event="send-failed",
                peer=formatAddress(_address(host, port)),
                error=str(e) or type(e).__name__,
            )
            return
        stats.datagramsOut += 1
        stats.closedBytesOut += len(answer)

    def _isAllowed(self, host: str) -> bool:
        # Parsing an address costs many times more than answering, and a
        # UDP client sends many datagrams: remember the answer per sender.
        # The cache is bounded, since source addresses can be forged, and
        # forgotten if the access list is replaced.
        if self.limits.allow is not self._allowedFor:
            self._allowedFor = self.limits.allow
            self._allowed.clear()
        allowed = self._allowed.get(host)
        if allowed is None:
            if len(self._allowed) >= _ALLOWED_CACHE:
                self._allowed.clear()
            allowed = self.limits.isAllowed(peerIP(_address(host, 0)))
            self._allowed[host] = allowed
        return allowed

    def _withinRate(self, host: str) -> bool:
        """Take a token from ``host``'s bucket, if it has one (a token bucket)."""
        now = self.clock.seconds()
        rate = self.rate
        # A burst of at least one answer, so that a rate below one a second
        # still answers (one every 1/rate seconds).
        burst = rate if rate > 1.0 else 1.0
        buckets = self._buckets
        bucket = buckets.get(host)
        if bucket is None:
            # Bounded, since sources can be forged: forget the oldest.
            if len(buckets) >= _BUCKETS:
                del buckets[next(iter(buckets))]
            bucket = buckets[host] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def _refuse(self, host: str, port: int, reason: str) -> None:
        recordRefusal(
            self.stats,
            self._limitedLog,
            _address(host, port),
            reason,
            listener=self.listener,
            mode=self.mode,
        )

    def _logLimited(self, key: str, message: str, **fields: Any) -> None:
        # As for TCP refusals: a flood must not make the log the attack.
        self._limitedLog.warn(key, message, listener=self.listener, mode=self.mode, **fields)

    def stopProtocol(self) -> None:
        """The port closed: log what is held back."""
        self._limitedLog.stop()


def __getattr__(name: str) -> Any:
    # PEP 562: DatagramService (a service, one layer up) moved to a private
    # module; the old name works, with a DeprecationWarning, for one release.
    if name == "DatagramService":
        warnings.warn(
            "tcpproto.udp.DatagramService is deprecated since tcpproto 0.2: "
            "build the server with tcpproto.tap.makeService",
            DeprecationWarning,
            stacklevel=2,
        )
        from tcpproto._services import DatagramService

        return DatagramService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
