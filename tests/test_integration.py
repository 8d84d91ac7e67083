"""
Integration on real sockets, 127.0.0.1 port 0 (and a UNIX socket).

The tutorial's plain blocking-socket client against both servers, its
plain-socket one-shot server against ``tcpecho-client``, a half-closing
client sending megabytes, and flow control seen from the server.  Blocking
socket code runs in a thread (``deferToThread``) so the reactor keeps
serving; the flow-control test uses a non-blocking socket on the reactor's
thread instead, so it can watch the server between sends.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tcpproto import EchoFactory, ServerConnection, ThankYouFactory
from tcpproto.connection import ServerFactory
from tests.helpers import (
    LOOPBACK,
    allClosed,
    assertSameBytes,
    connect,
    exchangeLocal,
    halfCloseExchange,
    listenLocal,
    makePKI,
    portNumber,
    runClient,
    shortTempDir,
)

#: Seconds any blocking socket call may take before the test fails.
SOCKET_TIMEOUT = 10.0

T = TypeVar("T")


def tutorialClient(port: int, message: bytes) -> bytes:
    """The tutorial's client: connect, send, recv(1024), close."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(SOCKET_TIMEOUT)
    try:
        s.connect((LOOPBACK, port))
        s.send(message)
        return s.recv(1024)
    finally:
        s.close()


def tutorialClientThenEOF(port: int, message: bytes) -> tuple[bytes, bytes]:
    """Like :func:`tutorialClient`, then read on: (first answer, the rest until EOF)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(SOCKET_TIMEOUT)
    try:
        s.connect((LOOPBACK, port))
        s.send(message)
        first = s.recv(1024)
        rest = []
        while chunk := s.recv(65536):
            rest.append(chunk)
        return first, b"".join(rest)
    finally:
        s.close()


def halfClosingClient(port: int, data: bytes, deadline: float = 30.0) -> bytes:
    """Send ``data``, then ``shutdown(SHUT_WR)``; read until the server closes."""
    return halfCloseExchange(connect(port), data, deadline)


def oneShotServer(listener: socket.socket) -> bytes:
    """The tutorial's server, once: accept, recv(1024), send thanks, close."""
    listener.settimeout(SOCKET_TIMEOUT)
    conn, _ = listener.accept()
    conn.settimeout(SOCKET_TIMEOUT)
    try:
        data = conn.recv(1024)
        conn.send(b"thank you!")
        return data
    finally:
        conn.close()


class TestCaseBase(TestCase):
    timeout = 60

    async def serve(self, factory: ServerFactory) -> int:
        port = await listenLocal(self, factory)
        return portNumber(port)

    async def inThread(
        self, factory: ServerFactory, client: Callable[[int, bytes], T], data: bytes
    ) -> T:
        """
        What the blocking ``client(port, data)``, run in a thread, gets from
        a server with ``factory``; returned once the server has closed too.
        """
        port = await self.serve(factory)
        answer = await deferToThread(client, port, data)
        await allClosed(factory)
        return answer


class TutorialClientTests(TestCaseBase):
    """The tutorial's blocking client gets what it expects from both servers."""

    async def test_echo(self) -> None:
        factory = EchoFactory()
        answer = await self.inThread(factory, tutorialClient, b"hello, echo")
        self.assertEqual(answer, b"hello, echo")
        self.assertEqual(factory.stats.closedBytesIn, len(b"hello, echo"))

    async def test_thankYou(self) -> None:
        answer = await self.inThread(ThankYouFactory(), tutorialClient, b"hello")
        self.assertEqual(answer, b"thank you!")

    async def test_thankYouOnce(self) -> None:
        """Once: the reply, then our FIN (the client sees EOF, not a reset)."""
        factory = ThankYouFactory(once=True)
        answer = await self.inThread(factory, tutorialClientThenEOF, b"hello")
        self.assertEqual(answer, (b"thank you!", b""))

    async def test_thankYouLines(self) -> None:
        factory = ThankYouFactory(framing="line", reply=b"ok")
        answer = await exchangeLocal(self, factory, b"one\r\ntwo\nthr")
        self.assertEqual(answer, b"ok\r\nok\n")


