"""
TCP echo and UDP echo side by side in plain Twisted, on the same port number.

TCP and UDP ports are separate: the same number can serve both.

Usage: python echo_both.py [PORT [INTERFACE]]  (default: 7788 on every IPv4 interface;
port 0 picks a free TCP port and uses its number for UDP too)
"""

import sys

from twisted.internet import endpoints, reactor
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol


class Echo(Protocol):
    """TCP: a connection carries a byte stream; echo each piece as it arrives."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class EchoFactory(Factory):
    def buildProtocol(self, addr: IAddress) -> Protocol:
        return Echo()  # one protocol per connection


class DatagramEcho(DatagramProtocol):
    """UDP: no connection; each datagram is one whole message with its sender's address."""

    def datagramReceived(self, datagram: bytes, address: tuple[str, int]) -> None:
        self.transport.write(datagram, address)  # one datagram back, to that address


def listening(tcpPort: IListeningPort) -> None:
    number = tcpPort.getHost().port
    reactor.listenUDP(number, DatagramEcho(), interface=interface)  # one protocol for all peers
    print("TCP and UDP echo on port", number, flush=True)


port = int(sys.argv[1]) if len(sys.argv) > 1 else 7788
interface = sys.argv[2] if len(sys.argv) > 2 else ""
tcp = endpoints.TCP4ServerEndpoint(reactor, port, interface=interface)
tcp.listen(EchoFactory()).addCallback(listening)
reactor.run()
