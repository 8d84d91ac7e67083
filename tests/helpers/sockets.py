"""
Loopback sockets: in-process listeners, blocking clients, byte patterns, a Twisted probe.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcpproto import exchange
from tcpproto.connection import ServerFactory

#: The only address tests use.
LOOPBACK = "127.0.0.1"


#: A server endpoint string for a kernel-chosen port on loopback.
LOCAL_TCP = f"tcp:0:interface={LOOPBACK}"


async def listenLocal(
    testCase: SynchronousTestCase,
    factory: IProtocolFactory,
    description: str = LOCAL_TCP,
    reactor: Any = None,
) -> IListeningPort:
    """
    Listen with ``factory`` on ``description`` (loopback, port 0 by default).

    The port stops listening at cleanup.  Use :func:`portNumber` for the
    port the kernel chose.
    """
    r = _globalReactor if reactor is None else reactor
    port = cast(IListeningPort, await serverFromString(r, description).listen(factory))
    testCase.addCleanup(port.stopListening)
    return port


def portNumber(port: IListeningPort) -> int:
    """The TCP port number a listening port bound."""
    return int(port.getHost().port)  # type: ignore[attr-defined]


def clientDescription(port: IListeningPort | int) -> str:
    """A client endpoint string for a loopback TCP port."""
    number = port if isinstance(port, int) else portNumber(port)
    return f"tcp:{LOOPBACK}:{number}"


#: A second loopback address, to be a second client IP (Linux routes all of 127/8).
OTHER_LOOPBACK = "127.0.0.2"


def recvExactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    """Read exactly ``n`` bytes; fail (with what came) on EOF or timeout."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    got = 0
    while got < n:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except TimeoutError:
            chunk = b""
            if time.monotonic() < deadline:
                continue
            raise AssertionError(f"timed out after {got} of {n} bytes") from None
        if not chunk:
            raise AssertionError(f"EOF after {got} of {n} bytes: {b''.join(chunks)[:200]!r}")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recvUntilClosed(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, int | None]:
    """
    Read until the peer closes; the bytes read, and the errno that ended the
    reading (``None`` for a clean EOF, ``ECONNRESET`` for an RST).

    :raises AssertionError: if the peer does not close within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"not closed in {timeout}s; got {b''.join(chunks)[:200]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except OSError as e:
            return b"".join(chunks), e.errno
        if not chunk:
            return b"".join(chunks), None
        chunks.append(chunk)


def closedAtOnce(sock: socket.socket, timeout: float = 3.0) -> bool:
    """Whether the server closed ``sock`` (EOF or RST) without sending a byte."""
    data, _ = recvUntilClosed(sock, timeout)
    return data == b""


def resetClose(sock: socket.socket) -> None:
    """Close ``sock`` with an RST (``SO_LINGER`` 0), as a crashing peer's kernel would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def refusedNow(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a connect to ``host:port`` is refused (nobody listens)."""
    try:
        with contextlib.closing(connect(port, host, timeout=1.0)):
            return False
    except ConnectionRefusedError:
        return True
    except OSError as e:
        return e.errno == errno.ECONNREFUSED


_PERIOD = 251  # prime: a shifted or dropped chunk never lines up again


