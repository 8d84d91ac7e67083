"""
The tutorial's server in plain Twisted: every piece of the socket version, as callbacks.

Usage: python twisted_server.py [ENDPOINT]  (default: tcp:7788)
"""

import sys

from twisted.internet import endpoints, protocol, reactor
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.python.failure import Failure


class ThankYou(protocol.Protocol):
    """One connection: what accept() returned, with its recv() and close() as events."""

    def connectionMade(self) -> None:
        # The three-way handshake is over and the connection is accepted.
        print("connection from", self.transport.getPeer(), flush=True)

    def dataReceived(self, data: bytes) -> None:
        # Some bytes of the stream arrived (up to 64 KiB at a time, not a message).
        print("received:", data.decode("utf-8", "replace"), flush=True)
        self.transport.write(b"thank you!")
        self.transport.loseConnection()  # after the reply has been sent

    def connectionLost(self, reason: Failure) -> None:
        # Both directions are closed; the socket is gone.
        print("closed:", reason.getErrorMessage(), flush=True)


class ThankYouFactory(protocol.Factory):
    """The listening side: one protocol instance per accepted connection."""

    def buildProtocol(self, addr: IAddress) -> protocol.Protocol:
        return ThankYou()


def listening(port: IListeningPort) -> None:
    print("listening on port", port.getHost().port, flush=True)


description = sys.argv[1] if len(sys.argv) > 1 else "tcp:7788"
endpoint = endpoints.serverFromString(reactor, description)  # socket, bind, listen
endpoint.listen(ThankYouFactory()).addCallback(listening)
reactor.run()  # accept (and everything else) happens in the event loop
