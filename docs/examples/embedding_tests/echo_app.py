"""
A small application that embeds tcpproto: a health-check echo port.

Many services carry a port whose only job is to prove that the process is up
and that the network path to it carries bytes intact: a load balancer or a
monitoring probe connects, sends a few bytes, and expects them back.
:class:`EchoPort` is that part of an application, built on tcpproto's
:class:`~tcpproto.EchoFactory` (limits and an idle timeout included), and
:func:`probe` is the check run from the other side.  ``test_echo_app.py``
tests both with pytest-twisted, as an application that embeds tcpproto
would (docs/testing.rst).
"""

from __future__ import annotations

from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IAddress, IListeningPort, IReactorTime

from tcpproto import EchoFactory, exchange


class EchoPort:
    """
    An echo listener an application starts and stops with the rest of it.

    :param reactor: the reactor to listen with.
    :param description: a Twisted server endpoint string.
    :param idleTimeout: seconds after which a silent probe is cut off.
    :param maxConnections: probes served at once; more are refused.
    :param clock: the time source for the idle timeout (a fake one in tests);
        the reactor by default.
    """

    def __init__(
        self,
        reactor: object,
        description: str = "tcp:0:interface=127.0.0.1",
        *,
        idleTimeout: float = 30.0,
        maxConnections: int = 100,
        clock: IReactorTime | None = None,
    ) -> None:
        self.reactor = reactor
        self.description = description
        self.factory = EchoFactory(
            idleTimeout=idleTimeout,
            maxConnections=maxConnections,
            listener=description,
            clock=clock,
        )
        self._port: IListeningPort | None = None

    async def start(self) -> IAddress:
        """Listen; return the address listened on (with the port picked)."""
        self._port = await serverFromString(self.reactor, self.description).listen(self.factory)
        return self._port.getHost()

    async def stop(self) -> None:
        """Stop listening (open connections finish on their own)."""
        if self._port is not None:
            port, self._port = self._port, None
            stopped = port.stopListening()
            if stopped is not None:
                await stopped


async def probe(reactor: object, description: str, payload: bytes = b"ping\n") -> bool:
    """
    Check an echo port: send ``payload``, half-close, and compare the answer.

    :param description: a Twisted client endpoint string for the port.
    :return: whether every byte came back, in order and nothing more.
    """
    answer = await exchange(clientFromString(reactor, description), payload)
    return answer == payload
