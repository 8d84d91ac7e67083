"""
The client side: ClientProtocol and InputProtocol wired to the echo server in
memory, exchange() against real local servers, and the command-line parsing.
"""

from __future__ import annotations

import io
import os
import sys
from typing import cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    TimeoutError,
)
from twisted.internet.interfaces import IConsumer, IProducer, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.loopback import loopbackAsync
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tcpproto import (
    ClientProtocol,
    EchoFactory,
    EchoProtocol,
    InputProtocol,
    ThankYouFactory,
    exchange,
)
from tcpproto._clientcli import _describeFailure, _StandardIO
from tcpproto.client import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    EXIT_USAGE,
    STDIN_READ_SIZE,
    InputNotSent,
    parseTarget,
)
from tcpproto.testing import HalfCloseableStringTransport, MemoryPipe, TLSLikeStringTransport
from tests.helpers import LOOPBACK, assertSameBytes, exchangeLocal, freePort


@implementer(IConsumer)
class Output:
    """An output consumer that records what it gets and who produces for it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.producer: IProducer | None = None
        self.streaming: bool | None = None
        self.unregistered = 0

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.producer = producer
        self.streaming = streaming

    def unregisterProducer(self) -> None:
        self.producer = None
        self.unregistered += 1

    def value(self) -> bytes:
        return b"".join(self.chunks)


class ClosingOutput(Output):
    """Ends the client's side once ``expected`` bytes came back."""

    client: ClientProtocol

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) == self.expected:
            # loopbackAsync cannot half-close: close once all is back.
            self.client.halfClose()


class ClientProtocolTests(SynchronousTestCase):
    """The network side, on a StringTransport."""

    def setUp(self) -> None:
        self.output = Output()
        self.proto = ClientProtocol(self.output)
        self.transport = HalfCloseableStringTransport()
        self.proto.makeConnection(self.transport)

    def test_outputGetsTransportAsProducer(self) -> None:
        self.assertIs(self.output.producer, self.transport)
        self.assertTrue(self.output.streaming)

    def test_forwardsBothWays(self) -> None:
        self.proto.write(b"\x00up\xff")
        self.proto.dataReceived(b"down\x00")
        self.assertEqual(self.transport.value(), b"\x00up\xff")
        self.assertEqual(self.output.value(), b"down\x00")
        self.assertEqual((self.proto.bytesOut, self.proto.bytesIn), (4, 5))

    def test_halfClose(self) -> None:
        self.proto.halfClose()
        self.assertTrue(self.transport.writeDisconnecting)
        self.assertFalse(self.transport.disconnecting)
        self.assertTrue(self.proto.halfClosed)

    def test_halfCloseWithoutHalfCloseTransport(self) -> None:
        proto = ClientProtocol(Output())
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.halfClose()
        self.assertTrue(transport.disconnecting)

    def test_halfCloseUnderTLS(self) -> None:
        """
        Twisted's TLS cannot half-close: close (close_notify), never a TCP
        FIN under it, and not before the handshake is done (Twisted would
        abort the connection).
        """
        proto = ClientProtocol(Output())
        transport = TLSLikeStringTransport()
        proto.makeConnection(transport)
        proto.halfClose()
        self.assertFalse(transport.disconnecting)
        proto.handshakeCompleted()
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.writeDisconnecting)

    def test_halfCloseUnderTLSAfterHandshake(self) -> None:
        proto = ClientProtocol(Output())
        transport = TLSLikeStringTransport()
        proto.makeConnection(transport)
        proto.handshakeCompleted()
        proto.halfClose()
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.writeDisconnecting)

    def test_serverClosesFirst(self) -> None:
        """
        The server ends its side first: we are told, and go on sending until
        the end of our input, which then closes the connection.
        """
        told: list[bool] = []
        self.proto.onServerFinished = lambda: told.append(True)
        self.proto.readConnectionLost()
        self.assertTrue(self.proto.serverClosedFirst)
        self.assertTrue(self.proto.serverFinished)
        self.assertEqual(told, [True])
        self.assertFalse(self.transport.disconnecting)
        self.proto.write(b"more")
        self.assertEqual(self.transport.value(), b"more")
        self.proto.halfClose()
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.writeDisconnecting)

    def test_serverClosedFullyLosesInput(self) -> None:
        """
        A reset after the server ended its side: it closed the whole
        connection and did not read all our input.
        """
        self.proto.write(b"12345")
        self.proto.readConnectionLost()
        self.proto.connectionLost(Failure(ConnectionLost()))
        failure = self.failureResultOf(self.proto.done, InputNotSent)
        self.assertEqual(cast(InputNotSent, failure.value).bytesSent, 5)
        self.assertIn("before reading all our input (5 bytes sent)", str(failure.value))

    def test_serverClosesAfterUs(self) -> None:
        told: list[bool] = []
        self.proto.onServerFinished = lambda: told.append(True)
        self.proto.halfClose()
        self.proto.readConnectionLost()
        self.assertFalse(self.proto.serverClosedFirst)
        self.assertEqual(told, [])
        self.assertTrue(self.transport.disconnecting)

    def test_cleanCloseFiresDone(self) -> None:
        self.proto.halfClose()
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.successResultOf(self.proto.done))
        self.assertEqual(self.output.unregistered, 1)

    def test_lostFailsDone(self) -> None:
        self.proto.connectionLost(Failure(ConnectionLost()))
        failure = self.failureResultOf(self.proto.done, ConnectionLost)
        self.assertNotIsInstance(failure.value, InputNotSent)
        self.assertTrue(self.proto.serverClosedFirst)