_BLOCK = bytes(range(_PERIOD)) * (((4 << 20) // _PERIOD) + 2)


def pattern(offset: int, length: int) -> bytes:
    """Bytes ``offset`` to ``offset + length`` of an endless, non-repeating-per-chunk stream."""
    out = []
    while length > 0:
        start = offset % _PERIOD
        n = min(length, len(_BLOCK) - start)
        out.append(_BLOCK[start : start + n])
        offset += n
        length -= n
    return b"".join(out)


class Probe(Protocol):
    """
    Sends ``payload`` on connect (then half-closes, if asked), collects what
    comes back; :attr:`done` fires with it when the connection closes, and
    :attr:`reason` says how.
    """

    def __init__(self, payload: bytes = b"", halfClose: bool = False) -> None:
        self.payload = payload
        self.halfClose = halfClose
        self.received: list[bytes] = []
        self.reason: Failure | None = None
        self.connected_: Deferred[Probe] = Deferred()
        self.done: Deferred[bytes] = Deferred()
        self.gotData: Deferred[bytes] | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        if self.payload:
            self.transport.write(self.payload)
        if self.halfClose:
            self.transport.loseWriteConnection()  # type: ignore[attr-defined]
        self.connected_.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        if self.gotData is not None:
            d, self.gotData = self.gotData, None
            d.callback(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.done.callback(b"".join(self.received))

    def nextData(self) -> Deferred[bytes]:
        """Fires with the next chunk received."""
        self.gotData = Deferred()
        return self.gotData


#: Seconds a blocking test socket waits for anything.
SOCKET_TIMEOUT = 10.0


def connect(
    address: str | tuple[str, int] | int,
    host: str = LOOPBACK,
    source: str | None = None,
    timeout: float = SOCKET_TIMEOUT,
    family: int | None = None,
) -> socket.socket:
    """
    A blocking client socket connected to ``address``: a port on ``host``, a
    ``(host, port)`` pair, or a UNIX socket path; from ``source`` if given.
    """
    if isinstance(address, int):
        address = (host, address)
    if isinstance(address, str):
        family = socket.AF_UNIX
    elif family is None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source is not None:
        sock.bind((source, 0))
    sock.connect(address)
    return sock


def halfCloseExchange(s: socket.socket, data: bytes, deadline: float = 30.0) -> bytes:
    """
    Send ``data`` on the connected ``s``, then ``shutdown(SHUT_WR)``; read
    until the server closes; close ``s``.  What the server sent.

    Sending and reading interleave (a selector), as a client must when the
    server answers while it is still sending.
    """
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    received: list[bytes] = []
    view = memoryview(data)
    sent = 0
    end = time.monotonic() + deadline
    try:
        if not data:
            s.shutdown(socket.SHUT_WR)
            sel.register(s, selectors.EVENT_READ)
        else:
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no EOF within {deadline}s: sent {sent}/{len(data)}, "
                    f"received {sum(map(len, received))}"
                )
            for key, events in sel.select(min(remaining, 1.0)):
                if events & selectors.EVENT_WRITE:
                    with contextlib.suppress(BlockingIOError):
                        sent += s.send(view[sent : sent + 262144])
                    if sent == len(data):
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(key.fileobj, selectors.EVENT_READ)
                if events & selectors.EVENT_READ:
                    try:
                        chunk = s.recv(262144)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        return b"".join(received)
                    received.append(chunk)
    finally:
        sel.close()
        s.close()


def readUntil(s: socket.socket, expected: int, deadline: float = SOCKET_TIMEOUT) -> bytes:
    """Read from the blocking ``s`` until ``expected`` bytes or EOF or ``deadline``."""
    chunks: list[bytes] = []
    got = 0
    end = time.monotonic() + deadline
    while got < expected and time.monotonic() < end:
        s.settimeout(max(end - time.monotonic(), 0.01))
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    s.settimeout(SOCKET_TIMEOUT)
    return b"".join(chunks)


def freePort(host: str = LOOPBACK) -> int:
    """A loopback port nothing listens on now (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def busyPort(testCase: SynchronousTestCase) -> str:
    """A ``tcp:`` server description of a loopback port something listens on
    (until cleanup): listening there fails with "in use"."""
    busy = socket.socket()
    testCase.addCleanup(busy.close)
    busy.bind((LOOPBACK, 0))
    busy.listen(1)
    return f"tcp:{busy.getsockname()[1]}:interface={LOOPBACK}"


class Silent(Protocol):
    """A client that says nothing; :attr:`lost` fires when its connection closes."""

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


async def allClosed(factory: ServerFactory, timeout: float = SOCKET_TIMEOUT) -> None:
    """Wait until the server has closed every connection of ``factory`` (a clean reactor)."""
    d = factory.limits.whenEmpty()
    d.addTimeout(timeout, _globalReactor)
    await d


async def exchangeLocal(
    testCase: SynchronousTestCase,
    factory: ServerFactory,
    data: bytes,
    serverDescription: str = LOCAL_TCP,
    clientFor: Callable[[IListeningPort], str] = clientDescription,
) -> bytes:
    """
    Listen with ``factory`` on ``serverDescription``, send ``data`` with
    :func:`tcpproto.exchange` from the client endpoint ``clientFor(port)``
    describes (loopback TCP by default), and return the answer once the
    server has closed its side too.
    """
    port = await listenLocal(testCase, factory, serverDescription)
    answer = await exchange(clientFromString(_globalReactor, clientFor(port)), data)
    await allClosed(factory)
    return answer
