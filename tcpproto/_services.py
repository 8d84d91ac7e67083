"""
Services: listeners that say where they listen (TCP and UDP), and a server
that raises its open-files limit when it starts and shuts down gracefully.
"""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any, cast

from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorThreads,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from tcpproto._addresses import formatAddress
from tcpproto._timers import defaultClock
from tcpproto._twisted import PortAnnouncingUDPServer, RaisingEndpointService
from tcpproto._vocabulary import DEFAULT_SHUTDOWN_TIMEOUT, SHUTDOWN
from tcpproto.connection import ServerConnection
from tcpproto.limits import ConnectionLimits
from tcpproto.udp import MAX_DATAGRAM, DatagramServer

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "FILE_HEADROOM",
    "DatagramService",
    "ListenerService",
    "ServerService",
    "announceListening",
    "cannotListen",
    "raiseFileLimit",
]

log = Logger(namespace="tcpproto")

#: Descriptors a server needs besides its connections (listeners, logs...).
FILE_HEADROOM = 64


class ListenerService(RaisingEndpointService):
    """
    Listens on one endpoint and logs the address it actually bound.

    ``tcp:0`` binds a port the kernel picks: the log line (and
    :attr:`port`) say which.  A failure to listen is raised when the service
    starts, not just logged, so a server that cannot listen does not run.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: Factory,
        description: str,
        backlog: int | None = None,
    ) -> None:
        super().__init__(endpoint, factory)  # type: ignore[no-untyped-call]
        self.description = description
        #: The listen backlog asked for (logged with the value in effect), if known.
        self.backlog = backlog
        #: The listening port, once listening.
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        with _exitIfCannotListen(self.description):
            super().privilegedStartService()  # type: ignore[no-untyped-call]
        self.whenListening().addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        if self.backlog is not None:
            log.info(
                "listen backlog {backlog} on {listener}",
                event="backlog",
                backlog=effectiveBacklog(self.backlog),
                listener=self.description,
            )
        announceListening(port, self.description)
        return port


def somaxconn() -> int | None:
    """The kernel's cap on a listen backlog (``net.core.somaxconn``), where it says."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def effectiveBacklog(backlog: int) -> int:
    """``backlog`` as the kernel applies it (capped at ``somaxconn``, silently)."""
    cap = somaxconn()
    return backlog if cap is None else min(backlog, cap)


@contextlib.contextmanager
def _exitIfCannotListen(description: str) -> Iterator[None]:
    """Turn a failure to listen on ``description`` into :func:`cannotListen`'s exit."""
    try:
        yield
    except (CannotListenError, OSError, OverflowError) as e:
        # (OverflowError: a port out of range that no parser caught.)
        raise cannotListen(description, e) from None


class CannotListenExit(SystemExit, Exception):  # noqa: N818 (an exit, like SystemExit)
    """
    The exit for a listener that cannot listen.

    A :class:`SystemExit` (one line, status 1, no traceback), and an
    :class:`Exception` too: a daemonised ``twistd`` reports only an
    ``Exception`` from starting the application to the waiting parent (which
    then exits 1) and removes its pid file; it would wait for ever on a bare
    ``SystemExit``.
    """


def cannotListen(description: str, e: Exception) -> CannotListenExit:
    """
    The exit for a listener that cannot listen: a user mistake (port in use,
    no permission, no such directory) gets one line and status 1, no traceback.
    """
    cause = e.socketError if isinstance(e, CannotListenError) else e
    why = (cause.strerror if isinstance(cause, OSError) else None) or str(cause)
    return CannotListenExit(f"twistd tcpecho: error: cannot listen on {description!r}: {why}")


def announceListening(port: IListeningPort, description: str) -> None:
    """
    Log where ``port`` listens, once the reactor runs.

    The line is the server's "ready" signal (operators and tests wait for it,
    and learn the port of ``tcp:0`` from it), so it waits until the reactor
    runs and :class:`ServerService`'s signal handlers are in place: a SIGTERM
    right after it is then a graceful shutdown, not a crash at start-up.
    """
    from twisted.internet import reactor

    cast(IReactorCore, reactor).callWhenRunning(
        log.info,
        "listening on {address} ({listener})",
        event="listening",
        address=formatAddress(port.getHost()),
        listener=description,
    )


