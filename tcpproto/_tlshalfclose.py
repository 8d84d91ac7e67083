"""
Half-close over TLS: ``close_notify`` closes one direction, as a TCP FIN does.

TLS ends a direction of the stream with a ``close_notify`` alert.  RFC 8446
(TLS 1.3) section 6.1 says what it means: "each party MUST send a
close_notify alert before closing its write side of the connection ... This
does not have any effect on its read side of the connection."  That is TCP's
half-close, one layer up, and it is what an echo needs: the client says "that
was all" and still reads the answer.

Twisted's TLS transport (:class:`~twisted.protocols.tls.TLSMemoryBIOProtocol`)
treats a ``close_notify`` as the end of the whole connection: it answers with
its own at once and closes, so the protocol above is never told "no more
input" (no ``readConnectionLost``) and cannot answer it; it has no
``loseWriteConnection`` of its own (the attribute is forwarded to the TCP
transport below, whose FIN would cut TLS short); and the small writes it holds
back until the next reactor turn (``BufferingTLSTransport``) are dropped when
the peer's ``close_notify`` arrives in the same read as the data they answer.

:class:`HalfCloseTLSProtocol` keeps Twisted's TLS transport and changes only
the closing:

- the peer's ``close_notify`` reaches an
  :class:`~twisted.internet.interfaces.IHalfCloseableProtocol` as
  ``readConnectionLost``; it may go on writing, then calls
  ``loseConnection``: our ``close_notify`` follows its last byte, then our
  FIN.  The peer's TCP FIN after its ``close_notify`` changes nothing (we are
  half-closeable for the TCP transport too, so a FIN does not close the
  socket under our answer).  Bytes after a ``close_notify`` are ignored, as
  RFC 8446 requires;
- ``loseWriteConnection`` sends our ``close_notify`` (after everything
  written before it, once a handshake in progress is done and a registered
  producer has finished), then half-closes TCP, and keeps reading until the
  peer's ``close_notify``; the protocol gets ``writeConnectionLost`` when our
  side is closed and ``readConnectionLost`` when the peer's is;
- once both ``close_notify`` alerts have crossed, the TLS session is over and
  the TCP connection is closed (after what is buffered is sent);
- a protocol that is *not* half-closeable gets Twisted's behaviour: the
  peer's ``close_notify`` closes the connection, but after the answers it
  already wrote (Twisted loses those);
- an end of the TCP stream without a ``close_notify`` (a truncation, or a
  peer that just closed) and a reset end the connection with
  :class:`~twisted.internet.error.ConnectionLost`, as in Twisted;
- writes made while the transport delivers received bytes are collected and
  handed to OpenSSL in one piece when the delivery returns, before anything
  that closes a direction: answers go out in the same reactor turn as the
  bytes they answer, in order, a few small writes make one TLS record, and no
  write path bypasses another.

TLS 1.2 (RFC 5246 section 7.2.1) asked the receiver of a ``close_notify`` to
answer with its own "and close down the connection immediately, discarding
any pending writes"; OpenSSL itself does not enforce it (``SSL_write`` works
after a received ``close_notify`` and ``SSL_read`` after a sent one, in both
versions) and neither do we: the same half-close runs over TLS 1.2.  A 1.2
peer that follows RFC 5246 to the letter closes its socket after its
``close_notify``; what we still send it is then refused with a reset, exactly
as for a TCP peer that closes instead of half-closing.

Twisted's private names this module relies on are listed in
:data:`TWISTED_PRIVATE_NAMES`, with the upstream change each one waits for.
"""

from __future__ import annotations

from typing import Any, cast

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

#: The private parts of :class:`twisted.protocols.tls.TLSMemoryBIOProtocol`
#: this module uses, why, and the upstream change that would make each
#: unnecessary.  Upstream: twisted/twisted#5341 (``loseWriteConnection`` under
#: TLS "should not even exist"; written for TLS 1.0-1.2, before RFC 8446 gave
#: ``close_notify`` half-close semantics) and #7926 (``loseConnection`` waits
#: forever for the peer's ``close_notify``).  What would retire all of them:
#: a half-close-aware ``TLSMemoryBIOProtocol`` (deliver ``ZeroReturnError`` as
#: ``readConnectionLost`` to an ``IHalfCloseableProtocol``, implement
#: ``loseWriteConnection`` as ``SSL_shutdown`` + TCP half-close, and flush
#: ``BufferingTLSTransport``'s aggregated writes before a shutdown).
TWISTED_PRIVATE_NAMES: dict[str, str] = {
    "_flushReceiveBIO": (
        "overridden: the loop that turns ZeroReturnError (the peer's close_notify) "
        "into a full close; ours delivers readConnectionLost instead"
    ),
    "_flushSendBIO": "called: hand the bytes OpenSSL produced (our close_notify) to TCP",
    "_shutdownTLS": (
        "called: Twisted's own answer to close_notify, for protocols that are not half-closeable"
    ),
    "_tlsShutdownFinished": "called: end the TLS session and close TCP, with Twisted's reasons",
    "_lostTLSConnection": "read: the TLS session is over (no more sends or receives)",
    "_aborted": "read: abortConnection was called (received bytes are dropped)",
    "_handshakeDone": "read: a close_notify cannot be sent before the handshake is done",
    "_appSendBuffer": "read: writes held during the handshake, which our close_notify must follow",
    "_producer": "read: a registered producer, whose end our close_notify must wait for",
}


