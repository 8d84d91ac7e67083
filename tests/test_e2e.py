"""
End to end: the installed ``twistd -n tcpecho`` and ``tcpecho-client`` as
subprocesses, on 127.0.0.1 (and a UNIX socket).

These tests block (the servers are other processes, there is no reactor
work here), so they are synchronous test cases.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time

import pytest
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import (
    LOCAL_TCP,
    LOOPBACK,
    ProcessResult,
    busyPort,
    clientCommand,
    executable,
    parseListening,
    processEnv,
    runClientSync,
    runProcessSync,
    serverCommand,
    shortTempDir,
    startServer,
)
from tests.test_integration import SOCKET_TIMEOUT, halfClosingClient, tutorialClientThenEOF


def freePort() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


#: Loaded by the client under test: names under .invalid (RFC 2606) do not
#: resolve, without asking any DNS server.
NO_DNS_SITECUSTOMIZE = """
import socket

_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.rstrip(".").endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo
"""


class ClientThroughServerTests(SynchronousTestCase):
    """``tcpecho-client`` against ``twistd tcpecho``: exact copies."""

    def setUp(self) -> None:
        self.server = startServer(self)

    def test_bigBinaryFile(self) -> None:
        """``tcpecho-client HOST PORT < in > out`` gives a byte-identical copy."""
        tmp = shortTempDir(self)
        inPath, outPath = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
        data = os.urandom(8 * 1024 * 1024)
        with open(inPath, "wb") as f:
            f.write(data)
        with open(inPath, "rb") as stdin, open(outPath, "wb") as stdout:
            result = runClientSync(
                LOOPBACK, str(self.server.port), stdin=stdin, stdout=stdout, timeout=60
            )
        self.assertEqual(result.status, 0, result.err)
        self.assertEqual(result.err, b"")
        with open(outPath, "rb") as f:
            copy = f.read()
        self.assertEqual(len(copy), len(data))
        self.assertTrue(copy == data, "the copy differs")

    def test_emptyInput(self) -> None:
        result = runClientSync(LOOPBACK, str(self.server.port), stdin=b"")
        self.assertEqual((result.status, result.out, result.err), (0, b"", b""))

    def test_textNotReencoded(self) -> None:
        data = "héllo\r\nwörld\n".encode("latin-1") + b"\x00\xff"
        result = runClientSync(LOOPBACK, str(self.server.port), stdin=data)
        self.assertEqual(result.out, data)

    def test_moduleRuns(self) -> None:
        """``python -m tcpproto.client`` is the same client."""
        result = runProcessSync(
            [sys.executable, "-m", "tcpproto.client", LOOPBACK, str(self.server.port)],
            stdin=b"via -m\n",
        )
        self.assertEqual((result.status, result.out), (0, b"via -m\n"), result.err)

    def test_connectOption(self) -> None:
        result = runClientSync("--connect", f"tcp:{LOOPBACK}:{self.server.port}", stdin=b"x")
        self.assertEqual((result.status, result.out), (0, b"x"), result.err)

    def test_outputClosedEarly(self) -> None:
        """``tcpecho-client ... | head -c 10``: the client ends quietly, at once."""
        tmp = shortTempDir(self)
        inPath = os.path.join(tmp, "in.bin")
        with open(inPath, "wb") as f:
            f.write(os.urandom(16 * 1024 * 1024))
        with open(inPath, "rb") as stdin:
            client = subprocess.Popen(
                clientCommand(LOOPBACK, str(self.server.port)),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=processEnv(),
            )
        self.addCleanup(stopProcess, client)
        assert client.stdout is not None
        assert client.stderr is not None
        self.addCleanup(client.stderr.close)
        self.assertEqual(len(client.stdout.read(10)), 10)
        client.stdout.close()  # the reader goes away, like head does
        self.assertEqual(client.wait(SOCKET_TIMEOUT), 1)
        self.assertEqual(client.stderr.read(), b"")

    def test_halfClosingSocketClient(self) -> None:
        data = os.urandom(4 * 1024 * 1024)
        answer = halfClosingClient(self.server.port, data)
        self.assertTrue(answer == data, "echoed bytes differ")

    def test_logsConnections(self) -> None:
        runClientSync(LOOPBACK, str(self.server.port), stdin=b"12345")
        self.assertEqual(self.server.stop(), 0)
        log = self.server.stdout()
        self.assertIn("connected", log)
        self.assertIn("5 bytes in, 5 out", log)


class ServerModesTests(SynchronousTestCase):
    def test_thankYouOnceWithTutorialClient(self) -> None:
        server = startServer(self, "--mode", "thankyou", "--once")
        first, rest = tutorialClientThenEOF(server.port, b"hello")
        self.assertEqual((first, rest), (b"thank you!", b""))

    def test_thankYouLineWithClient(self) -> None:
        server = startServer(self, "--mode", "thankyou", "--framing", "line", "--reply", "merci")
        result = runClientSync(LOOPBACK, str(server.port), stdin=b"a\r\nb\nc")
        self.assertEqual((result.status, result.out), (0, b"merci\r\nmerci\n"), result.err)

    def test_severalListeners(self) -> None:
        path = os.path.join(shortTempDir(self), "s.sock")
        server = startServer(self, "--listen", LOCAL_TCP, "--listen", f"unix:{path}")
        self.assertEqual(len(server.addresses), 2)
        self.assertEqual(server.addresses[1].path, path)
        tcp = runClientSync(LOOPBACK, str(server.port), stdin=b"over tcp")
        unix = runClientSync("--connect", f"unix:{path}", stdin=b"over unix")
        self.assertEqual((tcp.out, unix.out), (b"over tcp", b"over unix"))

    def test_sigtermExitsZero(self) -> None:
        server = startServer(self)
        status = server.stop(signal.SIGTERM)
        self.assertEqual(status, 0, server.output())
        self.assertIn("SIGTERM", server.stdout())

    def test_sigintExitsZero(self) -> None:
        server = startServer(self)
        self.assertEqual(server.stop(signal.SIGINT), 0, server.output())


class ServerErrorTests(SynchronousTestCase):
    """A server that cannot start says why in one line and exits non-zero."""

    def runServer(self, *args: str) -> ProcessResult:
        return runProcessSync(serverCommand(*args), cwd=shortTempDir(self), env=processEnv())

    def assertOneLineError(self, result: ProcessResult, *needles: str) -> str:
        self.assertNotEqual(result.status, 0)
        text = (result.out + result.err).decode("utf-8", "replace")
        self.assertNotIn("Traceback", text)
        lines = [line for line in text.splitlines() if "error" in line]
        self.assertEqual(len(lines), 1, text)
        for needle in needles:
            self.assertIn(needle, lines[0])
        return lines[0]

    def test_portInUse(self) -> None:
        description = busyPort(self)
        result = self.runServer("--listen", description)
        self.assertOneLineError(result, description, "in use")

    def test_portInUseDaemonised(self) -> None:
        """
        Daemonised (no ``-n``), the waiting parent learns of it and exits 1,
        and the pid file is removed: it does not wait for ever.
        """
        description = busyPort(self)
        directory = shortTempDir(self)
        pidfile = os.path.join(directory, "twistd.pid")
        argv = [executable("twistd"), f"--pidfile={pidfile}", "--logfile=twistd.log"]
        result = runProcessSync(
            [*argv, "tcpecho", "--listen", description], cwd=directory, env=processEnv()
        )
        self.assertEqual(result.status, 1, result.err)
        self.assertIn(b"cannot listen on", result.out + result.err)
        self.assertFalse(os.path.exists(pidfile))

    def test_badEndpoint(self) -> None:
        result = self.runServer("--listen", "tcpx:1")
        self.assertEqual(result.status, 2)
        self.assertOneLineError(result, "tcpx:1")

    def test_badMode(self) -> None:
        result = self.runServer("--mode", "chargen")
        self.assertEqual(result.status, 2)
        self.assertOneLineError(result, "--mode")


class ClientErrorTests(SynchronousTestCase):
    """Client failures: exit 1 (connecting) or 2 (usage), one line on stderr."""

    def assertOneLine(self, result: ProcessResult, status: int, *needles: str) -> str:
        self.assertEqual(result.status, status, result.err)
        lines = result.errLines()
        self.assertEqual(len(lines), 1, lines)
        self.assertNotIn("Traceback", lines[0])
        for needle in needles:
            self.assertIn(needle, lines[0])
        self.assertEqual(result.out, b"")
        return lines[0]

    def test_refused(self) -> None:
        port = str(freePort())
        result = runClientSync(LOOPBACK, port, stdin=b"x", timeout=SOCKET_TIMEOUT * 2)
        self.assertOneLine(result, 1, LOOPBACK, port, "refused")

    def test_unknownHost(self) -> None:
        """
        A name that does not resolve: one line, exit 1.  The lookup is answered
        inside the client process (a sitecustomize module makes getaddrinfo
        fail for ``.invalid`` names, as a resolver would), so the test sends no
        DNS query off this machine; everything above getaddrinfo is real.
        """
        stub = shortTempDir(self)
        with open(os.path.join(stub, "sitecustomize.py"), "w") as f:
            f.write(NO_DNS_SITECUSTOMIZE)
        result = runProcessSync(
            clientCommand("no-such-host.invalid", "7788"),
            stdin=b"x",
            timeout=30,
            env=processEnv({"PYTHONPATH": stub}),
        )
        self.assertOneLine(result, 1, "no-such-host.invalid", "7788", "unknown host")

    def test_timeout(self) -> None:
        """A server whose accept queue is full never answers the SYN."""
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):  # fill the queue; these are never accepted
            filler = socket.socket()
            self.addCleanup(filler.close)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((LOOPBACK, port))
        result = runClientSync("--timeout", "0.5", LOOPBACK, str(port), stdin=b"x", timeout=20)
        self.assertOneLine(result, 1, LOOPBACK, str(port), "timed out")

    def test_badPort(self) -> None:
        self.assertOneLine(runClientSync(LOOPBACK, "http"), 2, "http")

    def test_badOption(self) -> None:
        self.assertOneLine(runClientSync("--frobnicate"), 2, "--frobnicate")

    def test_badEndpointString(self) -> None:
        result = runClientSync("--connect", "nonsense:1", stdin=b"x")
        self.assertOneLine(result, 2, "nonsense:1")


def readUntil(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    """Read ``fd`` until ``needle`` shows up (or fail after ``timeout`` seconds)."""
    data = b""
    end = time.monotonic() + timeout
    while needle not in data:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not in {data!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"EOF before {needle!r}: {data!r}")
            data += chunk
    return data


def stopProcess(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait()


class InteractiveClientTests(SynchronousTestCase):
    """On a terminal the client asks for host and port, like the tutorial's."""

    def test_promptsAndReportsServerClose(self) -> None:
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        listener.settimeout(SOCKET_TIMEOUT)
        port = listener.getsockname()[1]
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        client = subprocess.Popen(
            clientCommand(),
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=processEnv(),
        )
        os.close(slave)
        self.addCleanup(stopProcess, client)
        assert client.stdout is not None
        assert client.stderr is not None
        self.addCleanup(client.stdout.close)
        self.addCleanup(client.stderr.close)
        errFd = client.stderr.fileno()
        self.assertIn(b"host [127.0.0.1]", readUntil(errFd, b": "))
        os.write(master, b"\n")  # the default host
        self.assertIn(b"port [7788]", readUntil(errFd, b": "))
        os.write(master, b"%d\n" % port)
        # The tutorial's server: accept, recv, send thanks, close.
        conn, _ = listener.accept()
        conn.settimeout(SOCKET_TIMEOUT)
        os.write(master, b"hello\n")
        self.assertEqual(conn.recv(1024), b"hello\n")
        conn.send(b"thank you!")
        conn.close()
        # The server closed first: the client says so, and goes on until the
        # end of its input (the server might still read: issue 10), then
        # exits 0.  (Its output is a pipe here: byte for byte.)
        readUntil(errFd, b"has finished sending")
        os.write(master, b"\x04")
        self.assertEqual(client.wait(SOCKET_TIMEOUT), 0)
        self.assertEqual(client.stdout.read(), b"thank you!")
        rest = client.stderr.read().decode()
        self.assertEqual(
            rest.splitlines()[-1], f"tcpecho-client: 127.0.0.1 port {port} closed the connection"
        )


