"""
The lean epoll reactor: the same behaviour as Twisted's, one layer less per event.
"""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.test import test_core, test_fdset, test_threads, test_time
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcpproto import EchoFactory, EchoProtocol, _twisted, exchange
from tcpproto.reactor import LeanEPollReactor
from tests.helpers import (
    LOCAL_TCP,
    LOOPBACK,
    CommandServer,
    Silent,
    executable,
    runProcessSync,
    startServer,
)

T = TypeVar("T")


def runOnce(
    reactor: LeanEPollReactor, body: Callable[[], Coroutine[Any, Any, T]], timeout: float = 20
) -> T:
    """Run ``reactor`` (a private one, not the global) once, for ``body``; its result."""
    results: list[object] = []

    def start() -> None:
        d = Deferred.fromCoroutine(body())
        d.addBoth(results.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    guard = reactor.callLater(timeout, reactor.stop)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    if not results:
        raise AssertionError("timed out")
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result  # type: ignore[return-value]


class _Crash(Protocol):
    def dataReceived(self, data: bytes) -> None:
        raise ZeroDivisionError("a bug in application code")


class LeanReactorTests(SynchronousTestCase):
    """Run a private LeanEPollReactor on 127.0.0.1: the global reactor is untouched."""

    def setUp(self) -> None:
        self.reactor = LeanEPollReactor()
        self.addCleanup(self.closeReactor)
        self.general = 0
        original = self.reactor._doReadOrWrite

        def counting(*args: object) -> None:
            self.general += 1
            original(*args)

        self.reactor._doReadOrWrite = counting  # type: ignore[method-assign]

    def closeReactor(self) -> None:
        """Close the private reactor's epoll object and waker pipe."""
        waker = self.reactor.waker
        if waker is not None:
            self.reactor.removeReader(waker)
            waker.connectionLost(None)
        self.reactor._poller.close()

    async def echo(self, factory: Factory, data: bytes) -> bytes:
        port = await TCP4ServerEndpoint(self.reactor, 0, interface=LOOPBACK).listen(factory)
        try:
            number = port.getHost().port
            return await exchange(TCP4ClientEndpoint(self.reactor, LOOPBACK, number), data)
        finally:
            await port.stopListening()

    def test_echoAndHalfClose(self) -> None:
        """A multi-megabyte echo with a half-close comes back whole."""
        data = bytes(range(256)) * 8192  # 2 MiB: many reads each way
        answer = runOnce(self.reactor, lambda: self.echo(EchoFactory(clock=self.reactor), data))
        self.assertEqual(answer, data)

    def test_plainReadsSkipTheGeneralPath(self) -> None:
        """Readable-only events go straight to doRead; others still go through Twisted's code."""
        reads = 0
        factory = EchoFactory(clock=self.reactor)
        original = factory.protocol.dataReceived

        def counting(proto: EchoProtocol, data: bytes) -> None:
            nonlocal reads
            reads += 1
            original(proto, data)

        factory.protocol = type("Counting", (factory.protocol,), {"dataReceived": counting})
        data = b"x" * 4_000_000
        self.assertEqual(runOnce(self.reactor, lambda: self.echo(factory, data)), data)
        self.assertGreater(reads, 10)
        # Writable and hang-up events (connect, full buffers, close) still
        # take Twisted's general path: far fewer of them than reads.
        self.assertGreater(self.general, 0)
        self.assertLess(self.general, reads * 4)

    def test_errorInApplicationCodeDropsTheConnection(self) -> None:
        """As with Twisted's reactor: the error is logged and the connection closed."""

        async def body() -> None:
            endpoint = TCP4ServerEndpoint(self.reactor, 0, interface=LOOPBACK)
            port = await endpoint.listen(Factory.forProtocol(_Crash))
            try:
                client = Silent()
                number = port.getHost().port
                await connectProtocol(TCP4ClientEndpoint(self.reactor, LOOPBACK, number), client)
                assert client.transport is not None
                client.transport.write(b"boom")
                await client.lost
            finally:
                await port.stopListening()

        runOnce(self.reactor, body)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class ChoiceTests(SynchronousTestCase):
    """twistd tcpecho runs on the lean reactor unless the operator chose one."""

    def installIfNoneChosen(self, before: str = "") -> list[bytes]:
        """What installIfNoneChosen() returns, and the reactor then, in a fresh interpreter."""
        code = before + (
            "from tcpproto.reactor import installIfNoneChosen\n"
            "print(installIfNoneChosen())\n"
            "from twisted.internet import reactor\n"
            "print(type(reactor).__name__)\n"
        )
        result = runProcessSync([sys.executable, "-c", code])
        self.assertEqual(result.err, b"")
        return result.out.split()

    def test_installedWhenNoneChosen(self) -> None:
        self.assertEqual(self.installIfNoneChosen(), [b"True", b"LeanEPollReactor"])

    def test_keptWhenChosen(self) -> None:
        chosen = "from twisted.internet import epollreactor\nepollreactor.install()\n"
        self.assertEqual(self.installIfNoneChosen(chosen), [b"False", b"EPollReactor"])

    def test_twistdTcpechoUsesIt(self) -> None:
        server = startServer(self)
        self.assertIn("reactor class: tcpproto.reactor.LeanEPollReactor", server.stdout())

    def test_twistdReactorOptionOverrides(self) -> None:
        """``twistd --reactor=epoll tcpecho`` keeps Twisted's own (the lean one is a default)."""
        twistd = [executable("twistd"), "-n", "--pidfile=", "--reactor=epoll"]
        server = CommandServer([*twistd, "tcpecho", "--listen", LOCAL_TCP])
        self.addCleanup(server.cleanup)
        server.start()
        self.assertIn("reactor class: twisted.internet.epollreactor.EPollReactor", server.stdout())


# -- the lean main loop (issue 13): Twisted's behaviour, less work per turn ----


class _RecordingPoller:
    """An epoll object's stand-in: records each poll's timeout, never blocks."""

    def __init__(self, reactor: Any, onPoll: Callable[[float], None]) -> None:
        self.real = reactor._poller
        self.timeouts: list[float] = []
        self.onPoll = onPoll

    def poll(self, timeout: float, maxevents: int = -1) -> list[tuple[int, int]]:
        self.timeouts.append(timeout)
        self.onPoll(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _closeReactor(reactor: Any) -> None:
    waker = reactor.waker
    if waker is not None:
        reactor.removeReader(waker)
        waker.connectionLost(None)
    reactor._poller.close()


class LeanLoopEquivalenceTests(SynchronousTestCase):
    """
    The same scenario on Twisted's EPollReactor and on the lean reactor
    gives the same observable result: the reference is Twisted's.
    """

    def reactors(self) -> list[Any]:
        made = [EPollReactor(), LeanEPollReactor()]
        for reactor in made:
            self.addCleanup(_closeReactor, reactor)
        return made

    def firstWait(self, reactor: Any, setup: Callable[[Any], object]) -> float:
        """The timeout of the reactor's first poll after ``setup(reactor)``."""

        def stopOnce(timeout: float) -> None:
            if len(recorder.timeouts) == 1:
                reactor.stop()

        recorder = _RecordingPoller(reactor, stopOnce)
        setup(reactor)
        reactor._poller = recorder
        try:
            reactor.run(installSignalHandlers=False)
        finally:
            reactor._poller = recorder.real
        return recorder.timeouts[0]

    def test_waitsAsTwistedDoes(self) -> None:
        """Until the earliest timed call; forever without one; bounded as epoll needs."""
        cases: list[tuple[str, Callable[[Any], object]]] = [
            ("no timed call", lambda r: None),
            ("a call in 100 s", lambda r: r.callLater(100, lambda: None)),
            ("a call in 10**8 s", lambda r: r.callLater(10**8, lambda: None)),
            (
                "a cancelled call first",
                lambda r: (r.callLater(50, int).cancel(), r.callLater(90, int)),
            ),
        ]
        for name, setup in cases:
            twisted, lean = (self.firstWait(r, setup) for r in self.reactors())
            if twisted == -1:
                self.assertEqual(lean, -1, name)
            else:
                self.assertLess(abs(lean - twisted), 0.5, name)
        self.assertEqual(_twisted.LONGEST_WAIT, 2147483)

    def test_dueCallsRunBeforeWaiting(self) -> None:
        """A timed call that is due runs before the wait, which lasts until the next one."""
        for reactor in self.reactors():
            ran: list[str] = []
            reactor.callLater(0, ran.append, "now")
            reactor.callLater(3600, ran.append, "later")
            self.assertGreater(self.firstWait(reactor, lambda r: None), 3000)
            self.assertEqual(ran, ["now"], type(reactor).__name__)

    def stopFromRead(self, reactor: Any) -> list[str]:
        """stop() in a read handler: what happens after it, in order."""
        seen: list[str] = []
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)

        class Reader:
            def fileno(self) -> int:
                return a.fileno()

            def doRead(self) -> None:
                a.recv(1)
                seen.append("stop")
                reactor.stop()

            def logPrefix(self) -> str:
                return "Reader"

            def connectionLost(self, reason: object) -> None:
                pass

        reactor.addReader(Reader())
        reactor.callLater(3600, seen.append, "never")
        reactor.addSystemEventTrigger("before", "shutdown", seen.append, "shutdown")
        original = reactor._poller.poll

        def poll(timeout: float, maxevents: int = -1) -> Any:
            seen.append("poll")
            return original(timeout, maxevents)

        reactor._poller = _RecordingPoller(reactor, lambda t: None)
        reactor._poller.poll = poll
        b.send(b"x")
        reactor.run(installSignalHandlers=False)
        reactor._poller = reactor._poller.real
        return seen

    def test_stopWithinOneIteration(self) -> None:
        """After stop(), shutdown starts before the reactor waits again (as Twisted's)."""
        twisted, lean = (self.stopFromRead(r) for r in self.reactors())
        self.assertEqual(twisted[:3], ["poll", "stop", "shutdown"])
        self.assertEqual(lean[: len(twisted)], twisted)

    def test_callFromThreadWakesTheWait(self) -> None:
        """A call from another thread wakes a reactor waiting on epoll."""
        for reactor in self.reactors():
            self.wakeFromThread(reactor)

    def wakeFromThread(self, reactor: Any) -> None:
        done: list[str] = []
        waiting = threading.Event()
        poll = reactor._poller.poll

        def signallingPoll(timeout: float, maxevents: int = -1) -> Any:
            waiting.set()
            return poll(timeout, maxevents)

        def fromThread() -> None:
            done.append("called")
            reactor.stop()

        def caller() -> None:
            waiting.wait(30)
            reactor.callFromThread(fromThread)

        recorder = _RecordingPoller(reactor, lambda t: None)
        recorder.poll = signallingPoll  # type: ignore[method-assign]
        reactor._poller = recorder
        # A failure to wake would end the run only here, and fail the test.
        guard = reactor.callLater(60, reactor.stop)
        thread = threading.Thread(target=caller)
        thread.start()
        try:
            reactor.run(installSignalHandlers=False)
        finally:
            reactor._poller = recorder.real
            thread.join()
        self.assertEqual(done, ["called"], type(reactor).__name__)
        self.assertTrue(guard.active())
        guard.cancel()

    def test_mainLoopErrorIsLoggedAndSurvived(self) -> None:
        """An error escaping an iteration is logged as Twisted logs it, and the loop goes on."""
        for reactor in self.reactors():
            self.survivesError(reactor)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)

    def survivesError(self, reactor: Any) -> None:
        calls = 0

        def flaky(timeout: float) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError(errno.EBADF, "a broken poller, once")
            if calls == 2:
                reactor.stop()

        recorder = _RecordingPoller(reactor, flaky)
        reactor._poller = recorder
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        try:
            reactor.run(installSignalHandlers=False)
        finally:
            globalLogPublisher.removeObserver(observer)
            reactor._poller = recorder.real
        self.assertGreaterEqual(calls, 2)
        [event] = [e for e in events if e.get("log_failure") is not None]
        self.assertEqual(event["log_format"], "Unexpected error in main loop")
        self.assertEqual(event["log_namespace"], "twisted.internet.base")
        self.assertIs(event["log_level"], LogLevel.critical)

    def test_replacedDoIterationIsCalled(self) -> None:
        """A subclass's own doIteration is called: Twisted's loop runs it."""
        turns: list[float | None] = []

        class Custom(LeanEPollReactor):
            def doIteration(self, timeout: float | None) -> None:
                turns.append(timeout)
                if len(turns) == 1:
                    self.stop()

        reactor = Custom()
        self.addCleanup(_closeReactor, reactor)
        reactor.run(installSignalHandlers=False)
        self.assertGreaterEqual(len(turns), 1)

    def test_timedMachineryOnlyWhenNeeded(self) -> None:
        """During an echo, runUntilCurrent runs on few turns (Twisted: on every turn)."""
        reactor = LeanEPollReactor()
        self.addCleanup(_closeReactor, reactor)
        counts = {"runUntilCurrent": 0, "poll": 0}
        run, poll = reactor.runUntilCurrent, reactor._poller.poll

        def countingRun() -> None:
            counts["runUntilCurrent"] += 1
            run()

        def countingPoll(timeout: float, maxevents: int = -1) -> Any:
            counts["poll"] += 1
            return poll(timeout, maxevents)

        reactor.runUntilCurrent = countingRun  # type: ignore[method-assign]
        recorder = _RecordingPoller(reactor, lambda t: None)
        recorder.poll = countingPoll  # type: ignore[method-assign]
        reactor._poller = recorder

        async def body() -> bytes:
            port = await TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK).listen(
                EchoFactory(clock=reactor)
            )
            try:
                number = port.getHost().port
                return await exchange(
                    TCP4ClientEndpoint(reactor, LOOPBACK, number), b"x" * 4_000_000
                )
            finally:
                await port.stopListening()

        try:
            self.assertEqual(len(runOnce(reactor, body)), 4_000_000)
        finally:
            reactor._poller = recorder.real
        self.assertGreater(counts["poll"], 20)
        self.assertLess(counts["runUntilCurrent"], counts["poll"] / 2)


