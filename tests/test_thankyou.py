"""The "thank you" protocol in memory: raw, line and once, and its refusals."""

from __future__ import annotations

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tcpproto import ServerConnection, ThankYouFactory, ThankYouProtocol
from tcpproto.connection import LINE_TOO_LONG, REPLIED_ONCE
from tcpproto.framing import lineTooLongMessage
from tcpproto.testing import (
    MEMORY_PEER,
    HalfCloseableStringTransport,
    TLSLikeStringTransport,
    connectInMemory,
)
from tcpproto.thankyou import BUSY_MESSAGE, DEFAULT_REPLY
from tests.helpers import ConnectedTestCase, LogCapture, assertRefusesArguments, assertReplies

PEER = MEMORY_PEER


def connect(
    factory: ThankYouFactory, transport: StringTransport | None = None
) -> tuple[ServerConnection, StringTransport]:
    """A connection on a transport that can half-close, unless one is given."""
    return connectInMemory(factory, transport or HalfCloseableStringTransport(peerAddress=PEER))


class ThankYouConnectionTestCase(ConnectedTestCase):
    """Each test starts with one connection on a transport that can half-close."""

    def makeTransport(self) -> StringTransport:
        return HalfCloseableStringTransport(peerAddress=PEER)


class RawTests(ThankYouConnectionTestCase):
    """Raw framing: each read is a message, answered with the reply."""

    def makeFactory(self) -> ThankYouFactory:
        return ThankYouFactory(clock=Clock())

    def test_defaults(self) -> None:
        self.assertIsInstance(self.proto, ThankYouProtocol)
        self.assertEqual(DEFAULT_REPLY, b"thank you!")

    def test_replyPerRead(self) -> None:
        self.assertReplies((b"hello", b"thank you!"), (b"again\n", b"thank you!"))
        self.assertFalse(self.transport.disconnecting)

    def test_binaryMessage(self) -> None:
        self.assertReplies((b"\x00\xff\x00", b"thank you!"))
        self.assertEqual(self.proto.bytesIn, 3)
        self.assertEqual(self.proto.bytesOut, len(b"thank you!"))

    def test_customReply(self) -> None:
        proto, transport = connect(ThankYouFactory(reply=b"ack\n", clock=Clock()))
        assertReplies(self, proto, transport, (b"x", b"ack\n"))

    def test_halfCloseCloses(self) -> None:
        self.proto.dataReceived(b"x")
        IHalfCloseableProtocol(self.proto).readConnectionLost()
        self.assertEqual(self.transport.value(), b"thank you!")
        self.assertTrue(self.transport.disconnecting)


class OnceTests(ThankYouConnectionTestCase):
    """once=True: reply to the first message, half-close, discard the rest."""

    def makeFactory(self) -> ThankYouFactory:
        return ThankYouFactory(once=True, clock=Clock())

    def setUp(self) -> None:
        self.log = LogCapture.install(self)
        super().setUp()

    def test_replyThenHalfClose(self) -> None:
        assert isinstance(self.transport, HalfCloseableStringTransport)
        self.proto.dataReceived(b"hello")
        self.assertEqual(self.transport.value(), b"thank you!")
        self.assertTrue(self.transport.writeDisconnecting)
        # Half-closed, not closed: closing with unread input would be a RST.
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.proto.closeReason, REPLIED_ONCE)

    def test_laterInputDiscarded(self) -> None:
        self.proto.dataReceived(b"hello")
        self.proto.dataReceived(b"more")
        self.proto.dataReceived(b"and more")
        self.assertEqual(self.transport.value(), b"thank you!")
        self.assertEqual(self.proto.bytesIn, len(b"hellomoreand more"))

    def test_closeOnPeerFin(self) -> None:
        self.proto.dataReceived(b"hello")
        IHalfCloseableProtocol(self.proto).readConnectionLost()
        self.assertTrue(self.transport.disconnecting)

    def test_noHalfCloseTransport(self) -> None:
        """A transport that cannot half-close (TLS) is closed instead."""
        proto, transport = connect(
            ThankYouFactory(once=True, clock=Clock()), StringTransport(peerAddress=PEER)
        )
        proto.dataReceived(b"hello")
        self.assertEqual(transport.value(), b"thank you!")
        self.assertTrue(transport.disconnecting)

    def test_underTLS(self) -> None:
        """Under TLS: close (close_notify), never a TCP FIN below TLS."""
        proto, transport = connect(
            ThankYouFactory(once=True, clock=Clock()), TLSLikeStringTransport(peerAddress=PEER)
        )
        proto.dataReceived(b"hello")
        assert isinstance(transport, TLSLikeStringTransport)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.writeDisconnecting)

    def test_producerUnregistered(self) -> None:
        self.proto.dataReceived(b"hello")
        self.assertIsNone(self.transport.producer)

    def test_lineOnce(self) -> None:
        proto, transport = connect(ThankYouFactory(once=True, framing="line", clock=Clock()))
        assertReplies(
            self, proto, transport, (b"par", b""), (b"tial\r\nsecond\n", b"thank you!\r\n")
        )
        assert isinstance(transport, HalfCloseableStringTransport)
        self.assertTrue(transport.writeDisconnecting)


