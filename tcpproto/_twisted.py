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
5. :func:`directReadEPollReactor`: the lean reactor's main loop and dispatch on the
   reactor's internals.
6. :class:`RaisingEndpointService`: a listener whose failure to listen raises.
7. :class:`PortAnnouncingUDPServer`: a UDP service that reports its port.
8. :func:`bigReadStandardIO`: standard input read 64 KiB at a time.
9. :class:`ReusePortPort`: ``SO_REUSEPORT`` on Twisted without ``makeBinding``.
10. :class:`HalfCloseTLSProtocol`: half-close over TLS (``close_notify`` as a FIN).
"""

from __future__ import annotations

import errno
import inspect
import os
import socket
import sys
from collections.abc import Callable
from functools import partial
from threading import get_ident
from typing import Any, cast

from OpenSSL.SSL import Error as TLSError
from OpenSSL.SSL import SysCallError, WantReadError, ZeroReturnError
from twisted.application.internet import StreamServerEndpointService, UDPServer
from twisted.internet import tcp

# 4. There is no public name for the type of what trustRootFromCertificates
#    returns (twisted/twisted#9376 made the function public, not the type).
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionFdescWentAway
from twisted.internet.interfaces import IHalfCloseableProtocol, IListeningPort, IReactorCore

# 3. Twisted's PROXY header parsers are tested against HAProxy's
#    specification, but only its haproxy: wrapper (a ProtocolWrapper, which
#    is not half-close aware and connects the application before the header
#    is read) is public: we reuse the parsers behind our own wrapper.
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python import context as _context
from twisted.python import log
from twisted.python.failure import Failure
from twisted.python.log import ILogContext
from zope.interface import implementer

__all__ = [
    "TLS_HALF_CLOSE_NAMES",
    "HalfCloseTLSProtocol",
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
    sockets, wrappers, test transports) goes through the public API.  A
    transport that qualifies is made ready for the fast path: the class
    defaults it reads per message are set on it (:func:`_settleAttributes`).
    """
    if getattr(type(transport), "writeSomeData", None) is not tcp.Connection.writeSomeData:
        return None
    for name in _WRITE_THROUGH_ATTRIBUTES:
        if not hasattr(transport, name):
            return None
    sock = getattr(transport, "socket", None)
    if not isinstance(sock, socket.socket):
        return None
    _settleAttributes(transport)
    return sock


#: Class defaults of tcp.Connection (abstract.FileDescriptor) that the
#: per-message path reads: the write-through's checks, Twisted's doRead.
_READ_PER_MESSAGE = ("dataBuffer", "_writeDisconnected", "bufferSize")


