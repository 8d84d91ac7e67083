"""
Admission control: who may connect, and how many at once.

One :class:`ConnectionLimits` is shared by every listener of a server, so the
totals are per server, not per port.  The checks run in ``buildProtocol``,
before the connection has a protocol, so a refused peer costs one ``accept``
and one ``close`` and none of its bytes is ever read.

We deliberately do not use :mod:`twisted.protocols.policies` here:
``LimitTotalConnectionsFactory`` and ``WrappingFactory`` put a
:class:`~twisted.protocols.policies.ProtocolWrapper` between the transport and
the protocol, which is not half-close aware (the echo's tail would be lost)
and costs a method call per chunk, and ``LimitConnectionsByPeer`` indexes the
address object as a tuple, which fails on Python 3.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress

if TYPE_CHECKING:
    from tcpproto.connection import ServerConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Refusal reasons, as counted in :attr:`ConnectionLimits.refused` and logged.
NOT_ALLOWED = "not-allowed"
MAX_CONNECTIONS = "max-connections"
MAX_PER_PEER = "max-per-peer"


def parseNetwork(text: str) -> Network:
    """
    Parse ``text`` as an IPv4 or IPv6 network (``10.0.0.0/8``, ``::1``).

    A bare address means just that host.  Host bits are allowed
    (``192.168.1.7/24`` is the /24 around it), as operators write them.

    :raises ValueError: with a message naming ``text``.
    """
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IPv4 or IPv6 network: {text!r}") from None


def peerIP(address: IAddress) -> IPAddress | None:
    """
    The IP address of a peer, or ``None`` for a non-IP peer (a UNIX socket).

    IPv4-mapped IPv6 addresses (``::ffff:10.1.2.3``, seen on dual-stack
    ``tcp6:`` listeners) are returned as the IPv4 address they carry, so one
    access list and one per-peer count serve both families.
    """
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return None
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ConnectionLimits:
    """
    The connection limits and access list of one server, and its live counts.

    :param maxConnections: open connections at most, over all listeners
        (0: no limit).
    :param maxPerPeer: open connections at most from one IP address
        (0: no limit, the right default behind a load balancer, where every
        connection comes from the balancer's address).
    :param allow: networks (strings such as ``"10.0.0.0/8"`` or parsed
        networks) whose peers may connect; empty means everyone.  Peers that
        are not IP (UNIX sockets) are governed by file permissions instead
        and always pass.
    """

    def __init__(
        self,
        maxConnections: int = 10000,
        maxPerPeer: int = 0,
        allow: Iterable[str | Network] = (),
    ) -> None:
        if maxConnections < 0 or maxPerPeer < 0:
            raise ValueError("connection limits must be 0 (no limit) or positive")
        self.maxConnections = maxConnections
        self.maxPerPeer = maxPerPeer
        self.allow: tuple[Network, ...] = tuple(
            parseNetwork(a) if isinstance(a, str) else a for a in allow
        )
        #: Open connections, over all listeners sharing these limits.
        self.connections: set[ServerConnection] = set()
        #: Connections refused so far, by reason.
        self.refused: Counter[str] = Counter()
        self._perPeer: Counter[IPAddress] = Counter()
        self._emptyWaiters: list[Deferred[None]] = []

    @property
    def active(self) -> int:
        """How many connections are open now."""
        return len(self.connections)

    def isAllowed(self, ip: IPAddress | None) -> bool:
        """Whether a peer at ``ip`` passes the access list."""
        if ip is None or not self.allow:
            return True
        return any(ip in net for net in self.allow)

    def check(self, address: IAddress) -> str | None:
        """
        Decide on a new connection from ``address``.

        :return: ``None`` to admit it, or the reason to refuse it (one of
            :data:`NOT_ALLOWED`, :data:`MAX_CONNECTIONS`,
            :data:`MAX_PER_PEER`), which has then been counted.
        """
        return self.checkIP(peerIP(address))

    def checkIP(self, ip: IPAddress | None) -> str | None:
        """
        :meth:`check` for a peer whose address is already parsed
        (:func:`peerIP`), so that a caller that needs the IP too parses it once.
        """
        reason = None
        if not self.isAllowed(ip):
            reason = NOT_ALLOWED
        elif self.maxConnections and len(self.connections) >= self.maxConnections:
            reason = MAX_CONNECTIONS
        elif self.maxPerPeer and ip is not None and self._perPeer[ip] >= self.maxPerPeer:
            reason = MAX_PER_PEER
        if reason is not None:
            self.refused[reason] += 1
        return reason

    def opened(self, connection: ServerConnection, ip: IPAddress | None) -> None:
        """Count ``connection``, admitted from ``ip``, as open."""
        self.connections.add(connection)
        if ip is not None:
            self._perPeer[ip] += 1

    def closed(self, connection: ServerConnection, ip: IPAddress | None) -> None:
        """Count ``connection``, admitted from ``ip``, as closed."""
        self.connections.discard(connection)
        if not self.connections and self._emptyWaiters:
            waiters, self._emptyWaiters = self._emptyWaiters, []
            for d in waiters:
                d.callback(None)
        if ip is not None:
            left = self._perPeer[ip] - 1
            if left > 0:
                self._perPeer[ip] = left
            else:
                del self._perPeer[ip]

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

    def perPeer(self, ip: IPAddress) -> int:
        """How many connections are open now from ``ip``."""
        return self._perPeer[ip]
