"""
The tutorial's server with tcpproto: reply once with "thank you!", then close.

Usage: python tcpproto_server.py [ENDPOINT]  (default: tcp:7788)
"""

import sys

from twisted.internet import endpoints, reactor
from twisted.internet.interfaces import IListeningPort
from twisted.logger import globalLogBeginner, textFileLogObserver

from tcpproto import ThankYouFactory

globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)


def listening(port: IListeningPort) -> None:
    print("listening on port", port.getHost().port, flush=True)


description = sys.argv[1] if len(sys.argv) > 1 else "tcp:7788"
endpoint = endpoints.serverFromString(reactor, description)
endpoint.listen(ThankYouFactory(once=True)).addCallback(listening)
reactor.run()