class SignalTests(SynchronousTestCase):
    """SIGTERM wakes the lean reactor from a long wait and shuts it down, as Twisted's."""

    def test_sigtermWakesAndStops(self) -> None:
        code = (
            "from tcpproto.reactor import install\n"
            "reactor = install()\n"
            "reactor.callLater(3600, print, 'never')\n"
            "reactor.callWhenRunning(print, 'running', flush=True)\n"
            "reactor.addSystemEventTrigger('before', 'shutdown', print, 'shutdown')\n"
            "reactor.run()\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.addCleanup(child.kill)
        assert child.stdout is not None
        self.assertEqual(child.stdout.readline(), b"running\n")
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
        self.assertEqual(out, b"shutdown\n", err)


class LeanLoopGuard(SynchronousTestCase):
    """tcpproto._twisted entry 5: ReactorBase's private state the lean loop reads."""

    def test_timedCallState(self) -> None:
        reactor = EPollReactor()
        self.addCleanup(_closeReactor, reactor)
        for name in ("_started", "_justStopped", "running"):
            self.assertIs(getattr(reactor, name), False, name)
        for name in ("_newTimedCalls", "_pendingTimedCalls", "threadCallQueue"):
            self.assertEqual(getattr(reactor, name), [], name)
        self.assertEqual(reactor._cancellations, 0)
        call = reactor.callLater(10**8, int)
        self.assertEqual(reactor._newTimedCalls, [call])
        # timeout() moves new calls into the heap and bounds the wait.
        self.assertEqual(reactor.timeout(), _twisted.LONGEST_WAIT)
        self.assertEqual(reactor._pendingTimedCalls, [call])
        self.assertEqual(reactor._newTimedCalls, [])
        self.assertGreater(call.time, reactor.seconds())
        call.cancel()
        self.assertEqual(reactor._cancellations, 1)
        reactor.callLater(0, reactor.stop)
        reactor.run(installSignalHandlers=False)
        self.assertIs(reactor._justStopped, False)
        self.assertIs(reactor._started, False)


# -- Twisted's own reactor test suites, run on the lean reactor -------------------
#
# Any Twisted program must run unchanged on it: these are the tests every
# Twisted reactor passes (startup and shutdown triggers, stop/crash/run again,
# iterate, timed calls, calls from threads and the thread pool, readers and
# writers, descriptors that go away).

_LEAN = f"{LeanEPollReactor.__module__}.{LeanEPollReactor.__qualname__}"


class _LeanFDSetTests(test_fdset.ReactorFDSetTestsBuilder):
    def test_lostFileDescriptor(self) -> None:
        """Skipped, as Twisted skips it for its EPollReactor (by class name)."""

    test_lostFileDescriptor.skip = (  # type: ignore[attr-defined]
        "epoll forgets a closed descriptor: it cannot detect lost file descriptors"
    )


for _builder in (
    test_core.SystemEventTestsBuilder,
    test_time.TimeTestsBuilder,
    test_threads.ThreadTestsBuilder,
    _LeanFDSetTests,
):
    _lean: Any = type(
        f"Lean{_builder.__name__.lstrip('_')}",
        (_builder,),
        {"_reactors": [_LEAN], "__module__": __name__},
    )
    globals().update(_lean.makeTestCaseClasses())
del _builder, _lean
