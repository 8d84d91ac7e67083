"""
A downstream user's program, type-checked against the *installed* tcpproto.

``.ci/typing.sh`` copies this file out of the tree and runs
``mypy --strict`` on it with ``tests/typing/mypy.ini`` (mypy-zope, as any
Twisted program needs), so what is checked is the typed surface a user gets
from the wheel (``py.typed``), through the public names only.  It is never
run; it must type-check.
"""

from __future__ import annotations

from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorTCP,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock

import tcpproto
from tcpproto import (
    ConnectionLimits,
    EchoFactory,
    EchoProtocol,
    ThankYouFactory,
    exchange,
)
from tcpproto.testing import connectInMemory

version: str = tcpproto.__version__


class ShoutingEcho(EchoProtocol):
    """A user's subclass: echo in capitals."""

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data.upper())


def factories(clock: Clock) -> list[IProtocolFactory]:
    shared = ConnectionLimits(maxConnections=100, maxPerPeer=10, allow=["127.0.0.0/8"])
    echo = EchoFactory(idleTimeout=5, maxLifetime=60.0, limits=shared, clock=clock)
    lines = EchoFactory("line", prefix=b"node-1", maxLineLength=1024, listener="tcp:7788")
    thanks = ThankYouFactory(b"thank you!", once=True, idleTimeout=0, limits=shared)
    # Any Twisted factory can build the protocols (issue 9).
    plain = Factory.forProtocol(ShoutingEcho)
    return [echo, lines, thanks, plain]


def serve(reactor: IReactorTCP) -> Deferred[IListeningPort]:
    endpoint: IStreamServerEndpoint = endpoints.serverFromString(
        reactor, "tcp:0:interface=127.0.0.1"
    )
    return endpoint.listen(EchoFactory())


async def roundTrip(reactor: IReactorTCP, port: int) -> bytes:
    endpoint: IStreamClientEndpoint = endpoints.clientFromString(reactor, f"tcp:127.0.0.1:{port}")
    answer: bytes = await exchange(endpoint, b"hello")
    return answer


def stopWhenDone(reactor: IReactorCore, d: Deferred[bytes]) -> None:
    d.addBoth(lambda _: reactor.stop())


def echoedInMemory(clock: Clock) -> bytes:
    """A user's unit test step, with tcpproto's public test doubles."""
    protocol, transport = connectInMemory(EchoFactory(clock=clock))
    protocol.dataReceived(b"hello")
    echoed: bytes = transport.value()
    return echoed
