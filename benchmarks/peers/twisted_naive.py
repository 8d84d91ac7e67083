"""Twisted's canonical echo example (as in its docs' echoserv.py). Usage: twisted_naive.py PORT"""

import sys

from twisted.internet import protocol, reactor


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


factory = protocol.ServerFactory()
factory.protocol = Echo
reactor.listenTCP(int(sys.argv[1]), factory, interface="127.0.0.1")
reactor.run()
