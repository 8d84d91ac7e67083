"""
The idle timeout and the maximum lifetime of one listener's connections:
two DelayedCalls for all of them, not two per connection.

A DelayedCall (with its bound method) costs about 0.45 KiB; two per
connection were a third of what an idle connection costs.  Instead the idle
check sweeps every connection :data:`IDLE_CHECKS` times per timeout (closing
after 1 to 1.25 timeouts of silence, as a per-connection timer did), and the
lifetime call wakes when the oldest connection is due: connections are kept
in the order they were made, which is the order they expire in.  A sweep
costs well under a microsecond per connection.

We do not use :class:`twisted.protocols.policies.TimeoutMixin`: its
``resetTimeout()`` on every chunk reschedules a DelayedCall (measured:
+450 ns per chunk, twice the cost of an in-memory echo's ``dataReceived``);
nor ``TimeoutFactory``, whose ``ProtocolWrapper`` is not half-close aware.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from tcpproto._vocabulary import LIFETIME_GRACE

#: The idle sweep runs this many times per timeout period, so an idle
#: connection is closed after between 1 and 1 + 1/IDLE_CHECKS periods of
#: silence, while ``dataReceived`` does no timer work at all.
IDLE_CHECKS = 4


class Timed(Protocol):
    """What the timers need of a connection."""

    #: When it was made, on the timers' clock.
    started: float
    #: The activity mark at the last sweep, and the sweeps since it changed.
    _idleMark: int
    _idleStrikes: int

    def activityMark(self) -> int:
        """A number that changes whenever the connection makes progress."""


C = TypeVar("C", bound=Timed)


def defaultClock(clock: IReactorTime | None) -> IReactorTime:
    """``clock``, or the global reactor (imported only then) when it is ``None``."""
    if clock is not None:
        return clock
    from twisted.internet import reactor

    return cast(IReactorTime, reactor)


class ConnectionTimers(Generic[C]):
    """
    The two timers of one listener's connections.

    :param onIdle: called with a connection idle for a whole timeout (it is
        no longer timed); it should close it.
    :param onLifetimeOver: called with a connection past ``maxLifetime``; it
        should close it gracefully.  It stays timed for idleness, and
        ``onGraceOver`` is called with it :data:`LIFETIME_GRACE` seconds
        later if it is still open then.
    """

    def __init__(
        self,
        clock: IReactorTime,
        idleTimeout: float,
        maxLifetime: float,
        onIdle: Callable[[C], object],
        onLifetimeOver: Callable[[C], object],
        onGraceOver: Callable[[C], object],
    ) -> None:
        self.clock = clock
        self.idleTimeout = idleTimeout
        self.maxLifetime = maxLifetime
        self._onIdle = onIdle
        self._onLifetimeOver = onLifetimeOver
        self._onGraceOver = onGraceOver
        #: Open connections, oldest first (a dict: ordered, O(1) removal).
        self._conns: dict[C, None] = {}
        #: Those told their lifetime is over, still open (sending what is
        #: left), with when they are cut regardless: swept for idleness too.
        self._ending: dict[C, float] = {}
        self._sweepCall: IDelayedCall | None = None
        self._lifetimeCall: IDelayedCall | None = None
        self._graceCall: IDelayedCall | None = None

    def add(self, conn: C) -> None:
        """Time ``conn``, made at ``conn.started``."""
        if self.idleTimeout <= 0 and self.maxLifetime <= 0:
            return
        self._conns[conn] = None
        clock = self.clock
        if self.idleTimeout > 0 and self._sweepCall is None:
            self._sweepCall = clock.callLater(self.idleTimeout / IDLE_CHECKS, self._sweep)
        if self.maxLifetime > 0 and self._lifetimeCall is None:
            due = conn.started + self.maxLifetime - clock.seconds()
            self._lifetimeCall = clock.callLater(max(due, 0.0), self._lifetimeOver)

    def remove(self, conn: C) -> None:
        """Stop timing ``conn`` (it closed); no timer is left when none is timed."""
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
            # Activity is an answer (see ServerConnection.activityMark):
            # reading two integers here is all the idle timeout costs the
            # data path.
            mark = conn.activityMark()
            if mark != conn._idleMark:
                conn._idleMark = mark
                conn._idleStrikes = 0
            else:
                conn._idleStrikes += 1
            if conn._idleStrikes >= IDLE_CHECKS:
                self.remove(conn)
                self._onIdle(conn)
        if (self._conns or self._ending) and self.idleTimeout > 0:
            self._sweepCall = self.clock.callLater(self.idleTimeout / IDLE_CHECKS, self._sweep)

    def _lifetimeOver(self) -> None:
        self._lifetimeCall = None
        clock = self.clock
        now = clock.seconds()
        for conn in list(self._conns):
            due = conn.started + self.maxLifetime
            if due > now:
                self._lifetimeCall = clock.callLater(due - now, self._lifetimeOver)
                return
            del self._conns[conn]
            self._ending[conn] = now + LIFETIME_GRACE
            if self._graceCall is None:
                self._graceCall = clock.callLater(LIFETIME_GRACE, self._graceOver)
            self._onLifetimeOver(conn)

    def _graceOver(self) -> None:
        # A connection past its lifetime whose peer does not take what is
        # left would otherwise stay open (with the idle timeout off): cut it.
        self._graceCall = None
        now = self.clock.seconds()
        for conn, deadline in list(self._ending.items()):
            if deadline > now:
                self._graceCall = self.clock.callLater(deadline - now, self._graceOver)
                return
            del self._ending[conn]
            self._onGraceOver(conn)
