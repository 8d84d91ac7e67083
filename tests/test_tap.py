"""``twistd tcpecho``: option parsing, the service it builds, and its listeners."""

from __future__ import annotations

import io
import subprocess
import sys

from twisted.application.service import IService
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tcpproto import ConnectionLimits, EchoFactory, ThankYouFactory, _services
from tcpproto._proxy import ProxyServerEndpoint
from tcpproto._services import DatagramService, ListenerService, ServerService, somaxconn
from tcpproto._tls import HandshakeGateFactory
from tcpproto.tap import (
    Options,
    TwistdOptions,
    _withBacklog,
    defaultBacklog,
    makeFactory,
    makeService,
    makeTwistdService,
)
from tests.helpers import LOCAL_TCP, LOOPBACK, LogCapture, busyPort, makePKI


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def usageError(self, *argv: str) -> str:
        """
        Parsing ``argv`` raises a UsageError (and prints nothing); under
        twistd it exits with status 2 and one line on stderr: that line.
        """
        with self.assertRaises(usage.UsageError):
            self.parse(*argv)
        self.assertEqual(self.stderr.getvalue(), "")
        with self.assertRaises(SystemExit) as caught:
            TwistdOptions().parseOptions(list(argv))
        self.assertEqual(caught.exception.code, 2)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("twistd tcpecho: error: "), lines[0])
        return lines[0]

    def test_defaults(self) -> None:
        options = self.parse()
        self.assertEqual(options["listen"], ["tcp:7788"])
        self.assertEqual(options["mode"], "echo")
        self.assertEqual(options["framing"], "raw")
        self.assertEqual(options["reply"], "thank you!")
        self.assertFalse(options["once"])
        self.assertEqual(options["idle-timeout"], 300.0)
        self.assertEqual(self.stderr.getvalue(), "")

    def test_repeatedListen(self) -> None:
        options = self.parse("--listen", "tcp:1", "-l", "unix:/tmp/s", "--listen=tcp6:2")
        self.assertEqual(options["listen"], ["tcp:1", "unix:/tmp/s", "tcp6:2"])

    def test_thankyou(self) -> None:
        options = self.parse(
            "--mode", "thankyou", "--reply", "merci", "--once", "--framing", "line"
        )
        self.assertEqual(
            (options["mode"], options["reply"], options["once"], options["framing"]),
            ("thankyou", "merci", True, "line"),
        )

    def test_numbers(self) -> None:
        options = self.parse("--max-connections", "5", "--idle-timeout", "1.5")
        self.assertEqual((options["max-connections"], options["idle-timeout"]), (5, 1.5))

    def test_badMode(self) -> None:
        self.assertIn("--mode", self.usageError("--mode", "chargen"))

    def test_badFraming(self) -> None:
        self.assertIn("--framing", self.usageError("--framing", "json"))

    def test_badNumber(self) -> None:
        self.assertIn("max-connections", self.usageError("--max-connections", "many"))

    def test_negativeNumber(self) -> None:
        self.assertIn("idle-timeout", self.usageError("--idle-timeout", "-1"))

    def test_zeroLineLength(self) -> None:
        self.assertIn("max-line-length", self.usageError("--max-line-length", "0"))

    def test_onceNeedsThankyou(self) -> None:
        self.assertIn("--once", self.usageError("--once"))

    def test_emptyReply(self) -> None:
        self.usageError("--mode", "thankyou", "--reply", "")

    def test_badAllow(self) -> None:
        self.assertIn("--allow", self.usageError("--allow", "not-a-net"))

    def test_unknownOption(self) -> None:
        self.usageError("--colour")

    def test_badListen(self) -> None:
        """A bad endpoint string is a usage error at parse time (nothing listens)."""
        line = self.usageError("--listen", "tcpx:1")
        self.assertIn("bad --listen 'tcpx:1'", line)

    def test_badListenArgument(self) -> None:
        self.assertIn("bad --listen", self.usageError("--listen", "tcp:notaport"))

    def usageErrors(self, *argvs: list[str]) -> list[str]:
        """:meth:`usageError` for each of ``argvs``."""
        lines = []
        for argv in argvs:
            self.stderr.seek(0)
            self.stderr.truncate()
            lines.append(self.usageError(*argv))
        return lines

    def test_portOutOfRange(self) -> None:
        """A port the kernel would refuse with a traceback is a usage error (issue 11)."""
        descriptions = ["tcp:99999", "tcp:-5", "haproxy:tcp:70000", "proxy:tcp6:65536"]
        lines = self.usageErrors(*(["--listen", d] for d in descriptions), ["--metrics", "tcp:-1"])
        for description, line in zip([*descriptions, "tcp:-1"], lines, strict=True):
            self.assertIn(repr(description), line)
            self.assertIn("not in 0-65535", line)

    def test_prefixWithUDPRefused(self) -> None:
        """A prefixed UDP echo would amplify: refused with a clear line (issue 10)."""
        line = self.usageError("--framing", "line", "--prefix", "a", "--udp", "127.0.0.1:0")
        self.assertIn("--prefix applies to TCP listeners only", line)

    def test_udpOptionsNeedUDP(self) -> None:
        self.usageErrors(
            ["--udp-rate", "5"], ["--udp-large-replies"], ["--udp", "0", "--udp-rate", "-1"]
        )
        options = self.parse("--udp", "0", "--udp-rate", "2.5", "--udp-large-replies")
        self.assertEqual((options["udp-rate"], options["udp-large-replies"]), (2.5, True))

    def test_backlog(self) -> None:
        self.assertIsNone(self.parse()["backlog"])
        self.assertEqual(self.parse("--backlog", "1024")["backlog"], 1024)
        self.usageErrors(["--backlog", "0"], ["--backlog", "many"])

    def test_haproxyPrefixIsOurs(self) -> None:
        """Inside twistd tcpecho, haproxy: reads as proxy: (our half-close-aware wrapper)."""
        options = self.parse("--listen", "haproxy:tcp:0:interface=127.0.0.1")
        service = makeService(options)
        [listener] = [s for s in service if isinstance(s, ListenerService)]  # type: ignore[attr-defined]
        self.assertIsInstance(listener.endpoint, ProxyServerEndpoint)


