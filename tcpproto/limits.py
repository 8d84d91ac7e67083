"""
Admission control: who may connect, and how many at once.

One :class:`ConnectionLimits` is shared by every listener of a server, so the
totals are per server, not per port.  The checks run in ``buildProtocol``,
before the connection has a protocol, so a refused peer costs one ``accept``
and one ``close`` and none of its bytes is ever read.

The limits decide; they do not count refusals (each listener's statistics
do, where the refusal is logged) and they do not keep the open connections
themselves: those are in the server's connection registry
(:attr:`ConnectionLimits.registry`), which shutdown and the metrics read too.

We deliberately do not use :mod:`twisted.protocols.policies` here:
``LimitTotalConnectionsFactory`` and ``WrappingFactory`` put a
:class:`~twisted.protocols.policies.ProtocolWrapper` between the transport and
the protocol, which is not half-close aware (the echo's tail would be lost)
and costs a method call per chunk, and ``LimitConnectionsByPeer`` indexes the
address object as a tuple, which fails on Python 3.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress

from tcpproto._addresses import IPAddress, Network, parseNetwork, peerIP
from tcpproto._registry import ConnectionRegistry
from tcpproto._vocabulary import (
    DEFAULT_MAX_CONNECTIONS,
    MAX_CONNECTIONS,
    MAX_PER_PEER,
    NOT_ALLOWED,
)

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_PER_PEER",
    "NOT_ALLOWED",
    "ConnectionLimits",
    "ConnectionRegistry",
    "IPAddress",
    "Network",
    "parseNetwork",
    "peerIP",
]


class ConnectionLimits:
    """
    The connection limits and access list of one server.

    :param maxConnections: open connections at most, over all listeners
        (0: no limit).
    :param maxPerPeer: open connections at most from one IP address
        (0: no limit, the right default behind a load balancer, where every
        connection comes from the balancer's address).
    :param allow: networks (strings such as ``"10.0.0.0/8"`` or parsed
        networks) whose peers may connect; empty means everyone.  Peers that
        are not IP (UNIX sockets) are governed by file permissions instead
        and always pass.
    :param registry: where the server's open connections are kept (a new
        one by default).
    """

    def __init__(
        self,
        maxConnections: int = DEFAULT_MAX_CONNECTIONS,
        maxPerPeer: int = 0,
        allow: Iterable[str | Network] = (),
        registry: ConnectionRegistry | None = None,
    ) -> None:
        if maxConnections < 0 or maxPerPeer < 0:
            raise ValueError("connection limits must be 0 (no limit) or positive")
        self.maxConnections = maxConnections
        self.maxPerPeer = maxPerPeer
        self.allow: tuple[Network, ...] = tuple(
            parseNetwork(a) if isinstance(a, str) else a for a in allow
        )
        #: The server's open connections.
        self.registry: ConnectionRegistry = (
            registry if registry is not None else ConnectionRegistry()
        )
        self._perPeer: Counter[IPAddress] = Counter()

    @property
    def connections(self) -> set[object]:
        """The open connections, over all listeners sharing these limits."""
        return self.registry.connections

    @property
    def active(self) -> int:
        """How many connections are open now."""
        return len(self.registry.connections)

    def whenEmpty(self) -> Deferred[None]:
        """A Deferred that fires once no connection is open (see the registry's)."""
        return self.registry.whenEmpty()

    def isAllowed(self, ip: IPAddress | None) -> bool:
        """Whether a peer at ``ip`` passes the access list."""
        if ip is None or not self.allow:
            return True
        return any(ip in net for net in self.allow)

    def check(self, address: IAddress) -> str | None:
        """
        Decide on a new connection from ``address``.

        :return: ``None`` to admit it, or the reason to refuse it (one of
            ``"not-allowed"``, ``"max-connections"``, ``"max-per-peer"``).
        """
        return self.checkIP(peerIP(address))

    def checkIP(self, ip: IPAddress | None) -> str | None:
        """
        :meth:`check` for a peer whose address is already parsed
        (:func:`peerIP`), so that a caller that needs the IP too parses it once.
        """
        if not self.isAllowed(ip):
            return NOT_ALLOWED
        if self.maxConnections and len(self.registry.connections) >= self.maxConnections:
            return MAX_CONNECTIONS
        if self.maxPerPeer and ip is not None and self._perPeer[ip] >= self.maxPerPeer:
            return MAX_PER_PEER
        return None

    def opened(self, connection: object, ip: IPAddress | None) -> None:
        """Count ``connection``, admitted from ``ip``, as open."""
        self.registry.add(connection)
        if ip is not None:
            self._perPeer[ip] += 1

    def closed(self, connection: object, ip: IPAddress | None) -> None:
        """Count ``connection``, admitted from ``ip``, as closed."""
        if ip is not None and connection in self.registry.connections:
            left = self._perPeer[ip] - 1
            if left > 0:
                self._perPeer[ip] = left
            else:
                del self._perPeer[ip]
        # Last: this may fire whenEmpty() waiters, who must see the counts done.
        self.registry.discard(connection)