class ServerService(MultiService):
    """
    The parent of a server's listeners; stops them gracefully.

    On stop it closes every listener at once (no new connections), then lets
    open connections finish (an echo sends back what it received, a
    half-close is honoured) for up to ``shutdownTimeout`` seconds, then aborts
    the rest and logs how many were cut.

    :param fileLimit: when the service starts, raise the soft open-files
        limit towards the hard one, warning if it stays below this many
        descriptors (``--max-connections`` plus headroom); 0 leaves it alone.
    :param handleSignals: on ``startService``, replace the reactor's SIGTERM
        and SIGINT handlers with ones that stop the reactor without recording
        the signal, so that ``twistd`` exits with status 0 after a graceful
        shutdown instead of re-raising the signal (status 143).  A second
        signal cuts the connections still open at once.
    """

    def __init__(
        self,
        limits: ConnectionLimits,
        shutdownTimeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        clock: IReactorTime | None = None,
        handleSignals: bool = False,
        fileLimit: int = 0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if shutdownTimeout < 0:
            raise ValueError("shutdownTimeout must be 0 or more")
        clock = defaultClock(clock)
        self.limits = limits
        self.shutdownTimeout = shutdownTimeout
        self.clock = clock
        self.handleSignals = handleSignals
        self.fileLimit = fileLimit
        self._fileLimitRaised = False
        #: How many connections the last shutdown had to abort.
        self.aborted = 0
        self._signals = 0
        self._handlersRequested = False
        self._cutNow = False
        self._waiting: Deferred[None] | None = None

    def privilegedStartService(self) -> None:
        # Ask for our signal handlers before the listeners start, so that
        # they are installed before the listeners announce themselves; and
        # raise the file limit before they accept.
        self._raiseFileLimit()
        self._requestSignalHandlers()
        super().privilegedStartService()  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        self._raiseFileLimit()
        self._requestSignalHandlers()
        super().startService()  # type: ignore[no-untyped-call]

    def _raiseFileLimit(self) -> None:
        if not self.fileLimit or self._fileLimitRaised:
            return
        self._fileLimitRaised = True
        soft, hard = raiseFileLimit(self.fileLimit)
        if soft < self.fileLimit:
            log.warn(
                "open-files limit {soft} (hard {hard}) is below --max-connections "
                "{max} plus headroom: connections beyond about {fit} will fail to be "
                "accepted. Raise it with ulimit -n or LimitNOFILE=.",
                soft=soft,
                hard=hard,
                max=self.fileLimit - FILE_HEADROOM,
                fit=max(soft - FILE_HEADROOM, 0),
            )

    def _requestSignalHandlers(self) -> None:
        if self.handleSignals and not self._handlersRequested:
            self._handlersRequested = True
            reactor = cast(IReactorCore, self.clock)
            reactor.callWhenRunning(self._installSignalHandlers)

    def _installSignalHandlers(self) -> None:
        # Installed once the reactor runs, so after (and instead of) the
        # reactor's own handlers, which would record the signal for twistd to
        # re-raise at exit.
        signal.signal(signal.SIGTERM, self._onSignal)
        signal.signal(signal.SIGINT, self._onSignal)

    def _onSignal(self, signum: int, frame: FrameType | None) -> None:
        # A signal handler may interrupt anything, the log observer included:
        # hand the work to the reactor, as its own handlers do.
        reactor = cast(IReactorThreads, self.clock)
        reactor.callFromThread(self.signalled, signal.Signals(signum).name)

    def signalled(self, name: str) -> None:
        """
        SIGTERM or SIGINT (``name``) arrived: shut down gracefully, or, on a
        second signal, cut the connections still open now.
        """
        self._signals += 1
        if self._signals > 1:
            log.warn(
                "received {signal} again: cutting {count} open connections now",
                signal=name,
                count=self.limits.active,
            )
            self._cutNow = True
            if self._waiting is not None:
                self._waiting.cancel()
            return
        log.info("received {signal}: shutting down", signal=name)
        # Already stopping for another reason: nothing more to do.
        with contextlib.suppress(ReactorNotRunning):
            cast(IReactorCore, self.clock).stop()

    def stopService(self) -> Deferred[None]:
        d = cast("Deferred[Any]", super().stopService())  # type: ignore[no-untyped-call]
        return d.addCallback(lambda _: Deferred.fromCoroutine(self._drain()))

    async def _drain(self) -> None:
        open_ = self.limits.active
        self.aborted = 0
        if not open_:
            return
        log.info(
            "stopped listening; waiting up to {timeout}s for {count} open connections",
            event="shutdown-drain",
            timeout=self.shutdownTimeout,
            count=open_,
        )
        if not self._cutNow:
            self._waiting = self.limits.whenEmpty()
            self._waiting.addTimeout(self.shutdownTimeout, self.clock)
            try:
                await self._waiting
                log.info(
                    "all {count} open connections finished",
                    event="shutdown-complete",
                    count=open_,
                )
                return
            except (TimeoutError, CancelledError):
                pass
            finally:
                self._waiting = None
        left = list(self.limits.connections)
        self.aborted = len(left)
        log.warn(
            "shutdown: aborting {count} connections still open",
            event="shutdown-aborted",
            count=len(left),
        )
        for conn in left:
            cast(ServerConnection, conn).abort(SHUTDOWN)
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


class DatagramService(PortAnnouncingUDPServer):
    """
    Serves a :class:`~tcpproto.udp.DatagramServer` on a UDP port, and logs where.

    Port 0 binds a port the kernel picks: the log line (and :attr:`port`)
    say which.  A failure to bind stops the server with a one-line message.
    """

    def __init__(
        self,
        protocol: DatagramServer,
        port: int,
        interface: str = "",
        reactor: Any = None,
    ) -> None:
        kwargs: dict[str, Any] = {"interface": interface, "maxPacketSize": MAX_DATAGRAM}
        if reactor is not None:
            kwargs["reactor"] = reactor
        super().__init__(port, protocol, **kwargs)  # type: ignore[no-untyped-call]
        self.protocol = protocol
        #: The bound port, once listening.
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        with _exitIfCannotListen(self.protocol.listener):
            super().privilegedStartService()  # type: ignore[no-untyped-call]

    def portBound(self, port: IListeningPort) -> None:
        self.port = port
        announceListening(port, self.protocol.listener)
