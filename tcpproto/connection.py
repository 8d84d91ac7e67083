"""
What every tcpproto server connection does, whatever it answers.

:class:`ServerConnection` maps TCP's connection lifecycle onto Twisted's
callbacks, once, for the echo and thank-you protocols:

- ``connectionMade``: the three-way handshake is over.  The connection is
  counted, logged, and registers itself as the *producer* for its own
  transport, which is how flow control works (below).
- ``dataReceived``: some bytes of the stream arrived; not a message.
- flow control: when the transport's outgoing buffer passes its high-water
  mark (the peer is not reading), Twisted calls :meth:`pauseProducing`, which
  stops reading from the socket.  The kernel's receive window then fills and
  TCP itself tells the peer to stop sending.  When the buffer drains,
  :meth:`resumeProducing` starts reading again.  Memory per connection stays
  bounded by the transport's buffer size whatever the peer does.
- half-close: the peer's FIN arrives as ``readConnectionLost`` (we provide
  :class:`~twisted.internet.interfaces.IHalfCloseableProtocol`); the protocol
  finishes its answer, then closes, and everything still buffered is sent
  before our FIN.  Without this interface Twisted would call
  ``connectionLost`` on FIN and drop what was not yet written.
- ``connectionLost``: both directions are closed (FIN each way, or RST).  The
  connection is uncounted and its totals logged.

:class:`ServerFactory` is the shared part of the echo and thank-you factories:
admission control (:class:`~tcpproto.limits.ConnectionLimits`), the idle
timeout, and the per-listener counters in :class:`~tcpproto.stats.ListenerStats`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial
from typing import ClassVar, cast

from twisted.internet import error, tcp
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.protocol import ServerFactory as _TwistedServerFactory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from tcpproto.limits import ConnectionLimits, IPAddress, Network, peerIP
from tcpproto.ratelimit import RateLimitedLog
from tcpproto.stats import ListenerStats

#: Close reasons a connection records when it, not the peer, ends the connection.
IDLE_TIMEOUT = "idle-timeout"
MAX_LIFETIME = "max-lifetime"
LINE_TOO_LONG = "line-too-long"
SHUTDOWN = "shutdown"
REPLIED_ONCE = "replied-once"

#: Default idle timeout, in seconds.
DEFAULT_IDLE_TIMEOUT = 300.0
#: Seconds a connection past its lifetime has to send what is left before
#: it is cut (its peer may not be reading).
LIFETIME_GRACE = 10.0

#: Default longest life of a connection, in seconds.  In raw framing every
#: byte is answered, so a peer dripping one byte a second is never idle; this
#: bounds how long it can hold a connection (a day: no real test runs that
#: long on one connection, and operators can say 0 for never).
DEFAULT_MAX_LIFETIME = 86400.0

# The idle timer wakes this many times per timeout period, so an idle
# connection is closed after between 1 and 1 + 1/_IDLE_CHECKS periods of
# silence, while dataReceived does no timer work at all.  We do not use
# twisted.protocols.policies.TimeoutMixin: its resetTimeout() on every chunk
# reschedules a DelayedCall (measured: +450 ns per chunk, twice the cost of an
# in-memory echo's dataReceived); nor TimeoutFactory, whose ProtocolWrapper is
# not half-close aware.
_IDLE_CHECKS = 4


def formatAddress(address: IAddress | None) -> str:
    """A peer or host address as an operator reads it: ``1.2.3.4:80``, ``[::1]:80``."""
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        if isinstance(name, bytes):
            name = name.decode("utf-8", "backslashreplace")
        return f"unix:{name}" if name else "unix"
    return repr(address)


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


def _writeThroughSocket(transport: object) -> socket.socket | None:
    """
    The socket behind ``transport`` if we may write to it directly, else ``None``.

    Twisted's ``transport.write`` always buffers and waits for the next
    writable event, which costs an extra epoll registration and wake-up per
    message.  When nothing is buffered we may instead ``send()`` at once, the
    way asyncio and uvloop do.  This reads private attributes of
    :class:`twisted.internet.tcp.Connection`, so it is used only when the
    transport is a plain TCP connection (its ``writeSomeData`` is exactly
    Twisted's) with the attributes we rely on; anything else (TLS, UNIX
    sockets, wrappers, test transports) goes through the public API.
    """
    if getattr(type(transport), "writeSomeData", None) is not tcp.Connection.writeSomeData:
        return None
    for name in ("_tempDataBuffer", "_tempDataLen", "dataBuffer", "_writeDisconnected"):
        if not hasattr(transport, name):
            return None
    sock = getattr(transport, "socket", None)
    return sock if isinstance(sock, socket.socket) else None


def halfCloseOrClose(transport: ITransport) -> None:
    """
    Send our FIN after what is buffered, and keep reading (a half-close).

    Transports that cannot half-close (TLS) are closed instead, once what is
    buffered has been sent.
    """
    # TLS has no half-close, and a TLS wrapper forwards unknown attributes to
    # the TCP transport below it, whose FIN would cut TLS short.
    loseWrite = (
        None
        if ISSLTransport.providedBy(transport)
        else getattr(transport, "loseWriteConnection", None)
    )
    if loseWrite is None:
        transport.loseConnection()
    else:
        loseWrite()


def _readingSide(transport: object) -> IPushProducer | None:
    """
    The object whose ``pauseProducing`` stops reading for ``transport``.

    A TCP transport is its own producer; wrappers (TLS, the PROXY protocol)
    are not, so we pause the transport they wrap.
    """
    for _ in range(8):
        if IPushProducer.providedBy(transport) or hasattr(transport, "pauseProducing"):
            return cast(IPushProducer, transport)
        transport = getattr(transport, "transport", None)
        if transport is None:
            return None
    return None


@implementer(IHalfCloseableProtocol, IPushProducer)
class ServerConnection(Protocol):
    """
    One accepted connection: counting, logging, flow control, idle timeout.

    Subclasses implement ``dataReceived`` and ``readConnectionLost`` and send
    with :meth:`send`, which counts the bytes and takes the fast path when it
    can.
    """

    factory: ServerFactory

    #: Bytes received from / handed to the transport for the peer.
    bytesIn: int = 0
    bytesOut: int = 0
    #: Why we closed the connection, when we did (see the module constants).
    closeReason: str | None = None
    #: Set by :meth:`lingeringClose`: input is dropped until the peer closes.
    discarding: bool = False
    #: Whether reading is paused because the peer is not reading our output.
    paused: bool = False
    #: When the connection was made, on the factory's clock.
    started: float = 0.0
    #: The peer's address, as formatted for the log.
    peer: str = ""

    _ip: IPAddress | None = None
    _sock: socket.socket | None = None
    _reader: IPushProducer | None = None
    _tlsWrite: Callable[[bytes], None] | None = None
    _idleMark: int = -1
    _idleStrikes: int = 0
    _resumes: int = 0
    _producing: bool = False

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
        self._reader = None
        self._tlsWrite = None
        self._idleMark = -1
        self._idleStrikes = 0
        self._resumes = 0
        self._producing = False

    def connectionMade(self) -> None:
        factory = self.factory
        transport = self.transport
        assert transport is not None
        self.started = factory.clock.seconds()
        factory._connectionMade(self)
        if factory.noDelay and ITCPTransport.providedBy(transport):
            # Echo answers are latency-bound: do not let Nagle hold them back.
            transport.setTcpNoDelay(True)
        if factory.writeThrough:
            self._sock = _writeThroughSocket(transport)
        if isinstance(transport, TLSMemoryBIOProtocol):
            # Twisted's TLS transport holds small writes until the next
            # reactor turn, and loses them when the peer's close_notify came
            # in the same read as the data they answer (it shuts TLS down at
            # once): encrypt and hand our answers to TCP now instead.
            self._tlsWrite = partial(TLSMemoryBIOProtocol.write, transport)
        self._reader = _readingSide(transport)
        cast(IConsumer, transport).registerProducer(self, True)
        self._producing = True
        factory._timers.add(self)

    # -- sending --------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send ``data`` to the peer, in order after everything sent before."""
        n = len(data)
        self.bytesOut += n
        sock = self._sock
        if sock is not None:
            # The write-through fast path: see _writeThroughSocket.  (No
            # cast(): on this path it would be a function call per message.)
            t: tcp.Connection = self.transport  # type: ignore[assignment]
            if (
                t.connected
                and not t._tempDataLen
                and not t.dataBuffer
                and not t._writeDisconnected
            ):
                try:
                    sent = sock.send(data)
                except OSError:
                    # EAGAIN, or an error the transport will meet and report
                    # its own way when it writes what we hand it below.
                    sent = 0
                if sent == n:
                    return
                data = data[sent:]
                # The kernel's send buffer is full: buffer the rest and stop
                # reading now, as the C server does, instead of reading (and
                # buffering) up to another 64 KiB before the transport's
                # high-water mark pauses us.  producerPaused is how the
                # transport knows to resume us once its buffer has drained.
                # Measured: 1,000 peers that never read cost 33-42 KiB each
                # instead of 88 KiB (benchmarks/RESULTS.md).
                t.write(data)
                if self._producing and not self.paused:
                    t.producerPaused = True
                    self.pauseProducing()
                return
        if self._tlsWrite is not None:
            self._tlsWrite(data)
            return
        assert self.transport is not None
        self.transport.write(data)

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
        ``dataReceived`` drops whatever the peer still sends, and close when
        it closes (or the idle timeout does: input is not an answer).
        """
        if self.closeReason is None:
            self.closeReason = reason
        self.discarding = True
        self.finishProducing()
        if self.paused and self._reader is not None:
            # We were not reading because the peer was not; read (and
            # discard) again so that its FIN can reach us.
            self.paused = False
            self._reader.resumeProducing()
        assert self.transport is not None
        halfCloseOrClose(self.transport)

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
        if self._reader is not None:
            self._reader.pauseProducing()

    def resumeProducing(self) -> None:
        """Our output buffer drained: read again."""
        self.paused = False
        self._resumes += 1
        if self._reader is not None:
            self._reader.resumeProducing()

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
        self.factory._timers.remove(self)
        self._sock = None
        self.factory._connectionLost(self, reason)

    # -- timeouts ---------------------------------------------------------

    def _lifetimeOver(self) -> None:
        self.factory.log.info(
            "{peer} open for {lifetime}s: closing",
            event="lifetime",
            peer=self.peer,
            listener=self.factory.listener,
            mode=self.factory.mode,
            lifetime=self.factory.maxLifetime,
        )
        self.closeBecause(MAX_LIFETIME)

    def _checkIdle(self) -> bool:
        """One idle check (see _ConnectionTimers); whether it closed the connection."""
        # Activity is an answer: a byte handed out for the peer, or our output
        # buffer draining.  Input alone does not count, so a peer trickling a
        # line that never completes (slowloris) or talking on after the
        # thank-you reply is closed too; in raw framing every read is answered,
        # so there it is the same as traffic either way.  Reading two integers
        # here is all the idle timeout costs the data path.
        mark = self.bytesOut + self._resumes
        if mark != self._idleMark:
            self._idleMark = mark
            self._idleStrikes = 0
        else:
            self._idleStrikes += 1
        if self._idleStrikes >= _IDLE_CHECKS:
            self.factory.log.info(
                "{peer} idle for {timeout}s: closing",
                event="idle",
                peer=self.peer,
                listener=self.factory.listener,
                mode=self.factory.mode,
                timeout=self.factory.idleTimeout,
            )
            self.abort(IDLE_TIMEOUT)
            return True
        return False


class _ConnectionTimers:
    """
    The idle timeout and the maximum lifetime of one factory's connections:
    two DelayedCalls for all of them, not two per connection.

    A DelayedCall (with its bound method) costs about 0.45 KiB; two per
    connection were a third of what an idle connection costs.  Instead the
    idle check sweeps every connection ``_IDLE_CHECKS`` times per timeout
    (closing after 1 to 1.25 timeouts of silence, as a per-connection timer
    did), and the lifetime call wakes when the oldest connection is due:
    connections are kept in the order they were made, which is the order
    they expire in.  A sweep costs well under a microsecond per connection.
    """

    def __init__(self, factory: ServerFactory) -> None:
        self._factory = factory
        #: Open connections, oldest first (a dict: ordered, O(1) removal).
        self._conns: dict[ServerConnection, None] = {}
        #: Those told their lifetime is over, still open (sending what is
        #: left), with when they are cut regardless: swept for idleness too.
        self._ending: dict[ServerConnection, float] = {}
        self._sweepCall: IDelayedCall | None = None
        self._lifetimeCall: IDelayedCall | None = None
        self._graceCall: IDelayedCall | None = None

    def add(self, conn: ServerConnection) -> None:
        f = self._factory
        if f.idleTimeout <= 0 and f.maxLifetime <= 0:
            return
        self._conns[conn] = None
        if f.idleTimeout > 0 and self._sweepCall is None:
            self._sweepCall = f.clock.callLater(f.idleTimeout / _IDLE_CHECKS, self._sweep)
        if f.maxLifetime > 0 and self._lifetimeCall is None:
            due = conn.started + f.maxLifetime - f.clock.seconds()
            self._lifetimeCall = f.clock.callLater(max(due, 0.0), self._lifetimeOver)

    def remove(self, conn: ServerConnection) -> None:
        self._conns.pop(conn, None)
        self._ending.pop(conn, None)
        if not self._conns and not self._ending:
            for call in (self._sweepCall, self._lifetimeCall, self._graceCall):
                if call is not None and call.active():
                    call.cancel()
            self._sweepCall = self._lifetimeCall = self._graceCall = None

    def _sweep(self) -> None:
        self._sweepCall = None
        for conn in [*self._conns, *self._ending]:
            if conn._checkIdle():
                self.remove(conn)
        f = self._factory
        if (self._conns or self._ending) and f.idleTimeout > 0:
            self._sweepCall = f.clock.callLater(f.idleTimeout / _IDLE_CHECKS, self._sweep)

    def _lifetimeOver(self) -> None:
        self._lifetimeCall = None
        f = self._factory
        now = f.clock.seconds()
        for conn in list(self._conns):
            due = conn.started + f.maxLifetime
            if due > now:
                self._lifetimeCall = f.clock.callLater(due - now, self._lifetimeOver)
                return
            del self._conns[conn]
            self._ending[conn] = now + LIFETIME_GRACE
            if self._graceCall is None:
                self._graceCall = f.clock.callLater(LIFETIME_GRACE, self._graceOver)
            conn._lifetimeOver()

    def _graceOver(self) -> None:
        # A connection past its lifetime whose peer does not take what is
        # left would otherwise stay open (with the idle timeout off): cut it.
        self._graceCall = None
        now = self._factory.clock.seconds()
        for conn, deadline in list(self._ending.items()):
            if deadline > now:
                self._graceCall = self._factory.clock.callLater(deadline - now, self._graceOver)
                return
            del self._ending[conn]
            conn.abort(MAX_LIFETIME)


class ServerFactory(_TwistedServerFactory):
    """
    The shared part of tcpproto's server factories.

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
    :param noDelay: set ``TCP_NODELAY`` on accepted TCP connections.
    """

    #: As a class attribute, the Logger names events after the concrete class
    #: (``tcpproto.echo.EchoFactory``) and carries the factory as their source.
    log = Logger()
    protocol: type[ServerConnection]  # type: ignore[assignment]
    #: The name of what the server does, in logs and metrics.
    mode: ClassVar[str] = "server"
    #: Whether :meth:`ServerConnection.send` may take the write-through fast
    #: path on plain TCP transports (tests switch it off to cover the other).
    writeThrough: bool = True

    def __init__(
        self,
        *,
        idleTimeout: float = DEFAULT_IDLE_TIMEOUT,
        maxLifetime: float = DEFAULT_MAX_LIFETIME,
        limits: ConnectionLimits | None = None,
        maxConnections: int = 10000,
        maxPerPeer: int = 0,
        allow: tuple[str | Network, ...] | list[str | Network] = (),
        listener: str = "",
        clock: IReactorTime | None = None,
        noDelay: bool = True,
    ) -> None:
        if idleTimeout < 0:
            raise ValueError("idleTimeout must be 0 (disabled) or positive")
        if maxLifetime < 0:
            raise ValueError("maxLifetime must be 0 (no limit) or positive")
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.clock = clock
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
        self.noDelay = noDelay
        self.stats = ListenerStats()
        self._refusalLog = RateLimitedLog(self.log, clock)
        self._timers = _ConnectionTimers(self)

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
        # Counted from now, not from connectionMade: behind a TLS handshake
        # or a PROXY header the connection is made later, and connections
        # still in their handshake must count against the limits too.
        self.limits.opened(p, ip)
        return p

    def abandon(self, protocol: Protocol) -> None:
        """
        A protocol this factory built will never be connected (its TLS
        handshake failed): give its place in the limits back.
        """
        if isinstance(protocol, ServerConnection) and protocol.transport is None:
            self.limits.closed(protocol, protocol._ip)

    def refusalProtocol(self, reason: str) -> Protocol | None:
        """
        What a refused peer talks to: ``None`` closes it at once.

        Peers outside the access list are always closed at once.
        """
        return None

    def refuse(self, addr: IAddress, reason: str) -> None:
        """
        Count and log a connection from ``addr`` turned away for ``reason``.

        Called by :meth:`buildProtocol`, and by the layers in front of the
        factory (PROXY header, TLS handshake) for the connections they refuse.
        """
        recordRefusal(
            self.stats, self._refusalLog, addr, reason, listener=self.listener, mode=self.mode
        )

    def stopFactory(self) -> None:
        """The listener stopped: log the refusals still held back."""
        self._refusalLog.stop()

    def _connectionMade(self, conn: ServerConnection) -> None:
        assert conn.transport is not None
        conn.peer = formatAddress(conn.transport.getPeer())
        self.stats.opened()
        self.log.info(
            "{peer} connected to {listener} ({mode})",
            event="open",
            peer=conn.peer,
            listener=self.listener,
            mode=self.mode,
        )

    def _connectionLost(self, conn: ServerConnection, reason: Failure) -> None:
        duration = self.clock.seconds() - conn.started
        self.stats.closed(conn.bytesIn, conn.bytesOut, duration)
        why = conn.closeReason
        if why is None:
            why = "closed" if reason.check(error.ConnectionDone) else "lost"
        if conn.transport is not None:
            # A PROXY-protocol wrapper knows the real client only once its
            # header is read, after connectionMade: log the best we know now.
            conn.peer = formatAddress(conn.transport.getPeer())
        self.log.info(
            "{peer} closed ({reason}) after {duration:.3f}s: {bytes_in} bytes in, {bytes_out} out",
            event="close",
            peer=conn.peer,
            listener=self.listener,
            mode=self.mode,
            bytes_in=conn.bytesIn,
            bytes_out=conn.bytesOut,
            duration=duration,
            reason=why,
        )
        # Last: this may fire whenEmpty() waiters, who must see the
        # connection's totals already counted and logged.
        self.limits.closed(conn, conn._ip)


def logEarlyRefusal(factory: IProtocolFactory, address: IAddress, reason: str) -> None:
    """
    Count and log a connection refused before the application's protocol existed.

    For wrappers (PROXY header, TLS handshake) that turn a connection away
    themselves: a :class:`ServerFactory` counts it in its listener's
    statistics and logs it as its own refusals (:meth:`ServerFactory.refuse`).
    """
    if isinstance(factory, ServerFactory):
        factory.refuse(address, reason)
    else:
        ServerFactory.log.warn(
            "refused {peer}: {reason}",
            event="refused",
            peer=formatAddress(address),
            reason=reason,
        )
