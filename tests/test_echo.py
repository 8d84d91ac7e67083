"""
The echo protocols and what every server connection does, in memory.

Echo byte-exactness, half-close, flow control, line echo, the idle timeout,
admission refusals and the open/close log events.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcpproto import EchoFactory, EchoProtocol, LineEchoProtocol
from tcpproto.connection import IDLE_TIMEOUT, LINE_TOO_LONG
from tcpproto.framing import lineTooLongMessage
from tcpproto.testing import MEMORY_PEER, connectInMemory
from tests.helpers import (
    ConnectedTestCase,
    LogCapture,
    assertRefusesArguments,
    assertReplies,
    chunked,
)

PEER = MEMORY_PEER


connect = connectInMemory


class EchoConnectionTestCase(ConnectedTestCase):
    """Each test starts with one connection from an EchoFactory."""

    def makeFactory(self) -> EchoFactory:
        return EchoFactory(clock=Clock())


class EchoTests(EchoConnectionTestCase):
    """RFC 862: every byte comes back, in order, and nothing else."""

    def test_protocolClass(self) -> None:
        self.assertIsInstance(self.proto, EchoProtocol)

    def test_echoesExactly(self) -> None:
        """Any bytes come back as they are: nothing is decoded or translated."""
        for name, data in [
            ("text", b"hello, world\r\n"),
            ("binary and NULs", bytes(range(256)) * 4 + b"\x00\x00\xff\r\n\x00"),
            ("invalid UTF-8", b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc"),
        ]:
            with self.subTest(name):
                proto, transport = connect(self.factory)
                assertReplies(self, proto, transport, (data, data))

    def test_chunksInOrder(self) -> None:
        data = bytes(range(256)) * 40
        for piece in chunked(data, [1, 7, 300, 2, 1024]):
            self.proto.dataReceived(piece)
        self.assertEqual(self.transport.value(), data)
        self.assertEqual(self.proto.bytesIn, len(data))
        self.assertEqual(self.proto.bytesOut, len(data))

    def test_nothingUnasked(self) -> None:
        self.assertEqual(self.transport.value(), b"")
        self.proto.dataReceived(b"")
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)


class HalfCloseTests(EchoConnectionTestCase):
    """The peer's FIN: send what is buffered, then close; lose nothing."""

    def test_providesHalfClose(self) -> None:
        self.assertTrue(IHalfCloseableProtocol.providedBy(self.proto))

    def test_readConnectionLostClosesAfterData(self) -> None:
        self.proto.dataReceived(b"tail data")
        self.assertFalse(self.transport.disconnecting)
        IHalfCloseableProtocol(self.proto).readConnectionLost()
        self.assertEqual(self.transport.value(), b"tail data")
        self.assertTrue(self.transport.disconnecting)
        # loseConnection, not abort: buffered bytes are still sent.
        self.assertFalse(getattr(self.transport, "disconnected", False))

    def test_producerUnregisteredBeforeClose(self) -> None:
        """
        A transport whose producer is paused resumes it instead of closing,
        so the connection stops being the producer before it closes.
        """
        self.assertIs(self.transport.producer, self.proto)
        self.proto.pauseProducing()
        IHalfCloseableProtocol(self.proto).readConnectionLost()
        self.assertIsNone(self.transport.producer)
        self.assertTrue(self.transport.disconnecting)


class FlowControlTests(EchoConnectionTestCase):
    """The connection is its transport's producer and pauses reading."""

    def test_registeredAsStreamingProducer(self) -> None:
        self.assertIs(self.transport.producer, self.proto)
        self.assertTrue(self.transport.streaming)
        self.assertTrue(IPushProducer.providedBy(self.proto))

    def test_pauseStopsReading(self) -> None:
        self.assertEqual(self.transport.producerState, "producing")
        self.proto.pauseProducing()
        self.assertTrue(self.proto.paused)
        self.assertEqual(self.transport.producerState, "paused")

    def test_resumeReadsAgain(self) -> None:
        self.proto.pauseProducing()
        self.proto.resumeProducing()
        self.assertFalse(self.proto.paused)
        self.assertEqual(self.transport.producerState, "producing")

    def test_stopProducingKeepsState(self) -> None:
        """stopProducing precedes connectionLost: nothing to do, no error."""
        self.proto.stopProducing()
        self.assertEqual(self.transport.producerState, "producing")


class LineEchoTests(ConnectedTestCase):
    """Line framing: whole lines back, with their terminator, optionally prefixed."""

    def makeFactory(self) -> EchoFactory:
        return EchoFactory(framing="line", prefix=b"node1", clock=Clock())

    def test_protocolClass(self) -> None:
        self.assertIsInstance(self.proto, LineEchoProtocol)

    def test_prefixAndTerminators(self) -> None:
        """Each complete line comes back prefixed; a partial line waits for its end."""
        self.assertReplies(
            (b"one\ntw", b"node1 one\n"),
            (b"o\r\nthree\n", b"node1 two\r\nnode1 three\n"),
            (b"no newline yet", b""),
        )

    def test_tailEchoedOnHalfClose(self) -> None:
        self.proto.dataReceived(b"a\npartial")
        IHalfCloseableProtocol(self.proto).readConnectionLost()
        self.assertEqual(self.transport.value(), b"node1 a\nnode1 partial")
        self.assertTrue(self.transport.disconnecting)

    def test_noPrefix(self) -> None:
        proto, transport = connect(EchoFactory(framing="line", clock=Clock()))
        assertReplies(self, proto, transport, (b"x\r\ny\n", b"x\r\ny\n"))

    def test_overflow(self) -> None:
        """
        A line longer than maxLineLength: the lines before it come back, then
        the error line, and the connection closes; later input is ignored.
        """
        for maxLineLength, data, echoed in [
            # The long line is still arriving.
            (8, b"12345678\n123456789", b"12345678\n"),
            # The long line and a complete one after it arrive at once.
            (4, b"ok\ntoo long\nafter\n", b"ok\n"),
        ]:
            with self.subTest(data=data):
                factory = EchoFactory(framing="line", maxLineLength=maxLineLength, clock=Clock())
                proto, transport = connect(factory)
                answer = echoed + lineTooLongMessage(maxLineLength)
                assertReplies(self, proto, transport, (data, answer))
                self.assertTrue(transport.disconnecting)
                self.assertEqual(proto.closeReason, LINE_TOO_LONG)
                # No second error line.
                assertReplies(self, proto, transport, (b"more\n", b""), sent=answer)