def peakRSS(pid: int) -> int:
    """A running process's peak resident memory, in KiB (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.stress
class MemoryBoundTests(SynchronousTestCase):
    """128 MB through client and server: a copy, with memory bounded on both sides."""

    SIZE = 128 * 1024 * 1024
    #: Far below SIZE: what Python, Twisted and the buffers take.
    LIMIT_KIB = 100 * 1024

    def test_bigCopy(self) -> None:
        server = startServer(self)
        tmp = shortTempDir(self)
        inPath, outPath = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
        sent = hashlib.sha256()
        with open(inPath, "wb") as f:
            for _ in range(self.SIZE // (1 << 20)):
                block = os.urandom(1 << 20)
                sent.update(block)
                f.write(block)
        # A wrapper reports the client's peak memory (its only child).
        wrapper = (
            "import resource, subprocess, sys\n"
            "with open(sys.argv[1], 'rb') as i, open(sys.argv[2], 'wb') as o:\n"
            "    status = subprocess.run(\n"
            "        sys.argv[3:], stdin=i, stdout=o, timeout=120\n"
            "    ).returncode\n"
            "print(status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        )
        result = runProcessSync(
            [
                sys.executable,
                "-c",
                wrapper,
                inPath,
                outPath,
                *clientCommand(LOOPBACK, str(server.port)),
            ],
            timeout=150,
        )
        status, clientPeak = map(int, result.out.split())
        self.assertEqual(status, 0, result.err)
        received = hashlib.sha256()
        with open(outPath, "rb") as f:
            while block := f.read(1 << 20):
                received.update(block)
        self.assertEqual(os.path.getsize(outPath), self.SIZE)
        self.assertEqual(received.hexdigest(), sent.hexdigest())
        self.assertLess(clientPeak, self.LIMIT_KIB)
        assert server.process is not None
        self.assertLess(peakRSS(server.process.pid), self.LIMIT_KIB)


class ListeningLogTests(SynchronousTestCase):
    def test_parseListening(self) -> None:
        text = (
            "x listening on 127.0.0.1:5 (tcp:0)\n"
            "y listening on [::1]:7 (tcp6:0)\n"
            "z listening on unix:/tmp/a.sock (unix:/tmp/a.sock)\n"
        )
        found = [(a.host, a.port, a.path) for a in parseListening(text)]
        self.assertEqual(found, [("127.0.0.1", 5, ""), ("::1", 7, ""), ("unix", 0, "/tmp/a.sock")])
