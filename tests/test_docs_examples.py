"""
Every code example in the docs runs, for real, against real servers on 127.0.0.1.

The examples in ``docs/examples/`` are run as scripts with the running Python;
servers are either example scripts themselves, in-process tcpproto factories
on port 0, or the installed ``twistd tcpecho``.  Also checked here: every
example is shown in the docs, the documented ``twistd tcpecho`` options match
:class:`tcpproto.tap.Options`, and the committed packet traces are what
``scripts/render_trace.py`` makes of the committed captures.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import sys
from types import ModuleType
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tcpproto import EchoFactory, EchoProtocol
from tcpproto.tap import DEFAULT_LISTEN, Options
from tests.helpers import (
    LOOPBACK,
    LogCapture,
    ProcessResult,
    listenLocal,
    parseListening,
    portNumber,
    processEnv,
    runProcess,
    runProcessSync,
    shortTempDir,
    startServerAsync,
    waitUntil,
)
from tests.test_layers import PUBLIC, SHIMS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
EXAMPLES = os.path.join(DOCS, "examples")
TRACES = os.path.join(DOCS, "traces")

#: Every example, and the test class that runs it.  A new example must be
#: added here (and run by a test), or ExamplesAreCoveredTests fails.
COVERED = {
    "socket_server.py": "SocketsToTwistedTests",
    "socket_client.py": "SocketsToTwistedTests",
    "twisted_server.py": "SocketsToTwistedTests",
    "twisted_client.py": "SocketsToTwistedTests",
    "tcpproto_server.py": "SocketsToTwistedTests",
    "line_client.py": "FramingTests",
    "twisted_lines.py": "FramingTests",
    "embed.py": "QuickstartTests",
    "halfclose_client.py": "LifecycleTests",
    "abort_client.py": "LifecycleTests",
    "slow_reader.py": "LifecycleTests",
    "reuseaddr.py": "ReuseAddressTests",
    "echo_both.py": "TCPvsUDPTests",
    "udp_client.py": "TCPvsUDPTests",
    "subclass_connection.py": "OwnProtocolTests",
    "test_subclass_connection.py": "OwnProtocolTests",
}

EXAMPLE_TIMEOUT = 30.0


def example(name: str, *args: str) -> list[str]:
    """The command line running the example ``name`` with ``args``."""
    path = os.path.join(EXAMPLES, name)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return [sys.executable, path, *args]


def runExample(name: str, *args: str, stdin: bytes = b"") -> Deferred[ProcessResult]:
    """Run an example to completion, without blocking the reactor."""
    return runProcess(example(name, *args), stdin=stdin, timeout=EXAMPLE_TIMEOUT, cwd=EXAMPLES)


def text(result: ProcessResult) -> str:
    return result.out.decode("utf-8", "replace")


def succeeded(testCase: SynchronousTestCase, result: ProcessResult) -> str:
    """Assert the example exited 0 without writing to stderr; its output."""
    testCase.assertEqual(
        (result.status, result.timedOut, result.err),
        (0, False, b""),
        f"example failed:\n{text(result)}\n{result.err.decode('utf-8', 'replace')}",
    )
    return text(result)


class ExampleServer(ProcessProtocol):
    """
    An example that serves until killed, run as a subprocess.

    :meth:`start` waits for the line that names its port (``... port N``).
    """

    _PORT = re.compile(r"port (\d+)")

    def __init__(self, testCase: TestCase, name: str, *args: str) -> None:
        self.testCase = testCase
        self.argv = example(name, *args)
        self.output = b""
        self.status: int | None = None
        self.ended: Deferred[int] = Deferred()
        self._portWaiter: Deferred[int] = Deferred()

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    async def start(self, timeout: float = 20.0) -> int:
        """Spawn it; return the port it listens on."""
        reactor.spawnProcess(
            self, self.argv[0], self.argv, env=processEnv(), path=EXAMPLES, usePTY=False
        )
        self.testCase.addCleanup(self.stop)
        waiter = self._portWaiter
        waiter.addTimeout(timeout, reactor)
        return await waiter

    async def said(self, text: str, times: int) -> None:
        """Wait until the server has printed ``text`` ``times`` times (its
        log line for a close may come after the client has exited)."""
        await waitUntil(
            lambda: self.text.count(text) >= times,
            what=lambda: f"{times} x {text!r} in {self.text!r}",
        )

    def outReceived(self, data: bytes) -> None:
        self.output += data
        m = self._PORT.search(self.text)
        if m is not None and not self._portWaiter.called:
            self._portWaiter.callback(int(m.group(1)))

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        if isinstance(value, ProcessTerminated):
            self.status = -value.signal if value.signal is not None else int(value.exitCode)
        else:
            self.status = 0 if isinstance(value, ProcessDone) else -1
        if not self._portWaiter.called:
            self._portWaiter.errback(AssertionError(f"exited before listening:\n{self.text}"))
        self.ended.callback(self.status)

    async def wait(self, timeout: float = 20.0) -> int:
        """Wait for it to exit on its own; its status."""
        timer: IDelayedCall = reactor.callLater(timeout, self._kill)
        status = await self.ended
        if timer.active():
            timer.cancel()
        return status

    def _kill(self) -> None:
        if self.status is None and self.transport is not None:
            self.transport.signalProcess("KILL")

    async def stop(self) -> None:
        """Kill it if it is still running, and reap it."""
        if self.status is None:
            self._kill()
            await self.ended


class SocketsToTwistedTests(TestCase):
    """docs/sockets-to-twisted.rst: the tutorial's programs and their Twisted versions."""

    async def test_socketServerAndClient(self) -> None:
        """The corrected tutorial server thanks the corrected tutorial client, then exits."""
        server = ExampleServer(self, "socket_server.py", LOOPBACK, "0")
        port = await server.start()
        out = succeeded(self, await runExample("socket_client.py", LOOPBACK, str(port), "hello"))
        self.assertIn("received: thank you!", out)
        ephemeral = int(re.search(r"ephemeral port (\d+)", out).group(1))  # type: ignore[union-attr]
        self.assertNotEqual(ephemeral, port)
        self.assertEqual(await server.wait(), 0)
        self.assertIn(f"received: hello from ('127.0.0.1', {ephemeral})", server.text)

    async def test_socketClientAsksForTheMessage(self) -> None:
        """Without a message argument the client asks for it, like the tutorial's."""
        server = ExampleServer(self, "socket_server.py", LOOPBACK, "0")
        port = await server.start()
        result = await runExample("socket_client.py", LOOPBACK, str(port), stdin=b"typed\n")
        self.assertIn("received: thank you!", succeeded(self, result))
        await server.wait()
        self.assertIn("received: typed", server.text)

    async def test_twistedClientAgainstSocketServer(self) -> None:
        """The plain-Twisted client talks to the plain-socket server: TCP is TCP."""
        server = ExampleServer(self, "socket_server.py", LOOPBACK, "0")
        port = await server.start()
        out = succeeded(self, await runExample("twisted_client.py", LOOPBACK, str(port), "hi"))
        self.assertIn("received: thank you!", out)
        self.assertIn("connected from ephemeral port", out)
        self.assertEqual(await server.wait(), 0)
        self.assertIn("received: hi", server.text)

    async def test_twistedServer(self) -> None:
        """The plain-Twisted server serves one client after another."""
        server = ExampleServer(self, "twisted_server.py", f"tcp:0:interface={LOOPBACK}")
        port = await server.start()
        for message in ("first", "second"):
            out = succeeded(
                self, await runExample("socket_client.py", LOOPBACK, str(port), message)
            )
            self.assertIn("received: thank you!", out)
        await server.said("closed: Connection was closed cleanly.", 2)
        await server.stop()
        self.assertIn("received: first", server.text)
        self.assertIn("received: second", server.text)
        self.assertEqual(server.text.count("closed: Connection was closed cleanly."), 2)

    async def test_tcpprotoServer(self) -> None:
        """tcpproto's ThankYouFactory(once=True) does what the tutorial's server does."""
        server = ExampleServer(self, "tcpproto_server.py", f"tcp:0:interface={LOOPBACK}")
        port = await server.start()
        out = succeeded(self, await runExample("socket_client.py", LOOPBACK, str(port), "hey"))
        self.assertIn("received: thank you!", out)
        out = succeeded(self, await runExample("twisted_client.py", LOOPBACK, str(port), "yo"))
        self.assertIn("received: thank you!", out)
        await server.said("closed (replied-once)", 2)
        await server.stop()
        self.assertEqual(server.text.count("closed (replied-once)"), 2, server.text)

    async def test_socketClientAgainstTwistd(self) -> None:
        """``twistd tcpecho --mode thankyou --once`` is the tutorial's server."""
        server = await startServerAsync(self, "--mode", "thankyou", "--once")
        out = succeeded(
            self, await runExample("socket_client.py", LOOPBACK, str(server.port), "hello")
        )
        self.assertIn("received: thank you!", out)