def _settleAttributes(transport: Any) -> None:
    """
    Copy the class defaults read on every message onto the transport itself.

    CPython 3.11 specialises an attribute read that finds the attribute on
    the instance, not one that misses the instance and finds a class
    default: ``dataBuffer`` and ``_writeDisconnected`` (set on the instance
    only once something was buffered) and ``bufferSize`` (never) cost a full
    lookup each, three per message.  The same values set on the instance,
    once per connection, make them plain reads: 5-6% fewer instructions per
    message (benchmarks/RESULTS.md).  Twisted reads and writes them as
    instance attributes anyway; a class's ``bufferSize`` changed later no
    longer reaches connections already made.
    """
    cls = type(transport)
    for name in _READ_PER_MESSAGE:
        default = inspect.getattr_static(cls, name, None)
        if default is not None and not hasattr(type(default), "__get__"):
            # A plain class value (were it a property, setting it could fail).
            setattr(transport, name, getattr(transport, name))


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

    ``None`` for :class:`HalfCloseTLSProtocol` too: its own ``write`` hands
    answers to OpenSSL before the read that asked for them returns, and
    nothing is lost when close_notify comes (entry 10).
    """
    if not isinstance(transport, TLSMemoryBIOProtocol) or isinstance(
        transport, HalfCloseTLSProtocol
    ):
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
# Upstream limitations, neither with a hook:
# - EPollReactor.doPoll wraps every ready descriptor in
#   twisted.python.log.callWithLogger, which asks the selectable for its log
#   prefix and pushes a legacy log context -- two dictionary copies -- whether
#   or not anything reads it (with the dispatch around it, half the CPU per
#   message for an echo server).  We re-implement the dispatch on its private
#   _poller, _selectables, _doReadOrWrite and _disconnectSelectable, and give
#   legacy logging the same context, made only when it is read
#   (_EventLogContext below, on the public twisted.python.context API).
# - ReactorBase.mainLoop runs runUntilCurrent and timeout on every turn, in
#   an error handler entered anew each turn, whether or not a timed call or a
#   call from a thread is there (at one connection, 28% of the user-space
#   instructions per message: benchmarks/RESULTS.md, issue 13).  Our loop
#   runs them only when there is work for them, which it tells from
#   ReactorBase's private _newTimedCalls, _pendingTimedCalls, _cancellations,
#   _justStopped and _started (the same from the declared floor, 24.11, to
#   26.10).
# tcpproto.reactor documents the reactor; tests/test_reactor.py guards each
# private name and runs Twisted's own reactor test suites on it.

#: The longest wait ReactorBase.timeout allows: epoll_wait's timeout is a C
#: int of milliseconds.
LONGEST_WAIT = 2147483

#: Why a descriptor whose fileno() is -1 is disconnected (as posixbase's own).
_FD_GONE = ConnectionFdescWentAway("File descriptor lost")


class _EventLogContext(dict):  # type: ignore[type-arg]
    """
    The frame ``log.callWithLogger`` pushes on the legacy context stack
    (:mod:`twisted.python.context`) around an event, made only if read.

    Twisted pushes ``{ILogContext: {..., "system": selectable.logPrefix()}}``
    around every event, so that a line logged through ``twisted.python.log``
    while the event is handled names the connection
    (``[EchoProtocol,0,127.0.0.1]``).  The lean loop keeps one of these on
    the stack instead, an empty dictionary that knows the frames below it
    and, during an event, the event's selectable:

    - in an event, the first read of ``ILogContext`` builds the answer
      exactly as ``log.callWithContext`` builds it, and the frame keeps it
      until the event ends, so an event sees one dictionary;
    - between events (timed calls, calls from threads, signal handlers) it
      answers what the frames below it answer, as if it were not there;
    - a frame someone keeps past its event (a thread pool keeps the frame it
      was called under, for its worker) is settled by the loop
      (:meth:`settle`) and left to its holder: it goes on answering as
      Twisted's frame would have.
    """

    __slots__ = ("building", "selectable", "under")

    #: The frames below this one, or None once settled after an event.
    under: list[Any] | None
    #: The selectable whose event this is, or None between events.
    selectable: Any
    #: The thread asking the selectable for its prefix, or None.
    building: int | None

    def __missing__(self, key: object) -> Any:
        selectable = self.selectable
        under = self.under
        if selectable is None:
            if under is None:
                raise KeyError(key)  # settled after an event: ILogContext only
            return _lookUp(under, key)
        if key is not ILogContext or under is None:
            raise KeyError(key)
        asking = get_ident()
        if self.building == asking:
            # logPrefix() itself reads the context: on Twisted it runs
            # before the frame is pushed, so it sees the frames below.
            raise KeyError(key)
        try:
            below = _lookUp(under, key)
        except KeyError:
            below = {}
        made = dict(below)
        self.building = asking
        try:
            system = selectable.logPrefix()
        except KeyboardInterrupt:
            raise
        except BaseException:
            # As callWithLogger: report it, and name the system after it.
            made["system"] = "(buggy logPrefix method)"
            dict.__setitem__(self, key, made)
            log.err(system=made["system"])
            return made
        finally:
            self.building = None
        made["system"] = system
        dict.__setitem__(self, key, made)
        return made

    def settle(self) -> None:
        """
        Make this frame what Twisted's would be once its event is over: the
        answer built now (on the reactor thread, from the event's
        selectable), and nothing else held.  Between events it stays as it
        is: it answers what the frames below it answer.
        """
        if self.selectable is not None:
            self[ILogContext]  # built now, if the event did not read it
            self.under = self.selectable = None


def _lookUp(frames: list[Any], key: object) -> Any:
    """``key`` in the topmost of ``frames`` that has it, as ``ContextTracker.getContext``."""
    for frame in reversed(frames):
        try:
            return frame[key]
        except KeyError:
            pass
    raise KeyError(key)


def _eventFrame(under: list[Any]) -> _EventLogContext:
    """A new, empty event frame over the frames ``under``."""
    frame = _EventLogContext()
    frame.under = under
    frame.selectable = frame.building = None
    return frame


def _legacyContextStack() -> tuple[object, list[Any]] | None:
    """
    The installed context tracker and the calling thread's stack of it, or
    None when the tracker is not one of Twisted's own (then the reactor
    dispatches through Twisted's code, which pushes its frames through it).
    """
    tracker: object = _context.theContextTracker
    if type(tracker) is _context.ThreadedContextTracker:
        return tracker, tracker.currentContext().contexts
    if type(tracker) is _context.ContextTracker:
        return tracker, tracker.contexts
    return None


def _succeed(stack: list[Any], kept: _EventLogContext) -> _EventLogContext:
    """
    A new event frame in the place of ``kept`` on ``stack`` (found by
    identity: an empty frame equals ``{}``); ``kept``, which someone else
    holds, is settled and left to them.
    """
    frame = _eventFrame(cast("list[Any]", kept.under))
    kept.settle()
    for at in range(len(stack) - 1, -1, -1):
        if stack[at] is kept:
            stack[at] = frame
            break
    return frame


def _takeOff(stack: list[Any], frame: _EventLogContext) -> None:
    """Take ``frame`` off ``stack`` (by identity)."""
    for at in range(len(stack) - 1, -1, -1):
        if stack[at] is frame:
            del stack[at]
            return


def _leanDispatch() -> type:
    from select import EPOLLIN

    from twisted.internet.epollreactor import EPollReactor
    from twisted.logger import Logger

    # ReactorBase's own logger and main-loop error handler, rebuilt with the
    # public API: the same namespace, message and level.
    baseLog = Logger(namespace="twisted.internet.base")
    topHandler = baseLog.failureHandler("Unexpected error in main loop")
    callWithLogger = log.callWithLogger
    succeed = _succeed
    getrefcount = sys.getrefcount
    gettrace = sys.gettrace

    class DirectReadEPollReactor(EPollReactor):
        """
        An epoll reactor whose main loop calls ``doRead`` directly for plain
        read events, and runs the timed-call machinery only when it has work.
        """

        def mainLoop(self) -> None:
            """
            ``ReactorBase.mainLoop``, doing its bookkeeping only when needed.

            Each turn, Twisted's loop calls ``runUntilCurrent`` (calls from
            threads, due timed calls, the shutdown after ``stop()``) and
            ``timeout`` (how long to wait), inside an error handler entered
            anew.  This one calls them when one of them has work: a call
            from a thread is queued, a timed call was added or is due, the
            cancelled calls need compacting, or ``stop()`` was called.
            Otherwise it waits until the earliest pending call, exactly as
            ``timeout`` computes it.  The handler is the same (the error is
            logged as Twisted logs it, and the loop goes on), entered once per
            run of the inner loop instead of once per turn.  Everything
            observable is Twisted's: tests/test_reactor.py runs Twisted's own
            reactor tests on it.  (``doIteration``, which ``iterate()`` calls,
            is Twisted's own ``doPoll``.)
            """
            if getattr(self.doIteration, "__func__", None) is not EPollReactor.doPoll:
                # doIteration was replaced: Twisted's loop calls it.
                super().mainLoop()
                return
            while self._started:
                with topHandler:
                    self._leanLoop()
            baseLog.info("Main loop terminated.")

        def _leanLoop(self) -> None:
            found = _legacyContextStack()
            if found is None:
                # A context tracker of the application's own: one turn of
                # Twisted's loop (mainLoop calls again while it runs).
                self.runUntilCurrent()
                timeout = self.timeout()
                self.doIteration(self.running and timeout)  # type: ignore[no-untyped-call]
                return
            tracker, stack = found
            contexts = _context  # the module: its tracker can be replaced
            poll = self._poller.poll
            selectables = self._selectables
            general = self._doReadOrWrite
            disconnect = self._disconnectSelectable
            readable = EPOLLIN
            fdGone = _FD_GONE
            # The event frame stays on the stack while the loop runs; each
            # event sets its selectable.  One frame serves event after event
            # while nobody else keeps it (a frame made and dropped per event
            # measured 8% more instructions per message).  Whoever does keep
            # it (a thread pool keeps the frame it was called under, for its
            # worker) gets it settled, and the loop puts a new one in its
            # place.  The reference count tells -- CPython's, which is what
            # tcpproto runs on: ``alone`` is the count while only the loop
            # holds it.  (Under a tracer, Python 3.10 keeps a frame's locals
            # in a snapshot, so the count is not measured then: -1 has every
            # frame replaced until it can be.)  A context tracker installed
            # while the loop runs is taken up after the next timed call or
            # call from a thread (Twisted reads it on every event; installing
            # one while running is rare).
            frame = _eventFrame(stack[:])
            stack.append(frame)
            alone = getrefcount(frame) if gettrace() is None else -1
            t: float | None
            why: object
            try:
                while self._started:
                    if self.threadCallQueue or self._newTimedCalls or self._justStopped:
                        self.runUntilCurrent()
                        t = self.timeout()
                        if contexts.theContextTracker is not tracker:
                            return  # another tracker was installed: mainLoop starts anew
                        if getrefcount(frame) != alone:
                            frame = succeed(stack, frame)  # kept: see above
                            alone = getrefcount(frame) if gettrace() is None else -1
                    else:
                        pending = self._pendingTimedCalls
                        if not pending:
                            t = None
                        else:
                            t = pending[0].time - self.seconds()
                            cancelled = self._cancellations
                            if t <= 0 or (cancelled > 50 and cancelled > len(pending) >> 1):
                                # Due, or runUntilCurrent compacts the heap.
                                self.runUntilCurrent()
                                t = self.timeout()
                                if contexts.theContextTracker is not tracker:
                                    return
                                if getrefcount(frame) != alone:
                                    frame = succeed(stack, frame)  # kept: see above
                                    alone = getrefcount(frame) if gettrace() is None else -1
                            elif t > LONGEST_WAIT:
                                t = LONGEST_WAIT
                    if not self.running:
                        t = 0  # Twisted's "t = self.running and timeout"
                    try:
                        events = poll(-1 if t is None else t, len(selectables))
                    except OSError as err:
                        if err.errno == errno.EINTR:
                            continue
                        raise
                    for fd, event in events:
                        selectable = selectables.get(fd)
                        if selectable is None:
                            continue
                        if event != readable:
                            # Writable, hang-up, error: Twisted's own dispatch,
                            # over a frame that names nothing.
                            frame.selectable = None
                            callWithLogger(selectable, general, selectable, fd, event)  # type: ignore[no-untyped-call]
                            continue
                        frame.selectable = selectable
                        try:
                            # _doReadOrWrite's read branch: a descriptor whose
                            # fileno() is -1 is gone; an error in fileno() or
                            # doRead is logged and disconnects (never as a
                            # half-close).
                            try:
                                why = fdGone if selectable.fileno() == -1 else selectable.doRead()
                            except BaseException:
                                why = sys.exc_info()[1]
                                log.err()
                                disconnect(selectable, why, False)  # type: ignore[no-untyped-call]
                            else:
                                if why:
                                    # Not a read when the descriptor was gone.
                                    disconnect(selectable, why, why is not fdGone)  # type: ignore[no-untyped-call]
                        except KeyboardInterrupt:
                            raise
                        except BaseException:
                            # As callWithLogger: logged under the selectable's
                            # system (the frame names it), and on to the next.
                            log.err()
                        if getrefcount(frame) != alone:
                            frame = succeed(stack, frame)
                            alone = getrefcount(frame) if gettrace() is None else -1
                        elif frame:
                            frame.clear()  # the context built for this event
                    # Outside events (timed calls, calls from threads, signal
                    # handlers, the wait) the frame names nothing, and the loop
                    # holds nothing of the last event (as Twisted's doPoll,
                    # whose locals are gone by then).
                    selectable = frame.selectable = why = None
            finally:
                _takeOff(stack, frame)

    return DirectReadEPollReactor


def directReadEPollReactor() -> type:
    """
    The base class of :class:`tcpproto.reactor.LeanEPollReactor`: Twisted's
    epoll reactor with ``mainLoop`` replaced (the loop dispatches plain reads
    itself; ``doPoll``, which ``iterate()`` calls, stays Twisted's).

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


# -- 10. half-close over TLS ---------------------------------------------------
#
# Upstream limitation: TLSMemoryBIOProtocol treats the peer's close_notify
# (OpenSSL's ZeroReturnError) as the end of the whole connection: it answers
# with its own and closes, so the protocol above never gets
# readConnectionLost and cannot answer the end of its input; it has no
# loseWriteConnection of its own (ProtocolWrapper forwards the name to the TCP
# transport, whose FIN would cut TLS short); and BufferingTLSTransport's
# aggregated small writes are dropped when close_notify arrives in the same
# read as the data they answer.  twisted/twisted#5341 ("loseWriteConnection
# should not even exist there", written for TLS 1.0-1.2 before RFC 8446 gave
# close_notify half-close semantics) and #7926 (loseConnection waits forever
# for the peer's close_notify) are the upstream tickets.  We subclass
# TLSMemoryBIOProtocol: we override its private _flushReceiveBIO (the loop
# that meets ZeroReturnError), call its _flushSendBIO, _shutdownTLS and
# _tlsShutdownFinished, and read its _lostTLSConnection, _aborted,
# _handshakeDone, _appSendBuffer and _producer (TLS_HALF_CLOSE_NAMES).  What
# would retire this entry: a half-close-aware TLSMemoryBIOProtocol upstream
# (deliver ZeroReturnError as readConnectionLost to an IHalfCloseableProtocol,
# implement loseWriteConnection as SSL_shutdown then a TCP half-close, flush
# aggregated writes before any shutdown).  tcpproto._tls documents the
# behaviour (HalfCloseTLSFactory, TLSClientEndpoint).


def _unexpectedEOF() -> Failure:
    """
    An end of input without close_notify, in the form Twisted's
    _tlsShutdownFinished reports as ConnectionLost (on every Twisted since
    the floor: an SSL error with an empty queue fails there on 24.11).
    """
    return Failure(SysCallError(-1, "Unexpected EOF"))


#: The private parts of TLSMemoryBIOProtocol that HalfCloseTLSProtocol uses.
TLS_HALF_CLOSE_NAMES = (
    "_flushReceiveBIO",
    "_flushSendBIO",
    "_shutdownTLS",
    "_tlsShutdownFinished",
    "_lostTLSConnection",
    "_aborted",
    "_handshakeDone",
    "_appSendBuffer",
    "_producer",
)


@implementer(IHalfCloseableProtocol)
class HalfCloseTLSProtocol(TLSMemoryBIOProtocol):
    """
    Twisted's TLS transport, with ``close_notify`` as a half-close (built by
    :class:`tcpproto._tls.HalfCloseTLSFactory`, whose docstring describes
    the behaviour).

    It is also half-closeable towards the transport below it (the TCP
    connection), so the peer's FIN after its ``close_notify`` does not close
    the socket under our answer.
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
        if self._collected is not None:
            # A delivery within a delivery (TLS over TLS): the outer one sends.
            super().dataReceived(data)  # type: ignore[no-untyped-call]
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
            except TLSError as e:
                if type(e) is TLSError and e.args and not e.args[0]:
                    # An error with no reason: OpenSSL's end of input without
                    # close_notify, as newer Twisted reads it (24.11's
                    # _representsEOF fails with IndexError on it).
                    self._tlsShutdownFinished(_unexpectedEOF())  # type: ignore[no-untyped-call]
                else:
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
        except TLSError:
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
            self._tlsShutdownFinished(_unexpectedEOF())  # type: ignore[no-untyped-call]

    def writeConnectionLost(self) -> None:
        """Our TCP FIN went out (after our close_notify)."""
        if self._writeClosed:
            self._deliverWriteConnectionLost()
