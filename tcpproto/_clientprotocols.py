"""
The client's protocols (:class:`ClientProtocol`, :class:`InputProtocol`) and
:func:`exchange`: see :mod:`tcpproto.client`, their public face, for how the
pieces fit; the command line is in :mod:`tcpproto._clientcli`.
"""

from __future__ import annotations

from typing import cast

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IProducer,
    IPushProducer,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from tcpproto._halfclose import halfCloseOrClose

__all__ = ["ClientProtocol", "InputProtocol", "exchange"]


@implementer(IHalfCloseableProtocol)
class ClientProtocol(Protocol):
    """
    The network side of the client.

    :param output: where the server's bytes go: any
        :class:`~twisted.internet.interfaces.IConsumer` (a stdio transport,
        a file writer, a buffer).  It is given the connection as a streaming
        producer, so it can pause reading from the socket while it is full.

    :ivar done: fires with ``None`` when the connection has closed cleanly
        (FIN), or fails with the reason it was lost (RST, timeout).
    :ivar serverClosedFirst: whether the server ended the connection before
        we half-closed it.
    """

    def __init__(self, output: IConsumer) -> None:
        self.output = output
        self.done: Deferred[None] = Deferred()
        self.bytesIn = 0
        self.bytesOut = 0
        self.halfClosed = False
        self.serverClosedFirst = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.output.registerProducer(cast(IProducer, self.transport), True)

    def write(self, data: bytes) -> None:
        """Send ``data`` to the server."""
        assert self.transport is not None
        self.bytesOut += len(data)
        self.transport.write(data)

    def halfClose(self) -> None:
        """
        We have nothing more to send: send FIN, keep reading the answer.

        Transports that cannot half-close (TLS) are closed instead, once
        what is buffered has been sent.
        """
        if self.halfClosed:
            return
        self.halfClosed = True
        transport = self.transport
        assert transport is not None
        halfCloseOrClose(transport)

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        self.output.write(data)

    def readConnectionLost(self) -> None:
        """The server sent FIN: it will send nothing more, so we close too."""
        if not self.halfClosed:
            self.serverClosedFirst = True
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our FIN went out."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.halfClosed:
            self.serverClosedFirst = True
        self.output.unregisterProducer()
        if reason.check(error.ConnectionDone):
            self.done.callback(None)
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
        made or was lost.

    Against the echo server the answer is ``data`` itself::

        answer = await exchange(clientFromString(reactor, "tcp:127.0.0.1:7788"), b"hi")
    """
    return Deferred.fromCoroutine(_exchange(endpoint, data))
