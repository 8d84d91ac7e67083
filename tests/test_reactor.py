"""
The lean epoll reactor: the same behaviour as Twisted's, one layer less per event.
"""

from __future__ import annotations

import errno
import gc
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol, IReadDescriptor
from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.internet.test import (
    test_core,
    test_fdset,
    test_process,
    test_tcp,
    test_threads,
    test_time,
    test_tls,
    test_udp,
    test_unix,
)
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.python import context, log
from twisted.python.failure import Failure
from twisted.python.log import ILogContext
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tcpproto import EchoFactory, EchoProtocol, _twisted, exchange
from tcpproto.reactor import LeanEPollReactor
from tests.helpers import (
    LOCAL_TCP,
    LOOPBACK,
    SOCKET_TIMEOUT,
    CommandServer,
    LogCapture,
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


# -- the lean dispatch: Twisted's per-event guarantees, side by side ----------


class _Scenario:
    """What the protocols of one run saw, and when to stop the reactor."""

    def __init__(self, reactor: Any, expected: int) -> None:
        self.reactor = reactor
        self.expected = expected
        self.seen: list[tuple[object, ...]] = []

    def record(self, *what: object) -> None:
        self.seen.append(what)
        if len(self.seen) == self.expected:
            self.reactor.callLater(0, self.reactor.stop)


def _system() -> object:
    """The ``system`` the legacy log context names now."""
    return cast("dict[str, object]", context.get(ILogContext))["system"]


class _ContextRecorder(Protocol):
    """Records the legacy log context wherever Twisted promises one."""

    scenario: _Scenario

    def dataReceived(self, data: bytes) -> None:
        first = context.get(ILogContext)
        self.scenario.record("data", _system(), first is context.get(ILogContext))
        context.call(
            {"extra": 1},
            lambda: self.scenario.record("nested", _system(), context.get("extra")),
        )
        log.msg("a legacy line")
        self.scenario.reactor.callLater(0, lambda: self.scenario.record("timed", _system()))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.scenario.record("lost", _system())


@implementer(IHalfCloseableProtocol)
class _RaisesConnectionDone(Protocol):
    """Raises ConnectionDone in dataReceived: a full close, not a half close."""

    scenario: _Scenario

    def dataReceived(self, data: bytes) -> None:
        raise ConnectionDone("raised by the application")

    def readConnectionLost(self) -> None:
        self.scenario.record("readConnectionLost")

    def writeConnectionLost(self) -> None:
        """Not reached."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.scenario.record("connectionLost", type(reason.value).__name__)


class _LostRaises(Protocol):
    """Its connectionLost raises: logged under the connection's system, the loop goes on."""

    scenario: _Scenario

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.scenario.record("connectionLost")
        raise ValueError("a bug in connectionLost")


@implementer(IReadDescriptor)
class _FlakyFileno:
    """A pipe's read end whose fileno() raises once, when the reactor dispatches its event."""

    def __init__(self, fd: int, scenario: _Scenario) -> None:
        self.fd = fd
        self.scenario = scenario
        self.raiseNext = False

    def fileno(self) -> int:
        if self.raiseNext:
            self.raiseNext = False
            raise OSError(errno.EBADF, "fileno failed")
        return self.fd

    def doRead(self) -> None:
        self.scenario.record("doRead")

    def connectionLost(self, reason: Failure) -> None:
        self.scenario.record("connectionLost", type(reason.value).__name__)

    def logPrefix(self) -> str:
        return "flaky"


class _HandsToAThread(Protocol):
    """
    The first connection hands work to the thread pool and connects a second
    one; the worker reads the log context while the reactor is in the second
    connection's event.
    """

    scenario: _Scenario

    def dataReceived(self, data: bytes) -> None:
        scenario: Any = self.scenario
        if not hasattr(scenario, "gate"):
            scenario.gate, scenario.done = threading.Event(), threading.Event()
            scenario.reactor.callInThread(self.worker, scenario)
            scenario.record("first", _system())
            scenario.another()
        else:
            scenario.record("second", _system())
            scenario.gate.set()  # the worker runs now, during this event
            scenario.done.wait(SOCKET_TIMEOUT)

    @staticmethod
    def worker(scenario: Any) -> None:
        try:
            scenario.gate.wait(SOCKET_TIMEOUT)
            system = _system()
            log.msg("from the worker")
            scenario.reactor.callFromThread(scenario.record, "worker", system)
        finally:
            scenario.done.set()


class _RecordsConnectionMade(Protocol):
    scenario: _Scenario

    def connectionMade(self) -> None:
        self.scenario.record("connectionMade", _system())


class _ChattyServer(tcp.Server):
    """A transport whose logPrefix() logs (through the legacy API) before answering."""

    def logPrefix(self) -> str:
        log.msg("asked")
        return "chatty"


class _ChattyPort(tcp.Port):
    transport = _ChattyServer


class _ChattyProtocol(Protocol):
    scenario: _Scenario

    def dataReceived(self, data: bytes) -> None:
        log.msg("got data")
        self.scenario.record("data", _system())


class _WatchesItsTransport(Protocol):
    """Checks, from a timed call after its connection closed, that its transport was freed."""

    scenario: _Scenario

    def connectionMade(self) -> None:
        self.transportRef = weakref.ref(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        ref, scenario = self.transportRef, self.scenario
        del self.transport

        def check() -> None:
            gc.collect()
            scenario.record("transport collected", ref() is None)

        scenario.reactor.callLater(0, check)


class DispatchEquivalenceTests(SynchronousTestCase):
    """
    Each scenario runs on Twisted's EPollReactor and on the lean reactor; what
    the application sees and what is logged must be the same (the reference is
    Twisted's).  The clients are plain sockets that send and half-close before
    the reactor runs, so both reactors see the same events in the same order.
    """

    def helloAndFIN(self, scenario: _Scenario, protocol: type[Protocol]) -> int:
        """
        Listen with ``protocol`` on the scenario's reactor; a plain socket
        connects, sends ``hello`` and half-closes, before the reactor runs.

        :return: the port listened on.
        """
        factory = Factory.forProtocol(type(protocol.__name__, (protocol,), {"scenario": scenario}))
        port = scenario.reactor.listenTCP(0, factory, interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        self.plainClient(number)
        return number

    def plainClient(self, port: int) -> None:
        """A blocking socket that connects to ``port``, sends ``hello`` and half-closes."""
        client = socket.create_connection((LOOPBACK, port))
        self.addCleanup(client.close)
        client.sendall(b"hello")
        client.shutdown(socket.SHUT_WR)

    def sideBySide(
        self,
        setup: Callable[[_Scenario], object],
        expected: int,
        around: dict[Any, Any] | None = None,
    ) -> list[Any]:
        """
        Per reactor, Twisted's then the lean one: run ``setup(scenario)``, then
        the reactor (inside the legacy context ``around``, if given) until the
        scenario has seen ``expected`` records; return (what the protocols saw,
        the legacy lines and errors logged).
        """
        results = []
        for reactor in (EPollReactor(), LeanEPollReactor()):
            self.addCleanup(_closeReactor, reactor)
            scenario = _Scenario(reactor, expected)
            setup(scenario)
            capture = LogCapture.install(self)
            context.call(around or {}, _runScenario, reactor, scenario)
            globalLogPublisher.removeObserver(capture)
            logged = [
                (e.get("log_system"), _portless(e.get("message", ())), e.get("isError", 0))
                for e in capture.events
                if "system" in e  # what went through twisted.python.log
            ]
            results.append((scenario.seen, logged))
        return results

    def scenarioResults(self, protocols: list[type[Protocol]], expected: int) -> list[Any]:
        """:meth:`sideBySide` with a listener and a hello-and-FIN client per protocol."""

        def setup(scenario: _Scenario) -> None:
            for protocol in protocols:
                self.helloAndFIN(scenario, protocol)

        return self.sideBySide(setup, expected)

    def assertSame(self, results: list[Any], ordered: bool = True) -> tuple[Any, Any]:
        """Twisted's result, once the lean reactor's is checked to be the same."""
        if not ordered:  # several connections: their events may come in any order
            results = [tuple(sorted(part, key=repr) for part in result) for result in results]
        twisted, lean = results
        self.assertEqual(lean, twisted)
        return cast("tuple[Any, Any]", twisted)

    def test_legacyLogContext(self) -> None:
        """
        While an event is handled, the legacy log context names the connection
        (one dictionary per event, below any context the handler pushes);
        timed calls run with none.
        """
        seen, logged = self.assertSame(self.scenarioResults([_ContextRecorder], expected=4))
        system = seen[0][1]
        self.assertRegex(system, r"^_ContextRecorder,0,127\.0\.0\.1$")
        self.assertEqual(
            seen,
            [
                ("data", system, True),
                ("nested", system, 1),
                ("timed", "-"),
                ("lost", system),
            ],
        )
        self.assertIn((system, ("a legacy line",), 0), logged)

    def test_errorsInTheEventAreTwisteds(self) -> None:
        """
        ConnectionDone raised by the application is a full close (not a half
        close), and an error in connectionLost is logged under the connection's
        system while the loop handles the next connection.
        """
        seen, logged = self.assertSame(
            self.scenarioResults([_RaisesConnectionDone, _LostRaises], expected=2), ordered=False
        )
        self.assertEqual(seen, [("connectionLost", "ConnectionDone"), ("connectionLost",)])
        errors = sorted(system for system, _, isError in logged if isError)
        self.assertEqual(len(errors), 2)
        self.assertRegex(errors[0], r"^_LostRaises,0,127\.0\.0\.1$")
        self.assertRegex(errors[1], r"^_RaisesConnectionDone,0,127\.0\.0\.1$")
        self.assertEqual(len(self.flushLoggedErrors(ConnectionDone, ValueError)), 4)

    def test_errorInFilenoIsTwisteds(self) -> None:
        """An error in fileno() while dispatching is logged and disconnects, as Twisted does."""
        results = []
        for reactor in (EPollReactor(), LeanEPollReactor()):
            self.addCleanup(_closeReactor, reactor)
            scenario = _Scenario(reactor, expected=1)
            readEnd, writeEnd = os.pipe()
            self.addCleanup(os.close, readEnd)
            self.addCleanup(os.close, writeEnd)
            descriptor = _FlakyFileno(readEnd, scenario)
            reactor.addReader(descriptor)
            descriptor.raiseNext = True
            os.write(writeEnd, b"x")
            capture = LogCapture.install(self)
            _runScenario(reactor, scenario)
            globalLogPublisher.removeObserver(capture)
            errors = [e.get("log_system") for e in capture.events if e.get("isError")]
            results.append((scenario.seen, errors))
        seen, errors = self.assertSame(results)
        self.assertEqual(seen, [("connectionLost", "OSError")])
        self.assertEqual(errors, ["flaky"])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)

    def test_foreignContextTrackerGetsTwistedsDispatch(self) -> None:
        """With an application's own context tracker, events go through Twisted's code."""

        class Tracker(context.ThreadedContextTracker):
            pushed = 0

            def callWithContext(self, ctx: Any, func: Any, *args: Any, **kw: Any) -> Any:
                Tracker.pushed += 1
                return super().callWithContext(ctx, func, *args, **kw)

        original = context.theContextTracker
        context.installContextTracker(Tracker())
        self.addCleanup(context.installContextTracker, original)
        reactor = LeanEPollReactor()
        self.addCleanup(_closeReactor, reactor)
        scenario = _Scenario(reactor, expected=4)
        self.helloAndFIN(scenario, _ContextRecorder)
        _runScenario(reactor, scenario)
        system = "_ContextRecorder,0,127.0.0.1"
        self.assertEqual(scenario.seen[0], ("data", system, True))
        self.assertEqual(scenario.seen[3], ("lost", system))
        self.assertGreater(Tracker.pushed, 0)

    def test_threadPoolWorkKeepsItsEventsContext(self) -> None:
        """
        Work handed to a thread pool during an event logs under that event's
        connection, even while the reactor is handling another connection.
        """
        clients: list[int] = []

        def setup(scenario: _Scenario) -> None:
            clients.append(self.helloAndFIN(scenario, _HandsToAThread))
            scenario.another = lambda: self.plainClient(clients[-1])  # type: ignore[attr-defined]

        seen, logged = self.assertSame(self.sideBySide(setup, expected=3))
        first, second = seen[0][1], seen[1][1]
        self.assertNotEqual(first, second)
        self.assertEqual(seen, [("first", first), ("second", second), ("worker", first)])
        self.assertIn((first, ("from the worker",), 0), logged)

    def test_connectingClientIsUninitialized(self) -> None:
        """A client's connectionMade runs in the connect event, named as Twisted names it then."""

        def setup(scenario: _Scenario) -> None:
            port = scenario.reactor.listenTCP(0, Factory.forProtocol(Protocol), interface=LOOPBACK)
            self.addCleanup(port.stopListening)
            factory = ClientFactory.forProtocol(
                type("_Client", (_RecordsConnectionMade,), {"scenario": scenario})
            )
            scenario.reactor.connectTCP(LOOPBACK, port.getHost().port, factory)

        # (What is logged at shutdown comes in the order descriptors are closed.)
        seen, _ = self.assertSame(self.sideBySide(setup, expected=1), ordered=False)
        self.assertEqual(seen, [("connectionMade", "Uninitialized")])

    def test_logPrefixThatLogs(self) -> None:
        """A logPrefix() that logs does so under the context below (no recursion)."""

        def setup(scenario: _Scenario) -> None:
            factory = Factory.forProtocol(
                type("_ChattyProtocol", (_ChattyProtocol,), {"scenario": scenario})
            )
            port = _ChattyPort(0, factory, 50, LOOPBACK, scenario.reactor)
            port.startListening()
            self.addCleanup(port.stopListening)
            self.plainClient(port.getHost().port)

        results = self.sideBySide(setup, expected=1)
        for seen, logged in results:
            self.assertEqual(seen, [("data", "chatty")])
            # Twisted asks for the prefix on every event, the lean reactor
            # when it is read: the lines differ in number, not in system.
            self.assertIn(("chatty", ("got data",), 0), logged)
            asking = {system for system, message, _ in logged if message == ("asked",)}
            self.assertEqual(asking, {"-"})

    def test_nothingHeldWhileIdle(self) -> None:
        """Once its connection is closed, nothing of it is kept while the reactor waits."""
        seen, _ = self.assertSame(self.scenarioResults([_WatchesItsTransport], expected=1))
        self.assertEqual(seen, [("transport collected", True)])

    def test_contextTrackerReplacedWhileRunning(self) -> None:
        """A context tracker installed by a timed call is the one events use from then on."""
        original = context.theContextTracker
        self.addCleanup(context.installContextTracker, original)

        def setup(scenario: _Scenario) -> None:
            scenario.reactor.callLater(
                0, context.installContextTracker, context.ThreadedContextTracker()
            )
            self.helloAndFIN(scenario, _ContextRecorder)

        seen, _ = self.assertSame(self.sideBySide(setup, expected=4))
        self.assertEqual(seen[0], ("data", "_ContextRecorder,0,127.0.0.1", True))

    def test_workStartedBetweenEventsSeesTheContextAroundRun(self) -> None:
        """
        Work handed to a thread pool by a timed call sees the context the
        reactor runs in, as on Twisted (the pool keeps the frame on top).
        """

        def setup(scenario: _Scenario) -> None:
            def worker() -> None:
                found = (_system(), context.get("around"))
                scenario.reactor.callFromThread(scenario.record, "worker", *found)

            scenario.reactor.callLater(0, scenario.reactor.callInThread, worker)

        around = {ILogContext: {"system": "app"}, "around": "yes"}
        seen, _ = self.assertSame(self.sideBySide(setup, expected=1, around=around))
        self.assertEqual(seen, [("worker", "app", "yes")])

    def test_logPrefixAskedOnTheReactorThread(self) -> None:
        """
        When only a thread pool's worker reads an event's context, the prefix
        is still asked for on the reactor thread (the worker gets a string).
        """
        asked: list[bool] = []

        class Server(tcp.Server):
            def logPrefix(self) -> str:
                asked.append(threading.current_thread() is threading.main_thread())
                return "asked"

        class Port(tcp.Port):
            transport = Server

        def setup(scenario: _Scenario) -> None:
            def worker() -> None:
                scenario.reactor.callFromThread(scenario.record, "worker", _system())

            def dataReceived(protocol: Protocol, data: bytes) -> None:
                scenario.reactor.callInThread(worker)

            protocol = type("_HandsOff", (Protocol,), {"dataReceived": dataReceived})
            port = Port(0, Factory.forProtocol(protocol), 50, LOOPBACK, scenario.reactor)
            port.startListening()
            self.addCleanup(port.stopListening)
            self.plainClient(port.getHost().port)

        seen, _ = self.assertSame(self.sideBySide(setup, expected=1))
        self.assertEqual(seen, [("worker", "asked")])
        self.assertTrue(asked)
        self.assertEqual(set(asked), {True})


def _portless(message: tuple[str, ...]) -> tuple[str, ...]:
    """A legacy message without port numbers (each run listens on its own)."""
    return tuple(re.sub(r"Port \d+", "Port N", part) for part in message)


def _runScenario(reactor: Any, scenario: _Scenario, timeout: float = 20) -> None:
    """Run ``reactor`` until the scenario has seen all it expects (it stops the reactor)."""
    guard = reactor.callLater(timeout, reactor.stop)
    reactor.run(installSignalHandlers=False)
    if not guard.active():
        raise AssertionError(f"timed out, having seen {scenario.seen}")
    guard.cancel()


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
# Twisted reactor passes -- startup and shutdown triggers, stop/crash/run
# again, iterate, timed calls, calls from threads and the thread pool, readers
# and writers, descriptors that go away -- and Twisted's transport suites:
# TCP (clients, ports, connectors, half-close, abort, adopted sockets), TLS,
# UNIX sockets, UDP and processes, each run on the lean reactor alone.
# (They found the legacy log context and the error handling that the lean
# dispatch had lost: tcpproto._twisted entry 5.)

_LEAN = f"{LeanEPollReactor.__module__}.{LeanEPollReactor.__qualname__}"


class _LeanFDSetTests(test_fdset.ReactorFDSetTestsBuilder):
    def test_lostFileDescriptor(self) -> None:
        """Skipped, as Twisted skips it for its EPollReactor (by class name)."""

    test_lostFileDescriptor.skip = (  # type: ignore[attr-defined]
        "epoll forgets a closed descriptor: it cannot detect lost file descriptors"
    )


class _NoChangeUID:
    """Process tests, but one that is about this machine, not the reactor."""

    def test_changeUID(self) -> None:
        """Skipped: it fails on Twisted's own EPollReactor here too."""

    test_changeUID.skip = (  # type: ignore[attr-defined]
        "the child runs as nobody, who cannot run this virtualenv's Python (under /root) "
        "(the same failure on Twisted's EPollReactor)"
    )


_TWISTED_SUITES: list[Any] = [
    test_core.SystemEventTestsBuilder,
    test_time.TimeTestsBuilder,
    test_threads.ThreadTestsBuilder,
    _LeanFDSetTests,
    *(
        getattr(test_tcp, name)
        for name in (
            "TCP4ClientTestsBuilder",
            "TCP6ClientTestsBuilder",
            "TCPPortTestsBuilder",
            "TCPFDPortTestsBuilder",
            "TCPConnectionTestsBuilder",
            "TCP4ConnectorTestsBuilder",
            "TCP6ConnectorTestsBuilder",
            "TCPTransportTestsBuilder",
            "AdoptStreamConnectionTestsBuilder",
            "AbortConnectionTests",
            "TestBindAddressBuilder",  # Twisted 25.5 and later
        )
        if hasattr(test_tcp, name)
    ),
    test_tls.SSLClientTestsMixin,
    test_tls.StartTLSClientTestsMixin,
    test_tls.TLSPortTestsBuilder,
    test_tls.AbortSSLConnectionTests,
    test_unix.UNIXTestsBuilder,
    test_unix.UnixClientTestsBuilder,
    test_unix.UNIXDatagramTestsBuilder,
    test_unix.UNIXPortTestsBuilder,
    test_unix.UNIXFDPortTestsBuilder,
    test_unix.UNIXAdoptStreamConnectionTestsBuilder,
    test_udp.UDPServerTestsBuilder,
    test_udp.UDPFDServerTestsBuilder,
    type("_LeanProcessTests", (_NoChangeUID, test_process.ProcessTestsBuilder), {}),
    type("_LeanPTYProcessTests", (_NoChangeUID, test_process.PTYProcessTestsBuilder), {}),
]


def _mktemp(self: SynchronousTestCase) -> str:
    """
    A path for Twisted's suites to write to, outside the source tree (trial's
    own ``mktemp`` is relative to the working directory, the checkout under
    pytest), removed after the test.
    """
    base = tempfile.mkdtemp(prefix="tcpproto-test-reactor-")
    self.addCleanup(shutil.rmtree, base, ignore_errors=True)
    return os.path.join(base, "temp")


for _builder in _TWISTED_SUITES:
    _lean: Any = type(
        f"Lean{_builder.__name__.lstrip('_').removeprefix('Lean')}",
        (_builder,),
        {"_reactors": [_LEAN], "__module__": __name__, "mktemp": _mktemp},
    )
    globals().update(_lean.makeTestCaseClasses())
del _builder, _lean
