"""
``SO_REUSEPORT`` listeners: several processes serve one TCP port.

Python runs one thread of Twisted code at a time, so one server process uses
one core.  To use N cores, run N processes that each listen on the same port
with ``SO_REUSEPORT`` set: the kernel (Linux 3.9+, the BSDs) then spreads new
connections across them, and each process keeps its own connections.

Twisted's ``tcp:`` endpoint has no option for it, so this module provides,
for any Twisted program:

- :func:`listenTCPReusePort`: ``reactor.listenTCP`` with ``SO_REUSEPORT``;
- :class:`ReusePortReactor`: a stand-in for the reactor whose ``listenTCP``
  and ``listenSSL`` set ``SO_REUSEPORT``, everything else being the real
  reactor's, so that ``serverFromString(ReusePortReactor(reactor), "tcp:7788")``
  (or ``tcp6:``, ``ssl:``) makes a sharing endpoint;
- :class:`ReusePortTCP4ServerEndpoint` and :class:`ReusePortTCP6ServerEndpoint`;
- the ``reuseport:`` endpoint string prefix (the plugin in
  ``twisted/plugins/tcpproto_endpoints.py``): ``reuseport:tcp:7788``, usable
  by any twistd plugin that takes endpoint strings (``twistd web --listen``).

Every process sharing a port must set the option and run as the same user.
"""

from __future__ import annotations

import socket
from typing import Any, cast

from twisted.internet import endpoints, tcp
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTCP,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.internet.protocol import ServerFactory
from twisted.plugin import IPlugin
from zope.interface import implementer

from tcpproto._tls import HalfCloseTLSReactor
from tcpproto._twisted import ReusePortPort
from tcpproto._wrapping import unparseEndpoint

__all__ = [
    "REUSABLE_TYPES",
    "ReusePortReactor",
    "ReusePortServerParser",
    "ReusePortTCP4ServerEndpoint",
    "ReusePortTCP6ServerEndpoint",
    "listenTCPReusePort",
    "reusePortAvailable",
    "reusePortServerFromString",
    "unparseEndpoint",
]

#: The endpoint types that ``reuseport:`` may wrap.
REUSABLE_TYPES = ("tcp", "tcp6", "ssl")


def reusePortAvailable() -> bool:
    """Whether this platform has ``SO_REUSEPORT``."""
    return hasattr(socket, "SO_REUSEPORT")


def listenTCPReusePort(
    reactor: IReactorTCP,
    port: int,
    factory: ServerFactory,
    backlog: int = 50,
    interface: str = "",
) -> IListeningPort:
    """
    Like ``reactor.listenTCP``, with ``SO_REUSEPORT`` (and ``SO_REUSEADDR``) set.

    :raises twisted.internet.error.CannotListenError: as ``listenTCP`` does,
        and when the platform has no ``SO_REUSEPORT``.
    """
    if not reusePortAvailable():
        from twisted.internet.error import CannotListenError

        raise CannotListenError(interface, port, OSError("SO_REUSEPORT is not available here"))
    makeBinding = getattr(tcp, "makeBinding", None)
    if makeBinding is not None:
        # Recent Twisted: a Binding carries the socket options into listenTCP.
        binding = makeBinding(interface, port, reuseAddress=True, reusePort=True)
        return reactor.listenTCP(binding, factory, backlog, interface)
    return _listenWithPortSubclass(reactor, port, factory, backlog, interface)


def _listenWithPortSubclass(
    reactor: IReactorTCP, port: int, factory: ServerFactory, backlog: int, interface: str
) -> IListeningPort:
    p = ReusePortPort(port, factory, backlog, interface, reactor)
    p.startListening()
    return p


class ReusePortReactor(HalfCloseTLSReactor):
    """
    The given reactor, except that TCP and TLS listeners set ``SO_REUSEPORT``.

    Pass it where an endpoint wants a reactor: the endpoint then listens
    through :func:`listenTCPReusePort`.  Every other method and interface is
    the wrapped reactor's.  ``listenSSL`` is what the reactor's own does (TLS
    in memory over a TCP port), with this ``listenTCP`` underneath and
    tcpproto's TLS layer, with half-close (:class:`~tcpproto._tls.HalfCloseTLSReactor`).

    Why a reactor adapter: Twisted's ``tcp:``, ``tcp6:`` and ``ssl:``
    endpoints take no socket options and call ``reactor.listenTCP`` (or
    ``listenSSL``) themselves; the ``reuseport:`` parser plugin builds them
    on this adapter, which is the only place left to set the option.
    """

    def listenTCP(
        self, port: int, factory: ServerFactory, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        return listenTCPReusePort(self._reactor, port, factory, backlog, interface)


class ReusePortTCP4ServerEndpoint(endpoints.TCP4ServerEndpoint):
    """A ``TCP4ServerEndpoint`` whose port sets ``SO_REUSEPORT``."""

    def __init__(self, reactor: Any, port: int, backlog: int = 50, interface: str = "") -> None:
        super().__init__(ReusePortReactor(reactor), port, backlog, interface)  # type: ignore[no-untyped-call]


class ReusePortTCP6ServerEndpoint(endpoints.TCP6ServerEndpoint):
    """A ``TCP6ServerEndpoint`` whose port sets ``SO_REUSEPORT``."""

    def __init__(self, reactor: Any, port: int, backlog: int = 50, interface: str = "::") -> None:
        super().__init__(ReusePortReactor(reactor), port, backlog, interface)  # type: ignore[no-untyped-call]


def reusePortServerFromString(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    ``serverFromString`` for a ``tcp:``, ``tcp6:`` or ``ssl:`` description,
    listening with ``SO_REUSEPORT``.

    :raises ValueError: for any other endpoint type, which could not share
        its port this way.
    """
    kind = description.split(":", 1)[0]
    if kind not in REUSABLE_TYPES:
        raise ValueError(
            f"reuseport: wraps a {', '.join(t + ':' for t in REUSABLE_TYPES)} endpoint, "
            f"not {description!r}"
        )
    return cast(
        IStreamServerEndpoint, endpoints.serverFromString(ReusePortReactor(reactor), description)
    )


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ReusePortServerParser:
    """The ``reuseport:`` endpoint string prefix: ``reuseport:tcp:7788:interface=...``."""

    prefix = "reuseport"

    def parseStreamServer(self, reactor: Any, *args: object, **kwargs: object) -> Any:
        return reusePortServerFromString(reactor, unparseEndpoint(args, kwargs))