class FramingTests(TestCase):
    """A recv() is not a message: the line-reading examples get whole lines."""

    async def test_socketLineClient(self) -> None:
        port = await listenLocal(self, EchoFactory())
        out = succeeded(self, await runExample("line_client.py", LOOPBACK, str(portNumber(port))))
        self.assertEqual(re.findall(r"^line: (.*)$", out, re.M), ["one", "two", "three"])
        sizes = re.search(r"recv\(\) returned \[([\d, ]+)\] bytes", out)
        assert sizes is not None
        self.assertEqual(sum(int(n) for n in sizes.group(1).split(",")), 14)

    async def test_twistedLineReceiver(self) -> None:
        port = await listenLocal(self, EchoFactory())
        out = succeeded(
            self, await runExample("twisted_lines.py", LOOPBACK, str(portNumber(port)))
        )
        self.assertEqual(re.findall(r"^line: (.*)$", out, re.M), ["one", "two", "three"])


class QuickstartTests(TestCase):
    async def test_embed(self) -> None:
        out = succeeded(self, await runExample("embed.py", "bonjour"))
        self.assertIn("echoed: bonjour", out)
        self.assertRegex(out, r"echo server on port \d+")


class OwnProtocolTests(TestCase):
    """docs/api.rst: a protocol of one's own on ServerConnection, and its tests."""

    async def test_runs(self) -> None:
        out = succeeded(self, await runExample("subclass_connection.py", "hello"))
        self.assertIn("shouted: HELLO", out)

    async def test_itsTestsPass(self) -> None:
        """The example's tests pass under trial, written with tcpproto.testing."""
        workDir = shortTempDir(self)  # for trial's _trial_temp (not in the checkout)
        testFile = os.path.join(EXAMPLES, "test_subclass_connection.py")
        result = await runProcess(
            [sys.executable, "-m", "twisted.trial", testFile],
            timeout=EXAMPLE_TIMEOUT,
            cwd=workDir,
        )
        text = result.out.decode()
        self.assertEqual(result.status, 0, text + result.err.decode())
        self.assertIn("PASSED (successes=3)", text)


