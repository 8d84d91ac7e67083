"""
The PROXY protocol (v1 and v2), done so that an echo behind HAProxy loses nothing.

A load balancer such as HAProxy connects to the server itself, so the server
sees the balancer's address, not the client's.  With ``send-proxy`` or
``send-proxy-v2`` the balancer first sends a PROXY header naming the real
client.  Twisted reads it in its ``haproxy:`` endpoint, but that wrapper
(a :class:`~twisted.protocols.policies.ProtocolWrapper`) has two faults for
us: it calls the application's ``connectionMade`` before the header is read,
so the connection is admitted and logged under the balancer's address; and
it is not half-close aware, so when the client half-closes (the balancer
passes its FIN on) the bytes still to be echoed are dropped.

:class:`ProxyProtocolWrapper` reads the header first, then builds the
application's protocol for the real client and hands it the connection:

- the application's factory sees the client's address in ``buildProtocol``,
  so access lists and per-peer limits apply to clients, not to the balancer;
  a LOCAL (v2) or UNKNOWN (v1) header, such as a balancer's health check,
  stands for the balancer itself and is judged by the balancer's address;
  a claim no access list can judge (an ``AF_UNIX`` source, or the
  ``AF_UNSPEC`` family with the PROXY command) is refused when the
  application's factory has an access list (``--allow``), and stands for
  what it claims (a UNIX peer) or for the balancer (UNSPEC) when it has
  none; an IPv6 claim with a scope id (``fe80::1%eth0``, meaningless on
  another host) is a bad header;
- ``getPeer`` and ``getHost`` answer with the header's addresses from the
  start, so every log line names the client;
- a FIN from the balancer reaches the protocol as ``readConnectionLost``
  (half-close), as it would without the balancer;
- after the header, bytes go straight to the application's protocol, with no
  call in between.

Whoever can connect to such a listener can claim any client address, so it
must be reachable by the balancer only (bind it to loopback or a private
interface, or firewall it).  A connection that sends no complete header within
:data:`HEADER_TIMEOUT` seconds, or a malformed one, is closed and logged as
refused; one closed before sending anything (a balancer's TCP health check) is
closed silently.

Any Twisted program or ``twistd`` plugin gets this wrapper with the
``proxy:`` endpoint string prefix (``proxy:tcp:8080``; the parser plugin is
:class:`ProxyServerParser`, registered in ``twisted/plugins/tcpproto_endpoints.py``),
or wraps any endpoint with :class:`ProxyServerEndpoint`.  Twisted's own
``haproxy:`` prefix keeps meaning Twisted's wrapper, except inside
``twistd tcpecho``, which reads ``haproxy:`` as ``proxy:`` (as documented).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet import endpoints
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
    ITransport,
)
from twisted.internet.protocol import connectionDone
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

# The header parsers are Twisted's own (tested against HAProxy's
# specification); the buffering and the wrapper around them are replaced.
from tcpproto._twisted import InvalidProxyHeader, V1Parser, V2Parser
from tcpproto._vocabulary import (
    BAD_PROXY_HEADER,
    HEADER_TIMEOUT,
    NOT_ALLOWED,
    PROXY_HEADER_TIMEOUT,
)
from tcpproto._wrapping import FactoryWrapper, LayerProtocol, unparseEndpoint
from tcpproto.connection import hasAccessList, refuseEarly

__all__ = [
    "BAD_PROXY_HEADER",
    "HEADER_TIMEOUT",
    "PREFIX",
    "PROXY_HEADER_TIMEOUT",
    "ProxyProtocolWrapper",
    "ProxyServerEndpoint",
    "ProxyServerParser",
    "ProxyWrappingFactory",
    "serverFromString",
]

#: The endpoint string prefix of our wrapper, for any program.
PROXY_PREFIX = "proxy:"
#: Twisted's prefix, which ``twistd tcpecho`` reads as ours.
PREFIX = "haproxy:"

_V1_SIGNATURE = b"PROXY "
#: The longest v1 header, CRLF included (the specification's figure).
_V1_MAX_LENGTH = 107
_V2_SIGNATURE = V2Parser.PREFIX
_V2_FIXED_PART = 16


def _canonical(address: IAddress | None) -> IAddress | None:
    """
    A header's address as Twisted's own transports give one (``::1``, not
    ``0:0:0:0:0:0:0:1``).

    :raises InvalidProxyHeader: for a host that is not an IP address (it
        would pass the access list as a non-IP peer), an IPv6 address with a
        scope id (it names an interface of the balancer's host, and could
        carry any text into the log), or a port out of range.
    """
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return address
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        raise InvalidProxyHeader() from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        raise InvalidProxyHeader()
    if not 0 <= address.port <= 65535:
        raise InvalidProxyHeader()
    if isinstance(address, IPv6Address):
        return IPv6Address(address.type, str(ip), address.port)
    return IPv4Address(address.type, str(ip), address.port)


class _ProxiedTransport:
    """
    The application's view of a proxied connection: the real transport, with
    the PROXY header's addresses.
    """

    def __init__(self, transport: ITransport, peer: IAddress, host: IAddress) -> None:
        self._transport = transport
        self._peer = peer
        self._host = host
        directlyProvides(self, providedBy(transport))
        # The data path calls these directly, not through __getattr__.
        self.write = transport.write
        self.writeSequence = transport.writeSequence

    @property
    def writesTo(self) -> ITransport:
        """
        What our ``write`` writes to: ServerConnection's write-through fast
        path sends on its socket when it is a plain TCP connection
        (:func:`tcpproto._halfclose.writesTo`, which looks for this name on
        the class).
        """
        return self._transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def getPeer(self) -> IAddress:
        return self._peer

    def getHost(self) -> IAddress:
        return self._host

    def loseWriteConnection(self) -> None:
        # Defined on the class so that code asking "can this transport
        # half-close?" of the type gets the underlying transport's answer.
        loseWrite = getattr(type(self._transport), "loseWriteConnection", None)
        if loseWrite is None:
            self._transport.loseConnection()
        else:
            loseWrite(self._transport)


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class ProxyProtocolWrapper(LayerProtocol):
    """
    Reads a connection's PROXY header, then connects the application's protocol.

    See the module documentation.  Over TLS (``proxy:ssl:``, the header
    inside TLS) the end of the handshake is passed on to the application's
    protocol once it is connected.
    """

    factory: ProxyWrappingFactory

    def __init__(self, factory: ProxyWrappingFactory) -> None:
        super().__init__(factory)
        self._buffer = b""
        self._halfCloseable: IHalfCloseableProtocol | None = None
        self._done = False
        self._tlsHandshook = False

    def connectionMade(self) -> None:
        self.startTimer(self.factory.headerTimeout)

    def dataReceived(self, data: bytes) -> None:
        # Only until the header is read: then the application's protocol's
        # dataReceived replaces this method on the instance.
        if self._done:
            return
        try:
            info = self._feed(data)
        except (InvalidProxyHeader, ValueError, KeyError, IndexError, struct.error):
            self._refuse(BAD_PROXY_HEADER)
            return
        if info is not None:
            self._connectWrapped(*info)

    def _feed(self, data: bytes) -> tuple[IAddress | None, IAddress | None, bytes, bool] | None:
        """
        Parse what we have; once complete, the header's addresses, what
        followed, and whether it is a LOCAL (v2) or UNKNOWN (v1) header,
        which stands for the balancer (else no source address means the
        ``AF_UNSPEC`` family).
        """
        buf = self._buffer + data
        self._buffer = buf
        if buf[: len(_V2_SIGNATURE)] == _V2_SIGNATURE[: len(buf)]:
            if len(buf) < _V2_FIXED_PART:
                return None
            size = _V2_FIXED_PART + struct.unpack("!H", buf[14:16])[0]
            if len(buf) < size:
                return None
            info = V2Parser.parse(buf[:size])
            rest = buf[size:]
            local = buf[12] & 0x0F == 0
        elif buf[: len(_V1_SIGNATURE)] == _V1_SIGNATURE[: len(buf)]:
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) >= _V1_MAX_LENGTH:
                    raise InvalidProxyHeader()
                return None
            line, rest = buf[:end], buf[end + 2 :]
            if line == b"PROXY UNKNOWN" or line.startswith(b"PROXY UNKNOWN "):
                # Valid per the specification, refused by Twisted's parser.
                self._buffer = b""
                return None, None, rest, True
            info = V1Parser.parse(line)
            local = False
        else:
            raise InvalidProxyHeader()
        self._buffer = b""
        return _canonical(info.source), _canonical(info.destination), rest, local

    def _connectWrapped(
        self, source: IAddress | None, destination: IAddress | None, rest: bytes, local: bool
    ) -> None:
        self._done = True
        self.cancelTimer()
        transport = self.transport
        assert transport is not None
        # A claim the access list cannot judge (an AF_UNIX source, or
        # AF_UNSPEC: no address at all): admitting it would let anyone who
        # reaches the balancer's port past --allow.
        unjudgeable = not local and not isinstance(source, (IPv4Address, IPv6Address))
        if unjudgeable and hasAccessList(self.factory.wrappedFactory):
            refuseEarly(
                self.factory.wrappedFactory,
                source if source is not None else transport.getPeer(),
                NOT_ALLOWED,
            )
            transport.loseConnection()
            return
        peer = source if source is not None else transport.getPeer()
        host = destination if destination is not None else transport.getHost()
        wrapped = self.factory.wrappedFactory.buildProtocol(peer)
        if wrapped is None:
            # Refused by the application's factory, which logged why.
            transport.loseConnection()
            return
        self._halfCloseable = IHalfCloseableProtocol(wrapped, None)
        self.connectWrapped(wrapped, cast(ITransport, _ProxiedTransport(transport, peer, host)))
        if self._tlsHandshook and IHandshakeListener.providedBy(wrapped):
            cast(IHandshakeListener, wrapped).handshakeCompleted()
        if rest:
            wrapped.dataReceived(rest)

    def _refuse(self, reason: str) -> None:
        self._done = True
        self.cancelTimer()
        transport = self.transport
        assert transport is not None
        refuseEarly(self.factory.wrappedFactory, transport.getPeer(), reason)
        # The peer is not following the protocol: drop it without a
        # graceful close, as Twisted's wrapper does.
        cast(Any, transport).abortConnection()

    def timedOut(self) -> None:
        if not self._done:
            self._refuse(PROXY_HEADER_TIMEOUT)

    def handshakeCompleted(self) -> None:
        """The TLS handshake below is done: tell the application's protocol, now or later."""
        self._tlsHandshook = True
        wrapped = self.wrapped
        if wrapped is not None and IHandshakeListener.providedBy(wrapped):
            cast(IHandshakeListener, wrapped).handshakeCompleted()

    # -- IHalfCloseableProtocol -----------------------------------------

    def readConnectionLost(self) -> None:
        transport = self.transport
        assert transport is not None
        if self._halfCloseable is not None:
            self._halfCloseable.readConnectionLost()
            return
        if self.wrapped is None and not self._done:
            self._done = True
            self.cancelTimer()
            if self._buffer:
                # A partial header, then FIN.
                refuseEarly(self.factory.wrappedFactory, transport.getPeer(), BAD_PROXY_HEADER)
        transport.loseConnection()

    def writeConnectionLost(self) -> None:
        if self._halfCloseable is not None:
            self._halfCloseable.writeConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.cancelTimer()
        self._done = True
        if self.wrapped is not None:
            self.wrapped.connectionLost(reason)


