"""The package imports and answers, in memory."""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tcpproto import EchoFactory


class EchoSmokeTests(SynchronousTestCase):
    def test_echoes(self) -> None:
        factory = EchoFactory(clock=Clock())
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b"hello")
        self.assertEqual(transport.value(), b"hello")
