"""
The open connections of a server: one registry, shared by its listeners.

Shutdown waits on it (:meth:`ConnectionRegistry.whenEmpty`) and aborts what
is left in it; the metrics read the open connections' byte counters from it.
It is the one place open connections are counted; admission
(:class:`~tcpproto.limits.ConnectionLimits`) reads its size.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred


class ConnectionRegistry:
    """
    A server's open connections, and Deferreds waiting for none to be open.

    One per server (:attr:`tcpproto.limits.ConnectionLimits.registry`); the
    one place open connections are counted.
    """

    def __init__(self) -> None:
        #: The open connections.
        self.connections: set[object] = set()
        self._emptyWaiters: list[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self.connections)

    def add(self, connection: object) -> None:
        """Count ``connection`` as open."""
        self.connections.add(connection)

    def discard(self, connection: object) -> None:
        """Count ``connection`` as closed (if it was open); may fire :meth:`whenEmpty`."""
        connections = self.connections
        connections.discard(connection)
        if not connections and self._emptyWaiters:
            waiters, self._emptyWaiters = self._emptyWaiters, []
            for d in waiters:
                d.callback(None)

    def whenEmpty(self) -> Deferred[None]:
        """
        A Deferred that fires once no connection is open (at once if none is).

        Cancelling it (``addTimeout`` does) forgets it.
        """
        d: Deferred[None] = Deferred(self._emptyWaiters.remove)
        if self.connections:
            self._emptyWaiters.append(d)
        else:
            d.callback(None)
        return d


# Documented (and importable) as part of tcpproto.limits, its public home.
ConnectionRegistry.__module__ = "tcpproto.limits"
