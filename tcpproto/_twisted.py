"""
Every use of a private Twisted name or attribute in tcpproto, in one place.

tcpproto otherwise uses only Twisted's public API.  Each entry below relies on
something Twisted does not promise to keep; each carries a note naming the
upstream limitation it works around, and ``tests/test_twisted_guards.py`` has
one guard test per entry that fails loudly (naming the entry) when a Twisted
release changes the assumption.  A Twisted upgrade is audited here and
nowhere else; ``tests/test_layers.py`` checks that no other module imports a
private Twisted module or touches a Twisted underscore attribute.

The entries:

1. :func:`writeThroughSocket` and :func:`writeThrough`: the write-through
   fast path on :class:`twisted.internet.tcp.Connection`'s buffers.
2. :func:`tlsWriterFor`: TLS writes handed to OpenSSL at once, in order.
3. ``V1Parser``, ``V2Parser``, ``InvalidProxyHeader``: the PROXY header parsers.
4. ``IOpenSSLTrustRoot``: the type of a trust root.
5. :func:`directReadEPollReactor`: the lean reactor's dispatch on the epoll reactor's internals.
6. :class:`RaisingEndpointService`: a listener whose failure to listen raises.
7. :class:`PortAnnouncingUDPServer`: a UDP service that reports its port.
8. :func:`bigReadStandardIO`: standard input read 64 KiB at a time.
9. :class:`ReusePortPort`: ``SO_REUSEPORT`` on Twisted without ``makeBinding``.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, cast

from twisted.application.internet import StreamServerEndpointService, UDPServer
from twisted.internet import tcp

# 4. There is no public name for the type of what trustRootFromCertificates
#    returns (twisted/twisted#9376 made the function public, not the type).
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorCore

# 3. Twisted's PROXY header parsers are tested against HAProxy's
#    specification, but only its haproxy: wrapper (a ProtocolWrapper, which
#    is not half-close aware and connects the application before the header
#    is read) is public: we reuse the parsers behind our own wrapper.
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python import log

__all__ = [
    "IOpenSSLTrustRoot",
    "InvalidProxyHeader",
    "PortAnnouncingUDPServer",
    "RaisingEndpointService",
    "ReusePortPort",
    "V1Parser",
    "V2Parser",
    "bigReadStandardIO",
    "directReadEPollReactor",
    "tlsWriterFor",
    "writeThrough",
    "writeThroughSocket",
]


# -- 1. write-through -------------------------------------------------------
#
# Upstream limitation: tcp.Connection.write always buffers and waits for the
# next writable event (one more epoll registration and wake-up per message);
# there is no public "send now if nothing is queued".  We read its private
# buffers (_tempDataBuffer, _tempDataLen, dataBuffer, _writeDisconnected) to
# know that nothing is queued, and then send() on its socket ourselves, the
# way asyncio and uvloop do.

_WRITE_THROUGH_ATTRIBUTES = ("_tempDataBuffer", "_tempDataLen", "dataBuffer", "_writeDisconnected")


def writeThroughSocket(transport: object) -> socket.socket | None:
    """
    The socket behind ``transport`` if we may write to it directly, else ``None``.

    Only a plain TCP connection qualifies (its ``writeSomeData`` is exactly
    Twisted's, with the buffers we rely on); anything else (TLS, UNIX
    sockets, wrappers, test transports) goes through the public API.
    """
    if getattr(type(transport), "writeSomeData", None) is not tcp.Connection.writeSomeData:
        return None
    for name in _WRITE_THROUGH_ATTRIBUTES:
        if not hasattr(transport, name):
            return None
    sock = getattr(transport, "socket", None)
    return sock if isinstance(sock, socket.socket) else None


def writeThrough(transport: Any, sock: socket.socket, data: bytes) -> int:
    """
    Send ``data`` on ``sock`` now if ``transport`` has nothing queued.

    :return: ``-1`` when the fast path does not apply now (something is
        queued, or the connection is closing: use ``transport.write``);
        ``0`` when everything was sent; ``1`` when the kernel took only part
        of it and the rest was handed to ``transport.write`` (the caller
        should stop reading: see :func:`markProducerPaused`).
    """
    t = transport
    if not t.connected or t._tempDataLen or t.dataBuffer or t._writeDisconnected:
        return -1
    try:
        sent = sock.send(data)
    except OSError:
        # EAGAIN, or an error the transport will meet and report its own
        # way when it writes what we hand it below.
        sent = 0
    if sent == len(data):
        return 0
    t.write(data[sent:])
    return 1


def markProducerPaused(transport: Any) -> None:
    """
    Tell ``transport`` its producer is paused, so that it resumes it once its
    buffer drains (``FileDescriptor.producerPaused``: undocumented, and the
    only way to have a transport resume a producer it did not pause).
    """
    transport.producerPaused = True


# -- 2. the TLS write path ---------------------------------------------------
#
# Upstream limitation: BufferingTLSTransport (the TLS transport of ssl:
# endpoints) holds small writes in an _AggregateSmallWrites until the next
# reactor turn, and loses them when the peer's close_notify arrived in the
# same read as the data they answer (it shuts TLS down at once).  We encrypt
# and hand our answers to TCP at once with TLSMemoryBIOProtocol.write; to
# keep order with anything written through transport.write (the aggregator),
# the aggregator is flushed first.


def tlsWriterFor(transport: object) -> Callable[[bytes], None] | None:
    """
    A function writing through ``transport``'s TLS layer at once, in order
    with ``transport.write``; ``None`` if ``transport`` is not Twisted's TLS.
    """
    if not isinstance(transport, TLSMemoryBIOProtocol):
        return None
    tls: Any = transport
    write: Any = TLSMemoryBIOProtocol.write
    if getattr(tls, "_aggregator", None) is None:
        return cast(Callable[[bytes], None], partial(write, tls))

    def writeNow(data: bytes) -> None:
        # Looked up each time: connectionLost replaces it with a null one.
        tls._aggregator.flush()
        write(tls, data)

    return writeNow


# -- 5. the lean reactor ------------------------------------------------------
#
# Upstream limitation: EPollReactor.doPoll wraps every ready descriptor in
# twisted.python.log.callWithLogger (a legacy log context: half the CPU per
# message for an echo server) and offers no hook to dispatch differently; we
# re-implement doPoll on its private _poller, _selectables, _doReadOrWrite
# and _disconnectSelectable.  (tcpproto.reactor documents the reactor.)


def _leanDispatch() -> type:
    from select import EPOLLIN

    from twisted.internet.epollreactor import EPollReactor

    class DirectReadEPollReactor(EPollReactor):
        """An epoll reactor that calls ``doRead`` directly for plain read events."""

        def doPoll(self, timeout: float | None) -> None:
            """Poll for events and dispatch them (see :mod:`tcpproto.reactor`)."""
            if timeout is None:
                timeout = -1  # wait indefinitely
            try:
                events = self._poller.poll(timeout, len(self._selectables))
            except OSError as err:
                if err.errno == errno.EINTR:
                    return
                raise
            selectables = self._selectables
            general = self._doReadOrWrite
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is None:
                    continue
                if event == EPOLLIN:
                    try:
                        why = selectable.doRead()
                    except BaseException:
                        # As Twisted's _doReadOrWrite: log it, drop the connection.
                        why = sys.exc_info()[1]
                        log.err()
                    if why:
                        self._disconnectSelectable(selectable, why, True)  # type: ignore[no-untyped-call]
                else:
                    general(selectable, fd, event)  # type: ignore[no-untyped-call]

        doIteration = doPoll

    return DirectReadEPollReactor


def directReadEPollReactor() -> type:
    """
    The base class of :class:`tcpproto.reactor.LeanEPollReactor`: Twisted's
    epoll reactor with ``doPoll`` replaced.

    :raises ImportError: where there is no epoll.
    """
    return _leanDispatch()


# -- 6. a listener that raises ---------------------------------------------------
#
# Upstream limitation: StreamServerEndpointService logs a failure to listen
# and runs on (unless its private _raiseSynchronously is set, as twistd's
# own strports do), and offers no public Deferred for the port.


class RaisingEndpointService(StreamServerEndpointService):
    """A :class:`StreamServerEndpointService` whose failure to listen raises."""

    _raiseSynchronously = True

    def whenListening(self) -> Deferred[IListeningPort]:
        """The Deferred of the port, once ``privilegedStartService`` ran."""
        waiting = self._waitingForPort
        assert waiting is not None
        return cast("Deferred[IListeningPort]", waiting)


# -- 7. a UDP service that reports its port -----------------------------------------
#
# Upstream limitation: UDPServer keeps its port to itself; the only way to
# learn the port bound (port 0) is to override its private _getPort.


class PortAnnouncingUDPServer(UDPServer):
    """A :class:`UDPServer` that calls :meth:`portBound` with its port."""

    def portBound(self, port: IListeningPort) -> None:
        """Called once the port is bound."""

    def _getPort(self) -> IListeningPort:
        port = cast(IListeningPort, super()._getPort())  # type: ignore[no-untyped-call]
        self.portBound(port)
        return port


# -- 8. standard input in 64 KiB reads -----------------------------------------
#
# Upstream limitation: StandardIO reads 8 KiB per event (fdesc.readFromFD)
# with no option to read more; we build it with our own reader, replacing
# its private _reader and _writer setup.

#: How much of standard input one read takes.
STDIN_READ_SIZE = 65536

_STANDARD_IO: list[type] = []


def _buildBigReadStandardIO() -> type:
    from twisted.internet import main, process
    from twisted.internet.stdio import StandardIO

    class BigReads(process.ProcessReader):
        """Reads standard input 64 KiB at a time; errors end it as Twisted's reader does."""

        def doRead(self) -> object:
            try:
                data = os.read(self.fd, STDIN_READ_SIZE)
            except BlockingIOError:
                return None
            except OSError:
                return main.CONNECTION_LOST
            if not data:
                return main.CONNECTION_DONE
            self.dataReceived(data)  # type: ignore[no-untyped-call]
            return None

    class BigReadStandardIO(StandardIO):
        """StandardIO with :class:`BigReads` on standard input (its __init__, reader swapped)."""

        def __init__(self, proto: Any, reactor: IReactorCore, stdin: int, stdout: int) -> None:
            self.protocol = proto
            self._writer = process.ProcessWriter(reactor, self, "write", stdout)
            self._reader = BigReads(reactor, self, "read", stdin)  # type: ignore[no-untyped-call]
            self._reader.startReading()  # type: ignore[no-untyped-call]
            self.protocol.makeConnection(self)

    return BigReadStandardIO


def bigReadStandardIO(proto: Any, reactor: IReactorCore, stdin: int = 0, stdout: int = 1) -> Any:
    """
    Standard input and output as a transport for ``proto``, reading 64 KiB
    at a time (piping a large file through the client, 8 KiB reads were
    half the client's time: 256 MiB round trip 3.3 s, 1.5 s with 64 KiB).
    """
    if not _STANDARD_IO:
        _STANDARD_IO.append(_buildBigReadStandardIO())
    return _STANDARD_IO[0](proto, reactor, stdin, stdout)


# -- 9. SO_REUSEPORT on older Twisted ---------------------------------------------
#
# Upstream limitation: tcp.makeBinding (a public way to pass SO_REUSEPORT to
# listenTCP) is recent; on a Twisted without it we subclass tcp.Port, whose
# constructor and createInternetSocket are not documented for subclassing.


class ReusePortPort(tcp.Port):
    """A listening TCP port with ``SO_REUSEPORT``, for Twisted without ``makeBinding``."""

    def createInternetSocket(self) -> socket.socket:
        s: socket.socket = super().createInternetSocket()  # type: ignore[no-untyped-call]
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return s
