"""
Services: listeners that say where they listen, and a server that shuts down gracefully.
"""

from __future__ import annotations

import resource
import signal
from types import FrameType
from typing import Any, cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from tcpproto.connection import SHUTDOWN, formatAddress
from tcpproto.limits import ConnectionLimits

DEFAULT_SHUTDOWN_TIMEOUT = 10.0

log = Logger(namespace="tcpproto")


class ListenerService(StreamServerEndpointService):
    """
    Listens on one endpoint and logs the address it actually bound.

    ``tcp:0`` binds a port the kernel picks: the log line (and
    :attr:`port`) say which.  A failure to listen is raised when the service
    starts, not just logged, so a server that cannot listen does not run.
    """

    _raiseSynchronously = True

    def __init__(
        self, endpoint: IStreamServerEndpoint, factory: Factory, description: str
    ) -> None:
        super().__init__(endpoint, factory)  # type: ignore[no-untyped-call]
        self.description = description
        #: The listening port, once listening.
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()  # type: ignore[no-untyped-call]
        except (CannotListenError, OSError) as e:
            # A user mistake (port in use, no permission, no such directory):
            # one line and a non-zero exit, no traceback.
            cause = e.socketError if isinstance(e, CannotListenError) else e
            why = (cause.strerror if isinstance(cause, OSError) else None) or str(cause)
            raise SystemExit(
                f"twistd tcpecho: error: cannot listen on {self.description!r}: {why}"
            ) from None
        assert self._waitingForPort is not None
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        log.info(
            "listening on {address} ({listener})",
            event="listening",
            address=formatAddress(port.getHost()),
            listener=self.description,
        )
        return port


class ServerService(MultiService):
    """
    The parent of a server's listeners; stops them gracefully.

    On stop it closes every listener at once (no new connections), then lets
    open connections finish (an echo sends back what it received, a
    half-close is honoured) for up to ``shutdownTimeout`` seconds, then aborts
    the rest and logs how many were cut.

    :param handleSignals: on ``startService``, replace the reactor's SIGTERM
        and SIGINT handlers with ones that stop the reactor without recording
        the signal, so that ``twistd`` exits with status 0 after a graceful
        shutdown instead of re-raising the signal (status 143).
    """

    def __init__(
        self,
        limits: ConnectionLimits,
        shutdownTimeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        clock: IReactorTime | None = None,
        handleSignals: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.limits = limits
        self.shutdownTimeout = shutdownTimeout
        self.clock = clock
        self.handleSignals = handleSignals
        #: How many connections the last shutdown had to abort.
        self.aborted = 0

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if self.handleSignals:
            reactor = cast(IReactorCore, self.clock)
            reactor.callWhenRunning(self._installSignalHandlers)

    def _installSignalHandlers(self) -> None:
        reactor = cast(IReactorCore, self.clock)

        stopping: list[int] = []

        def stop(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if stopping:
                log.info("received {signal}: already shutting down", signal=name)
                return
            stopping.append(signum)
            log.info("received {signal}: shutting down", signal=name)
            reactor.callFromThread(reactor.stop)  # type: ignore[attr-defined]

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def stopService(self) -> Deferred[None]:
        d = cast("Deferred[Any]", super().stopService())  # type: ignore[no-untyped-call]
        return d.addCallback(lambda _: Deferred.fromCoroutine(self._drain()))

    async def _drain(self) -> None:
        open_ = self.limits.active
        if not open_:
            return
        log.info(
            "stopped listening; waiting up to {timeout}s for {count} open connections",
            timeout=self.shutdownTimeout,
            count=open_,
        )
        empty = self.limits.whenEmpty()
        empty.addTimeout(self.shutdownTimeout, self.clock)
        try:
            await empty
            return
        except TimeoutError:
            pass
        left = list(self.limits.connections)
        self.aborted = len(left)
        log.warn(
            "shutdown timeout: aborting {count} connections still open",
            event="shutdown-aborted",
            count=len(left),
        )
        for conn in left:
            conn.abort(SHUTDOWN)
        # abortConnection closes on the reactor's next turn: wait for it.
        gone = self.limits.whenEmpty()
        gone.addTimeout(1.0, self.clock)
        try:
            await gone
        except TimeoutError:
            log.warn("{count} connections did not close", count=self.limits.active)


def raiseFileLimit(wanted: int) -> tuple[int, int]:
    """
    Raise the soft open-files limit towards the hard one.

    A server needs one descriptor per connection, plus listeners, logs and
    the like.  The soft limit (often 1024) is raised as far as the hard limit
    allows, since only root may raise the hard limit.

    :param wanted: how many descriptors the server would like.
    :return: the soft and hard limits now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard
