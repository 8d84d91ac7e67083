"""
Structured logs: every connection event has stable field names, and twistd
writes them as JSON through ``--logger=tcpproto.logs.jsonLogger``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any, cast
from unittest import mock

from twisted.internet import error
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import (
    LogEvent,
    LogLevel,
    eventAsJSON,
    eventFromJSON,
    eventsFromJSONLogFile,
    formatEvent,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tcpproto._addresses import escapeForLog, formatAddress
from tcpproto.connection import IDLE_TIMEOUT, LINE_TOO_LONG, ServerConnection, ServerFactory
from tcpproto.echo import LINE, EchoFactory
from tcpproto.limits import MAX_PER_PEER, NOT_ALLOWED
from tcpproto.logs import JSON_LOG_ENV, jsonLogger
from tcpproto.testing import connectInMemory
from tcpproto.udp import DatagramServer
from tests.helpers import (
    LOCAL_TCP,
    LOOPBACK,
    LogCapture,
    ServerProcess,
    executable,
    processEnv,
    shortTempDir,
)
from tests.test_metrics import connectEcho
from tests.test_udp import udpClient

reactor = cast(Any, _reactor)

#: The fields of each event kind, beside Twisted's own ``log_*`` keys.  These
#: names are the stable interface documented in docs/observability.rst.
FIELDS = {
    "open": {"event", "peer", "listener", "mode"},
    "close": {"event", "peer", "listener", "mode", "bytes_in", "bytes_out", "duration", "reason"},
    "refused": {"event", "peer", "listener", "mode", "reason", "suppressed"},
    "idle": {"event", "peer", "listener", "mode", "timeout"},
    "listening": {"event", "address", "listener"},
}


#: Keys the legacy ``twisted.python.log`` bridge adds to events it sees.
LEGACY_KEYS = {"message", "format", "system", "time", "isError", "why", "failure"}


def fields(event: LogEvent) -> set[str]:
    """An event's own fields: neither Twisted's ``log_*`` keys nor the legacy ones."""
    return {k for k in event if not k.startswith("log_") and k not in LEGACY_KEYS}


def connect(factory: ServerFactory, port: int = 40000) -> tuple[ServerConnection, StringTransport]:
    return connectInMemory(factory, peer=IPv4Address("TCP", "127.0.0.1", port))


class EventFieldTests(SynchronousTestCase):
    """The events a connection logs, their fields and values, in memory."""

    def setUp(self) -> None:
        self.log = LogCapture.install(self)
        self.clock = Clock()

    def test_openAndClose(self) -> None:
        factory = EchoFactory(clock=self.clock, listener="tcp:7788")
        proto, _ = connect(factory)
        [opened] = self.log.withEvent("open")
        self.assertEqual(fields(opened), FIELDS["open"])
        self.assertEqual(
            {k: opened[k] for k in FIELDS["open"]},
            {"event": "open", "peer": "127.0.0.1:40000", "listener": "tcp:7788", "mode": "echo"},
        )
        self.assertEqual(opened["log_level"], LogLevel.info)
        self.assertEqual(opened["log_namespace"].split(".")[0], "tcpproto")

        proto.dataReceived(b"hello")
        proto.dataReceived(b" world")
        self.clock.advance(2.5)
        proto.connectionLost(Failure(error.ConnectionDone()))
        [closed] = self.log.withEvent("close")
        self.assertEqual(fields(closed), FIELDS["close"])
        self.assertEqual(
            {k: closed[k] for k in FIELDS["close"]},
            {
                "event": "close",
                "peer": "127.0.0.1:40000",
                "listener": "tcp:7788",
                "mode": "echo",
                "bytes_in": 11,
                "bytes_out": 11,
                "duration": 2.5,
                "reason": "closed",
            },
        )
        self.assertEqual(
            formatEvent(closed),
            "127.0.0.1:40000 closed (closed) after 2.500s: 11 bytes in, 11 out",
        )

    def test_closeReasons(self) -> None:
        """The reason says who ended the connection and why."""
        factory = EchoFactory(LINE, maxLineLength=4, clock=self.clock, idleTimeout=10)
        lost, _ = connect(factory, 1)
        lost.connectionLost(Failure(error.ConnectionLost()))
        long, _ = connect(factory, 2)
        long.dataReceived(b"much too long\n")
        long.connectionLost(Failure(error.ConnectionDone()))
        idle, _ = connect(factory, 3)
        self.clock.pump([2.5] * 8)
        idle.connectionLost(Failure(error.ConnectionAborted()))
        reasons = {e["peer"]: e["reason"] for e in self.log.withEvent("close")}
        self.assertEqual(
            reasons,
            {
                "127.0.0.1:1": "lost",
                "127.0.0.1:2": LINE_TOO_LONG,
                "127.0.0.1:3": IDLE_TIMEOUT,
            },
        )
        [idleEvent] = self.log.withEvent("idle")
        self.assertEqual(fields(idleEvent), FIELDS["idle"])
        self.assertEqual(
            (idleEvent["peer"], idleEvent["mode"], idleEvent["timeout"]),
            ("127.0.0.1:3", "echo", 10),
        )

    def test_refused(self) -> None:
        factory = EchoFactory(
            clock=self.clock, allow=["10.0.0.0/8"], maxPerPeer=1, listener="tcp:1"
        )
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5)))
        first = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
        assert isinstance(first, ServerConnection)
        first.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1)))
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 2)))
        refused = self.log.withEvent("refused")
        for e in refused:
            self.assertEqual(fields(e), FIELDS["refused"])
            self.assertEqual(e["log_level"], LogLevel.warn)
        self.assertEqual(
            [(e["peer"], e["listener"], e["mode"], e["reason"], e["suppressed"]) for e in refused],
            [
                ("127.0.0.1:5", "tcp:1", "echo", NOT_ALLOWED, 0),
                ("10.0.0.1:2", "tcp:1", "echo", MAX_PER_PEER, 0),
            ],
        )

    def test_udpRefused(self) -> None:
        """UDP refusals are the same event with the same fields."""
        server = DatagramServer(listener="udp:7788", clock=self.clock)
        server.makeConnection(cast(Any, StringTransport()))
        server.datagramReceived(b"x", ("127.0.0.1", 7))
        [e] = self.log.withEvent("refused")
        self.assertEqual(fields(e), FIELDS["refused"])
        self.assertEqual(
            (e["peer"], e["listener"], e["mode"]), ("127.0.0.1:7", "udp:7788", "echo")
        )

    def test_jsonRoundTrip(self) -> None:
        """The fields survive JSON: plain strings and numbers."""
        factory = EchoFactory(clock=self.clock, listener="tcp:7788")
        proto, _ = connect(factory)
        proto.dataReceived(b"abc")
        proto.connectionLost(Failure(error.ConnectionDone()))
        for event in self.log.withEvent("open") + self.log.withEvent("close"):
            back = eventFromJSON(eventAsJSON(event))
            for name in FIELDS[event["event"]]:
                self.assertEqual(back[name], event[name], name)
            self.assertEqual(formatEvent(back), formatEvent(event))


class JSONLoggerTests(SynchronousTestCase):
    """:func:`tcpproto.logs.jsonLogger`, as twistd calls it."""

    def event(self) -> LogEvent:
        return {
            "log_format": "{peer} connected to {listener} ({mode})",
            "log_level": LogLevel.info,
            "log_namespace": "tcpproto",
            "log_time": 1700000000.0,
            "event": "open",
            "peer": "127.0.0.1:1",
            "listener": "tcp:7788",
            "mode": "echo",
        }

    def test_stdout(self) -> None:
        """Without the variable, one JSON object per line on standard output."""
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with mock.patch.dict(os.environ, {JSON_LOG_ENV: ""}):
            observer = jsonLogger()
        observer(self.event())
        observer(self.event())
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertFalse(lines[0].startswith("\x1e"))
        self.assertEqual(json.loads(lines[0])["peer"], "127.0.0.1:1")

    def test_file(self) -> None:
        """With the variable, the file it names, readable by eventsFromJSONLogFile."""
        # Not self.mktemp(): under pytest it would write into the checkout.
        path = os.path.join(shortTempDir(self), "log.json")
        with mock.patch.dict(os.environ, {JSON_LOG_ENV: path}):
            observer = jsonLogger()
        observer(self.event())
        cast(Any, observer)._outFile.close()
        with open(path) as f:
            [event] = list(eventsFromJSONLogFile(f, recordSeparator=""))
        self.assertEqual(formatEvent(event), "127.0.0.1:1 connected to tcp:7788 (echo)")


class JSONServer(ServerProcess):
    """``twistd -n --pidfile= --logger=tcpproto.logs.jsonLogger tcpecho ARGS``."""

    def spawn(self) -> None:
        with open(self.outPath, "wb") as out, open(self.errPath, "wb") as err:
            self.process = subprocess.Popen(
                [
                    executable("twistd"),
                    "-n",
                    "--pidfile=",
                    "--logger=tcpproto.logs.jsonLogger",
                    "tcpecho",
                    *self.args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workDir,
                env=processEnv(),
            )

    def events(self) -> list[dict[str, Any]]:
        """Every complete line of its output, each parsed as JSON (or failing)."""
        text = self.stdout()
        lines = text.split("\n")[:-1]  # the last one may be incomplete
        return [json.loads(line) for line in lines]

    async def waitForEvent(self, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        for _ in range(int(timeout / 0.02)):
            for e in self.events():
                if all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.process is not None and self.process.poll() is not None:
                break
            await deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"no event {match}:\n{self.output()}")


class TwistdJSONTests(TestCase):
    """twistd's --logger option with tcpproto.logs.jsonLogger, end to end."""

    async def test_connectionEvents(self) -> None:
        server = JSONServer(["--listen", LOCAL_TCP, "--udp", f"{LOOPBACK}:0"])
        self.addCleanup(server.cleanup)
        server.spawn()
        listening = await server.waitForEvent(event="listening", listener=LOCAL_TCP)
        host, port = listening["address"].rsplit(":", 1)
        self.assertEqual(host, LOOPBACK)
        udpListening = await server.waitForEvent(event="listening", listener=f"udp:{LOOPBACK}:0")

        client = await connectEcho(int(port))
        assert client.transport is not None
        clientPeer = f"{LOOPBACK}:{client.transport.getHost().port}"  # type: ignore[attr-defined]
        await client.exchange(b"j" * 1234)
        client.transport.loseConnection()
        await client.closed

        closed = await server.waitForEvent(event="close", peer=clientPeer)
        opened = await server.waitForEvent(event="open", peer=clientPeer)
        self.assertEqual(
            {k: opened[k] for k in FIELDS["open"]},
            {"event": "open", "peer": clientPeer, "listener": LOCAL_TCP, "mode": "echo"},
        )
        self.assertEqual(
            {k: closed[k] for k in FIELDS["close"] - {"duration"}},
            {
                "event": "close",
                "peer": clientPeer,
                "listener": LOCAL_TCP,
                "mode": "echo",
                "bytes_in": 1234,
                "bytes_out": 1234,
                "reason": "closed",
            },
        )
        self.assertIsInstance(closed["duration"], float)
        self.assertGreaterEqual(closed["duration"], 0)
        self.assertEqual(closed["log_level"]["name"], "info")
        self.assertIsInstance(closed["log_time"], float)
        # Twisted reads its own JSON back, with the message as text.
        text = formatEvent(eventFromJSON(json.dumps(closed)))
        self.assertIn(f"{clientPeer} closed (closed) after ", text)
        self.assertTrue(text.endswith("s: 1234 bytes in, 1234 out"), text)

        # UDP shares the log: the port it bound is there.
        udp = udpClient(self)
        assert udp.transport is not None
        udpHost, udpPort = udpListening["address"].rsplit(":", 1)
        address = (udpHost, int(udpPort))
        udp.transport.write(b"ping", address)
        await udp.waitFor(1)
        self.assertEqual(udp.received[0][0], b"ping")

        self.assertEqual(server.stop(), 0)
        # Every line, to the last, is JSON; nothing went to stderr.
        events = server.events()
        self.assertTrue(server.stdout().endswith("\n"))
        self.assertIn("Server Shut Down.", [e.get("log_format") for e in events])
        self.assertEqual(server.stderr(), "")