class WiredToEchoTests(SynchronousTestCase):
    """Client, input and echo server connected through an in-memory pipe."""

    def setUp(self) -> None:
        self.factory = EchoFactory(clock=Clock())
        self.output = Output()
        self.client = ClientProtocol(self.output)
        self.pipe = MemoryPipe.fromFactory(
            self.factory, self.client, chunkSize=4096, bufferLimit=16384
        )
        # Standard input, as a pausable transport.
        self.stdin = StringTransport()
        self.input = InputProtocol(self.client)
        self.input.makeConnection(self.stdin)

    def test_inputIsProducerForConnection(self) -> None:
        self.assertIs(self.pipe.clientTransport.producer, self.stdin)
        self.assertTrue(self.pipe.clientTransport.streaming)

    def test_roundTrip(self) -> None:
        data = os.urandom(100_000)
        self.input.dataReceived(data)
        self.input.readConnectionLost()
        self.pipe.flush()
        self.assertEqual(self.output.value(), data)
        self.assertIsNone(self.successResultOf(self.client.done))
        self.assertTrue(self.pipe.closed)
        self.assertFalse(self.client.serverClosedFirst)

    def test_emptyInput(self) -> None:
        self.input.readConnectionLost()
        self.pipe.flush()
        self.assertEqual(self.output.value(), b"")
        self.assertIsNone(self.successResultOf(self.client.done))

    def test_endOfInputHalfCloses(self) -> None:
        self.input.dataReceived(b"tail")
        self.input.readConnectionLost()
        self.assertTrue(self.pipe.clientTransport.writeDisconnecting)
        self.assertIsNone(self.pipe.clientTransport.producer)
        self.pipe.flush()
        self.assertEqual(self.output.value(), b"tail")

    def test_inputPausedWhileNetworkFull(self) -> None:
        """stdin stops being read while the socket's send buffer is full."""
        self.pipe.serverTransport.pauseProducing()  # the server is not reading
        self.input.dataReceived(b"x" * 20_000)
        self.assertEqual(self.stdin.producerState, "paused")
        self.pipe.serverTransport.resumeProducing()
        self.pipe.flush()
        self.assertEqual(self.stdin.producerState, "producing")
        self.assertEqual(self.output.value(), b"x" * 20_000)

    def test_outputFullPausesEverything(self) -> None:
        """
        A full output stops the client reading the socket, which stops the
        server reading from the client: nothing grows without bound.
        """
        reading = cast(IPushProducer, self.output.producer)
        reading.pauseProducing()  # stdout is full
        self.client.write(b"y" * 200_000)
        self.pipe.flush()
        server = self.pipe.server
        assert isinstance(server, EchoProtocol)
        self.assertTrue(server.paused)
        self.assertLessEqual(self.pipe.serverTransport.outgoingSize, 16384 + 4096)
        reading.resumeProducing()
        self.pipe.flush()
        self.assertFalse(server.paused)
        self.assertEqual(self.output.value(), b"y" * 200_000)

    def test_outputClosedStopsConnection(self) -> None:
        """
        Our output went away while everything was paused (the server not
        reading because we were not): the connection is dropped, not left
        waiting for input the server will never read.
        """
        reading = cast(IPushProducer, self.output.producer)
        reading.pauseProducing()  # stdout is full...
        self.input.dataReceived(b"w" * 500_000)
        self.pipe.flush()
        self.assertFalse(self.pipe.closed)
        self.input.writeConnectionLost()  # ...and now closed
        self.pipe.flush()
        self.assertTrue(self.pipe.closed)
        self.assertTrue(self.input.outputClosed)
        self.failureResultOf(self.client.done, ConnectionLost)

    def test_closedFiresOnLocalClose(self) -> None:
        self.input.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.successResultOf(self.input.closed))