class SideEffectFreeTests(SynchronousTestCase):
    """Option parsing and makeService change nothing process-wide."""

    def test_parseOptionsImportsNoReactor(self) -> None:
        """In a fresh interpreter, parsing (endpoint strings included) installs no reactor."""
        code = (
            "import sys\n"
            "from tcpproto.tap import Options\n"
            "o = Options()\n"
            "o.parseOptions(['--listen', 'tcp:0:interface=127.0.0.1', '--listen',"
            " 'proxy:tcp:0', '--listen', 'reuseport:tcp:0', '--udp', '0'])\n"
            "print('twisted.internet.reactor' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=60, check=True
        )
        self.assertEqual(out.stdout.split(), [b"False"], out.stderr)

    def test_makeServiceRaisesNeverExits(self) -> None:
        """makeService given a value Options would refuse raises UsageError."""
        options = Options()
        options.parseOptions([])
        options["listen"] = ["tcpx:1"]
        self.assertRaises(usage.UsageError, makeService, options)

    def test_makeServiceKeepsTheFileLimit(self) -> None:
        """The open-files limit is raised when the server starts, not when it is built."""
        calls: list[int] = []

        def raiseFileLimit(wanted: int) -> tuple[int, int]:
            calls.append(wanted)
            return wanted, wanted

        self.patch(_services, "raiseFileLimit", raiseFileLimit)
        options = Options()
        options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1"])
        server = makeService(options)
        self.assertEqual(calls, [])
        assert isinstance(server, ServerService)
        server._raiseFileLimit()
        self.assertEqual(calls, [10000 + _services.FILE_HEADROOM])