class _PauseCounting(EchoProtocol):
    pauses = 0

    def pauseProducing(self) -> None:
        type(self).pauses += 1
        super().pauseProducing()


class LifecycleTests(TestCase):
    """docs/tcp-lifecycle.rst: half-close, RST and flow control, against tcpproto."""

    async def test_halfClose(self) -> None:
        """After the client's FIN the echo server still sends everything back."""
        log = LogCapture.install(self)
        factory = EchoFactory()
        port = await listenLocal(self, factory)
        out = succeeded(
            self,
            await runExample("halfclose_client.py", LOOPBACK, str(portNumber(port)), "bye now"),
        )
        self.assertIn("received 7 bytes: bye now", out)
        await factory.limits.whenEmpty()
        closes = log.withEvent("close")
        self.assertEqual([e["reason"] for e in closes], ["closed"])
        self.assertEqual((closes[0]["bytes_in"], closes[0]["bytes_out"]), (7, 7))

    async def test_abort(self) -> None:
        """An RST reaches the server's connectionLost as a lost (not closed) connection."""
        log = LogCapture.install(self)
        factory = EchoFactory()
        port = await listenLocal(self, factory)
        out = succeeded(self, await runExample("abort_client.py", LOOPBACK, str(portNumber(port))))
        self.assertIn("received: hello", out)
        self.assertIn("aborted with RST", out)
        await factory.limits.whenEmpty()
        self.assertEqual([e["reason"] for e in log.withEvent("close")], ["lost"])

    async def test_slowReader(self) -> None:
        """A client that does not read is stopped by flow control; every byte comes back."""
        _PauseCounting.pauses = 0
        factory = EchoFactory()
        factory.protocol = _PauseCounting
        port = await listenLocal(self, factory)
        out = succeeded(
            self, await runExample("slow_reader.py", LOOPBACK, str(portNumber(port)), "64")
        )
        self.assertIn("TCP stopped us", out)
        self.assertIn("all intact", out)
        sent = re.search(r"sent (\d+) bytes", out)
        assert sent is not None
        # Bounded: the kernel's buffers and Twisted's, not the 64 MiB offered.
        self.assertLess(int(sent.group(1)), 64 * 1024 * 1024)
        self.assertGreater(_PauseCounting.pauses, 0)


