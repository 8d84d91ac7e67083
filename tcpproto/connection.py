"""
What every tcpproto server connection does, whatever it answers.

:class:`ServerConnection` maps TCP's connection lifecycle onto Twisted's
callbacks, once, for the echo and thank-you protocols (and yours: see
``docs/examples/subclass_connection.py``):

- ``connectionMade``: the three-way handshake is over.  The connection
  registers itself as the *producer* for its own transport, which is how flow
  control works (below).
- ``dataReceived``: some bytes of the stream arrived; not a message.
- flow control: when the transport's outgoing buffer passes its high-water
  mark (the peer is not reading), Twisted calls
  :meth:`ServerConnection.pauseProducing`, which
  stops reading from the socket.  The kernel's receive window then fills and
  TCP itself tells the peer to stop sending.  When the buffer drains,
  :meth:`ServerConnection.resumeProducing` starts reading again.  Memory per connection stays
  bounded by the transport's buffer size whatever the peer does.
- half-close: the peer's FIN arrives as ``readConnectionLost`` (we provide
  :class:`~twisted.internet.interfaces.IHalfCloseableProtocol`); the protocol
  finishes its answer, then closes, and everything still buffered is sent
  before our FIN.  Without this interface Twisted would call
  ``connectionLost`` on FIN and drop what was not yet written.
- ``connectionLost``: both directions are closed (FIN each way, or RST).

All of that holds under any factory: ``Factory.forProtocol(EchoProtocol)``
is a correct echo server.  :class:`ServerFactory` adds what a server needs
around it -- admission control (:class:`~tcpproto.limits.ConnectionLimits`),
the idle timeout and maximum lifetime, per-listener statistics and
structured logging -- through :obj:`IConnectionHooks`, which a connection
looks up on its factory once, when it is made.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, TypedDict, cast

from twisted.internet import error
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.protocol import ServerFactory as _TwistedServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from tcpproto._addresses import IPAddress, Network, formatAddress, isIPTransportAddress, peerIP
from tcpproto._halfclose import canHalfClose, halfCloseOrClose, isClosing, readingSide, writesTo
from tcpproto._ratelimit import RateLimitedLog
from tcpproto._stats import ListenerStats
from tcpproto._timers import ConnectionTimers, defaultClock
from tcpproto._twisted import markProducerPaused, tlsWriterFor, writeThrough, writeThroughSocket
from tcpproto._vocabulary import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_LIFETIME,
    IDLE_TIMEOUT,
    LIFETIME_GRACE,
    LINE_TOO_LONG,
    LINGER_MAX_BYTES,
    LINGER_MAX_TIME,
    LINGER_TIMEOUT,
    MAX_LIFETIME,
    REPLIED_ONCE,
    SHUTDOWN,
)
from tcpproto.limits import ConnectionLimits

if TYPE_CHECKING:
    pass

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_LIFETIME",
    "IDLE_TIMEOUT",
    "LIFETIME_GRACE",
    "LINE_TOO_LONG",
    "MAX_LIFETIME",
    "REPLIED_ONCE",
    "SHUTDOWN",
    "IConnectionHooks",
    "ServerConnection",
    "ServerFactory",
    "ServerFactoryOptions",
    "formatAddress",
    "halfCloseOrClose",
]


class IConnectionHooks(Interface):
    """
    What a factory adds to the :class:`ServerConnection` objects it builds.

    A connection asks its factory for this interface once, in
    ``connectionMade``; a factory that does not provide it (any plain
    Twisted factory) gets a connection that is still a correct protocol,
    with ``TCP_NODELAY`` and the write-through fast path on, and nothing
    counted or logged.  :class:`ServerFactory` provides it:

    - ``noDelay``, ``writeThrough``: whether to set ``TCP_NODELAY`` on TCP
      connections, and whether ``send()`` may write to the socket at once;
    - ``connectionOpened(connection)``: the connection is made (its
      transport set, before any byte is read): count, log, start timing it;
    - ``connectionClosed(connection, reason)``: it is closed: fold its
      totals in, log, stop timing it;
    - ``refuse(address, reason)``, ``abandon(protocol)``: for wrappers in
      front of the factory (the PROXY header reader, the TLS handshake
      gate) that turn a connection away before the application's protocol
      is connected, or give up on a protocol the factory built.
    """

    noDelay = Attribute("Whether to set TCP_NODELAY on accepted TCP connections.")
    writeThrough = Attribute(
        "Whether ServerConnection.send may take the write-through fast path "
        "on plain TCP transports."
    )

    def connectionOpened(connection: ServerConnection) -> None:  # noqa: N805
        """``connection`` is made (its transport set, before any byte is read)."""

    def connectionClosed(connection: ServerConnection, reason: Failure) -> None:  # noqa: N805
        """``connection`` is closed, for ``reason``."""

    def refuse(address: IAddress, reason: str) -> None:  # noqa: N805
        """A connection from ``address`` was turned away for ``reason`` before
        the application's protocol was connected."""

    def abandon(connection: IProtocol) -> None:  # noqa: N805
        """A protocol built by this factory will never be connected (its TLS
        handshake failed): forget it."""


