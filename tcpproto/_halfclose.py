"""
Transport helpers (half-close, reading side, write target) shared by the
server connection and the client.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.interfaces import IPushProducer, ISSLTransport, ITransport

from tcpproto._twisted import HalfCloseTLSProtocol


def canHalfClose(transport: object) -> bool:
    """
    Whether ``transport.loseWriteConnection`` ends our side and keeps reading.

    TCP's does (our FIN), and so does tcpproto's TLS transport (our
    ``close_notify``, then FIN).  Twisted's own TLS transport only seems to
    have one: it forwards unknown attributes to the TCP transport below it,
    whose FIN would cut TLS short.
    """
    if isinstance(transport, HalfCloseTLSProtocol):
        return True
    if ISSLTransport.providedBy(transport):
        return False
    return callable(getattr(transport, "loseWriteConnection", None))


def halfCloseOrClose(transport: ITransport) -> None:
    """
    Send our FIN after what is buffered, and keep reading (a half-close).

    Over tcpproto's TLS transport that is our ``close_notify``, then FIN.
    Transports that cannot half-close (Twisted's own TLS: see
    :func:`canHalfClose`) are closed instead, once what is buffered has been
    sent.
    """
    if canHalfClose(transport):
        cast(Any, transport).loseWriteConnection()
    else:
        transport.loseConnection()


def readingSide(transport: object) -> IPushProducer | None:
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


def writesTo(transport: object) -> object:
    """
    The transport that ``transport.write`` writes to: ``transport`` itself,
    or, for a wrapper that only changes what ``getPeer``/``getHost`` say (the
    PROXY layer's, whose ``writesTo`` attribute names it), the one it wraps,
    so that the write-through fast path (``tcpproto._twisted``) applies
    behind it too.

    Only a ``writesTo`` its class declares counts: Twisted's wrappers (TLS,
    ``policies.ProtocolWrapper``) pass unknown attribute names on to the
    transport below them, and writing past one of those would skip it (over
    TLS, send the answer unencrypted).

    The class is asked, not the instance's ``__dict__``: CPython 3.11 and
    3.12 keep an object's attributes in a compact inline form until someone
    asks for its ``__dict__``, and build a real dictionary then; every
    attribute read on that object is slower from then on.  For Twisted's TCP
    transport, read on every message (``doRead``, ``_dataReceived``, the
    write-through's checks), that was 1,400-1,800 more instructions per
    message (12%) at 100 connections (benchmarks/RESULTS.md).  (3.13 keeps
    the inline values behind the dictionary.)
    """
    if getattr(type(transport), "writesTo", None) is None:
        return transport
    base: object = cast(Any, transport).writesTo
    return transport if base is None else base


def isClosing(transport: object) -> bool:
    """
    Whether ``transport``, or a transport it wraps, is closing (its
    ``loseConnection`` was called).

    Twisted's TLS transport closes the TCP connection below it when the peer's
    ``close_notify`` arrives, without telling the protocol above; the TLS
    transport itself does not say it is closing, the TCP one does.
    """
    for _ in range(8):
        if getattr(transport, "disconnecting", False):
            return True
        transport = getattr(transport, "transport", None)
        if transport is None:
            return False
    return False
