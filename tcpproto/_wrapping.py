"""
The part shared by layers in front of an application's factory and its
protocols (the PROXY header reader, the TLS handshake gate).

Twisted's :class:`~twisted.protocols.policies.WrappingFactory` does the same
bookkeeping, but it builds :class:`~twisted.protocols.policies.ProtocolWrapper`
layers, which are not half-close aware; ours are not ProtocolWrappers.
"""

from __future__ import annotations

from typing import cast

from twisted.internet import endpoints
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol

from tcpproto._timers import defaultClock

__all__ = [
    "FactoryWrapper",
    "LayerProtocol",
]


class FactoryWrapper(Factory):
    """
    A factory in front of ``wrappedFactory``: starts and stops it along with
    itself and logs under its name.

    :param clock: the time source for the layer's timeouts (the global
        reactor by default).
    """

    noisy = False
    #: Added to the wrapped factory's log prefix, in parentheses.
    layerName = ""

    def __init__(
        self, wrappedFactory: IProtocolFactory, clock: IReactorTime | None = None
    ) -> None:
        clock = defaultClock(clock)
        self.wrappedFactory = wrappedFactory
        self.clock = clock

    def logPrefix(self) -> str:
        inner = getattr(self.wrappedFactory, "logPrefix", None)
        name = cast(str, inner()) if callable(inner) else type(self.wrappedFactory).__name__
        return f"{name} ({self.layerName})" if self.layerName else name

    def doStart(self) -> None:
        self.wrappedFactory.doStart()
        super().doStart()  # type: ignore[no-untyped-call]

    def doStop(self) -> None:
        self.wrappedFactory.doStop()
        super().doStop()  # type: ignore[no-untyped-call]


class LayerProtocol(Protocol):
    """
    A layer that connects the application's protocol later (once a PROXY
    header is read, a TLS handshake done), and must get there within a
    timeout; a subclass decides in :meth:`timedOut` how it refuses.
    """

    factory: FactoryWrapper

    #: The application's protocol (once connected, for the PROXY layer).
    wrapped: IProtocol | None = None

    def __init__(self, factory: FactoryWrapper, wrapped: IProtocol | None = None) -> None:
        self.factory = factory
        self.wrapped = wrapped
        self._timer: IDelayedCall | None = None

    def startTimer(self, seconds: float) -> None:
        """Call :meth:`timedOut` in ``seconds``, unless :meth:`cancelTimer` is called first."""
        self._timer = self.factory.clock.callLater(seconds, self._timerFired)

    def cancelTimer(self) -> None:
        """Stop the timer, if it runs: the layer is done or the connection gone."""
        cancelCall(self._timer)
        self._timer = None

    def _timerFired(self) -> None:
        self._timer = None
        self.timedOut()

    def timedOut(self) -> None:
        """The layer did not finish in time: refuse the connection."""
        raise NotImplementedError

    def connectWrapped(self, wrapped: IProtocol, transport: ITransport) -> None:
        """
        Connect ``wrapped`` to ``transport``; from now on the transport
        delivers bytes straight to it, with no call through this layer.
        """
        self.wrapped = wrapped
        self.dataReceived = wrapped.dataReceived  # type: ignore[method-assign]
        wrapped.makeConnection(transport)


def cancelCall(call: IDelayedCall | None) -> None:
    """Cancel ``call``, unless there is none or it has already run or been cancelled."""
    if call is not None and call.active():
        call.cancel()


def unparseEndpoint(args: tuple[object, ...], kwargs: dict[str, object]) -> str:
    """
    Turn the arguments a string parser plugin was given back into endpoint
    string syntax, for the endpoint it wraps (``reuseport:``, ``proxy:``).
    """
    parts = [_quote(str(a)) for a in args]
    parts += [_quote(str(k)) + "=" + _quote(str(v)) for k, v in kwargs.items()]
    return ":".join(parts)


def _quote(text: str) -> str:
    return cast(str, endpoints.quoteStringArgument(text))
