"""
Shared helpers for tcpproto's tests: local listeners, subprocesses, log capture.

Other test modules import these; the API only grows (nothing is renamed or
removed).  Everything binds to loopback only.

- In-process servers: :func:`listenLocal` listens on ``127.0.0.1`` port 0
  with a real endpoint and stops listening at cleanup.
- Subprocesses: :func:`executable` names a command installed next to the
  running Python; :func:`runProcess` (a Deferred, for tests that also run
  in-process servers) and :func:`runProcessSync` (blocking, for tests whose
  servers are other processes) run one to completion with a time limit;
  :func:`runClient` / :func:`runClientSync` do so for ``tcpecho-client``.
- :class:`ServerProcess` (and :func:`startServer`) runs ``twistd -n
  --pidfile= tcpecho ...`` and learns the addresses it bound from its
  ``listening on HOST:PORT`` log lines; the server's output goes to a file,
  not a pipe, so a busy server never blocks on a full pipe.
- :class:`LogCapture` collects ``twisted.logger`` events during a test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, cast

from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone, ConnectionLost, ProcessDone, ProcessTerminated
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
    IProducer,
    IProtocol,
    IPushProducer,
    IReactorProcess,
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tcpproto.connection import ServerConnection, ServerFactory

#: The only address tests use.
LOOPBACK = "127.0.0.1"
#: A server endpoint string for a kernel-chosen port on loopback.
LOCAL_TCP = f"tcp:0:interface={LOOPBACK}"
#: Where the running Python's console scripts (twistd, tcpecho-client) live.
BIN_DIR = os.path.dirname(sys.executable)
#: Default time limits, in seconds, for subprocesses.
PROCESS_TIMEOUT = 30.0
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

_LISTENING = re.compile(
    r"listening on (?:"
    r"\[(?P<ip6>[^\]]+)\]:(?P<port6>\d+)"
    r"|unix:(?P<path>\S+)"
    r"|(?P<host>[^\s:\[\]]+):(?P<port>\d+))"
)


def executable(name: str) -> str:
    """The full path of the command ``name`` installed with the running Python."""
    path = os.path.join(BIN_DIR, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name} is not installed next to {sys.executable}")
    return path


def processEnv(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for subprocesses: ours, unbuffered, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def shortTempDir(testCase: SynchronousTestCase) -> str:
    """
    A new directory, removed at cleanup, with a short path.

    UNIX socket paths are limited to about 100 bytes, which trial's and
    pytest's working directories can exceed.
    """
    path = tempfile.mkdtemp(prefix="tcpp-")
    testCase.addCleanup(shutil.rmtree, path, True)
    return path


# -- in-process listeners ---------------------------------------------------


async def listenLocal(
    testCase: SynchronousTestCase,
    factory: Factory,
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


# -- running commands to completion ----------------------------------------


@dataclass
class ProcessResult:
    """How a finished subprocess ended and what it wrote."""

    #: The exit status, or minus the signal number that killed it.
    status: int
    out: bytes
    err: bytes
    #: Whether it had to be killed for running past its time limit.
    timedOut: bool = False

    def errLines(self) -> list[str]:
        """The non-empty lines of standard error, decoded."""
        text = self.err.decode("utf-8", "replace")
        return [line for line in text.splitlines() if line.strip()]


class _Collect(ProcessProtocol):
    def __init__(self, stdin: bytes, timeout: float, clock: IReactorTime) -> None:
        self.stdin = stdin
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.finished: Deferred[ProcessResult] = Deferred()
        self.timedOut = False
        self._timer: IDelayedCall = clock.callLater(timeout, self._timeout)

    def connectionMade(self) -> None:
        assert self.transport is not None
        if self.stdin:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def _timeout(self) -> None:
        self.timedOut = True
        assert self.transport is not None
        with contextlib.suppress(Exception):  # it may have just exited
            self.transport.signalProcess("KILL")

    def processEnded(self, reason: Failure) -> None:
        if self._timer.active():
            self._timer.cancel()
        value = reason.value
        status = 0
        if isinstance(value, ProcessTerminated):
            status = -value.signal if value.signal is not None else int(value.exitCode or 0)
        elif not isinstance(value, ProcessDone):
            status = -1
        self.finished.callback(
            ProcessResult(status, b"".join(self.out), b"".join(self.err), self.timedOut)
        )


def runProcess(
    argv: Sequence[str],
    stdin: bytes = b"",
    timeout: float = PROCESS_TIMEOUT,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    reactor: Any = None,
) -> Deferred[ProcessResult]:
    """
    Run ``argv`` with ``stdin`` as its input, without blocking the reactor.

    It is killed after ``timeout`` seconds (``timedOut`` is then set).
    """
    r = _globalReactor if reactor is None else reactor
    proto = _Collect(stdin, timeout, cast(IReactorTime, r))
    cast(IReactorProcess, r).spawnProcess(
        proto,
        argv[0],
        list(argv),
        env=dict(env) if env is not None else processEnv(),
        path=cwd,
    )
    return proto.finished


def runProcessSync(
    argv: Sequence[str],
    stdin: bytes | IO[bytes] = b"",
    timeout: float = PROCESS_TIMEOUT,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdout: IO[bytes] | None = None,
) -> ProcessResult:
    """
    Run ``argv`` to completion, blocking; kill it after ``timeout`` seconds.

    ``stdin`` may be bytes or an open file; with ``stdout`` (an open file)
    the output goes there instead of into the result (for large outputs).
    """
    kwargs: dict[str, Any] = {}
    if isinstance(stdin, bytes):
        kwargs["input"] = stdin
    else:
        kwargs["stdin"] = stdin
    try:
        done = subprocess.run(
            list(argv),
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            cwd=cwd,
            env=dict(env) if env is not None else processEnv(),
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired as e:
        return ProcessResult(-signal.SIGKILL, _bytes(e.stdout), _bytes(e.stderr), True)
    return ProcessResult(done.returncode, _bytes(done.stdout), _bytes(done.stderr))


def _bytes(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    return data.encode() if isinstance(data, str) else data


def clientCommand(*args: str) -> list[str]:
    """The ``tcpecho-client`` command line with ``args``."""
    return [executable("tcpecho-client"), *args]


def runClient(
    *args: str, stdin: bytes = b"", timeout: float = PROCESS_TIMEOUT
) -> Deferred[ProcessResult]:
    """Run ``tcpecho-client ARGS`` with ``stdin``, without blocking the reactor."""
    return runProcess(clientCommand(*args), stdin=stdin, timeout=timeout)


def runClientSync(
    *args: str,
    stdin: bytes | IO[bytes] = b"",
    timeout: float = PROCESS_TIMEOUT,
    stdout: IO[bytes] | None = None,
) -> ProcessResult:
    """Run ``tcpecho-client ARGS`` with ``stdin``, blocking."""
    return runProcessSync(clientCommand(*args), stdin=stdin, timeout=timeout, stdout=stdout)


# -- the twistd server as a subprocess -------------------------------------


def serverCommand(*args: str) -> list[str]:
    """The ``twistd -n --pidfile= tcpecho ARGS`` command line."""
    return [executable("twistd"), "-n", "--pidfile=", "tcpecho", *args]


@dataclass
class Address:
    """An address a server said it listens on."""

    host: str
    port: int
    #: For a UNIX socket: its path (``host`` is then ``"unix"``, ``port`` 0).
    path: str = ""


def parseListening(text: str) -> list[Address]:
    """The addresses named by ``listening on ...`` lines in a server's log."""
    found = []
    for m in _LISTENING.finditer(text):
        if m.group("ip6") is not None:
            found.append(Address(m.group("ip6"), int(m.group("port6"))))
        elif m.group("path") is not None:
            found.append(Address("unix", 0, m.group("path")))
        else:
            found.append(Address(m.group("host"), int(m.group("port"))))
    return found