@implementer(IHalfCloseableProtocol)
class HalfCloseTLSProtocol(TLSMemoryBIOProtocol):
    """
    Twisted's TLS transport, with ``close_notify`` as a half-close.

    Used by :class:`HalfCloseTLSFactory`; see the module docstring for the
    behaviour.  It is also half-closeable towards the transport below it (the
    TCP connection), so the peer's FIN after its ``close_notify`` does not
    close the socket before our answer is sent.
    """

    #: Writes made while received bytes are being delivered, sent when the
    #: delivery returns (``None`` outside a delivery).
    _collected: list[bytes] | None = None
    #: The peer's close_notify has been received.
    _readClosed = False
    #: ``loseWriteConnection`` was called.
    _writeClosing = False
    #: Our close_notify was sent by ``loseWriteConnection``.
    _writeClosed = False
    #: The protocol was told its write side is closed.
    _writeLostDelivered = False

    # -- writing ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._writeClosed:
            return  # like TCP after loseWriteConnection: nothing more is sent
        collected = self._collected
        if collected is not None and not self.disconnecting:
            collected.append(data)
            return
        super().write(data)  # type: ignore[no-untyped-call]

    def writeSequence(self, iovec: Any) -> None:
        self.write(b"".join(iovec))

    def _sendCollected(self) -> None:
        """Hand the writes collected during a delivery to OpenSSL, in one piece."""
        collected = self._collected
        if collected:
            data = collected[0] if len(collected) == 1 else b"".join(collected)
            collected.clear()
            super().write(data)  # type: ignore[no-untyped-call]

    # -- receiving --------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._readClosed:
            # RFC 8446 section 6.1: "Any data received after a closure alert
            # has been received MUST be ignored."
            return
        self._collected = []
        try:
            super().dataReceived(data)  # type: ignore[no-untyped-call]
        finally:
            self._sendCollected()
            self._collected = None
        self._maybeCloseWrite()

    def _flushReceiveBIO(self) -> None:
        # Twisted's loop (twisted.protocols.tls), except for ZeroReturnError.
        while not self._lostTLSConnection and not self._readClosed:
            connection = self.getHandle()  # type: ignore[no-untyped-call]
            if connection is None:
                return
            try:
                data = connection.recv(2**15)
            except WantReadError:
                break
            except ZeroReturnError:
                self._closeNotifyReceived()
            except Error:
                self._tlsShutdownFinished(Failure())  # type: ignore[no-untyped-call]
            else:
                if not self._aborted:
                    self.wrappedProtocol.dataReceived(data)
        if self.getHandle() is not None:  # type: ignore[no-untyped-call]
            self._flushSendBIO()  # type: ignore[no-untyped-call]

    def _closeNotifyReceived(self) -> None:
        """The peer will send nothing more: tell the protocol, or close as Twisted does."""
        self._readClosed = True
        halfCloseable = IHalfCloseableProtocol(self.wrappedProtocol, None)
        if halfCloseable is None or self.disconnecting:
            # Twisted's behaviour (a full close: our close_notify, then FIN),
            # after the answers already written.
            self._sendCollected()
            self._shutdownTLS()  # type: ignore[no-untyped-call]
            self._tlsShutdownFinished(None)  # type: ignore[no-untyped-call]
            return
        halfCloseable.readConnectionLost()
        if self._lostTLSConnection:
            return  # the protocol closed (the transport below may be gone already)
        if self._writeClosed:
            # Both close_notify alerts have crossed: the session is over.
            self._deliverWriteConnectionLost()
            self._tlsShutdownFinished(None)  # type: ignore[no-untyped-call]

    # -- closing ----------------------------------------------------------

    def loseWriteConnection(self) -> None:
        """
        Send our ``close_notify`` after what was written, and keep reading.

        The TCP connection is half-closed after it when the transport below
        can half-close.  The protocol gets ``writeConnectionLost`` once our
        side is closed.
        """
        if self._writeClosing or self.disconnecting or not self.connected:
            return
        self._sendCollected()
        self._writeClosing = True
        self._maybeCloseWrite()

    def _maybeCloseWrite(self) -> None:
        """Send the close_notify ``loseWriteConnection`` asked for, once it can go."""
        if not self._writeClosing or self._writeClosed or self._lostTLSConnection:
            return
        if self.disconnecting or not self._handshakeDone:
            return
        if self._appSendBuffer or self._producer is not None:
            return
        self._writeClosed = True
        try:
            both = bool(self.getHandle().shutdown())  # type: ignore[no-untyped-call]
        except Error:
            both = False
        self._flushSendBIO()  # type: ignore[no-untyped-call]
        if both or self._readClosed:
            self._deliverWriteConnectionLost()
            if not self._lostTLSConnection:
                self._tlsShutdownFinished(None)  # type: ignore[no-untyped-call]
            return
        loseWrite = getattr(self.transport, "loseWriteConnection", None)
        if loseWrite is not None:
            loseWrite()  # writeConnectionLost follows, from the transport below
        else:
            self._deliverWriteConnectionLost()

    def _deliverWriteConnectionLost(self) -> None:
        if self._writeLostDelivered:
            return
        self._writeLostDelivered = True
        halfCloseable = IHalfCloseableProtocol(self.wrappedProtocol, None)
        if halfCloseable is not None:
            halfCloseable.writeConnectionLost()

    def loseConnection(self) -> None:
        self._sendCollected()
        super().loseConnection()  # type: ignore[no-untyped-call]

    def abortConnection(self) -> None:
        if self._collected is not None:
            self._collected.clear()
        super().abortConnection()  # type: ignore[no-untyped-call]

    def unregisterProducer(self) -> None:
        super().unregisterProducer()  # type: ignore[no-untyped-call]
        self._maybeCloseWrite()

    # -- the transport below (IHalfCloseableProtocol) ---------------------

    def readConnectionLost(self) -> None:
        """The peer's TCP FIN."""
        if self._readClosed or self._lostTLSConnection:
            return  # after its close_notify: expected; we may still write
        # No close_notify first: a truncation, or a peer that just closed.
        # As Twisted does, end the session with ConnectionLost.
        connection = self.getHandle()  # type: ignore[no-untyped-call]
        if connection is not None:
            connection.bio_shutdown()
            self._flushReceiveBIO()
        if not self._lostTLSConnection:
            self._tlsShutdownFinished(Failure(ConnectionLost()))  # type: ignore[no-untyped-call]

    def writeConnectionLost(self) -> None:
        """Our TCP FIN went out (after our close_notify)."""
        if self._writeClosed:
            self._deliverWriteConnectionLost()


