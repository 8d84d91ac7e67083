"""
The client's protocols (:class:`ClientProtocol`, :class:`InputProtocol`) and
:func:`exchange`: see :mod:`tcpproto.client`, their public face, for how the
pieces fit; the command line is in :mod:`tcpproto._clientcli`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProducer,
    IPushProducer,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from tcpproto._halfclose import canHalfClose, halfCloseOrClose

__all__ = ["ClientProtocol", "InputNotSent", "InputProtocol", "exchange"]


class InputNotSent(error.ConnectionLost):
    """
    The server closed the connection before it had read all our input.

    It ended its side first (FIN, or ``close_notify`` over TLS) and then
    refused what we still sent (a reset): input was lost.

    :ivar bytesSent: how many bytes of input were handed to the connection
        (the server read at most that many).
    """

    def __init__(self, bytesSent: int) -> None:
        super().__init__(
            f"the server closed the connection before reading all our input "
            f"({bytesSent:,} bytes sent)"
        )
        self.bytesSent = bytesSent

    def __str__(self) -> str:
        return str(self.args[0])


@implementer(IHalfCloseableProtocol)
class ClientProtocol(Protocol):
    """
    The network side of the client.

    The end of our input ends our side of the connection (:meth:`halfClose`:
    our FIN, or our ``close_notify`` over TLS) and we read on until the server
    ends its side.  A server may also end its side first and still read, as
    TCP allows: we then go on sending until the end of our input, and close.
    If it had in fact closed the whole connection, what we still send is
    refused with a reset and ``done`` fails with :class:`InputNotSent`.

    :param output: where the server's bytes go: any
        :class:`~twisted.internet.interfaces.IConsumer` (a stdio transport,
        a file writer, a buffer).  It is given the connection as a streaming
        producer, so it can pause reading from the socket while it is full.

    :ivar done: fires with ``None`` when the connection has closed cleanly,
        or fails with the reason it was lost (RST, timeout, TLS error,
        :class:`InputNotSent`).
    :ivar serverClosedFirst: whether the server ended its side before we
        ended ours.
    :ivar serverFinished: whether the server has ended its side (it will send
        nothing more).
    :ivar onServerFinished: called with no argument when the server ends its
        side while we still have input to send (the command line tells the
        person at the terminal).
    """

    onServerFinished: Callable[[], None] | None = None

    def __init__(self, output: IConsumer) -> None:
        self.output = output
        self.done: Deferred[None] = Deferred()
        self.bytesIn = 0
        self.bytesOut = 0
        self.halfClosed = False
        self.serverClosedFirst = False
        self.serverFinished = False
        self._handshook = False
        self._closeAfterHandshake = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        if ISSLTransport.providedBy(self.transport):
            # Told when the TLS handshake is done (see halfClose).  Provided
            # here, not by the class: Twisted's endpoints wrap a protocol in
            # a _WrappingProtocol that provides only the last of the
            # IHalfCloseableProtocol/IHandshakeListener interfaces its
            # protocol provides (directlyProvides in a loop), and over TCP
            # the half-close is the one that matters.
            alsoProvides(self, IHandshakeListener)
        self.output.registerProducer(cast(IProducer, self.transport), True)

    def handshakeCompleted(self) -> None:
        """The TLS handshake is done (over TLS only: see :meth:`connectionMade`)."""
        self._handshook = True
        if self._closeAfterHandshake:
            self._closeAfterHandshake = False
            assert self.transport is not None
            self.transport.loseConnection()

    def write(self, data: bytes) -> None:
        """Send ``data`` to the server."""
        assert self.transport is not None
        self.bytesOut += len(data)
        self.transport.write(data)

    def halfClose(self) -> None:
        """
        We have nothing more to send: end our side, keep reading the answer.

        If the server has already ended its side, the connection is closed.
        A TLS transport that cannot half-close (Twisted's own) is closed
        instead, once what is buffered has been sent and the handshake is
        done (Twisted aborts a TLS connection closed during its handshake).
        """
        if self.halfClosed:
            return
        self.halfClosed = True
        transport = self.transport
        assert transport is not None
        if self.serverFinished:
            transport.loseConnection()
        elif (
            ISSLTransport.providedBy(transport)
            and not canHalfClose(transport)
            and not self._handshook
        ):
            self._closeAfterHandshake = True
        else:
            halfCloseOrClose(transport)

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        self.output.write(data)

    def readConnectionLost(self) -> None:
        """
        The server ended its side: it will send nothing more.

        If our input is over too, the connection is done; otherwise we go on
        sending until its end (:meth:`halfClose` then closes).
        """
        self.serverFinished = True
        transport = self.transport
        assert transport is not None
        if self.halfClosed:
            transport.loseConnection()
            return
        self.serverClosedFirst = True
        if self.onServerFinished is not None:
            self.onServerFinished()

    def writeConnectionLost(self) -> None:
        """Our FIN (or close_notify) went out."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.halfClosed:
            self.serverClosedFirst = True
        self.output.unregisterProducer()
        if reason.check(error.ConnectionDone):
            self.done.callback(None)
        elif self.serverFinished and reason.check(error.ConnectionLost):
            self.done.errback(Failure(InputNotSent(self.bytesOut)))
        else:
            self.done.errback(reason)


@implementer(IHalfCloseableProtocol)
class InputProtocol(Protocol):
    """
    The local side of the client: its input goes to ``connection``.

    Attach it to a :class:`twisted.internet.stdio.StandardIO` (or any
    transport whose reading can be paused): it registers that transport as a
    streaming producer with the connection, so input is read only as fast as
    the network takes it, and the end of input half-closes the connection.

    :ivar closed: fires when this local transport has closed both ways.
    """

    def __init__(self, connection: ClientProtocol) -> None:
        self.connection = connection
        self.closed: Deferred[None] = Deferred()
        #: Whether our output went away before the connection ended.
        self.outputClosed = False

    def connectionMade(self) -> None:
        net = self.connection.transport
        assert net is not None
        assert self.transport is not None
        cast(IConsumer, net).registerProducer(cast(IPushProducer, self.transport), True)

    def dataReceived(self, data: bytes) -> None:
        self.connection.write(data)

    def readConnectionLost(self) -> None:
        """End of input: half-close the connection."""
        net = self.connection.transport
        if net is not None:
            cast(IConsumer, net).unregisterProducer()
        if not self.connection.done.called:
            self.connection.halfClose()

    def writeConnectionLost(self) -> None:
        """Our output was closed (a pipe reader went away): drop the connection."""
        self.outputClosed = True
        net = self.connection.transport
        if not self.connection.done.called and net is not None:
            # Nobody will read the answer.  A clean close would first wait for
            # our unsent input, which the server does not read while we do not
            # read its answers: abort instead.
            abort = getattr(net, "abortConnection", None)
            (abort or net.loseConnection)()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


@implementer(IConsumer)
class _Collector:
    """An in-memory consumer for :func:`exchange`."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


async def _exchange(endpoint: IStreamClientEndpoint, data: bytes) -> bytes:
    collector = _Collector()
    proto = ClientProtocol(collector)
    await connectProtocol(endpoint, proto)
    if data:
        proto.write(data)
    proto.halfClose()
    await proto.done
    return b"".join(collector.chunks)


def exchange(endpoint: IStreamClientEndpoint, data: bytes) -> Deferred[bytes]:
    """
    Connect to ``endpoint``, send ``data``, half-close, and collect the answer.

    :return: a Deferred that fires with every byte the server sent until it
        closed the connection, or fails with why the connection could not be
        made or was lost (:class:`InputNotSent` if the server closed before
        reading all of ``data``).

    Over TLS, the end of ``data`` is our ``close_notify`` and the answer is
    read until the server's, when the endpoint's TLS layer can half-close
    (``tcpecho-client``'s does).  Over Twisted's own TLS layer (the ``tls:``
    endpoint string) the connection is closed after ``data``, once the
    handshake is done, and the answer is read until the server's
    ``close_notify``: a tcpproto server still answers all of ``data``.

    Against the echo server the answer is ``data`` itself::

        answer = await exchange(clientFromString(reactor, "tcp:127.0.0.1:7788"), b"hi")
    """
    return Deferred.fromCoroutine(_exchange(endpoint, data))
