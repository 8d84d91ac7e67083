"""
The part shared by factories that put a layer in front of an application's
factory (the PROXY header reader, the TLS handshake gate).

Twisted's :class:`~twisted.protocols.policies.WrappingFactory` does the same
bookkeeping, but it builds :class:`~twisted.protocols.policies.ProtocolWrapper`
layers, which are not half-close aware; ours are not ProtocolWrappers.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import IProtocolFactory, IReactorTime
from twisted.internet.protocol import Factory


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
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
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
