"""
Framing the Twisted way: a LineReceiver hands over whole lines, however the bytes arrive.

Sends three lines to an echo server and prints each line that comes back.

Usage: python twisted_lines.py [HOST [PORT]]  (default: 127.0.0.1 7788)
"""

import sys

from twisted.internet import endpoints, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP
from twisted.protocols.basic import LineReceiver


class LineClient(LineReceiver):
    delimiter = b"\n"

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.answers: list[bytes] = []
        self.done: Deferred[list[bytes]] = Deferred()

    def connectionMade(self) -> None:
        for line in self.lines:
            self.sendLine(line)

    def lineReceived(self, line: bytes) -> None:
        # One call per complete line, without its delimiter.
        self.answers.append(line)
        if len(self.answers) == len(self.lines):
            self.transport.loseConnection()

    def connectionLost(self, reason: object) -> None:
        self.done.callback(self.answers)


async def main(reactor: IReactorTCP) -> None:
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 7788
    client = LineClient([b"one", b"two", b"three"])
    await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, host, port), client)
    for line in await client.done:
        print("line:", line.decode("utf-8"))


task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
