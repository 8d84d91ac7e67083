"""
A new protocol on tcpproto's connection: a "shout" server, every byte upper-cased.

Subclass :class:`tcpproto.connection.ServerConnection`, answer in
``dataReceived`` with ``self.send()``, count what came in ``self.bytesIn``;
the connection does the rest (flow control, half-close: what the client
sends before its FIN is answered before ours).  It runs under any Twisted
factory; under a :class:`tcpproto.connection.ServerFactory` subclass it also
gets limits, idle timeout, statistics and logs.

Run it: ``python subclass_connection.py hello`` starts a server on a free
loopback port, sends ``hello`` to it and prints the answer.
"""

from __future__ import annotations

import sys

from twisted.internet import endpoints, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP

from tcpproto import exchange
from tcpproto.connection import ServerConnection, ServerFactory


class ShoutProtocol(ServerConnection):
    """Send back every byte, upper-cased (ASCII letters only: a byte stream)."""

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        self.send(data.upper())


class ShoutFactory(ServerFactory):
    """Our factory: the protocol and the name used in logs and metrics."""

    protocol = ShoutProtocol
    mode = "shout"


async def main(reactor: IReactorTCP, text: str) -> None:
    server = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    port = await server.listen(ShoutFactory(idleTimeout=30))
    address = port.getHost()
    client = endpoints.clientFromString(reactor, f"tcp:127.0.0.1:{address.port}")  # type: ignore[attr-defined]
    answer = await exchange(client, text.encode())
    print(f"shouted: {answer.decode()}")
    await port.stopListening()


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