class LoopbackTests(TestCase):
    """The client and the echo server over twisted.protocols.loopback."""

    def test_echo(self) -> None:
        data = b"hello\x00world\n" * 100
        server = EchoFactory(clock=Clock()).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        assert server is not None
        output = ClosingOutput(len(data))
        client = ClientProtocol(output)
        output.client = client
        d = loopbackAsync(server, client)

        def check(_: object) -> None:
            self.assertEqual(output.value(), data)
            self.assertIsNone(self.successResultOf(client.done))

        client.write(data)
        return d.addCallback(check)  # type: ignore[no-any-return]


class ExchangeTests(TestCase):
    """exchange() against real servers on 127.0.0.1, port 0."""

    async def test_answers(self) -> None:
        """
        Each server's whole answer to what is sent, an empty input and 3 MB
        included, once the server side has closed too (a clean reactor).
        """
        large = os.urandom(3_000_000)
        cases: list[tuple[EchoFactory | ThankYouFactory, bytes, bytes]] = [
            (EchoFactory(), b"hello\n", b"hello\n"),
            (EchoFactory(), b"", b""),
            (EchoFactory(), large, large),
            (ThankYouFactory(once=True), b"hi", b"thank you!"),
        ]
        for factory, data, expected in cases:
            with self.subTest(factory=type(factory).__name__, sent=len(data)):
                assertSameBytes(self, await exchangeLocal(self, factory, data), expected)

    async def test_refused(self) -> None:
        endpoint = clientFromString(reactor, f"tcp:{LOOPBACK}:{freePort()}")
        with self.assertRaises(ConnectionRefusedError):
            await exchange(endpoint, b"x")