#: EchoFactory arguments that must be refused.
BAD_ARGUMENTS: dict[str, dict[str, object]] = {
    "unknown framing": {"framing": "words"},
    "a prefix without line framing": {"prefix": b"x"},
    "maxLineLength 0": {"framing": "line", "maxLineLength": 0},
    "a negative idleTimeout": {"idleTimeout": -1},
}


class FactoryValidationTests(SynchronousTestCase):
    def test_badArguments(self) -> None:
        assertRefusesArguments(self, EchoFactory, BAD_ARGUMENTS)

    def test_noGlobalState(self) -> None:
        """Two factories count their connections separately."""
        a = EchoFactory(clock=Clock())
        b = EchoFactory(clock=Clock())
        connect(a)
        connect(a)
        connect(b)
        self.assertEqual((a.active, b.active), (2, 1))
        self.assertEqual((a.limits.active, b.limits.active), (2, 1))


class LogEventTests(SynchronousTestCase):
    """Each connection's open and close are logged with their fields."""

    def setUp(self) -> None:
        self.log = LogCapture.install(self)
        self.clock = Clock()
        self.factory = EchoFactory(clock=self.clock, listener="tcp:7788")

    def test_open(self) -> None:
        connect(self.factory)
        [event] = self.log.withEvent("open")
        self.assertEqual(event["peer"], "127.0.0.1:40000")
        self.assertEqual(event["listener"], "tcp:7788")
        self.assertEqual(event["mode"], "echo")
        self.assertTrue(event["log_namespace"].startswith("tcpproto"))

    def test_close(self) -> None:
        proto, _ = connect(self.factory)
        proto.dataReceived(b"12345")
        self.clock.advance(2.5)
        proto.connectionLost(Failure(ConnectionDone()))
        [event] = self.log.withEvent("close")
        self.assertEqual(event["peer"], "127.0.0.1:40000")
        self.assertEqual(event["listener"], "tcp:7788")
        self.assertEqual(event["mode"], "echo")
        self.assertEqual(event["bytes_in"], 5)
        self.assertEqual(event["bytes_out"], 5)
        self.assertAlmostEqual(event["duration"], 2.5)
        self.assertEqual(event["reason"], "closed")

    def test_closeReasonLost(self) -> None:
        proto, _ = connect(self.factory)
        proto.connectionLost(Failure(ConnectionLost()))
        [event] = self.log.withEvent("close")
        self.assertEqual(event["reason"], "lost")

    def test_closeReasonOurs(self) -> None:
        factory = EchoFactory(clock=self.clock, idleTimeout=1)
        proto, transport = connect(factory)
        self.clock.pump([0.25] * 8)
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(Failure(ConnectionLost()))
        [event] = self.log.withEvent("close")
        self.assertEqual(event["reason"], IDLE_TIMEOUT)

    def test_stats(self) -> None:
        proto, _ = connect(self.factory)
        proto.dataReceived(b"abc")
        self.assertEqual(self.factory.active, 1)
        proto.connectionLost(Failure(ConnectionDone()))
        stats = self.factory.stats
        self.assertEqual(
            (
                stats.connectionsTotal,
                self.factory.active,
                stats.closedBytesIn,
                stats.closedBytesOut,
            ),
            (1, 0, 3, 3),
        )


class RefusalTests(SynchronousTestCase):
    """Admission control happens in buildProtocol, before any byte is read."""

    def setUp(self) -> None:
        self.log = LogCapture.install(self)

    def test_maxConnections(self) -> None:
        factory = EchoFactory(maxConnections=1, clock=Clock())
        connect(factory)
        self.assertIsNone(factory.buildProtocol(PEER))
        self.assertEqual(factory.stats.refused["max-connections"], 1)
        [event] = self.log.withEvent("refused")
        self.assertEqual(event["reason"], "max-connections")
        self.assertEqual(event["peer"], "127.0.0.1:40000")

    def test_freedSlotAdmits(self) -> None:
        factory = EchoFactory(maxConnections=1, clock=Clock())
        proto, _ = connect(factory)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(factory.buildProtocol(PEER))

    def test_maxPerPeer(self) -> None:
        factory = EchoFactory(maxPerPeer=1, clock=Clock())
        connect(factory)
        self.assertIsNone(factory.buildProtocol(PEER))
        other = IPv4Address("TCP", "127.0.0.2", 40000)
        self.assertIsNotNone(factory.buildProtocol(other))

    def test_allow(self) -> None:
        factory = EchoFactory(allow=["10.0.0.0/8"], clock=Clock())
        self.assertIsNone(factory.buildProtocol(PEER))
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "10.1.2.3", 1)))