@implementer(IHalfCloseableProtocol, IPushProducer)
class ServerConnection(Protocol):
    """
    One accepted connection: flow control, half-close, fast sends.

    Subclasses implement ``dataReceived`` (adding to :attr:`bytesIn`) and,
    if they buffer, ``readConnectionLost``; they send with :meth:`send`,
    which counts the bytes and takes the fast path when it can.
    """

    #: Bytes received from / handed to the transport for the peer.
    bytesIn: int = 0
    bytesOut: int = 0
    #: Why we closed the connection, when we did (see the close reasons).
    closeReason: str | None = None
    #: Set by :meth:`lingeringClose`: input is dropped until the peer closes.
    discarding: bool = False
    #: Bytes read and dropped while lingering (see :meth:`discard`).
    discarded: int = 0
    #: Whether reading is paused because the peer is not reading our output.
    paused: bool = False
    #: When the connection was made, on the factory's clock (set by a
    #: factory with hooks).
    started: float = 0.0
    #: The peer's address, as formatted for the log (set by a factory with hooks).
    peer: str = ""

    _ip: IPAddress | None = None
    _sock: socket.socket | None = None
    #: The plain TCP transport ``_sock`` belongs to: the transport itself, or
    #: the one a wrapper writes to (the PROXY layer's).
    _writeBase: object = None
    _readSide: IPushProducer | None = None
    _tlsWrite: Callable[[bytes], None] | None = None
    _idleMark: int = -1
    _idleStrikes: int = 0
    _resumes: int = 0
    _producing: bool = False
    _hooks: IConnectionHooks | None = None
    _lingerPending: bool = False
    _lingerCall: IDelayedCall | None = None
    #: What ended the lingering phase early (``"time"``, ``"bytes"``), if anything.
    _lingerCut: str | None = None

    def __init__(self) -> None:
        # Every attribute a connection assigns during its life is assigned
        # here first, always in this order.  Assigned later instead (bytesIn
        # and bytesOut at the first read), they made CPython replace each
        # connection's compact shared-key attribute storage with a dict of
        # its own: 0.65 KiB more per open connection (tracemalloc, 2,000
        # connections; see benchmarks/RESULTS.md).  New attributes go here too.
        self.bytesIn = 0
        self.bytesOut = 0
        self.closeReason = None
        self.discarding = False
        self.paused = False
        self.started = 0.0
        self.peer = ""
        self._ip = None
        self._sock = None
        self._writeBase = None
        self._readSide = None
        self._tlsWrite = None
        self._idleMark = -1
        self._idleStrikes = 0
        self._resumes = 0
        self._producing = False
        self._hooks = None
        self.discarded = 0
        self._lingerPending = False
        self._lingerCall = None
        self._lingerCut = None

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        hooks = IConnectionHooks(self.factory, None)
        self._hooks = hooks
        if hooks is not None:
            hooks.connectionOpened(self)
        if (
            (hooks is None or hooks.noDelay)
            and ITCPTransport.providedBy(transport)
            and isIPTransportAddress(transport.getHost())
        ):
            # Echo answers are latency-bound: do not let Nagle hold them
            # back.  (UNIX transports claim ITCPTransport too.)
            transport.setTcpNoDelay(True)
        base = writesTo(transport)
        if hooks is None or hooks.writeThrough:
            self._sock = writeThroughSocket(base)
            self._writeBase = base
        self._tlsWrite = tlsWriterFor(base)
        self._readSide = readingSide(transport)
        cast(IConsumer, transport).registerProducer(self, True)
        self._producing = True

    # -- sending --------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send ``data`` to the peer, in order after everything sent before."""
        self.bytesOut += len(data)
        sock = self._sock
        if sock is not None:
            # The write-through fast path (see tcpproto._twisted).
            taken = writeThrough(self._writeBase, sock, data)
            if taken == 0:
                return
            if taken > 0:
                # The kernel's send buffer is full: the rest is buffered;
                # stop reading now, as the C server does, instead of reading
                # (and buffering) up to another 64 KiB before the
                # transport's high-water mark pauses us.  Measured: 1,000
                # peers that never read cost 33-42 KiB each instead of 88 KiB
                # (benchmarks/RESULTS.md).
                if self._producing and not self.paused:
                    markProducerPaused(self._writeBase)
                    self.pauseProducing()
                return
        if self._tlsWrite is not None:
            self._tlsWrite(data)
            return
        assert self.transport is not None
        self.transport.write(data)

    def activityMark(self) -> int:
        """
        A number that changes whenever the connection makes progress: a byte
        handed out for the peer, or our output buffer draining.

        Input alone does not count, so a peer trickling a line that never
        completes (slowloris) or talking on after the thank-you reply is
        idle too; in raw framing every read is answered, so there it is the
        same as traffic either way.
        """
        return self.bytesOut + self._resumes

    def closeBecause(self, reason: str) -> None:
        """Close the connection for ``reason``, after sending what is buffered."""
        if self.closeReason is None:
            self.closeReason = reason
        self.finishProducing()
        assert self.transport is not None
        self.transport.loseConnection()

    def lingeringClose(self, reason: str) -> None:
        """
        Close after our last answer, without losing it.

        Closing a socket that still has unread input makes the kernel send
        RST instead of FIN, and a peer that gets RST may discard our last
        answer (a reply, an error line) before reading it.  So we half-close
        (our FIN follows the answer), set :attr:`discarding` so that
        ``dataReceived`` drops (:meth:`discard`) whatever the peer still
        sends, and close when it closes.

        If our output is not drained (the peer reads slowly), we wait for it
        to drain before the FIN, still not reading (the timers that called
        us bound the wait).  Under a factory with hooks (a
        :class:`ServerFactory`) the lingering phase itself is bounded, as
        Apache bounds it: a peer that has not closed ``LINGER_TIMEOUT`` (2)
        seconds after our FIN, or that sends more than ``LINGER_MAX_BYTES``
        (16 MiB) meanwhile, is cut (RST).
        """
        if self.closeReason is None:
            self.closeReason = reason
        if self.discarding:
            return
        self.discarding = True
        if self.paused and self._producing:
            # The transport resumes us once its buffer has drained.
            self._lingerPending = True
            return
        self._startLingering()

    def _startLingering(self, wasPaused: bool = False) -> None:
        self._lingerPending = False
        self.finishProducing()
        if (wasPaused or self.paused) and self._readSide is not None:
            # We were not reading because the peer was not; read (and
            # discard) again so that its FIN can reach us.
            self.paused = False
            self._readSide.resumeProducing()
        assert self.transport is not None
        halfCloseOrClose(self.transport)
        # The bounds are a limit, which the factory adds (a connection under
        # a plain Twisted factory lingers until the peer closes).  A
        # transport that cannot half-close was closed instead, once its
        # buffer is sent: no lingering, and the caller's timers bound it.
        if self._hooks is not None and canHalfClose(self.transport):
            clock = defaultClock(getattr(self._hooks, "clock", None))
            self._lingerCall = clock.callLater(
                LINGER_TIMEOUT, self._lingerExpired, clock, clock.seconds()
            )

    def discard(self, data: bytes) -> None:
        """
        ``data`` arrived while lingering: drop it, counting it; cut the
        connection once the peer has sent more than 16 MiB
        (``LINGER_MAX_BYTES``).
        """
        self.discarded += len(data)
        if (
            self.discarded > LINGER_MAX_BYTES
            and self._lingerCut is None
            and self._hooks is not None
        ):
            self._lingerOver("bytes")

    def _lingerExpired(self, clock: IReactorTime, started: float) -> None:
        """
        ``LINGER_TIMEOUT`` seconds since our FIN, and the peer has not closed.

        If the peer is still taking our output (the kernel holds bytes it has
        not acknowledged: a slow reader), cutting it now would throw that
        output away, so we wait on, ``LINGER_TIMEOUT`` at a time, up to
        ``LINGER_MAX_TIME`` in all; the byte bound still holds meanwhile.
        """
        self._lingerCall = None
        if (
            unacknowledgedOutput(self.transport) > 0
            and clock.seconds() - started < LINGER_MAX_TIME
        ):
            self._lingerCall = clock.callLater(LINGER_TIMEOUT, self._lingerExpired, clock, started)
            return
        self._lingerOver("time")

    def _lingerOver(self, limit: str) -> None:
        """The peer did not close in time (or sent too much): cut it (RST)."""
        call, self._lingerCall = self._lingerCall, None
        if call is not None and call.active():
            call.cancel()
        self._lingerCut = limit
        self.abort(self.closeReason or "lingering")

    def finishProducing(self) -> None:
        """
        We will read no more: stop being the transport's producer.

        Call it before ``loseConnection`` or ``loseWriteConnection``: a
        transport that paused its producer resumes it when the buffer drains
        *instead of* closing, so a paused connection that is still registered
        would never close.
        """
        if self._producing:
            self._producing = False
            assert self.transport is not None
            cast(IConsumer, self.transport).unregisterProducer()

    def abort(self, reason: str) -> None:
        """Drop the connection now (RST), discarding what is buffered."""
        if self.closeReason is None:
            self.closeReason = reason
        if self.transport is not None:  # else not connected yet (in a TLS handshake)
            cast(ITCPTransport, self.transport).abortConnection()

    # -- IPushProducer: flow control ------------------------------------

    def pauseProducing(self) -> None:
        """Our output buffer is full: stop reading until the peer catches up."""
        self.paused = True
        if self._readSide is not None:
            self._readSide.pauseProducing()

    def resumeProducing(self) -> None:
        """Our output buffer drained: read again (unless the transport is closing)."""
        self.paused = False
        self._resumes += 1
        if self._lingerPending:
            # Drained at last: now our FIN can follow it (lingeringClose).
            self._startLingering(wasPaused=True)
            return
        if self._readSide is None:
            return
        if isClosing(self.transport):
            # The transport closes once its buffer is sent, but a transport
            # that paused its producer resumes it *instead of* closing: stop
            # being its producer, or it never closes.  (Over TLS the peer's
            # close_notify closes the connection without a readConnectionLost.)
            self.finishProducing()
            return
        self._readSide.resumeProducing()

    def stopProducing(self) -> None:
        """The transport is going away; ``connectionLost`` follows."""

    # -- IHalfCloseableProtocol -----------------------------------------

    def readConnectionLost(self) -> None:
        """The peer sent FIN: nothing more will arrive.  Finish and close."""
        self.finishProducing()
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our FIN is sent (after a ``loseWriteConnection``)."""

    # -- the end ----------------------------------------------------------

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._sock = None
        self._writeBase = None
        self._tlsWrite = None
        call, self._lingerCall = self._lingerCall, None
        if call is not None and call.active():
            call.cancel()
        hooks = self._hooks
        if hooks is not None:
            hooks.connectionClosed(self, reason)


class ServerFactoryOptions(TypedDict, total=False):
    """
    The keyword arguments of :class:`ServerFactory`, which its subclasses
    (:class:`~tcpproto.echo.EchoFactory`...) take too: spelled out once, and
    checked by a type checker (``EchoFactory(idleTimout=5)`` is an error).
    """

    idleTimeout: float
    maxLifetime: float
    limits: ConnectionLimits | None
    maxConnections: int
    maxPerPeer: int
    allow: tuple[str | Network, ...] | list[str | Network]
    listener: str
    clock: IReactorTime | None


@implementer(IConnectionHooks)
class ServerFactory(_TwistedServerFactory):
    """
    The shared part of tcpproto's server factories: limits, timers, stats, logs.

    :param idleTimeout: seconds without an answer (no traffic either way,
        or input that completes no message) after which a connection is
        closed (0 disables).
    :param maxLifetime: seconds after which any connection is closed, busy
        or not (0: no limit); bounds a peer that drips a byte at a time.
    :param limits: a :class:`~tcpproto.limits.ConnectionLimits` to share
        with other factories (one server, several listeners); when ``None``
        one is made from ``maxConnections``, ``maxPerPeer`` and ``allow``.
    :param listener: a name for the listener, used in logs and metrics
        (``twistd tcpecho`` passes the endpoint string).
    :param clock: the time source, for tests; the global reactor by default.
    """

    #: As a class attribute, the Logger names events after the concrete class
    #: (``tcpproto.echo.EchoFactory``) and carries the factory as their source.
    log = Logger()
    protocol: type[ServerConnection]
    #: The name of what the server does, in logs and metrics.
    mode: ClassVar[str] = "server"
    #: Whether :meth:`ServerConnection.send` may take the write-through fast
    #: path on plain TCP transports (tests switch it off to cover the other).
    writeThrough: bool = True
    #: Whether accepted TCP connections get ``TCP_NODELAY``.
    noDelay: bool = True
    #: Whether the idle timeout cuts connections with RST (nginx's
    #: ``reset_timedout_connection``) instead of closing them with FIN.
    idleReset: bool = False

    def __init__(
        self,
        *,
        idleTimeout: float = DEFAULT_IDLE_TIMEOUT,
        maxLifetime: float = DEFAULT_MAX_LIFETIME,
        limits: ConnectionLimits | None = None,
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
        maxPerPeer: int = 0,
        allow: tuple[str | Network, ...] | list[str | Network] = (),
        listener: str = "",
        clock: IReactorTime | None = None,
    ) -> None:
        if idleTimeout < 0:
            raise ValueError("idleTimeout must be 0 (disabled) or positive")
        if maxLifetime < 0:
            raise ValueError("maxLifetime must be 0 (no limit) or positive")
        clock = defaultClock(clock)
        self.idleTimeout = idleTimeout
        self.maxLifetime = maxLifetime
        self.limits = (
            limits
            if limits is not None
            else ConnectionLimits(
                maxConnections=maxConnections, maxPerPeer=maxPerPeer, allow=allow
            )
        )
        self.listener = listener
        self.stats = ListenerStats()
        self._refusalLog = RateLimitedLog(self.log, clock)
        self._timers: ConnectionTimers[ServerConnection] = ConnectionTimers(
            clock,
            idleTimeout,
            maxLifetime,
            onIdle=self._idle,
            onLifetimeOver=self._lifetimeOver,
            onGraceOver=self._graceOver,
        )

    @property
    def clock(self) -> IReactorTime:
        """The time source of the factory's timers and logs (settable, for tests)."""
        return self._timers.clock

    @clock.setter
    def clock(self, clock: IReactorTime) -> None:
        self._timers.clock = clock
        self._refusalLog.clock = clock

    @property
    def active(self) -> int:
        """How many of this factory's connections are open now (counted in the registry)."""
        return sum(
            1 for c in self.limits.registry.connections if getattr(c, "factory", None) is self
        )

    def buildProtocol(self, addr: IAddress) -> Protocol | None:  # type: ignore[override]
        """
        Admit or refuse a connection from ``addr``, before any byte is read.

        A refused connection gets :meth:`refusalProtocol`'s protocol, or is
        closed at once when that is ``None``.
        """
        ip = peerIP(addr)
        reason = self.limits.checkIP(ip)
        if reason is not None:
            self.refuse(addr, reason)
            return self.refusalProtocol(reason)
        p = self.protocol()
        p.factory = self
        p._ip = ip
        self.configureProtocol(p)
        # Counted from now, not from connectionMade: behind a TLS handshake
        # or a PROXY header the connection is made later, and connections
        # still in their handshake must count against the limits too.
        self.limits.opened(p, ip)
        return p

    def configureProtocol(self, protocol: ServerConnection) -> None:
        """Set ``protocol``'s per-instance settings (subclasses: maxLineLength...)."""

    def refusalProtocol(self, reason: str) -> Protocol | None:
        """
        What a refused peer talks to: ``None`` closes it at once.

        Peers outside the access list are always closed at once.
        """
        return None

    # -- IConnectionHooks ---------------------------------------------------

    def abandon(self, connection: IProtocol) -> None:
        """
        A protocol this factory built will never be connected (its TLS
        handshake failed): give its place in the limits back.
        """
        if isinstance(connection, ServerConnection) and connection.transport is None:
            self.limits.closed(connection, connection._ip)

    def refuse(self, address: IAddress, reason: str) -> None:
        """
        Count and log a connection from ``address`` turned away for ``reason``.

        Called by :meth:`buildProtocol`, and by the layers in front of the
        factory (PROXY header, TLS handshake) for the connections they refuse.
        The one place a TCP refusal is counted.
        """
        recordRefusal(
            self.stats, self._refusalLog, address, reason, listener=self.listener, mode=self.mode
        )

    def connectionOpened(self, connection: ServerConnection) -> None:
        """Count, log and time a connection that is made."""
        assert connection.transport is not None
        connection.started = self.clock.seconds()
        connection.peer = formatAddress(connection.transport.getPeer())
        self.stats.opened()
        self._logConnection("{peer} connected to {listener} ({mode})", "open", connection)
        self._timers.add(connection)

    def connectionClosed(self, connection: ServerConnection, reason: Failure) -> None:
        """Fold in, log and forget a connection that closed."""
        self._timers.remove(connection)
        duration = self.clock.seconds() - connection.started
        self.stats.closed(connection.bytesIn, connection.bytesOut, duration)
        why = connection.closeReason
        if why is None:
            why = "closed" if reason.check(error.ConnectionDone) else "lost"
        if connection.transport is not None:
            # A PROXY-protocol wrapper knows the real client only once its
            # header is read, after connectionMade: log the best we know now.
            connection.peer = formatAddress(connection.transport.getPeer())
        text = (
            "{peer} closed ({reason}) after {duration:.3f}s: {bytes_in} bytes in, {bytes_out} out"
        )
        lingering: dict[str, object] = {}
        if connection.discarding:
            # The lingering close, counted: what the peer sent after our
            # last answer, and whether it had to be cut.
            text += ", {discarded} discarded while lingering"
            lingering["discarded"] = connection.discarded
            if connection._lingerCut is not None:
                text += " (cut: the peer did not close within the {linger_limit} limit)"
                lingering["linger_limit"] = connection._lingerCut
        self._logConnection(
            text,
            "close",
            connection,
            bytes_in=connection.bytesIn,
            bytes_out=connection.bytesOut,
            duration=duration,
            reason=why,
            **lingering,
        )
        # Last: this may fire whenEmpty() waiters, who must see the
        # connection's totals already counted and logged.
        self.limits.closed(connection, connection._ip)

    # -- timers -------------------------------------------------------------

    def _logConnection(
        self, format: str, event: str, connection: ServerConnection, **fields: object
    ) -> None:
        self.log.info(
            format,
            event=event,
            peer=connection.peer,
            listener=self.listener,
            mode=self.mode,
            **fields,
        )

    def _idle(self, connection: ServerConnection) -> None:
        self._logConnection(
            "{peer} idle for {timeout}s: closing", "idle", connection, timeout=self.idleTimeout
        )
        if self.idleReset or connection.paused or connection.discarding:
            # Asked to, or our output cannot drain (the peer does not read,
            # or a graceful close made no progress): a FIN would wait behind
            # it, so cut the connection (RST).
            connection.abort(IDLE_TIMEOUT)
        else:
            # Nothing is stuck in our output: close cleanly, as nginx and
            # HAProxy do, with our FIN and a (bounded) wait for the peer's.
            connection.lingeringClose(IDLE_TIMEOUT)

    def _lifetimeOver(self, connection: ServerConnection) -> None:
        self._logConnection(
            "{peer} open for {lifetime}s: closing",
            "lifetime",
            connection,
            lifetime=self.maxLifetime,
        )
        # Our answers so far are sent first, and the peer's input is read
        # (and dropped) until it closes: closing with unread input would be
        # an RST, and the peer would lose what we answered.
        connection.lingeringClose(MAX_LIFETIME)

    def _graceOver(self, connection: ServerConnection) -> None:
        connection.abort(MAX_LIFETIME)

    def stopFactory(self) -> None:
        """The listener stopped: log the refusals still held back."""
        self._refusalLog.stop()