class OneShotServerTests(TestCaseBase):
    """The tutorial's plain-socket server against ``tcpecho-client``."""

    async def test_client(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        served = deferToThread(oneShotServer, listener)
        result = await runClient(LOOPBACK, str(port), stdin=b"hello", timeout=20)
        received = await served
        self.assertEqual(received, b"hello")
        self.assertEqual(result.out, b"thank you!")
        self.assertEqual(result.status, 0, result.err)
        # Not interactive (stdin is a pipe): nothing on stderr.
        self.assertEqual(result.err, b"")


class HalfCloseTests(TestCaseBase):
    """A client that sends megabytes, then FIN, gets every byte back."""

    SIZE = 4 * 1024 * 1024

    async def roundTrip(self, factory: EchoFactory) -> None:
        data = os.urandom(self.SIZE)
        assertSameBytes(self, await self.inThread(factory, halfClosingClient, data), data)
        self.assertEqual(factory.stats.closedBytesOut, self.SIZE)

    async def test_writeThrough(self) -> None:
        await self.roundTrip(EchoFactory())

    async def test_transportWrites(self) -> None:
        factory = EchoFactory()
        factory.writeThrough = False
        await self.roundTrip(factory)

    async def test_lineEcho(self) -> None:
        """Line echo keeps a last partial line too."""

        data = b"line\n" * 100_000 + b"no newline"
        answer = await self.inThread(EchoFactory(framing="line"), halfClosingClient, data)
        assertSameBytes(self, answer, data)


class FlowControlTests(TestCaseBase):
    """A client that does not read makes the server stop reading, until it reads."""

    async def test_pauseAndResume(self) -> None:
        factory = EchoFactory()
        port = await self.serve(factory)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.connect((LOOPBACK, port))
        s.setblocking(False)
        block = b"z" * 65536
        sent = 0

        def push() -> None:
            nonlocal sent
            while True:
                try:
                    sent += s.send(block)
                except BlockingIOError:
                    return

        while not factory.limits.connections:
            await deferLater(reactor, 0.01, lambda: None)
        [conn] = list(factory.limits.connections)
        assert isinstance(conn, ServerConnection)

        # Send without reading until the server pauses.
        deadline = time.monotonic() + 10
        while not conn.paused:
            self.assertLess(time.monotonic(), deadline, "the server never paused")
            push()
            await deferLater(reactor, 0.01, lambda: None)

        # While paused the server reads nothing more, however long we push.
        readSoFar = conn.bytesIn
        for _ in range(20):
            push()
            await deferLater(reactor, 0.01, lambda: None)
        self.assertTrue(conn.paused)
        self.assertEqual(conn.bytesIn, readSoFar)
        # What we pushed meanwhile waits in the kernel, not in the server.
        self.assertGreater(sent, conn.bytesIn)

        # Now read: the server resumes and everything comes back.
        received = 0
        shut = False
        deadline = time.monotonic() + 20
        while True:
            self.assertLess(time.monotonic(), deadline, "echo did not complete")
            try:
                chunk = s.recv(262144)
            except BlockingIOError:
                chunk = None
            except OSError as e:  # pragma: no cover - diagnostic
                self.fail(f"recv failed: {errno.errorcode.get(e.errno or 0, e)}")
            if chunk == b"":
                break
            if chunk:
                received += len(chunk)
            if received == sent and not shut:
                s.shutdown(socket.SHUT_WR)
                shut = True
            await deferLater(reactor, 0, lambda: None)
        # The server read again: everything we sent reached it.
        self.assertGreater(conn.bytesIn, readSoFar)
        self.assertEqual(received, sent)
        await allClosed(factory)
        self.assertEqual(factory.stats.closedBytesIn, sent)


class UnixSocketTests(TestCaseBase):
    """Any endpoint works: the echo and thank-you servers on a UNIX socket."""

    async def test_echo(self) -> None:
        path = os.path.join(shortTempDir(self), "echo.sock")
        data = os.urandom(500_000)
        answer = await exchangeLocal(
            self, EchoFactory(), data, f"unix:{path}", lambda port: f"unix:{path}"
        )
        assertSameBytes(self, answer, data)

    async def test_tutorialStyleClient(self) -> None:
        path = os.path.join(shortTempDir(self), "ty.sock")
        factory = ThankYouFactory(once=True)
        await listenLocal(self, factory, f"unix:{path}")

        def client() -> bytes:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(SOCKET_TIMEOUT)
            try:
                s.connect(path)
                s.send(b"hi")
                return s.recv(1024)
            finally:
                s.close()

        self.assertEqual(await deferToThread(client), b"thank you!")
        await allClosed(factory)


class TLSTests(TestCaseBase):
    """
    Any endpoint works: ``ssl:``.  TLS has no half-close, so the client
    closes its TLS session (close_notify) and the server's answer must still
    arrive before the server's own close_notify.
    """

    async def tlsRoundTrip(self, factory: ServerFactory, data: bytes) -> bytes:
        tls = makePKI(self)
        return await exchangeLocal(
            self,
            factory,
            data,
            tls.serverDescription(),
            lambda port: tls.trustingDescription(portNumber(port)),
        )

    async def test_echo(self) -> None:
        answer = await self.tlsRoundTrip(EchoFactory(), b"hello over TLS")
        self.assertEqual(answer, b"hello over TLS")

    async def test_echoLarge(self) -> None:
        data = os.urandom(2_000_000)
        assertSameBytes(self, await self.tlsRoundTrip(EchoFactory(), data), data)

    async def test_thankYouOnce(self) -> None:
        answer = await self.tlsRoundTrip(ThankYouFactory(once=True), b"hi")
        self.assertEqual(answer, b"thank you!")

    async def test_thankYouLines(self) -> None:
        factory = ThankYouFactory(framing="line")
        answer = await self.tlsRoundTrip(factory, b"a\nb\r\n")
        self.assertEqual(answer, b"thank you!\nthank you!\r\n")
