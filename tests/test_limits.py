"""
Connection limits, the access list, the idle timeout and the line length limit.

Each limit is shown enforced and shown not to touch normal clients: first in
memory (the decisions, with a fake clock), then end to end against
``twistd tcpecho`` with real sockets on loopback (the options reach the
server, and what a refused or timed-out peer actually sees).
"""

from __future__ import annotations

import ipaddress
import resource
import socket
import subprocess
import sys
import time

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcpproto._services import raiseFileLimit
from tcpproto._vocabulary import LINGER_TIMEOUT
from tcpproto.connection import (
    DEFAULT_IDLE_TIMEOUT,
    IDLE_TIMEOUT,
    LINE_TOO_LONG,
    ServerConnection,
    ServerFactory,
)
from tcpproto.echo import LINE, EchoFactory
from tcpproto.framing import DEFAULT_MAX_LINE_LENGTH
from tcpproto.limits import (
    MAX_CONNECTIONS,
    MAX_PER_PEER,
    NOT_ALLOWED,
    ConnectionLimits,
    parseNetwork,
    peerIP,
)
from tcpproto.tap import Options, TwistdOptions
from tcpproto.testing import HalfCloseableStringTransport, connectInMemory
from tcpproto.thankyou import BUSY_MESSAGE, ThankYouFactory
from tests.helpers import (
    OTHER_LOOPBACK,
    LogCapture,
    closedAtOnce,
    connect,
    recvExactly,
    recvUntilClosed,
    startLimitedServer,
)

V4 = IPv4Address("TCP", "127.0.0.1", 40000)


