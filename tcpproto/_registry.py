"""
The open connections of a server: one registry, shared by its listeners.

Shutdown waits on it (:meth:`ConnectionRegistry.whenEmpty`) and aborts what
is left in it; the metrics read the open connections' byte counters from it.
It is the one place open connections are counted; admission
(:class:`~tcpproto.limits.ConnectionLimits`) reads its size.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")


class ConnectionRegistry(Generic[T]):
    """A set of open connections, and Deferreds waiting for it to empty."""

    def __init__(self) -> None:
        #: The open connections.
        self.connections: set[T] = set()
        self._emptyWaiters: list[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self.connections)

    def add(self, connection: T) -> None:
        """Count ``connection`` as open."""
        self.connections.add(connection)

    def discard(self, connection: T) -> None:
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
