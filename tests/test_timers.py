"""
The idle timeout and maximum lifetime, shared: two timers per factory.

Every connection still gets its own bounds (closed after 1 to 1.25 idle
timeouts of silence, and at exactly its lifetime), whenever it was made
relative to the shared timers, in memory with a ``Clock``.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcpproto import EchoFactory, ServerConnection
from tcpproto.connection import IDLE_TIMEOUT, MAX_LIFETIME
from tcpproto.testing import connectInMemory

# Powers of two, so that the clock's floating-point sums are exact.
T = 8.0
STEP = 1 / 64


connect = connectInMemory


def lose(proto: ServerConnection) -> None:
    proto.connectionLost(Failure(ConnectionDone()))


class SharedTimerTests(SynchronousTestCase):
    def test_twoTimersForAnyNumberOfConnections(self) -> None:
        clock = Clock()
        factory = EchoFactory(idleTimeout=T, maxLifetime=100 * T, clock=clock)
        protos = []
        for _ in range(100):
            protos.append(connect(factory)[0])
            clock.advance(STEP)
        self.assertEqual(len(clock.getDelayedCalls()), 2)
        for proto in protos:
            lose(proto)
        self.assertEqual(clock.getDelayedCalls(), [])

    @settings(max_examples=50, deadline=None)
    @given(
        starts=st.lists(st.integers(0, 4 * 64), min_size=1, max_size=8),
        lastData=st.lists(st.integers(0, 4 * 64), min_size=1, max_size=8),
    )
    def test_idleBoundsPerConnection(self, starts: list[int], lastData: list[int]) -> None:
        """Each connection is closed 1 to 1.25 timeouts after its last answer."""
        clock = Clock()
        factory = EchoFactory(idleTimeout=T, maxLifetime=0, clock=clock)
        conns: list[tuple[ServerConnection, StringTransport, float]] = []
        for i, start in enumerate(sorted(starts)):
            while clock.seconds() < start * STEP:
                # Step by step: a timer runs when due, not late.
                clock.advance(STEP)
            proto, transport = connect(factory)
            quiet = clock.seconds()
            if lastData[i % len(lastData)] % 2:
                proto.dataReceived(b"x")  # an answer: activity
            conns.append((proto, transport, quiet))
        closedAt: dict[int, float] = {}
        while len(closedAt) < len(conns):
            self.assertLess(clock.seconds(), 100 * T, "never closed")
            clock.advance(STEP)
            for i, (proto, transport, _) in enumerate(conns):
                if transport.disconnecting and i not in closedAt:
                    closedAt[i] = clock.seconds()
                    self.assertEqual(proto.closeReason, IDLE_TIMEOUT)
                    lose(proto)
        for i, (_, _, quiet) in enumerate(conns):
            self.assertGreaterEqual(closedAt[i] - quiet, T)
            self.assertLessEqual(closedAt[i] - quiet, 1.25 * T)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_lifetimeExactPerConnection(self) -> None:
        clock = Clock()
        factory = EchoFactory(idleTimeout=0, maxLifetime=10, clock=clock)
        conns = []
        for start in (0.0, 1.5, 3.0, 3.0, 7.25):
            clock.advance(start - clock.seconds())
            conns.append((start, *connect(factory)))
        while clock.seconds() < 20:
            clock.advance(0.25)
            for start, proto, transport in conns:
                ended = transport.disconnecting
                self.assertEqual(ended, clock.seconds() >= start + 10, (start, clock.seconds()))
                if ended:
                    self.assertEqual(proto.closeReason, MAX_LIFETIME)

    def test_earlyCloseOfTheOldest(self) -> None:
        """The lifetime timer moves on when the connection it waited for is gone."""
        clock = Clock()
        factory = EchoFactory(idleTimeout=0, maxLifetime=10, clock=clock)
        first, _ = connect(factory)
        clock.advance(4)
        second, transport = connect(factory)
        lose(first)
        clock.advance(9.75)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.25)
        self.assertTrue(transport.disconnecting)
        lose(second)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_endingConnectionStillIdleChecked(self) -> None:
        """
        A connection past its lifetime closes gracefully; if its peer never
        reads what is left, the idle timeout still cuts it.
        """
        clock = Clock()
        factory = EchoFactory(idleTimeout=T, maxLifetime=2 * T, clock=clock)
        proto, transport = connect(factory)
        while not transport.disconnecting:
            clock.advance(1)
            proto.dataReceived(b"x")
        self.assertEqual(proto.closeReason, MAX_LIFETIME)
        # The transport never finishes closing (the peer does not read).
        ended = clock.seconds()
        while not transport.disconnected:  # aborted
            self.assertLessEqual(clock.seconds() - ended, 1.25 * T)
            clock.advance(STEP)
        self.assertGreaterEqual(clock.seconds() - ended, T - 1)
        lose(proto)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_disabledMeansNoTimer(self) -> None:
        clock = Clock()
        factory = EchoFactory(idleTimeout=0, maxLifetime=0, clock=clock)
        proto, _ = connect(factory)
        self.assertEqual(clock.getDelayedCalls(), [])
        lose(proto)
