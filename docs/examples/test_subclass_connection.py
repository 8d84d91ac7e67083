"""
Testing a protocol built on tcpproto, in memory, with :mod:`tcpproto.testing`.

No reactor, socket or real clock: :class:`tcpproto.testing.MemoryPipe`
connects the server protocol to a client protocol and moves bytes (and the
client's FIN) both ways on ``flush()``;
:class:`tcpproto.testing.HalfCloseableClient` is a client that keeps what it
receives and closes once the server has.  Run it with
``python -m twisted.trial test_subclass_connection.py`` (or pytest).
"""

from __future__ import annotations

import os
import sys

from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tcpproto.testing import HalfCloseableClient, MemoryPipe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from subclass_connection import ShoutFactory, ShoutProtocol


class ShoutTests(SynchronousTestCase):
    def talk(self, factory: Factory, *messages: bytes) -> tuple[HalfCloseableClient, MemoryPipe]:
        client = HalfCloseableClient()
        # chunkSize=3: the server sees the stream in small pieces, as TCP may deliver it.
        pipe = MemoryPipe.fromFactory(factory, client, chunkSize=3)
        assert client.transport is not None
        for message in messages:
            client.transport.write(message)
            pipe.flush()
        client.transport.loseWriteConnection()  # type: ignore[attr-defined]
        pipe.flush()
        return client, pipe

    def test_shouts(self) -> None:
        client, pipe = self.talk(ShoutFactory(clock=Clock()), b"hello, ", b"world")
        self.assertEqual(client.received, b"HELLO, WORLD")
        self.assertTrue(pipe.closed)

    def test_anyFactory(self) -> None:
        """The protocol stands alone: a plain Twisted factory will do."""
        client, pipe = self.talk(Factory.forProtocol(ShoutProtocol), b"quiet")
        self.assertEqual(client.received, b"QUIET")
        self.assertTrue(pipe.closed)

    def test_countsAndLogsUnderOurFactory(self) -> None:
        factory = ShoutFactory(clock=Clock())
        self.talk(factory, b"abc")
        self.assertEqual(factory.stats.closedBytesIn, 3)
        self.assertEqual(factory.stats.connectionsTotal, 1)