class TTY(io.StringIO):
    """A standard input that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class ParseTests(SynchronousTestCase):
    """The command line: what to connect to, and one-line usage errors."""

    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def parse(self, *argv: str, stdin: io.StringIO | None = None) -> object:
        return parseTarget(list(argv), stdin or io.StringIO(), self.stderr)

    def usageError(self, *argv: str) -> str:
        with self.assertRaises(SystemExit) as caught:
            self.parse(*argv)
        self.assertEqual(caught.exception.code, EXIT_USAGE)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertNotIn("Traceback", lines[0])
        return lines[0]

    def test_hostAndPort(self) -> None:
        target = self.parse("localhost", "1234")
        self.assertEqual((target.host, target.port), ("localhost", 1234))  # type: ignore[attr-defined]
        self.assertEqual(target.name(), "localhost port 1234")  # type: ignore[attr-defined]

    def test_defaultsWithoutTerminal(self) -> None:
        target = self.parse()
        self.assertEqual((target.host, target.port), (DEFAULT_HOST, DEFAULT_PORT))  # type: ignore[attr-defined]
        self.assertEqual(self.stderr.getvalue(), "")

    def test_asksOnTerminal(self) -> None:
        target = self.parse(stdin=TTY("example.test\n\n"))
        self.assertEqual((target.host, target.port), ("example.test", DEFAULT_PORT))  # type: ignore[attr-defined]
        self.assertIn("host", self.stderr.getvalue())

    def test_askedDefaults(self) -> None:
        target = self.parse(stdin=TTY("\n9000\n"))
        self.assertEqual((target.host, target.port), (DEFAULT_HOST, 9000))  # type: ignore[attr-defined]

    def test_askedBadPort(self) -> None:
        with self.assertRaises(SystemExit) as caught:
            self.parse(stdin=TTY("\nnope\n"))
        self.assertEqual(caught.exception.code, EXIT_USAGE)
        self.assertIn("nope", self.stderr.getvalue())

    def test_connect(self) -> None:
        target = self.parse("--connect", "unix:/tmp/x.sock")
        self.assertEqual(target.name(), "unix:/tmp/x.sock")  # type: ignore[attr-defined]

    def test_badPort(self) -> None:
        self.assertIn("abc", self.usageError("localhost", "abc"))

    def test_portOutOfRange(self) -> None:
        self.assertIn("70000", self.usageError("localhost", "70000"))
        self.stderr.truncate(0)
        self.stderr.seek(0)
        self.usageError("localhost", "0")

    def test_connectAndHost(self) -> None:
        self.assertIn("--connect", self.usageError("--connect", "tcp:h:1", "host"))

    def test_badTimeout(self) -> None:
        self.usageError("--timeout", "-1", "localhost")

    def test_unknownOption(self) -> None:
        self.assertIn("--bogus", self.usageError("--bogus"))

    def test_tooManyArguments(self) -> None:
        self.usageError("a", "1", "extra")


class DescribeFailureTests(SynchronousTestCase):
    def test_reasons(self) -> None:
        self.assertEqual(_describeFailure(Failure(ConnectionRefusedError())), "connection refused")
        self.assertEqual(_describeFailure(Failure(DNSLookupError("x.invalid"))), "unknown host")
        self.assertEqual(_describeFailure(Failure(TimeoutError())), "timed out")
        self.assertEqual(_describeFailure(Failure(ConnectionLost())), "connection lost")

    def test_otherIsOneLine(self) -> None:
        text = _describeFailure(Failure(ValueError("first\nsecond")))
        self.assertEqual(text, "first")


class StandardInputReadSizeTests(SynchronousTestCase):
    """The client reads its input 64 KiB at a time (Twisted's stdio reads 8 KiB)."""

    def test_readsUpTo64KiB(self) -> None:
        readEnd, writeEnd = os.pipe()
        sink = os.open(os.devnull, os.O_WRONLY)
        for fd in (readEnd, sink):
            self.addCleanup(os.close, fd)
        os.write(writeEnd, b"x" * STDIN_READ_SIZE)  # a pipe holds 64 KiB
        os.close(writeEnd)
        chunks: list[bytes] = []

        class Collect(Protocol):
            def dataReceived(self, data: bytes) -> None:
                chunks.append(data)

        reactor = MemoryReactor()
        stdio = _StandardIO(Collect(), reactor, stdin=readEnd, stdout=sink)
        self.assertIn(stdio._reader, reactor.readers)
        self.assertIsNone(stdio._reader.doRead())
        self.assertEqual([len(c) for c in chunks], [STDIN_READ_SIZE])
        self.assertIsNotNone(stdio._reader.doRead())  # end of input: CONNECTION_DONE


class ConnectTimeoutTests(SynchronousTestCase):
    """--timeout bounds --connect too (Twisted's endpoint default is 30 s)."""

    def test_added(self) -> None:
        from tcpproto.client import withTimeout

        self.assertEqual(withTimeout("tcp:127.0.0.1:7788", 2.5), "tcp:127.0.0.1:7788:timeout=2.5")
        self.assertEqual(withTimeout("unix:/tmp/s", 10), "unix:/tmp/s:timeout=10")

    def test_keptWhenGivenOrNotTaken(self) -> None:
        from tcpproto.client import withTimeout

        self.assertEqual(withTimeout("tcp:h:1:timeout=3", 10), "tcp:h:1:timeout=3")
        self.assertEqual(withTimeout("systemd:x", 10), "systemd:x")

    def test_endpointBuilt(self) -> None:
        from twisted.internet.endpoints import TCP4ClientEndpoint

        target = parseTarget(
            ["--connect", "tcp:127.0.0.1:7788", "--timeout", "3"], io.StringIO(), io.StringIO()
        )
        endpoint = target.endpoint(reactor)
        assert isinstance(endpoint, TCP4ClientEndpoint)
        self.assertEqual(endpoint._timeout, 3)
