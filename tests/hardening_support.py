"""
Helpers for the hardening tests: servers with resource limits, blocking clients.

The fault and stress tests drive a ``twistd tcpecho`` subprocess (see
:class:`tests.support.ServerProcess`) with plain blocking sockets, because
they are about what the kernel does (RST, half-close, full buffers, EMFILE)
and about the server process as a whole (its descriptors and memory).
Everything is on loopback; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import socket
import time
from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.support import LOCAL_TCP, ServerProcess

#: A second loopback address, to be a second client IP (Linux routes all of 127/8).
OTHER_LOOPBACK = "127.0.0.2"


class LimitedServer(ServerProcess):
    """
    A :class:`~tests.support.ServerProcess` started with a given
    ``RLIMIT_NOFILE`` (soft, hard), and ways to look at it from ``/proc``.
    """

    def __init__(self, args: Sequence[str], nofile: tuple[int, int] | None = None) -> None:
        super().__init__(args)
        self.nofile = nofile

    def beforeExec(self) -> None:
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rssKiB(self) -> int:
        """Its resident memory now, in KiB (``VmRSS``)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def fdCount(self) -> int:
        """How many descriptors it has open now."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def openFilesLimit(self) -> tuple[str, str]:
        """Its soft and hard ``Max open files``, as ``/proc`` shows them."""
        with open(f"/proc/{self.pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    fields = line.split()
                    return fields[3], fields[4]
        raise AssertionError("no Max open files")

    def cpuSeconds(self) -> float:
        """User plus system CPU time it has used."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def closeReasons(self) -> list[str]:
        """The reasons of its ``closed (REASON)`` log lines, in order."""
        return re.findall(r"\] \S+ closed \(([a-z-]+)\) after", self.stdout())

    def waitForLog(self, pattern: str, timeout: float = 10.0, count: int = 1) -> str:
        """Wait until its log matches ``pattern`` ``count`` times; the log."""
        found = waitUntil(
            lambda: len(re.findall(pattern, self.stdout())) >= count,
            timeout,
            lambda: f"{pattern!r} x{count} not logged in {timeout}s:\n{self.output()[-4000:]}",
        )
        assert found
        return self.stdout()


def startLimitedServer(
    testCase: SynchronousTestCase,
    *args: str,
    nofile: tuple[int, int] | None = None,
    timeout: float = 20.0,
) -> LimitedServer:
    """
    Run ``twistd -n --pidfile= tcpecho ARGS`` (on ``127.0.0.1`` port 0 unless
    ``--listen`` is given) until the test ends; killed at cleanup.
    """
    argv = list(args)
    if "--listen" not in argv:
        argv = ["--listen", LOCAL_TCP, *argv]
    server = LimitedServer(argv, nofile)
    testCase.addCleanup(server.cleanup)
    server.start(timeout)
    return server


def waitUntil(
    predicate: Callable[[], bool],
    timeout: float,
    message: Callable[[], str] | str = "condition not met",
    interval: float = 0.02,
) -> bool:
    """Poll ``predicate`` until true; raise ``AssertionError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)
    return True


def raiseOwnFileLimit(wanted: int) -> int:
    """Raise this process's soft open-files limit to ``wanted`` if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def connect(
    port: int,
    host: str = "127.0.0.1",
    source: str | None = None,
    timeout: float = 5.0,
) -> socket.socket:
    """A blocking client socket connected to ``host:port``, from ``source`` if given."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source is not None:
        sock.bind((source, 0))
    sock.connect((host, port))
    return sock


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


# -- a deterministic stream, so that loss and reordering show -----------------

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


# -- a Twisted client for in-process tests --------------------------------------


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