class ProxyWrappingFactory(FactoryWrapper):
    """
    Wraps a factory's connections in :class:`ProxyProtocolWrapper`.

    :param headerTimeout: seconds a connection may take to send its header.
    :param clock: the time source (the global reactor by default).
    """

    layerName = "PROXY"

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        headerTimeout: float = HEADER_TIMEOUT,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__(wrappedFactory, clock)
        self.headerTimeout = headerTimeout

    def buildProtocol(self, addr: IAddress) -> ProxyProtocolWrapper:  # type: ignore[override]
        # Admission waits for the header: the application's factory is asked
        # about the real client then.
        return ProxyProtocolWrapper(self)


@implementer(IStreamServerEndpoint)
@dataclass
class ProxyServerEndpoint:
    """
    An endpoint whose connections start with a PROXY header (v1 or v2).

    :param wrapped: where to listen, e.g. a ``tcp:`` endpoint.
    """

    wrapped: IStreamServerEndpoint
    headerTimeout: float = HEADER_TIMEOUT
    clock: IReactorTime | None = None

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self.wrapped.listen(
            ProxyWrappingFactory(protocolFactory, self.headerTimeout, self.clock)
        )


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ProxyServerParser:
    """
    The ``proxy:`` endpoint string prefix: ``proxy:tcp:8080:interface=10.0.0.1``
    is that endpoint with a PROXY header (v1 or v2) read from each connection.
    """

    prefix = PROXY_PREFIX[:-1]

    def parseStreamServer(self, reactor: Any, *args: object, **kwargs: object) -> Any:
        inner = endpoints.serverFromString(reactor, unparseEndpoint(args, kwargs))
        return ProxyServerEndpoint(inner, clock=cast(IReactorTime, reactor))


def ourPrefix(description: str) -> str:
    """``description`` with a leading ``haproxy:`` read as ``proxy:`` (for ``twistd tcpecho``)."""
    if description.startswith(PREFIX):
        return PROXY_PREFIX + description[len(PREFIX) :]
    return description


def serverFromString(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    Twisted's :func:`~twisted.internet.endpoints.serverFromString`, except
    that ``haproxy:DESCRIPTION`` means ``proxy:DESCRIPTION`` (our wrapper).
    """
    return cast(IStreamServerEndpoint, endpoints.serverFromString(reactor, ourPrefix(description)))