class HalfCloseTLSFactory(TLSMemoryBIOFactory):
    """
    :class:`~twisted.protocols.tls.TLSMemoryBIOFactory` building
    :class:`HalfCloseTLSProtocol`: TLS with half-close, server or client side.
    """

    protocol = HalfCloseTLSProtocol


@implementer(IStreamClientEndpoint)
class TLSClientEndpoint:
    """
    TLS over ``wrappedEndpoint``, with half-close: what
    :func:`twisted.internet.endpoints.wrapClientTLS` builds, with
    :class:`HalfCloseTLSProtocol` (``wrapClientTLS`` has no way to choose the
    TLS protocol class).

    :param connectionCreator: the TLS options, e.g. from
        :func:`twisted.internet.ssl.optionsForClientTLS`.
    """

    def __init__(
        self,
        connectionCreator: IOpenSSLClientConnectionCreator,
        wrappedEndpoint: IStreamClientEndpoint,
        clock: IReactorTime | None = None,
    ) -> None:
        self._creator = connectionCreator
        self._wrapped = wrappedEndpoint
        self._clock = clock

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        factory = HalfCloseTLSFactory(self._creator, True, protocolFactory, self._clock)
        d = self._wrapped.connect(factory)

        def unwrap(proto: IProtocol) -> IProtocol:
            return cast(HalfCloseTLSProtocol, proto).wrappedProtocol

        return d.addCallback(unwrap)


def canHalfClose(transport: object) -> bool:
    """
    Whether ``transport.loseWriteConnection`` really half-closes.

    Twisted's own TLS transport seems to have one (it forwards unknown
    attributes to the TCP transport below it), whose FIN would cut TLS short;
    :class:`HalfCloseTLSProtocol` has a real one.
    """
    if isinstance(transport, HalfCloseTLSProtocol):
        return True
    if isinstance(transport, TLSMemoryBIOProtocol):
        return False
    return callable(getattr(transport, "loseWriteConnection", None))


__all__ = [
    "TWISTED_PRIVATE_NAMES",
    "HalfCloseTLSFactory",
    "HalfCloseTLSProtocol",
    "TLSClientEndpoint",
    "canHalfClose",
]