class EscapeTests(SynchronousTestCase):
    """
    Values from the network reach log fields through one escaping function
    (issue 11: a peer could forge log lines and colour the terminal).
    """

    def test_printableUnchanged(self) -> None:
        for text in ("127.0.0.1:80", "[::1]:80", "unix:/run/é.sock", "a b"):
            self.assertIs(escapeForLog(text), text)

    def test_controlsEscaped(self) -> None:
        forged = "x\n2026-01-01T00:00:00+0000 [tcpproto#info] y\r\x1b[31m\x85\u2028\u2029\x00\t"
        escaped = escapeForLog(forged)
        self.assertTrue(escaped.isprintable(), escaped)
        self.assertEqual(
            escaped,
            "x\\n2026-01-01T00:00:00+0000 [tcpproto#info] y"
            "\\r\\x1b[31m\\x85\\u2028\\u2029\\x00\\t",
        )

    def test_everyAddressKind(self) -> None:
        """formatAddress escapes whatever part of an address a peer may have chosen."""
        self.assertEqual(formatAddress(UNIXAddress(b"/a\nb")), "unix:/a\\nb")
        self.assertEqual(formatAddress(IPv6Address("TCP", "fe80::1%\x1b", 1)), "[fe80::1%\\x1b]:1")
        self.assertEqual(formatAddress(IPv4Address("TCP", "1.2.3.4\n", 1)), "1.2.3.4\\n:1")