def recordRefusal(
    stats: ListenerStats,
    refusalLog: RateLimitedLog,
    address: IAddress,
    reason: str,
    *,
    listener: str,
    mode: str,
) -> None:
    """
    Count a refused peer in its listener's ``stats`` and log it, rate-limited.

    The one place a refusal is counted and logged, for TCP listeners
    (:meth:`ServerFactory.refuse`) and UDP ones alike.
    """
    stats.refused[reason] += 1
    refusalLog.warn(
        reason,
        "refused {peer} on {listener}: {reason}",
        event="refused",
        peer=formatAddress(address),
        listener=listener,
        mode=mode,
        reason=reason,
    )


def refuseEarly(factory: IProtocolFactory, address: IAddress, reason: str) -> None:
    """
    Count and log a connection refused before the application's protocol existed.

    For wrappers (PROXY header, TLS handshake) that turn a connection away
    themselves: a factory with :obj:`IConnectionHooks` counts and logs it
    as its own refusals; for any other, the refusal is logged here.
    """
    hooks = IConnectionHooks(factory, None)
    if hooks is not None:
        hooks.refuse(address, reason)
    else:
        ServerFactory.log.warn(
            "refused {peer}: {reason}",
            event="refused",
            peer=formatAddress(address),
            reason=reason,
        )