#: Line framing: what the client sends, a read at a time, and the replies.
LINE_REPLIES: dict[str, list[tuple[bytes, bytes]]] = {
    "a partial line waits": [(b"no end yet", b"")],
    "one reply per line": [(b"a\nb\nc", b"thank you!\n" * 2), (b"\n", b"thank you!\n")],
    "the line's terminator": [(b"crlf\r\nlf\n\r\n", b"thank you!\r\nthank you!\nthank you!\r\n")],
    "empty lines are messages": [(b"\n\n", b"thank you!\nthank you!\n")],
}


class LineTests(SynchronousTestCase):
    """Line framing: one reply per complete line, ending as the line did."""

    def test_replies(self) -> None:
        for name, steps in LINE_REPLIES.items():
            with self.subTest(name):
                proto, transport = connect(ThankYouFactory(framing="line", clock=Clock()))
                assertReplies(self, proto, transport, *steps)

    def test_tooLong(self) -> None:
        proto, transport = connect(ThankYouFactory(framing="line", maxLineLength=5, clock=Clock()))
        proto.dataReceived(b"ok\n")
        proto.dataReceived(b"123456")
        self.assertEqual(transport.value(), b"thank you!\n" + lineTooLongMessage(5))
        # Our FIN follows the error line; we close once the peer does, so no
        # RST can make the peer discard the error unread.
        assert isinstance(transport, HalfCloseableStringTransport)
        self.assertTrue(transport.writeDisconnecting)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(proto.closeReason, LINE_TOO_LONG)
        proto.dataReceived(b"x\n")
        self.assertEqual(transport.value(), b"thank you!\n" + lineTooLongMessage(5))

    def test_errorLineIsOneLine(self) -> None:
        message = lineTooLongMessage(5)
        self.assertTrue(message.endswith(b"\n"))
        self.assertEqual(message.count(b"\n"), 1)
        self.assertIn(b"5", message)


#: ThankYouFactory arguments that must be refused.
BAD_ARGUMENTS: dict[str, dict[str, object]] = {
    "unknown framing": {"framing": "json"},
    "an empty reply": {"reply": b""},
    "maxLineLength 0": {"maxLineLength": 0},
}


class FactoryTests(SynchronousTestCase):
    def test_badArguments(self) -> None:
        assertRefusesArguments(self, ThankYouFactory, BAD_ARGUMENTS)

    def test_mode(self) -> None:
        log = LogCapture.install(self)
        connect(ThankYouFactory(clock=Clock()))
        [event] = log.withEvent("open")
        self.assertEqual(event["mode"], "thankyou")


class RefusalTests(SynchronousTestCase):
    """A peer refused for load is told so; one outside the access list is not."""

    def test_busy(self) -> None:
        factory = ThankYouFactory(maxConnections=1, clock=Clock())
        connect(factory)
        refused = factory.buildProtocol(PEER)
        assert isinstance(refused, Protocol)
        self.assertNotIsInstance(refused, ServerConnection)
        transport = StringTransport()
        refused.makeConnection(transport)
        self.assertEqual(transport.value(), BUSY_MESSAGE)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.stats.refused["max-connections"], 1)
        # Not counted as an open connection.
        self.assertEqual(factory.limits.active, 1)

    def test_notAllowed(self) -> None:
        factory = ThankYouFactory(allow=["192.0.2.0/24"], clock=Clock())
        self.assertIsNone(factory.buildProtocol(PEER))
        self.assertEqual(factory.stats.refused["not-allowed"], 1)