class ReuseAddressTests(TestCase):
    """TIME_WAIT blocks a plain bind() of the server's port; SO_REUSEADDR does not."""

    def makeTimeWait(self) -> int:
        """A loopback port whose server side just closed first: it is in TIME_WAIT."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # As the tutorial's server and Twisted do.  (On Linux the socket left in
        # TIME_WAIT keeps this flag, and a new bind succeeds only if both have it.)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        port: int = listener.getsockname()[1]
        client = socket.create_connection((LOOPBACK, port), timeout=5)
        conn, _ = listener.accept()
        conn.close()  # the server closes first: its side will be in TIME_WAIT
        self.assertEqual(client.recv(1), b"")
        client.close()
        listener.close()
        return port

    def test_reuseaddr(self) -> None:
        port = self.makeTimeWait()
        result = runProcessSync(example("reuseaddr.py", LOOPBACK, str(port)), cwd=EXAMPLES)
        out = succeeded(self, result)
        self.assertIn("SO_REUSEADDR=False: Address already in use", out)
        self.assertIn(f"SO_REUSEADDR=True: bound port {port}", out)

    async def test_twistdRestarts(self) -> None:
        """Twisted sets SO_REUSEADDR: twistd listens on such a port at once."""
        port = self.makeTimeWait()
        server = await startServerAsync(self, "--listen", f"tcp:{port}:interface={LOOPBACK}")
        self.assertEqual(server.port, port)


class TCPvsUDPTests(TestCase):
    """docs/tcp-vs-udp.rst: TCP and UDP echo side by side."""

    async def test_echoBoth(self) -> None:
        server = ExampleServer(self, "echo_both.py", "0", LOOPBACK)
        port = await server.start()
        out = succeeded(self, await runExample("udp_client.py", LOOPBACK, str(port)))
        self.assertEqual(re.findall(r"^datagram: (\S+)", out, re.M), ["one", "two", "three"])
        out = succeeded(self, await runExample("line_client.py", LOOPBACK, str(port)))
        self.assertEqual(re.findall(r"^line: (.*)$", out, re.M), ["one", "two", "three"])

    async def test_udpClientAgainstTwistd(self) -> None:
        server = await startServerAsync(
            self, "--listen", f"tcp:0:interface={LOOPBACK}", "--udp", f"{LOOPBACK}:0"
        )
        for _ in range(200):  # the UDP port is logged after the TCP one
            udp = [a for a in parseListening(server.stdout()) if a.port != server.port]
            if udp:
                break
            await sleep(0.05)
        self.assertTrue(udp, server.output())
        out = succeeded(self, await runExample("udp_client.py", LOOPBACK, str(udp[0].port)))
        self.assertEqual(re.findall(r"^datagram: (\S+)", out, re.M), ["one", "two", "three"])

    async def test_udpClientGivesUp(self) -> None:
        """Nobody answers: the client says so after its timeout, with status 1."""
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
        probe.close()  # a port nobody listens on
        result = await runExample("udp_client.py", LOOPBACK, str(port))
        self.assertEqual(result.status, 1)
        self.assertIn("no answer", text(result))


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


# -- the docs themselves ---------------------------------------------------


def _rstFiles() -> dict[str, str]:
    found = {}
    for name in sorted(os.listdir(DOCS)):
        if name.endswith(".rst"):
            with open(os.path.join(DOCS, name), encoding="utf-8") as f:
                found[name] = f.read()
    return found


class ExamplesAreCoveredTests(SynchronousTestCase):
    def test_everyExampleIsRun(self) -> None:
        """Every file in docs/examples/ is run by a test here."""
        files = {n for n in os.listdir(EXAMPLES) if n.endswith(".py")}
        self.assertEqual(files, set(COVERED))
        for testClass in set(COVERED.values()):
            self.assertIn(testClass, globals())

    def test_everyExampleIsShown(self) -> None:
        """Every example appears in a page, included from its file."""
        included: set[str] = set()
        for source in _rstFiles().values():
            included.update(re.findall(r"literalinclude:: examples/(\S+)", source))
        self.assertEqual(set(COVERED) - included, set())

    def test_noInlinePython(self) -> None:
        """Python shown in the docs comes from files that are run, not inline blocks."""
        for name, source in _rstFiles().items():
            self.assertNotRegex(
                source, r"(?m)^\s*\.\. code-block:: (python|py|pycon)\s*$", f"{name}"
            )


class APIReferenceTests(SynchronousTestCase):
    def test_publicModulesDocumented(self) -> None:
        """docs/api.rst documents exactly the public modules (tests/test_layers.py lists them)."""
        with open(os.path.join(DOCS, "api.rst"), encoding="utf-8") as f:
            documented = set(re.findall(r"(?m)^\.\. automodule:: (\S+)$", f.read()))
        self.assertEqual(documented, set(PUBLIC))

    def test_everyModulePublicPrivateOrDeprecated(self) -> None:
        """A module not documented is private (``_name``) or a deprecated re-export."""
        package = os.path.join(ROOT, "tcpproto")
        modules = {
            "tcpproto." + name[:-3]
            for name in os.listdir(package)
            if name.endswith(".py") and not name.startswith("_")
        }
        self.assertEqual(modules - PUBLIC - SHIMS, set())


def _documentedOptions(source: str) -> dict[str, str]:
    """``--name`` -> the text of its ``.. option::`` entry, for ``twistd tcpecho``."""
    section = source.split(".. program:: twistd tcpecho", 1)[1].split(".. program::", 1)[0]
    options: dict[str, str] = {}
    names: list[str] = []
    for line in section.splitlines():
        if line.startswith(".. option:: "):
            names = [
                spec.split()[0].split("=")[0][2:]
                for spec in (s.strip() for s in line[len(".. option:: ") :].split(","))
                if spec.startswith("--")
            ]
            for name in names:
                options[name] = ""
        elif line.startswith("   ") or not line.strip():
            for name in names:  # the entry's indented body
                options[name] = " ".join((options[name] + " " + line).split())
        else:
            names = []
    return options


class OptionsDocumentedTests(SynchronousTestCase):
    """docs/operating.rst documents every ``twistd tcpecho`` option, with its default."""

    def setUp(self) -> None:
        with open(os.path.join(DOCS, "operating.rst"), encoding="utf-8") as f:
            self.documented = _documentedOptions(f.read())
        self.options = Options()

    def test_sameOptions(self) -> None:
        longOpts = {o.rstrip("=") for o in self.options.longOpt} - {"help"}
        self.assertEqual(set(self.documented), longOpts)

    def test_defaults(self) -> None:
        """Each documented default is the real one."""
        for name, body in self.documented.items():
            if name == "version":
                continue  # an action, with no default
            m = re.search(r"Default: ``([^`]*)``", body)
            default = self.options.defaults.get(name)
            if name in {flag[0] for flag in Options.optFlags}:
                self.assertIn("Default: off.", body, f"--{name}")
            elif name == "listen":
                self.assertIsNotNone(m, name)
                assert m is not None
                self.assertEqual(m.group(1), DEFAULT_LISTEN)
            elif name in self.options.defaults and default is not None:
                self.assertIsNotNone(m, f"--{name}: no 'Default: ``...``' in {body!r}")
                assert m is not None
                if isinstance(default, (int, float)):
                    self.assertEqual(float(m.group(1)), float(default), name)
                else:
                    self.assertEqual(m.group(1), str(default), name)
            else:
                self.assertIn("Default:", body, f"--{name} says nothing of its default")


def _loadRenderer() -> ModuleType:
    path = os.path.join(ROOT, "scripts", "render_trace.py")
    spec = importlib.util.spec_from_file_location("render_trace", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("render_trace", module)
    spec.loader.exec_module(module)
    return module


class TracesTests(SynchronousTestCase):
    """The committed traces are scripts/render_trace.py's rendering of the captures."""

    def test_committedTraces(self) -> None:
        render: Any = _loadRenderer()
        names = sorted(n[:-5] for n in os.listdir(TRACES) if n.endswith(".pcap"))
        self.assertLessEqual({"abort-rst", "echo-halfclose", "thankyou-once"}, set(names))
        for name in names:
            with open(os.path.join(TRACES, name + ".txt"), encoding="utf-8") as f:
                committed = f.read()
            m = re.search(r"server port: (\d+)", committed)
            assert m is not None, name
            table = render.render(render.readPcap(os.path.join(TRACES, name + ".pcap")), int(m[1]))
            self.assertIn(table, committed, name)

    def test_lifecycleSeen(self) -> None:
        """The traces show what the docs say they show."""

        def flags(name: str) -> list[str]:
            with open(os.path.join(TRACES, name + ".txt"), encoding="utf-8") as f:
                rows = re.findall(
                    r"(?m)^\s*\d+\s+[\d.]+\s+client (->|<-) server\s+(\S+)", f.read()
                )
            return [("C" if d == "->" else "S") + ":" + fl for d, fl in rows]

        echo = flags("echo-halfclose")
        self.assertEqual(echo[:3], ["C:SYN", "S:SYN+ACK", "C:ACK"])
        self.assertLess(echo.index("C:FIN+ACK"), echo.index("S:FIN+ACK"))
        once = flags("thankyou-once")
        self.assertLess(once.index("S:FIN+ACK"), once.index("C:FIN+ACK"))
        self.assertIn("C:RST+ACK", flags("abort-rst"))
        self.assertNotIn("C:FIN+ACK", flags("abort-rst"))
