"""
Embedding tcpproto: serve echo on a free loopback port, then talk to it, in one program.

Usage: python embed.py [MESSAGE]
"""

import sys

from twisted.internet import endpoints, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP

from tcpproto import EchoFactory, exchange


async def main(reactor: IReactorTCP) -> None:
    message = (sys.argv[1] if len(sys.argv) > 1 else "hello, echo").encode("utf-8")

    server = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    port = await server.listen(EchoFactory())
    address = port.getHost()
    print("echo server on port", address.port, flush=True)

    client = endpoints.clientFromString(reactor, f"tcp:127.0.0.1:{address.port}")
    answer = await exchange(client, message)  # send, half-close, read until the server closes
    print("echoed:", answer.decode("utf-8"), flush=True)

    await port.stopListening()


task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
