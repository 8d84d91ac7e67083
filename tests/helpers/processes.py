"""
Running commands: twistd tcpecho and tcpecho-client as subprocesses, to completion or as servers.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, cast

from twisted.internet import reactor as _globalReactor  # noqa: N812
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorProcess,
    IReactorTime,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers.sockets import LOCAL_TCP
from tests.helpers.waiting import waitUntil, waitUntilBlocking

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

    def firstTCP(self) -> Address:
        """The first TCP address it listens on."""
        for a in self.addresses:
            if not a.path:
                return a
        raise AssertionError(f"the server listens on no TCP port: {self.output()}")

    @property
    def port(self) -> int:
        """The port of the first TCP address it listens on."""
        return self.firstTCP().port

    @property
    def host(self) -> str:
        """The host of the first TCP address it listens on."""
        return self.firstTCP().host

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
        # Polling a file: the server's output must not go to a pipe we
        # would have to keep draining (see the module docstring).
        self.spawn()
        with self._killedIfNotListening():
            waitUntilBlocking(self._poll, timeout, self._notListening)
        return self

    def _notListening(self) -> str:
        return f"the server to listen:\n{self.output()}"

    @contextlib.contextmanager
    def _killedIfNotListening(self) -> Iterator[None]:
        """Around a wait for the server to listen: kill it if the wait fails."""
        try:
            yield
        except AssertionError:
            self.kill()
            raise
        self._checkStarted()

    async def startAsync(
        self, timeout: float = START_TIMEOUT, reactor: Any = None
    ) -> ServerProcess:
        """:meth:`start`, waiting without blocking the reactor."""
        self.spawn()
        with self._killedIfNotListening():
            await waitUntil(self._poll, timeout, self._notListening, reactor)
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


class LimitedServer(ServerProcess):
    """
    A :class:`ServerProcess` started with a given
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
        found = waitUntilBlocking(
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


def raiseOwnFileLimit(wanted: int) -> int:
    """Raise this process's soft open-files limit to ``wanted`` if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


#: Puts the descriptor named by argv[1] at 3 (where systemd puts the first
#: one), sets LISTEN_PID to its own pid (which exec keeps) and runs the rest.
#: (In Python: sh cannot redirect descriptors above 9.)
_ACTIVATE = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3)\n"
    "    os.close(fd)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class SocketActivatedServer(ServerProcess):
    """
    A server command run as systemd runs a socket-activated service: the
    listening socket ``sock`` is its descriptor 3, with ``LISTEN_FDS=1``,
    ``LISTEN_PID`` its own pid and ``LISTEN_FDNAMES`` ``name``.

    :param command: the whole command line (``twistd ...``).
    """

    def __init__(
        self,
        command: Sequence[str],
        sock: socket.socket,
        name: str = "tcpecho",
        environment: dict[str, str] | None = None,
    ) -> None:
        super().__init__(list(command))
        self.command = list(command)
        self.sock = sock
        self.name = name
        self.environment = environment or {}

    def spawn(self) -> None:
        fd = self.sock.fileno()
        env = processEnv({"LISTEN_FDS": "1", "LISTEN_FDNAMES": self.name, **self.environment})
        env.pop("LISTEN_PID", None)
        with open(self.outPath, "wb") as out, open(self.errPath, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ACTIVATE, str(fd), *self.command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workDir,
                env=env,
                pass_fds=(fd,),
            )


class CommandServer(ServerProcess):
    """A :class:`ServerProcess` running a whole command line of its own."""

    def __init__(self, command: Sequence[str], environment: dict[str, str] | None = None) -> None:
        super().__init__(list(command))
        self.command = list(command)
        self.environment = environment or {}

    def spawn(self) -> None:
        with open(self.outPath, "wb") as out, open(self.errPath, "wb") as err:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workDir,
                env=processEnv(self.environment),
            )


#: The repository's contrib directory.
CONTRIB = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "contrib"
)


def haproxyExecutable() -> str | None:
    """The ``haproxy`` command, if installed."""
    return shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None
    )