class MakeServiceTests(SynchronousTestCase):
    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_oneListenerPerListen(self) -> None:
        options = self.parse("--listen", "tcp:0:interface=127.0.0.1", "--listen", "tcp:0")
        service = makeService(options)
        self.assertTrue(IService.providedBy(service))
        self.assertIsInstance(service, ServerService)
        listeners = [s for s in service if isinstance(s, ListenerService)]  # type: ignore[attr-defined]
        self.assertEqual(
            [s.description for s in listeners], ["tcp:0:interface=127.0.0.1", "tcp:0"]
        )
        self.assertFalse(service.running)

    def test_factoriesShareLimits(self) -> None:
        options = self.parse("--listen", "tcp:0", "--listen", "tcp:0", "--max-connections", "7")
        service = makeService(options)
        factories = [s.factory for s in service if isinstance(s, ListenerService)]  # type: ignore[attr-defined]
        assert all(isinstance(f, EchoFactory) for f in factories)
        self.assertEqual(len(factories), 2)
        self.assertIs(factories[0].limits, factories[1].limits)
        self.assertEqual(factories[0].limits.maxConnections, 7)
        self.assertEqual([f.listener for f in factories], ["tcp:0", "tcp:0"])

    def test_badEndpointUnderTwistd(self) -> None:
        """makeTwistdService turns a bad endpoint into twistd's one-line exit 2."""
        options = self.parse()
        options["listen"] = ["tcpx:1"]
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as caught:
            makeTwistdService(options)
        self.assertEqual(caught.exception.code, 2)  # a usage error, as a bad option
        message = stderr.getvalue()
        self.assertEqual(len(message.splitlines()), 1)
        self.assertIn("tcpx:1", message)
        self.assertIn("error", message)

    def test_tlsListenerIsGated(self) -> None:
        """An ssl: listener listens with the handshake gate around the factory."""
        pki = makePKI(self)
        options = self.parse("--listen", pki.serverDescription())
        [listener] = [s for s in makeService(options) if isinstance(s, ListenerService)]  # type: ignore[attr-defined]
        self.assertIsInstance(listener.factory, HandshakeGateFactory)
        self.assertIsInstance(listener.factory.wrappedFactory, EchoFactory)

    def test_backlogDefault(self) -> None:
        """
        The listen backlog fits --max-connections (at least 511), capped by
        somaxconn; --backlog sets it; an endpoint's own backlog= wins; it is
        passed to the endpoint (a memory reactor records it).
        """
        cap = somaxconn()
        assert cap is not None
        self.assertEqual(defaultBacklog(1000), min(1000, cap))
        self.assertEqual(defaultBacklog(10), min(511, cap))
        self.assertEqual(defaultBacklog(0), cap)
        options = self.parse(
            "--listen",
            "tcp:0",
            "--listen",
            "proxy:tcp:0:backlog=9",
            "--backlog",
            "77",
        )
        listeners = [s for s in makeService(options) if isinstance(s, ListenerService)]  # type: ignore[attr-defined]
        self.assertEqual([s.backlog for s in listeners], [77, 9])
        systemd = "systemd:domain=INET:index=0"
        self.assertEqual(_withBacklog(systemd, 5), (systemd, None))
        self.assertEqual(_withBacklog("tcp:0", 77), ("tcp:0:backlog=77", 77))
        self.assertEqual(
            _withBacklog("haproxy:unix:/x:mode=600", 5), ("haproxy:unix:/x:mode=600:backlog=5", 5)
        )

    def test_idleReset(self) -> None:
        self.assertFalse(makeFactory(self.parse(), ConnectionLimits()).idleReset)
        factory = makeFactory(self.parse("--idle-reset"), ConnectionLimits())
        self.assertTrue(factory.idleReset)

    def test_udpSafety(self) -> None:
        options = self.parse(
            "--mode", "thankyou", "--udp", "0", "--udp-rate", "3", "--udp-large-replies"
        )
        [udp] = [s for s in makeService(options) if isinstance(s, DatagramService)]  # type: ignore[attr-defined]
        self.assertEqual((udp.protocol.rate, udp.protocol.largerReplies), (3, True))

    def test_echoFactory(self) -> None:
        options = self.parse("--framing", "line", "--max-line-length", "10")
        factory = makeFactory(options, ConnectionLimits())
        assert isinstance(factory, EchoFactory)
        self.assertEqual((factory.framing, factory.maxLineLength), ("line", 10))

    def test_thankyouFactory(self) -> None:
        options = self.parse("--mode", "thankyou", "--reply", "ta", "--once")
        factory = makeFactory(options, ConnectionLimits(), listener="x")
        assert isinstance(factory, ThankYouFactory)
        self.assertEqual((factory.reply, factory.once, factory.listener), (b"ta", True, "x"))


class ListenerServiceTests(TestCase):
    """A listener says where it listens, and fails in one line when it cannot."""

    async def test_logsBoundAddress(self) -> None:
        """The bound address is logged once the reactor runs (the "ready" line)."""
        log = LogCapture.install(self)
        service = ListenerService(serverFromString(reactor, LOCAL_TCP), EchoFactory(), LOCAL_TCP)
        service.privilegedStartService()
        self.addCleanup(service.stopService)
        assert service.port is not None
        port = service.port.getHost().port  # type: ignore[attr-defined]
        self.assertNotEqual(port, 0)
        await deferLater(reactor, 0, lambda: None)
        [event] = log.withEvent("listening")
        self.assertEqual(event["address"], f"{LOOPBACK}:{port}")
        self.assertEqual(event["listener"], LOCAL_TCP)

    def test_portInUse(self) -> None:
        description = busyPort(self)
        service = ListenerService(
            serverFromString(reactor, description), EchoFactory(), description
        )
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        message = str(caught.exception.code)
        self.assertEqual(len(message.splitlines()), 1)
        self.assertIn(description, message)
        self.assertIn("in use", message)
