"""
The tutorial's client in plain Twisted: connect, send, collect the answer until the server closes.

Usage: python twisted_client.py [HOST [PORT [MESSAGE]]]  (default: 127.0.0.1 7788 hello)
"""

import sys

from twisted.internet import endpoints, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure


class Client(Protocol):
    def __init__(self, message: bytes) -> None:
        self.message = message
        self.received: list[bytes] = []
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        print("connected from ephemeral port", self.transport.getHost().port, flush=True)
        self.transport.write(self.message)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)  # a piece of the answer; more may follow

    def connectionLost(self, reason: Failure) -> None:
        self.done.callback(b"".join(self.received))  # the server closed: that is all


async def main(reactor: IReactorTCP) -> None:
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 7788
    message = sys.argv[3] if len(sys.argv) > 3 else "hello"
    endpoint = endpoints.TCP4ClientEndpoint(reactor, host, port)
    client = Client(message.encode("utf-8"))
    await endpoints.connectProtocol(endpoint, client)
    answer = await client.done
    print("received:", answer.decode("utf-8"), flush=True)


task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