def unacknowledgedOutput(transport: object) -> int:
    """
    Bytes of our output the kernel still holds for ``transport``'s peer
    (sent and not yet acknowledged, or not yet sent): ``SIOCOUTQ`` on the
    socket from the transport's public ``getHandle()``.  0 where there is no
    socket or the platform cannot say.
    """
    try:
        import fcntl
        import termios
    except ImportError:  # not a POSIX system
        return 0
    getHandle = getattr(transport, "getHandle", None)
    try:
        handle = getHandle() if getHandle is not None else None
        fileno = handle.fileno() if handle is not None else -1
        if fileno < 0:
            return 0
        raw = fcntl.ioctl(fileno, termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError, TypeError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


def hasAccessList(factory: IProtocolFactory) -> bool:
    """
    Whether ``factory`` (or the factory it wraps, for the layers in front of
    one) admits peers by an access list: then a layer that learns of a peer
    the list cannot judge (a PROXY claim with no IP address) must refuse it.
    """
    for _ in range(8):
        if isinstance(factory, ServerFactory):
            return bool(factory.limits.allow)
        inner = getattr(factory, "wrappedFactory", None)
        if inner is None:
            return False
        factory = inner
    return False


def abandonEarly(factory: IProtocolFactory, protocol: IProtocol) -> None:
    """Tell ``factory`` (with :obj:`IConnectionHooks`) that ``protocol`` will never connect."""
    hooks = IConnectionHooks(factory, None)
    if hooks is not None:
        hooks.abandon(protocol)
