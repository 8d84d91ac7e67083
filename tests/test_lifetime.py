"""The maximum lifetime: a connection that is never idle still ends."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcpproto import EchoFactory, ThankYouFactory, ThankYouProtocol, connection
from tcpproto._vocabulary import LINGER_MAX_BYTES, LINGER_MAX_TIME, LINGER_TIMEOUT
from tcpproto.connection import DEFAULT_MAX_LIFETIME, LIFETIME_GRACE, MAX_LIFETIME
from tcpproto.tap import Options, makeFactory
from tcpproto.testing import HalfCloseableStringTransport, connectInMemory
from tests.helpers import LogCapture

connect = connectInMemory


class MaxLifetimeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.log = LogCapture.install(self)
        self.clock = Clock()

    def test_dripIsClosedAtLifetime(self) -> None:
        """A peer echoing a byte a second is never idle, but is closed at its lifetime."""
        factory = EchoFactory(idleTimeout=4, maxLifetime=60, clock=self.clock)
        proto, transport = connect(factory)
        for second in range(1, 60):
            self.clock.advance(1)
            proto.dataReceived(b"x")
            self.assertFalse(transport.disconnecting, f"closed after {second}s")
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(proto.closeReason, MAX_LIFETIME)
        # What was answered before is still sent: a graceful close, not a reset.
        self.assertEqual(transport.value(), b"x" * 59)
        [event] = self.log.withEvent("lifetime")
        self.assertEqual(event["lifetime"], 60)
        self.assertEqual(event["peer"], "127.0.0.1:40000")

    def test_timerCancelledOnClose(self) -> None:
        proto, _ = connect(ThankYouFactory(idleTimeout=0, maxLifetime=5, clock=self.clock))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_disabled(self) -> None:
        _, transport = connect(EchoFactory(idleTimeout=0, maxLifetime=0, clock=self.clock))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10 * DEFAULT_MAX_LIFETIME)
        self.assertFalse(transport.disconnecting)

    def test_negativeRefused(self) -> None:
        self.assertRaises(ValueError, EchoFactory, maxLifetime=-1, clock=self.clock)

    def test_option(self) -> None:
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["max-lifetime"], DEFAULT_MAX_LIFETIME)
        options = Options()
        options.parseOptions(["--max-lifetime", "30"])
        factory = makeFactory(options, EchoFactory(clock=self.clock).limits)
        self.assertEqual(factory.maxLifetime, 30.0)


class LifetimeGraceTests(SynchronousTestCase):
    """A connection past its lifetime whose peer does not read is cut after a grace."""

    def test_cutAfterGraceWithIdleTimeoutOff(self) -> None:
        clock = Clock()
        factory = EchoFactory(idleTimeout=0, maxLifetime=60, clock=clock)
        proto, transport = connect(factory)
        aborted: list[bool] = []
        transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        clock.advance(60)
        self.assertTrue(transport.disconnecting)  # asked to close gracefully...
        self.assertEqual(aborted, [])
        clock.advance(LIFETIME_GRACE - 1)
        self.assertEqual(aborted, [])
        clock.advance(1)  # ...but the peer never took what was left: cut
        self.assertEqual(aborted, [True])
        self.assertEqual(proto.closeReason, MAX_LIFETIME)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closedInTimeLeavesNoTimer(self) -> None:
        clock = Clock()
        factory = EchoFactory(idleTimeout=0, maxLifetime=60, clock=clock)
        proto, _ = connect(factory)
        clock.advance(60)
        proto.connectionLost(Failure(ConnectionDone()))  # the peer read the rest and closed
        self.assertEqual(clock.getDelayedCalls(), [])


class LingeringCloseTests(SynchronousTestCase):
    """
    The lingering close (issue 11): our answers first, then our FIN, then the
    peer's input read and dropped until it closes, within bounds.
    """

    def setUp(self) -> None:
        self.log = LogCapture.install(self)
        self.clock = Clock()

    def test_lifetimeWaitsForOutputToDrain(self) -> None:
        """
        Past --max-lifetime with our output not drained (the peer reads
        slowly): no FIN, no reading, until it drains; then FIN, and the
        peer's input is dropped, not echoed, until it closes.
        """
        factory = EchoFactory(idleTimeout=0, maxLifetime=60, clock=self.clock)
        transport = HalfCloseableStringTransport()
        proto, _ = connect(factory, transport)
        proto.dataReceived(b"answered")
        proto.pauseProducing()  # the transport's buffer is full
        self.clock.advance(60)
        self.assertEqual(proto.closeReason, MAX_LIFETIME)
        self.assertFalse(transport.writeDisconnecting or transport.disconnecting)
        proto.resumeProducing()  # drained
        self.assertTrue(transport.writeDisconnecting)
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(b"late")
        self.assertEqual(transport.value(), b"answered")
        proto.readConnectionLost()  # the peer's FIN: closed cleanly
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        proto.connectionLost(Failure(ConnectionDone()))
        [close] = self.log.withEvent("close")
        self.assertEqual((close["reason"], close["discarded"]), (MAX_LIFETIME, 4))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_boundedInBytes(self) -> None:
        """A peer that keeps sending after --once's reply is cut after LINGER_MAX_BYTES."""
        factory = ThankYouFactory(once=True, clock=self.clock)
        transport = HalfCloseableStringTransport()
        proto, _ = connect(factory, transport)
        proto.dataReceived(b"hello")
        self.assertTrue(transport.writeDisconnecting)
        chunk = b"x" * 65536
        sent = 0
        while not transport.disconnected:
            self.assertLessEqual(sent, LINGER_MAX_BYTES)
            proto.dataReceived(chunk)
            sent += len(chunk)
        self.assertEqual(transport.value(), b"thank you!")
        proto.connectionLost(Failure(ConnectionDone()))
        [close] = self.log.withEvent("close")
        self.assertEqual((close["linger_limit"], close["discarded"]), ("bytes", sent))
        self.assertIn("discarded while lingering (cut", formatEvent(close))

    def test_boundedInTime(self) -> None:
        factory = ThankYouFactory(once=True, clock=self.clock)
        transport = HalfCloseableStringTransport()
        proto, _ = connect(factory, transport)
        proto.dataReceived(b"hello")
        self.clock.advance(LINGER_TIMEOUT - 0.001)
        self.assertFalse(transport.disconnected)
        self.clock.advance(0.001)
        self.assertTrue(transport.disconnected)
        proto.connectionLost(Failure(ConnectionDone()))
        [close] = self.log.withEvent("close")
        self.assertEqual(close["linger_limit"], "time")

    def test_plainFactoryNoBounds(self) -> None:
        """
        Under a plain Twisted factory (no hooks) the protocol lingers as
        before, with no timer: the bounds are a limit, which ServerFactory adds.
        """

        class Once(ThankYouProtocol):
            once = True

        transport = HalfCloseableStringTransport()
        proto, _ = connect(Factory.forProtocol(Once), transport)
        proto.dataReceived(b"hello")
        self.assertTrue(transport.writeDisconnecting)
        proto.dataReceived(b"x" * (LINGER_MAX_BYTES + 1))
        self.assertFalse(transport.disconnected)
        self.assertEqual(proto.discarded, LINGER_MAX_BYTES + 1)
        proto.connectionLost(Failure(ConnectionDone()))

    def test_extendedWhileThePeerTakesOutput(self) -> None:
        """
        Past LINGER_TIMEOUT, a peer that still has our output in flight (it
        reads slowly) is not cut: that would throw the output away.  It is
        waited for, up to LINGER_MAX_TIME in all.
        """
        inFlight = [1000]
        self.patch(connection, "unacknowledgedOutput", lambda transport: inFlight[0])
        factory = ThankYouFactory(once=True, clock=self.clock)
        transport = HalfCloseableStringTransport()
        proto, _ = connect(factory, transport)
        proto.dataReceived(b"hello")
        self.clock.pump([LINGER_TIMEOUT] * 3)
        self.assertFalse(transport.disconnected)
        inFlight[0] = 0  # delivered: the next check cuts a peer that has not closed
        self.clock.advance(LINGER_TIMEOUT)
        self.assertTrue(transport.disconnected)
        proto.connectionLost(Failure(ConnectionDone()))

    def test_extendedAtMostLingerMaxTime(self) -> None:
        self.patch(connection, "unacknowledgedOutput", lambda transport: 1000)
        factory = ThankYouFactory(once=True, clock=self.clock)
        transport = HalfCloseableStringTransport()
        proto, _ = connect(factory, transport)
        proto.dataReceived(b"hello")
        waited = 0.0
        while not transport.disconnected:
            self.clock.advance(LINGER_TIMEOUT)
            waited += LINGER_TIMEOUT
        self.assertGreaterEqual(waited, LINGER_MAX_TIME)
        self.assertLessEqual(waited, LINGER_MAX_TIME + LINGER_TIMEOUT)
        proto.connectionLost(Failure(ConnectionDone()))