def v4(host: str, port: int = 40000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


def v6(host: str, port: int = 40000) -> IPv6Address:
    return IPv6Address("TCP", host, port)


class _Conn:
    """Stands in for a connection in :class:`ConnectionLimits`' bookkeeping."""


def connectTo(
    factory: ServerFactory, addr: IPv4Address | IPv6Address = V4
) -> tuple[ServerConnection, StringTransport]:
    """Admit a connection from ``addr`` in memory; fails if it is refused."""
    return connectInMemory(factory, peer=addr)


def lose(proto: ServerConnection) -> None:
    proto.connectionLost(Failure(ConnectionError("test")))


# -- admission, in memory -------------------------------------------------------


class ParseNetworkTests(SynchronousTestCase):
    def test_ipv4AndIPv6(self) -> None:
        self.assertEqual(parseNetwork("10.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))
        self.assertEqual(parseNetwork(" ::1 "), ipaddress.ip_network("::1/128"))
        self.assertEqual(parseNetwork("192.168.1.7/24"), ipaddress.ip_network("192.168.1.0/24"))

    def test_badNetworkNamed(self) -> None:
        e = self.assertRaises(ValueError, parseNetwork, "10.0.0.0/33")
        self.assertIn("'10.0.0.0/33'", str(e))

    def test_optionRejectsBadNetwork(self) -> None:
        """``--allow nonsense`` is one line on stderr and exit status 2 under twistd."""
        options = TwistdOptions()
        stderr = sys.stderr
        try:
            from io import StringIO

            sys.stderr = captured = StringIO()
            e = self.assertRaises(SystemExit, options.parseOptions, ["--allow", "nonsense"])
        finally:
            sys.stderr = stderr
        self.assertEqual(e.code, 2)
        self.assertIn("--allow: not an IPv4 or IPv6 network: 'nonsense'", captured.getvalue())
        self.assertEqual(captured.getvalue().count("\n"), 1)


class PeerIPTests(SynchronousTestCase):
    def test_mappedIPv6IsIPv4(self) -> None:
        """A dual-stack listener's ``::ffff:a.b.c.d`` peer is ``a.b.c.d``."""
        self.assertEqual(peerIP(v6("::ffff:127.0.0.1")), ipaddress.ip_address("127.0.0.1"))
        self.assertEqual(peerIP(v6("::1")), ipaddress.ip_address("::1"))
        self.assertEqual(peerIP(v4("127.0.0.2")), ipaddress.ip_address("127.0.0.2"))

    def test_unixPeerHasNoIP(self) -> None:
        self.assertIsNone(peerIP(UNIXAddress(b"/tmp/x")))


class ConnectionLimitsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        limits = ConnectionLimits()
        self.assertEqual((limits.maxConnections, limits.maxPerPeer, limits.allow), (10000, 0, ()))
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["max-connections"], 10000)
        self.assertEqual(options["max-per-peer"], 0)
        self.assertEqual(options["idle-timeout"], DEFAULT_IDLE_TIMEOUT)
        self.assertEqual(DEFAULT_IDLE_TIMEOUT, 300)
        self.assertEqual(options["max-line-length"], DEFAULT_MAX_LINE_LENGTH)
        self.assertEqual(DEFAULT_MAX_LINE_LENGTH, 65536)
        self.assertEqual(options["shutdown-timeout"], 10)
        self.assertEqual(options["allow"], [])

    def test_negativeRejected(self) -> None:
        self.assertRaises(ValueError, ConnectionLimits, maxConnections=-1)
        self.assertRaises(ValueError, ConnectionLimits, maxPerPeer=-1)

    def test_maxConnections(self) -> None:
        limits = ConnectionLimits(maxConnections=2)
        conns = [_Conn(), _Conn()]
        for c in conns:
            self.assertIsNone(limits.check(V4))
            limits.opened(c, peerIP(V4))
        self.assertEqual(limits.check(V4), MAX_CONNECTIONS)
        self.assertEqual(limits.check(v4("10.1.1.1")), MAX_CONNECTIONS)
        limits.closed(conns[0], peerIP(V4))
        self.assertIsNone(limits.check(V4))

    def test_zeroIsNoLimit(self) -> None:
        limits = ConnectionLimits(maxConnections=0, maxPerPeer=0)
        for _ in range(20000):
            limits.opened(_Conn(), peerIP(V4))
        self.assertIsNone(limits.check(V4))

    def test_maxPerPeer(self) -> None:
        limits = ConnectionLimits(maxPerPeer=2)
        a, b = _Conn(), _Conn()
        ip = peerIP(V4)
        limits.opened(a, ip)
        limits.opened(b, ip)
        self.assertEqual(limits.check(V4), MAX_PER_PEER)
        # Another address is not affected, nor is a UNIX-socket peer.
        self.assertIsNone(limits.check(v4("127.0.0.2")))
        self.assertIsNone(limits.check(v6("::1")))
        self.assertIsNone(limits.check(UNIXAddress(b"/s")))
        limits.closed(a, ip)
        self.assertIsNone(limits.check(V4))
        limits.closed(b, ip)
        # Nothing is kept for a peer with no connection (memory stays bounded).
        self.assertEqual(limits._perPeer, {})

    def test_maxPerPeerCountsMappedIPv6AsIPv4(self) -> None:
        """Connections to an IPv4 and a dual-stack IPv6 listener count as one peer."""
        limits = ConnectionLimits(maxPerPeer=1)
        limits.opened(_Conn(), peerIP(V4))
        self.assertEqual(limits.check(v6("::ffff:127.0.0.1")), MAX_PER_PEER)
        self.assertIsNone(limits.check(v6("::ffff:127.0.0.2")))

    def test_allow(self) -> None:
        limits = ConnectionLimits(allow=["127.0.0.2/32", parseNetwork("fd00::/8")])
        self.assertIsNone(limits.check(v4("127.0.0.2")))
        self.assertIsNone(limits.check(v6("::ffff:127.0.0.2")))
        self.assertIsNone(limits.check(v6("fd12::5")))
        self.assertIsNone(limits.check(UNIXAddress(b"/s")))
        self.assertEqual(limits.check(V4), NOT_ALLOWED)
        self.assertEqual(limits.check(v6("::1")), NOT_ALLOWED)

    def test_emptyAllowIsEveryone(self) -> None:
        limits = ConnectionLimits()
        self.assertIsNone(limits.check(v4("203.0.113.9")))
        self.assertIsNone(limits.check(v6("2001:db8::1")))

    def test_accessListBeforeCapacity(self) -> None:
        """A peer outside the list is refused as such, even when the server is full."""
        limits = ConnectionLimits(maxConnections=1, allow=["10.0.0.0/8"])
        limits.opened(_Conn(), peerIP(v4("10.0.0.1")))
        self.assertEqual(limits.check(V4), NOT_ALLOWED)

    def test_whenEmpty(self) -> None:
        limits = ConnectionLimits()
        fired: list[None] = []
        limits.whenEmpty().addCallback(fired.append)
        self.assertEqual(fired, [None])
        c = _Conn()
        limits.opened(c, None)
        d = limits.whenEmpty()
        d.addCallback(fired.append)
        self.assertEqual(len(fired), 1)
        limits.closed(c, None)
        self.assertEqual(len(fired), 2)

    def test_whenEmptyCancelledIsForgotten(self) -> None:
        limits = ConnectionLimits()
        limits.opened(_Conn(), None)
        d = limits.whenEmpty()
        d.addErrback(lambda f: None)
        d.cancel()
        self.assertEqual(limits.registry._emptyWaiters, [])


class FactoryAdmissionTests(SynchronousTestCase):
    """``buildProtocol`` refuses before any byte is read, counts and logs it."""

    def test_overMaxConnectionsClosedAtOnce(self) -> None:
        log = LogCapture.install(self)
        factory = EchoFactory(clock=Clock(), maxConnections=2, listener="tcp:7")
        first, t1 = connectTo(factory)
        connectTo(factory, v4("127.0.0.2"))
        self.assertIsNone(factory.buildProtocol(v4("127.0.0.3")))
        self.assertEqual(factory.stats.refused[MAX_CONNECTIONS], 1)
        [event] = log.withEvent("refused")
        self.assertEqual(event["reason"], MAX_CONNECTIONS)
        self.assertEqual(event["peer"], "127.0.0.3:40000")
        self.assertEqual(event["listener"], "tcp:7")
        # Admitted clients are unaffected, and a slot frees when one closes.
        first.dataReceived(b"still here")
        self.assertEqual(t1.value(), b"still here")
        lose(first)
        self.assertIsNotNone(factory.buildProtocol(v4("127.0.0.3")))

    def test_limitsSharedBetweenListeners(self) -> None:
        """One ``ConnectionLimits`` makes the total per server, not per port."""
        limits = ConnectionLimits(maxConnections=1)
        a = EchoFactory(clock=Clock(), limits=limits)
        b = ThankYouFactory(clock=Clock(), limits=limits)
        connectTo(a)
        proto = b.buildProtocol(v4("127.0.0.2"))
        self.assertNotIsInstance(proto, ServerConnection)

    def test_perPeerFromFactory(self) -> None:
        factory = EchoFactory(clock=Clock(), maxPerPeer=1)
        connectTo(factory, v4("127.0.0.1", 1))
        self.assertIsNone(factory.buildProtocol(v4("127.0.0.1", 2)))
        self.assertIsNone(factory.buildProtocol(v6("::ffff:127.0.0.1", 3)))
        connectTo(factory, v4("127.0.0.2", 4))
        self.assertEqual(factory.stats.refused[MAX_PER_PEER], 2)

    def test_notAllowedClosedAtOnce(self) -> None:
        factory = EchoFactory(clock=Clock(), allow=("::1", "127.0.0.2/32"))
        self.assertIsNone(factory.buildProtocol(V4))
        connectTo(factory, v6("::1"))
        connectTo(factory, v4("127.0.0.2"))
        self.assertEqual(factory.stats.refused[NOT_ALLOWED], 1)

    def test_refusalLogRateLimited(self) -> None:
        """
        A flood of refusals is one log line per second and reason: the first
        at once, then the last of each second with the count of the others.
        Every refusal is logged or counted, even when the flood stops.
        """
        log = LogCapture.install(self)
        clock = Clock()
        factory = EchoFactory(clock=clock, maxConnections=1, idleTimeout=0, maxLifetime=0)
        connectTo(factory)
        for port in range(100):
            self.assertIsNone(factory.buildProtocol(v4("127.0.0.9", port)))
        self.assertEqual(len(log.withEvent("refused")), 1)
        clock.advance(1.0)  # the flood stopped: its last second is reported
        events = log.withEvent("refused")
        self.assertEqual(
            [(e["peer"], e["suppressed"]) for e in events],
            [("127.0.0.9:0", 0), ("127.0.0.9:99", 98)],
        )
        self.assertIsNone(factory.buildProtocol(v4("127.0.0.9", 200)))
        self.assertIsNone(factory.buildProtocol(v4("127.0.0.9", 201)))
        self.assertEqual(len(log.withEvent("refused")), 2)  # within the next second
        clock.advance(1.0)
        events = log.withEvent("refused")
        self.assertEqual(
            [(e["peer"], e["suppressed"]) for e in events[2:]], [("127.0.0.9:201", 1)]
        )
        self.assertEqual(factory.stats.refused[MAX_CONNECTIONS], 102)
        self.assertEqual(1 + sum(1 + e["suppressed"] for e in events[1:]), 102)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_refusalsHeldBackAreLoggedOnStop(self) -> None:
        """Stopping the listener logs the refusals still held back; no timer is left."""
        log = LogCapture.install(self)
        clock = Clock()
        factory = EchoFactory(clock=clock, maxConnections=1, idleTimeout=0, maxLifetime=0)
        factory.doStart()  # as a listening port does
        connectTo(factory)
        for port in range(3):
            factory.buildProtocol(v4("127.0.0.9", port))
        factory.doStop()
        self.assertEqual([e["suppressed"] for e in log.withEvent("refused")], [0, 1])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_thankYouBusyLine(self) -> None:
        """Thank-you mode tells a peer refused for load that it is busy, then closes."""
        factory = ThankYouFactory(clock=Clock(), maxConnections=1, allow=["127.0.0.0/8"])
        connectTo(factory)
        busy = factory.buildProtocol(v4("127.0.0.2"))
        assert busy is not None
        transport = StringTransport()
        busy.makeConnection(transport)
        self.assertEqual(transport.value(), BUSY_MESSAGE)
        self.assertTrue(transport.disconnecting)
        self.assertLess(len(BUSY_MESSAGE), 80)
        # Outside the access list: closed at once, not told anything.
        self.assertIsNone(factory.buildProtocol(v6("::1")))


# -- idle timeout, in memory ----------------------------------------------------


class IdleTimeoutTests(SynchronousTestCase):
    """
    The idle timeout: a connection is closed after between T and 1.25 T
    without an answer, never while traffic flows; in memory on a fake clock,
    and end to end.
    """

    # A power of two, so that the clock's floating-point sums are exact.
    timeout = 8.0

    def factory(self, **kwargs: object) -> tuple[EchoFactory, Clock]:
        clock = Clock()
        kwargs.setdefault("maxLifetime", 0)  # only the idle timer here
        return EchoFactory(clock=clock, idleTimeout=self.timeout, **kwargs), clock  # type: ignore[arg-type]

    def test_silentConnectionClosed(self) -> None:
        log = LogCapture.install(self)
        factory, clock = self.factory()
        proto, transport = connectTo(factory)
        clock.pump([self.timeout / 100] * 99)
        self.assertFalse(transport.disconnecting)
        clock.pump([self.timeout / 100] * 26)
        self.assertTrue(transport.disconnecting)  # closed: a FIN, nothing was stuck
        self.assertEqual(proto.closeReason, IDLE_TIMEOUT)
        lose(proto)
        [close] = log.withEvent("close")
        self.assertEqual(close["reason"], IDLE_TIMEOUT)
        self.assertEqual(clock.getDelayedCalls(), [])

    def halfCloseable(
        self, idleReset: bool = False
    ) -> tuple[ServerConnection, HalfCloseableStringTransport, Clock]:
        """A connection on a transport that can half-close, and its factory's clock."""
        factory, clock = self.factory()
        factory.idleReset = idleReset
        transport = HalfCloseableStringTransport()
        proto, _ = connectInMemory(factory, transport)
        return proto, transport, clock

    def idleOut(self, clock: Clock) -> None:
        """Let the idle timeout run out (five sweeps: past 1.25 T)."""
        clock.pump([self.timeout / 4] * 5)

    def silenceUntilClosed(
        self, clock: Clock, transport: StringTransport, step: float = 1 / 64
    ) -> float:
        """Advance the clock until the connection is dropped; how long that took."""
        start = clock.seconds()
        while not transport.disconnecting:
            clock.advance(step)
            if clock.seconds() - start > 10 * self.timeout:
                self.fail("never closed")
        return clock.seconds() - start

    def test_boundsWhateverThePhase(self) -> None:
        """From the start, or after traffic at any phase of the sweep: T to 1.25 T."""
        factory, clock = self.factory()
        for offset in (None, 0.0, 1 / 64, 0.5, 1.75, 2 - 1 / 64, 2.0, 2 + 1 / 64, 7.5):
            proto, transport = connectTo(factory)
            if offset is not None:
                clock.advance(offset)
                proto.dataReceived(b"x")
            waited = self.silenceUntilClosed(clock, transport)
            self.assertGreaterEqual(waited, self.timeout)
            self.assertLessEqual(waited, 1.25 * self.timeout)
            self.assertEqual(proto.closeReason, IDLE_TIMEOUT)
            lose(proto)

    def test_timerCancelledOnClose(self) -> None:
        factory, clock = self.factory()
        proto, _ = connectTo(factory)
        self.assertTrue(clock.getDelayedCalls())
        lose(proto)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_activeConnectionKept(self) -> None:
        """A normal client talking more often than the timeout is never cut."""
        factory, clock = self.factory()
        proto, transport = connectTo(factory)
        for _ in range(40):
            clock.advance(self.timeout / 2)
            proto.dataReceived(b"x")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value(), b"x" * 40)

    def test_drainingOutputIsActivity(self) -> None:
        """A peer that reads slowly but keeps reading is not idle."""
        factory, clock = self.factory()
        proto, transport = connectTo(factory)
        for _ in range(20):
            clock.advance(self.timeout / 2)
            proto.pauseProducing()
            proto.resumeProducing()
        self.assertFalse(transport.disconnecting)

    def test_zeroDisables(self) -> None:
        clock = Clock()
        factory = EchoFactory(clock=clock, idleTimeout=0, maxLifetime=0)
        _, transport = connectTo(factory)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(10 * DEFAULT_IDLE_TIMEOUT)
        self.assertFalse(transport.disconnecting)

    def test_noTimerWorkPerChunk(self) -> None:
        """
        Receiving data neither creates, resets nor reschedules a timer: the
        only timer is the connection's periodic check, set up once.
        """
        factory, clock = self.factory()
        proto, _ = connectTo(factory)
        [call] = clock.getDelayedCalls()
        due = call.getTime()
        for _ in range(10000):
            proto.dataReceived(b"chunk")
        self.assertEqual(clock.getDelayedCalls(), [call])
        self.assertEqual(call.getTime(), due)
        # Each check costs a timer of its own, four per timeout period.
        checks = 0
        for _ in range(20):
            before = clock.getDelayedCalls()[0]
            clock.advance(self.timeout / 4)
            proto.dataReceived(b"x")
            checks += clock.getDelayedCalls()[0] is not before
        self.assertEqual(checks, 20)

    def test_lineDripClosed(self) -> None:
        """
        Slow drip in line framing: bytes keep coming but never complete a line
        (slowloris), so nothing is answered and the idle timeout closes it.
        """
        factory, clock = self.factory(framing=LINE)
        proto, transport = connectTo(factory)
        for _ in range(int(self.timeout * 2)):
            if transport.disconnecting:
                break
            clock.advance(1.0)
            proto.dataReceived(b"a")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(proto.closeReason, IDLE_TIMEOUT)
        self.assertEqual(transport.value(), b"")

    def test_lineClientCompletingLinesKept(self) -> None:
        factory, clock = self.factory(framing=LINE)
        proto, transport = connectTo(factory)
        for i in range(int(self.timeout * 4)):
            clock.advance(1.0)
            proto.dataReceived(b"\n" if i % 4 == 3 else b"a")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value(), b"aaa\n" * int(self.timeout))

    def test_rawDripIsAnswered(self) -> None:
        """
        In raw framing every byte is a message and is echoed at once: a drip is
        an interactive peer, kept, costing one connection slot (see limits.rst).
        """
        factory, clock = self.factory()
        proto, transport = connectTo(factory)
        for _ in range(int(self.timeout * 3)):
            clock.advance(1.0)
            proto.dataReceived(b"k")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value(), b"k" * int(self.timeout * 3))

    def test_closesWithFINThenLingers(self) -> None:
        """
        Nothing stuck in our output: the idle timeout half-closes (our FIN)
        and waits for the peer's; a peer that closes then is closed cleanly,
        and the lingering is in the log.
        """
        log = LogCapture.install(self)
        proto, transport, clock = self.halfCloseable()
        self.idleOut(clock)
        self.assertTrue(transport.writeDisconnecting)
        self.assertFalse(transport.disconnecting or transport.disconnected)
        proto.dataReceived(b"late")  # read and dropped, not echoed
        self.assertEqual(transport.value(), b"")
        proto.readConnectionLost()  # the peer's FIN
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        lose(proto)
        [close] = log.withEvent("close")
        self.assertEqual((close["reason"], close["discarded"]), (IDLE_TIMEOUT, 4))
        self.assertNotIn("linger_limit", close)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_lingeringExpiresWithRST(self) -> None:
        """A peer that does not close within LINGER_TIMEOUT of our FIN is cut (RST)."""
        log = LogCapture.install(self)
        proto, transport, clock = self.halfCloseable()
        self.idleOut(clock)
        self.assertTrue(transport.writeDisconnecting)
        clock.advance(LINGER_TIMEOUT - 0.01)
        self.assertFalse(transport.disconnected)
        clock.advance(0.01)
        self.assertTrue(transport.disconnected)  # aborted
        lose(proto)
        [close] = log.withEvent("close")
        self.assertEqual(close["linger_limit"], "time")
        self.assertIn("cut", formatEvent(close))

    def test_stuckOutputIsReset(self) -> None:
        """Output the peer does not read: no FIN could follow it, so RST."""
        proto, transport, clock = self.halfCloseable()
        proto.pauseProducing()  # the transport's buffer is full
        self.idleOut(clock)
        self.assertTrue(transport.disconnected)
        self.assertFalse(transport.writeDisconnecting)

    def test_resetOption(self) -> None:
        """``idleReset`` (``--idle-reset``): always RST, as before."""
        _, transport, clock = self.halfCloseable(idleReset=True)
        self.idleOut(clock)
        self.assertTrue(transport.disconnected)
        self.assertFalse(transport.writeDisconnecting)

    def test_thankYouIdle(self) -> None:
        clock = Clock()
        factory = ThankYouFactory(clock=clock, idleTimeout=2)
        proto, transport = connectTo(factory)
        clock.pump([0.1] * 26)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(proto.closeReason, IDLE_TIMEOUT)

    # -- line length, in memory -----------------------------------------------------

    # -- end to end

    def test_silentClosedTalkingKept(self) -> None:
        server = startLimitedServer(self, "--idle-timeout", "1")
        silent = connect(server.port)
        talker = connect(server.port)
        self.addCleanup(silent.close)
        self.addCleanup(talker.close)
        started = time.monotonic()
        closedAt = None
        while time.monotonic() - started < 2.5:
            talker.sendall(b"ping")
            self.assertEqual(recvExactly(talker, 4), b"ping")
            if closedAt is None:
                silent.settimeout(0.25)
                try:
                    # The idle timeout closes with FIN (end of stream), not RST.
                    if silent.recv(1) == b"":
                        closedAt = time.monotonic() - started
                        silent.close()  # as a client does on end of stream
                except TimeoutError:
                    pass
            else:
                time.sleep(0.25)
        self.assertIsNotNone(closedAt)
        assert closedAt is not None
        self.assertGreater(closedAt, 0.9)
        self.assertLess(closedAt, 2.3)
        server.waitForLog(r"closed \(idle-timeout\)")