class ServerProcess:
    """
    ``twistd -n --pidfile= tcpecho ARGS`` running as a subprocess.

    Its standard output and error go to files in a temporary directory,
    which is also its working directory.  :meth:`start` blocks until it has
    logged as many ``listening on`` lines as it was given ``--listen``
    options (one by default), or it exits, or ``timeout`` passes.

    :ivar addresses: the addresses it listens on, in log order.
    :ivar status: its exit status (minus the signal number if killed), once
        it has exited.
    """

    def __init__(self, args: Sequence[str], workDir: str | None = None) -> None:
        self.args = list(args)
        self._ownDir = workDir is None
        self.workDir = workDir if workDir is not None else tempfile.mkdtemp(prefix="tcpp-srv-")
        self.outPath = os.path.join(self.workDir, "server.out")
        self.errPath = os.path.join(self.workDir, "server.err")
        self.addresses: list[Address] = []
        self.status: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def expectedListeners(self) -> int:
        count = sum(1 for a in self.args if a in ("--listen", "-l") or a.startswith("--listen="))
        return max(count, 1)

    @property
    def port(self) -> int:
        """The port of the first TCP address it listens on."""
        for a in self.addresses:
            if not a.path:
                return a.port
        raise AssertionError(f"the server listens on no TCP port: {self.output()}")

    @property
    def host(self) -> str:
        """The host of the first TCP address it listens on."""
        for a in self.addresses:
            if not a.path:
                return a.host
        raise AssertionError(f"the server listens on no TCP port: {self.output()}")

    def spawn(self) -> None:
        """Start the process, without waiting for it to listen."""
        with open(self.outPath, "wb") as out, open(self.errPath, "wb") as err:
            self.process = subprocess.Popen(
                serverCommand(*self.args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workDir,
                env=processEnv(),
                preexec_fn=self.beforeExec,
            )

    def beforeExec(self) -> None:
        """Run in the child before it execs ``twistd`` (subclasses set limits)."""

    def _poll(self) -> bool:
        """Whether it is ready or gone (and so waiting is over)."""
        assert self.process is not None
        self.addresses = parseListening(self.stdout())
        if len(self.addresses) >= self.expectedListeners:
            return True
        status = self.process.poll()
        if status is not None:
            self.status = status
            return True
        return False

    def start(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        """
        Start it and wait until it listens.

        :raises AssertionError: if it exits or does not listen in time (it
            is then stopped), with its output in the message.
        """
        self.spawn()
        deadline = time.monotonic() + timeout
        while not self._poll():
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"server did not listen in {timeout}s:\n{self.output()}")
            # Polling a file: the server's output must not go to a pipe we
            # would have to keep draining (see the module docstring).
            time.sleep(0.02)
        self._checkStarted()
        return self

    async def startAsync(
        self, timeout: float = START_TIMEOUT, reactor: Any = None
    ) -> ServerProcess:
        """:meth:`start`, waiting without blocking the reactor."""
        r = _globalReactor if reactor is None else reactor
        self.spawn()
        deadline = time.monotonic() + timeout
        while not self._poll():
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"server did not listen in {timeout}s:\n{self.output()}")
            await deferLater(r, 0.02, lambda: None)
        self._checkStarted()
        return self

    def _checkStarted(self) -> None:
        if self.status is not None and len(self.addresses) < self.expectedListeners:
            raise AssertionError(
                f"server exited with status {self.status} before listening:\n{self.output()}"
            )

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for it to exit on its own; kill it after ``timeout``. Its status."""
        assert self.process is not None
        try:
            self.status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        assert self.status is not None
        return self.status

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` and wait for it to exit (killed after ``timeout``). Its status."""
        assert self.process is not None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        """Kill it (SIGKILL) and reap it, if it is still running."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.status = self.process.wait()

    def cleanup(self) -> None:
        """Make sure it is gone, and remove its working directory."""
        self.kill()
        if self._ownDir:
            shutil.rmtree(self.workDir, True)

    def stdout(self) -> str:
        """Its standard output (the twistd log) so far."""
        return _readText(self.outPath)

    def stderr(self) -> str:
        """Its standard error so far."""
        return _readText(self.errPath)

    def output(self) -> str:
        """Both, for failure messages."""
        return f"--- stdout ---\n{self.stdout()}--- stderr ---\n{self.stderr()}"


def _readText(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def startServer(
    testCase: SynchronousTestCase, *args: str, timeout: float = START_TIMEOUT
) -> ServerProcess:
    """
    Run ``twistd -n --pidfile= tcpecho ARGS`` until the test ends.

    Blocks until it listens (see :class:`ServerProcess`); it is killed at
    cleanup if the test has not stopped it.  Default arguments:
    ``--listen tcp:0:interface=127.0.0.1`` when no ``--listen`` is given.
    """
    argv = list(args)
    if not any(a in ("--listen", "-l") or a.startswith("--listen=") for a in argv):
        argv = ["--listen", LOCAL_TCP, *argv]
    server = ServerProcess(argv)
    testCase.addCleanup(server.cleanup)
    return server.start(timeout)


async def startServerAsync(
    testCase: SynchronousTestCase, *args: str, timeout: float = START_TIMEOUT
) -> ServerProcess:
    """:func:`startServer` without blocking the reactor while it starts."""
    argv = list(args)
    if not any(a in ("--listen", "-l") or a.startswith("--listen=") for a in argv):
        argv = ["--listen", LOCAL_TCP, *argv]
    server = ServerProcess(argv)
    testCase.addCleanup(server.cleanup)
    return await server.startAsync(timeout)


# -- log capture ------------------------------------------------------------


@implementer(ILogObserver)
class LogCapture:
    """
    Collects the ``twisted.logger`` events published while it is installed.

    ``LogCapture.install(testCase)`` adds it to the global publisher and
    removes it at cleanup.
    """

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        self.events.append(event)

    @classmethod
    def install(cls, testCase: SynchronousTestCase) -> LogCapture:
        capture = cls()
        globalLogPublisher.addObserver(capture)
        testCase.addCleanup(globalLogPublisher.removeObserver, capture)
        return capture

    def withEvent(self, name: str) -> list[LogEvent]:
        """The events carrying ``event=name`` (``open``, ``close``, ``refused`` ...)."""
        return [e for e in self.events if e.get("event") == name]

    def matching(self, predicate: Callable[[LogEvent], bool]) -> list[LogEvent]:
        return [e for e in self.events if predicate(e)]


def chunked(data: bytes, sizes: Iterable[int]) -> list[bytes]:
    """
    ``data`` cut into pieces of the given sizes (cycled), covering all of it.

    Sizes below 1 count as 1.
    """
    pieces: list[bytes] = []
    sizeList = [max(1, s) for s in sizes] or [len(data) or 1]
    i = 0
    k = 0
    while i < len(data):
        n = sizeList[k % len(sizeList)]
        pieces.append(data[i : i + n])
        i += n
        k += 1
    return pieces


# -- in-memory connections ----------------------------------------------------


#: The peer of in-memory connections.
MEMORY_PEER = IPv4Address("TCP", "127.0.0.1", 40000)


def connectInMemory(
    factory: ServerFactory, transport: StringTransport | None = None
) -> tuple[ServerConnection, StringTransport]:
    """A connection from ``factory`` to :data:`MEMORY_PEER`, made on ``transport``
    (a new StringTransport by default)."""
    proto = factory.buildProtocol(MEMORY_PEER)
    assert isinstance(proto, ServerConnection)
    if transport is None:
        transport = StringTransport(peerAddress=MEMORY_PEER)
    proto.makeConnection(transport)
    return proto, transport


class HalfCloseableStringTransport(StringTransport):
    """
    A :class:`~twisted.internet.testing.StringTransport` that can half-close.

    :ivar writeDisconnecting: whether ``loseWriteConnection`` was called.
    """

    writeDisconnecting = False

    def loseWriteConnection(self) -> None:
        self.writeDisconnecting = True


@implementer(ISSLTransport)
class TLSLikeStringTransport(HalfCloseableStringTransport):
    """
    Looks like Twisted's TLS wrapper: an ISSLTransport that *seems* to have
    ``loseWriteConnection`` (the wrapper forwards unknown attributes to the
    TCP transport below it), which must not be used under TLS.
    """

    noDelay = False
    keepAlive = False

    def getPeerCertificate(self) -> None:
        return None

    def getTcpNoDelay(self) -> bool:
        return self.noDelay

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = bool(enabled)

    def getTcpKeepAlive(self) -> bool:
        return self.keepAlive

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepAlive = bool(enabled)


@implementer(ITCPTransport, IConsumer, IPushProducer)
class MemoryTransport:
    """
    One end of a :class:`MemoryPipe`: buffers what its protocol writes.

    It behaves like Twisted's TCP transport where tests care: writes are
    buffered until the pipe delivers them; a streaming producer is paused
    when more than ``bufferLimit`` bytes are waiting, and resumed (instead
    of the close going ahead, as Twisted does) once they are delivered;
    ``pauseProducing`` stops delivery *to* this end (reading);
    ``loseWriteConnection`` sends a FIN after the buffer, which reaches a
    half-closeable peer as ``readConnectionLost`` (any other peer is
    closed); ``loseConnection`` closes after the buffer; ``abortConnection``
    discards it and drops both ends with ``ConnectionLost``.
    """

    def __init__(
        self,
        protocol: IProtocol,
        host: IPv4Address | IPv6Address,
        peer: IPv4Address | IPv6Address,
        bufferLimit: int,
    ) -> None:
        self.protocol = protocol
        self.host = host
        self.peer = peer
        self.bufferLimit = bufferLimit
        self.outgoing: list[bytes] = []
        self.outgoingSize = 0
        self.producer: IProducer | None = None
        self.streaming = False
        self.producerPaused = False
        #: Whether the protocol asked (through pauseProducing) not to read.
        self.readingPaused = False
        self.noDelay = False
        self.keepAlive = False
        #: loseConnection / loseWriteConnection called; FIN sent; FIN received.
        self.disconnecting = False
        self.writeDisconnecting = False
        self.finSent = False
        self.readClosed = False
        self.aborted = False
        #: connectionLost delivered to this end's protocol.
        self.closed = False
        #: Bytes written after this end could no longer send them.
        self.dropped = 0
        #: How many times its producer was paused and resumed.
        self.pauses = 0
        self.resumes = 0

    # ITransport
    def write(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError("write() takes bytes")
        if self.closed or self.finSent or self.aborted:
            self.dropped += len(data)
            return
        if data:
            self.outgoing.append(data)
            self.outgoingSize += len(data)
            if (
                self.producer is not None
                and self.streaming
                and not self.producerPaused
                and self.outgoingSize > self.bufferLimit
            ):
                self.producerPaused = True
                self.pauses += 1
                cast(IPushProducer, self.producer).pauseProducing()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True

    def getPeer(self) -> IPv4Address | IPv6Address:
        return self.peer

    def getHost(self) -> IPv4Address | IPv6Address:
        return self.host

    # ITCPTransport
    def loseWriteConnection(self) -> None:
        self.writeDisconnecting = True

    def abortConnection(self) -> None:
        self.aborted = True
        self.outgoing = []
        self.outgoingSize = 0

    def getTcpNoDelay(self) -> bool:
        return self.noDelay

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = bool(enabled)

    def getTcpKeepAlive(self) -> bool:
        return self.keepAlive

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepAlive = bool(enabled)

    # IConsumer
    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError("a producer is already registered")
        self.producer = producer
        self.streaming = bool(streaming)
        self.producerPaused = False

    def unregisterProducer(self) -> None:
        self.producer = None
        self.producerPaused = False

    # IPushProducer: reading from the peer
    def pauseProducing(self) -> None:
        self.readingPaused = True

    def resumeProducing(self) -> None:
        self.readingPaused = False

    def stopProducing(self) -> None:
        self.loseConnection()

    def _lost(self, reason: BaseException) -> None:
        if self.closed:
            return
        self.closed = True
        self.disconnecting = True
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()
        self.protocol.connectionLost(Failure(reason))


class MemoryPipe:
    """
    A server and a client protocol connected in memory, synchronously.

    :meth:`flush` moves bytes both ways, at most ``chunkSize`` bytes per
    ``dataReceived``, until nothing more can move.  Unlike
    :func:`twisted.protocols.loopback.loopbackAsync` it needs no reactor
    and models half-close and flow control (see :class:`MemoryTransport`).
    """

    def __init__(
        self,
        server: IProtocol,
        client: IProtocol,
        chunkSize: int = 65536,
        bufferLimit: int = 65536,
        serverAddress: IPv4Address | IPv6Address | None = None,
        clientAddress: IPv4Address | IPv6Address | None = None,
    ) -> None:
        self.serverAddress = serverAddress or IPv4Address("TCP", LOOPBACK, 7788)
        self.clientAddress = clientAddress or IPv4Address("TCP", LOOPBACK, 40000)
        self.chunkSize = chunkSize
        self.server = server
        self.client = client
        self.serverTransport = MemoryTransport(
            server, self.serverAddress, self.clientAddress, bufferLimit
        )
        self.clientTransport = MemoryTransport(
            client, self.clientAddress, self.serverAddress, bufferLimit
        )
        server.makeConnection(self.serverTransport)
        client.makeConnection(self.clientTransport)

    @classmethod
    def fromFactory(cls, factory: Factory, client: IProtocol, **kwargs: Any) -> MemoryPipe:
        """Connect ``client`` to a protocol ``factory`` builds (it must admit it)."""
        clientAddress = kwargs.get("clientAddress") or IPv4Address("TCP", LOOPBACK, 40000)
        kwargs["clientAddress"] = clientAddress
        server = factory.buildProtocol(clientAddress)
        if server is None:
            raise AssertionError("the factory refused the connection")
        return cls(server, client, **kwargs)

    @property
    def closed(self) -> bool:
        """Whether both ends have been told connectionLost."""
        return self.serverTransport.closed and self.clientTransport.closed

    def flush(self, maxSteps: int = 1_000_000) -> None:
        """Move bytes (and FINs) until nothing more moves."""
        for _ in range(maxSteps):
            if not self._step():
                return
        raise AssertionError("the in-memory connection did not settle")

    def _step(self) -> bool:
        moved = self._move(self.clientTransport, self.serverTransport)
        return self._move(self.serverTransport, self.clientTransport) or moved

    def _move(self, src: MemoryTransport, dst: MemoryTransport) -> bool:
        if src.aborted and not src.closed:
            src._lost(ConnectionLost("aborted"))
            dst._lost(ConnectionLost("connection reset by peer"))
            return True
        if src.outgoing:
            if dst.closed:
                src.dropped += src.outgoingSize
                src.outgoing = []
                src.outgoingSize = 0
            elif dst.readingPaused:
                return False
            else:
                data = b"".join(src.outgoing)
                chunk, rest = data[: self.chunkSize], data[self.chunkSize :]
                src.outgoing = [rest] if rest else []
                src.outgoingSize = len(rest)
                dst.protocol.dataReceived(chunk)
                if not src.outgoing and src.producer is not None and src.producerPaused:
                    # Drained: Twisted resumes the producer (and does not
                    # close on this turn).
                    src.producerPaused = False
                    src.resumes += 1
                    cast(IPushProducer, src.producer).resumeProducing()
                return True
        if src.outgoing:
            return False
        if (src.disconnecting or src.writeDisconnecting) and not src.finSent and not src.closed:
            if src.producer is not None and src.producerPaused:
                src.producerPaused = False
                src.resumes += 1
                cast(IPushProducer, src.producer).resumeProducing()
                return True
            src.finSent = True
            if src.disconnecting:
                src._lost(ConnectionDone("closed"))
            else:
                half = IHalfCloseableProtocol(src.protocol, None)
                if half is not None:
                    half.writeConnectionLost()
            return True
        if src.finSent and not dst.readClosed and not dst.closed and not dst.readingPaused:
            dst.readClosed = True
            half = IHalfCloseableProtocol(dst.protocol, None)
            if half is not None:
                half.readConnectionLost()
            else:
                dst._lost(ConnectionDone("closed by peer"))
            return True
        if src.disconnecting and src.finSent and not src.closed:
            # loseConnection after loseWriteConnection: the FIN is out already.
            src._lost(ConnectionDone("closed"))
            return True
        return False


# -- TLS ----------------------------------------------------------------------


@dataclass
class TLSFiles:
    """A self-signed certificate for ``localhost`` / 127.0.0.1, on disk."""

    keyPath: str
    certPath: str
    #: A directory holding only the certificate, for ``trustRoots=``.
    caDir: str

    def serverDescription(self, port: int = 0) -> str:
        """An ``ssl:`` server endpoint string on loopback with this certificate."""
        return f"ssl:{port}:interface={LOOPBACK}:privateKey={self.keyPath}:certKey={self.certPath}"

    def clientDescription(self, port: int) -> str:
        """A ``tls:`` client endpoint string that trusts only this certificate."""
        return f"tls:localhost:{port}:trustRoots={self.caDir}"


def makeTLSFiles(testCase: SynchronousTestCase) -> TLSFiles:
    """A new self-signed certificate and key in a temporary directory."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = shortTempDir(testCase)
    caDir = os.path.join(directory, "ca")
    os.mkdir(caDir)
    keyPath = os.path.join(directory, "key.pem")
    certPath = os.path.join(directory, "cert.pem")
    with open(keyPath, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    for path in (certPath, os.path.join(caDir, "cert.pem")):
        with open(path, "wb") as f:
            f.write(pem)
    return TLSFiles(keyPath, certPath, caDir)