class MaxLineLengthTests(SynchronousTestCase):
    def test_limitEnforcedNormalLinesEchoed(self) -> None:
        factory = EchoFactory(LINE, clock=Clock(), maxLineLength=10)
        proto, transport = connectTo(factory)
        proto.dataReceived(b"0123456789\nshort\r\n")
        self.assertEqual(transport.value(), b"0123456789\nshort\r\n")
        transport.clear()
        proto.dataReceived(b"01234567890\nnever echoed\n")
        self.assertEqual(transport.value(), b"error: line longer than 10 bytes\n")
        self.assertEqual(proto.closeReason, LINE_TOO_LONG)
        self.assertTrue(transport.disconnecting)

    def test_longLineInPieces(self) -> None:
        """The limit holds however the long line is cut up, and memory with it."""
        factory = EchoFactory(LINE, clock=Clock(), maxLineLength=1000)
        proto, transport = connectTo(factory)
        for _ in range(100):
            proto.dataReceived(b"y" * 100)
        self.assertEqual(transport.value(), b"error: line longer than 1000 bytes\n")
        self.assertEqual(proto._lines._chunks, [])  # type: ignore[attr-defined]

    def test_thankYouLineLimit(self) -> None:
        factory = ThankYouFactory(framing=LINE, clock=Clock(), maxLineLength=4)
        proto, transport = connectTo(factory)
        proto.dataReceived(b"abcd\nabcde\n")
        self.assertEqual(transport.value(), b"thank you!\nerror: line longer than 4 bytes\n")
        self.assertEqual(proto.closeReason, LINE_TOO_LONG)


# -- the open-files limit --------------------------------------------------------

_RAISE = """
import resource, sys
from tcpproto._services import raiseFileLimit
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 256))
print(*raiseFileLimit(int(sys.argv[1])), *resource.getrlimit(resource.RLIMIT_NOFILE))
"""


class FileLimitTests(SynchronousTestCase):
    def test_raisedToHard(self) -> None:
        """The soft limit goes up to the hard one (only root could go beyond)."""
        out = subprocess.run(
            [sys.executable, "-c", _RAISE, "100000"],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout.split()
        self.assertEqual(out, [b"256", b"256", b"256", b"256"])

    def test_unchangedWhenAlreadyEnough(self) -> None:
        soft, hard = raiseFileLimit(1)
        self.assertGreaterEqual(soft, 1)
        if hard != resource.RLIM_INFINITY:
            self.assertLessEqual(soft, hard)

    def test_twistdRaisesAndWarns(self) -> None:
        """Started with soft 100, hard 200: raised to 200, and the default 10000 cannot fit."""
        server = startLimitedServer(self, nofile=(100, 200))
        self.assertEqual(server.openFilesLimit(), ("200", "200"))
        log = server.stdout()
        self.assertIn(
            "open-files limit 200 (hard 200) is below --max-connections 10000 plus headroom",
            log,
        )
        # It still serves.
        with connect(server.port) as s:
            s.sendall(b"ok")
            self.assertEqual(recvExactly(s, 2), b"ok")

    def test_twistdNoWarningWhenItFits(self) -> None:
        server = startLimitedServer(self, "--max-connections", "100", nofile=(100, 200))
        self.assertEqual(server.openFilesLimit(), ("200", "200"))
        self.assertNotIn("open-files limit", server.stdout())


# -- end to end: twistd tcpecho with real sockets --------------------------------


class MaxConnectionsEndToEndTests(SynchronousTestCase):
    def test_beyondLimitClosedAtOnce(self) -> None:
        server = startLimitedServer(self, "--max-connections", "3")
        clients = [connect(server.port) for _ in range(3)]
        for i, c in enumerate(clients):
            self.addCleanup(c.close)
            c.sendall(b"hi %d" % i)
            self.assertEqual(recvExactly(c, 4), b"hi %d" % i)
        extra = connect(server.port)
        self.addCleanup(extra.close)
        self.assertTrue(closedAtOnce(extra))
        server.waitForLog(r"refused 127\.0\.0\.1:\d+ on \S+: max-connections")
        # The admitted ones are unaffected; a freed slot is usable again.
        for c in clients:
            c.sendall(b"again")
            self.assertEqual(recvExactly(c, 5), b"again")
        clients[0].close()
        server.waitForLog(r"closed \(closed\)")
        with connect(server.port) as c:
            c.sendall(b"new")
            self.assertEqual(recvExactly(c, 3), b"new")

    def test_thankYouSaysBusy(self) -> None:
        server = startLimitedServer(self, "--mode", "thankyou", "--max-connections", "1")
        with connect(server.port) as first:
            first.sendall(b"hello")
            self.assertEqual(recvExactly(first, 10), b"thank you!")
            # A client that sends first, as the tutorial's does, still reads the line.
            for _ in range(5):
                with connect(server.port) as busy:
                    busy.sendall(b"hello")
                    data, _ = recvUntilClosed(busy)
                    self.assertEqual(data, BUSY_MESSAGE)
            first.sendall(b"more")
            self.assertEqual(recvExactly(first, 10), b"thank you!")


class PerPeerEndToEndTests(SynchronousTestCase):
    def test_perClientAddress(self) -> None:
        """
        Two connections at most per IP: a third from 127.0.0.1 is closed; one
        from 127.0.0.2, from ``::1``, is served; IPv4-mapped peers of a
        dual-stack listener count as the IPv4 address they are.
        """
        server = startLimitedServer(
            self,
            "--max-per-peer",
            "2",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--listen",
            "tcp6:0:interface=\\:\\:1",
            "--listen",
            "tcp6:0:interface=\\:\\:ffff\\:127.0.0.1",
        )
        v4port, v6port, mappedPort = (a.port for a in server.addresses)
        self.assertEqual(
            [a.host for a in server.addresses], ["127.0.0.1", "::1", "::ffff:127.0.0.1"]
        )
        a = connect(v4port)
        b = connect(mappedPort)  # 127.0.0.1 again, seen as ::ffff:127.0.0.1
        for c in (a, b):
            self.addCleanup(c.close)
            c.sendall(b"x")
            self.assertEqual(recvExactly(c, 1), b"x")
        for port in (v4port, mappedPort):
            third = connect(port)
            self.addCleanup(third.close)
            self.assertTrue(closedAtOnce(third))
        server.waitForLog(r"refused \S+ on \S+: max-per-peer", count=2)
        others = [connect(v4port, source=OTHER_LOOPBACK), connect(v6port, "::1")]
        others.append(connect(v4port, source=OTHER_LOOPBACK))
        for c in others:
            self.addCleanup(c.close)
            c.sendall(b"other")
            self.assertEqual(recvExactly(c, 5), b"other")
        # The first client keeps being served.
        a.sendall(b"still")
        self.assertEqual(recvExactly(a, 5), b"still")


class AllowEndToEndTests(SynchronousTestCase):
    def test_outsideClosedBeforeReading(self) -> None:
        server = startLimitedServer(
            self,
            "--allow",
            f"{OTHER_LOOPBACK}/32",
            "--allow",
            "::1/128",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--listen",
            "tcp6:0:interface=\\:\\:1",
        )
        v4port, v6port = (a.port for a in server.addresses)
        with connect(v4port) as outside:
            outside.sendall(b"let me in")
            self.assertTrue(closedAtOnce(outside))
        log = server.waitForLog(r"refused 127\.0\.0\.1:\d+ on \S+: not-allowed")
        # Refused in buildProtocol: never counted as open, so never read from.
        self.assertNotRegex(log, r"\] 127\.0\.0\.1:\d+ (connected|closed)")
        for c in (connect(v4port, source=OTHER_LOOPBACK), connect(v6port, "::1")):
            with c:
                c.sendall(b"inside")
                self.assertEqual(recvExactly(c, 6), b"inside")

    def test_ipv6Outside(self) -> None:
        server = startLimitedServer(
            self, "--allow", "127.0.0.0/8", "--listen", "tcp6:0:interface=\\:\\:1"
        )
        with connect(server.port, "::1") as c:
            c.sendall(b"x")
            self.assertTrue(closedAtOnce(c))
        server.waitForLog(r"refused \[::1\]:\d+ on \S+: not-allowed")


class MaxLineLengthEndToEndTests(SynchronousTestCase):
    def test_option(self) -> None:
        server = startLimitedServer(self, "--framing", "line", "--max-line-length", "10")
        with connect(server.port) as ok:
            ok.sendall(b"0123456789\n")
            self.assertEqual(recvExactly(ok, 11), b"0123456789\n")
        with connect(server.port) as bad:
            bad.sendall(b"hello\n01234567890\n")
            data, _ = recvUntilClosed(bad)
            self.assertEqual(data, b"hello\nerror: line longer than 10 bytes\n")
        server.waitForLog(r"closed \(line-too-long\)")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as again:
            again.sendall(b"fine\n")
            self.assertEqual(recvExactly(again, 5), b"fine\n")
