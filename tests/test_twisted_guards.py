"""
One guard per entry of ``tcpproto/_twisted.py``: each fails loudly, naming
the entry, when a Twisted release changes what the entry relies on.

When one fails, read the entry's note in ``tcpproto/_twisted.py``: it names
the upstream limitation; the fix is there, nowhere else.
"""

from __future__ import annotations

import inspect
import socket
from typing import Any, cast

from twisted.application.internet import StreamServerEndpointService, UDPServer
from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols import tls
from twisted.trial.unittest import SynchronousTestCase

from tcpproto import _twisted


def _guard(testCase: SynchronousTestCase, entry: str, ok: bool, what: str) -> None:
    testCase.assertTrue(ok, f"tcpproto._twisted entry {entry}: Twisted changed: {what}")


class WriteThroughGuard(SynchronousTestCase):
    """Entry 1: tcp.Connection's write buffers."""

    def _serverTransport(self) -> tuple[socket.socket, socket.socket, Any]:
        """A tcp.Server over one end of a socket pair: (server end, client end, transport)."""
        from twisted.internet.testing import MemoryReactor

        server, client = socket.socketpair()
        self.addCleanup(server.close)
        self.addCleanup(client.close)
        server.setblocking(False)
        transport = tcp.Server(
            server, Protocol(), ("127.0.0.1", 1), cast(Any, None), 1, MemoryReactor()
        )
        return server, client, transport

    def test_connectionBuffers(self) -> None:
        source = inspect.getsource(tcp.Connection) + inspect.getsource(tcp.Connection.__mro__[1])
        for name in ("writeSomeData",):
            _guard(self, "1", hasattr(tcp.Connection, name), f"no tcp.Connection.{name}")
        from twisted.internet import abstract

        fd = inspect.getsource(abstract.FileDescriptor)
        for name in (*_twisted._WRITE_THROUGH_ATTRIBUTES, "producerPaused"):
            _guard(self, "1", name in fd or name in source, f"FileDescriptor.{name} is gone")

    def test_classDefaultsReadPerMessage(self) -> None:
        """
        The class defaults the fast path copies onto each transport (so that
        CPython can specialise their reads) are plain class values, and are
        copied: on the instance, equal to the class's.
        """
        for name in _twisted._READ_PER_MESSAGE:
            default = inspect.getattr_static(tcp.Connection, name, None)
            _guard(
                self,
                "1",
                default is not None and not hasattr(type(default), "__get__"),
                f"tcp.Connection.{name} is no longer a plain class default",
            )
        _, _, transport = self._serverTransport()
        _twisted.writeThroughSocket(transport)
        for name in _twisted._READ_PER_MESSAGE:
            self.assertEqual(vars(transport)[name], getattr(tcp.Connection, name))

    def test_realConnectionQualifies(self) -> None:
        """A real accepted connection is recognised (the attributes are there)."""
        server, client, transport = self._serverTransport()
        _guard(
            self,
            "1",
            _twisted.writeThroughSocket(transport) is server,
            "a tcp.Server no longer has the write buffers the fast path reads",
        )
        transport.connected = True
        self.assertEqual(_twisted.writeThrough(transport, server, b"hi"), 0)
        self.assertEqual(client.recv(10), b"hi")

    def test_otherTransportsRefused(self) -> None:
        self.assertIsNone(_twisted.writeThroughSocket(StringTransport()))


class TLSWriteGuard(SynchronousTestCase):
    """Entry 2: TLSMemoryBIOProtocol.write and BufferingTLSTransport's aggregator."""

    def test_aggregator(self) -> None:
        source = inspect.getsource(tls.BufferingTLSTransport)
        _guard(self, "2", "self._aggregator" in source, "BufferingTLSTransport._aggregator")
        _guard(
            self,
            "2",
            callable(getattr(tls._AggregateSmallWrites, "flush", None)),
            "_AggregateSmallWrites.flush",
        )
        _guard(self, "2", callable(tls.TLSMemoryBIOProtocol.write), "TLSMemoryBIOProtocol.write")

    def test_writerForNonTLS(self) -> None:
        self.assertIsNone(_twisted.tlsWriterFor(StringTransport()))


class ProxyParserGuard(SynchronousTestCase):
    """Entry 3: the PROXY header parsers."""

    def test_parsers(self) -> None:
        info = _twisted.V1Parser.parse(b"PROXY TCP4 127.0.0.1 127.0.0.2 1 2")
        _guard(self, "3", info.source is not None, "V1Parser.parse")
        _guard(
            self,
            "3",
            _twisted.V2Parser.PREFIX == b"\r\n\r\n\x00\r\nQUIT\n",
            "V2Parser.PREFIX",
        )
        _guard(
            self,
            "3",
            issubclass(_twisted.InvalidProxyHeader, Exception),
            "InvalidProxyHeader",
        )


class TrustRootGuard(SynchronousTestCase):
    """Entry 4: the type of a trust root."""

    def test_type(self) -> None:
        from twisted.internet.ssl import trustRootFromCertificates

        _guard(self, "4", callable(trustRootFromCertificates), "trustRootFromCertificates")
        _guard(
            self,
            "4",
            "_addCACertsToContext" in _twisted.IOpenSSLTrustRoot.names(),
            "IOpenSSLTrustRoot",
        )


class LeanReactorGuard(SynchronousTestCase):
    """Entry 5: the epoll reactor's private state."""

    def test_internals(self) -> None:
        from twisted.internet.epollreactor import EPollReactor

        reactor = EPollReactor()
        self.addCleanup(reactor._poller.close)
        for name in ("_poller", "_selectables"):
            _guard(self, "5", hasattr(reactor, name), f"EPollReactor.{name}")
        for name in ("_doReadOrWrite", "_disconnectSelectable", "doPoll"):
            _guard(self, "5", callable(getattr(reactor, name, None)), f"EPollReactor.{name}")
        _guard(self, "5", EPollReactor.doIteration is EPollReactor.doPoll, "doIteration")


class ListenerServiceGuard(SynchronousTestCase):
    """Entry 6: StreamServerEndpointService's _raiseSynchronously and _waitingForPort."""

    def test_attributes(self) -> None:
        source = inspect.getsource(StreamServerEndpointService)
        for name in ("_raiseSynchronously", "_waitingForPort"):
            _guard(self, "6", f"self.{name}" in source, f"StreamServerEndpointService.{name}")

    def test_raises(self) -> None:
        class Failing:
            def listen(self, factory: Any) -> Any:
                from twisted.internet.defer import fail

                return fail(OSError("no"))

        service = _twisted.RaisingEndpointService(Failing(), Factory())
        _guard(
            self,
            "6",
            _raises(service.privilegedStartService),
            "a failure to listen no longer raises",
        )


def _raises(call: Any) -> bool:
    try:
        call()
    except OSError:
        return True
    return False


class UDPServerGuard(SynchronousTestCase):
    """Entry 7: UDPServer._getPort."""

    def test_getPort(self) -> None:
        _guard(self, "7", callable(getattr(UDPServer, "_getPort", None)), "UDPServer._getPort")
        source = inspect.getsource(UDPServer.__mro__[1])
        _guard(self, "7", "self._getPort()" in source, "_getPort is no longer called")


class StandardIOGuard(SynchronousTestCase):
    """Entry 8: StandardIO's _reader and _writer."""

    def test_attributes(self) -> None:
        from twisted.internet import process
        from twisted.internet.stdio import StandardIO

        source = inspect.getsource(StandardIO)
        for name in ("self._reader", "self._writer"):
            _guard(self, "8", name in source, f"StandardIO {name}")
        _guard(self, "8", hasattr(process, "ProcessReader"), "process.ProcessReader")


class ReusePortGuard(SynchronousTestCase):
    """Entry 9: tcp.Port.createInternetSocket."""

    def test_createInternetSocket(self) -> None:
        _guard(
            self,
            "9",
            callable(getattr(tcp.Port, "createInternetSocket", None)),
            "tcp.Port.createInternetSocket",
        )


class TLSHalfCloseGuard(SynchronousTestCase):
    """Entry 10: the TLSMemoryBIOProtocol internals HalfCloseTLSProtocol builds on."""

    def test_internals(self) -> None:
        protocolSource = inspect.getsource(tls.TLSMemoryBIOProtocol)
        for name in _twisted.TLS_HALF_CLOSE_NAMES:
            _guard(
                self,
                "10",
                f"self.{name}" in protocolSource or hasattr(tls.TLSMemoryBIOProtocol, name),
                f"TLSMemoryBIOProtocol.{name}",
            )

    def test_receiveLoop(self) -> None:
        """The loop we override still meets close_notify, and dataReceived still runs it."""
        _guard(
            self,
            "10",
            "ZeroReturnError" in inspect.getsource(tls.TLSMemoryBIOProtocol._flushReceiveBIO),
            "_flushReceiveBIO no longer handles ZeroReturnError",
        )
        _guard(
            self,
            "10",
            "self._flushReceiveBIO()" in inspect.getsource(tls.TLSMemoryBIOProtocol.dataReceived),
            "dataReceived no longer calls _flushReceiveBIO",
        )
        _guard(
            self,
            "10",
            "self._flushReceiveBIO()"
            in inspect.getsource(tls.TLSMemoryBIOProtocol.connectionLost),
            "connectionLost no longer calls _flushReceiveBIO",
        )

    def test_writerForHalfCloseTLS(self) -> None:
        """Entry 2 leaves our TLS transport's writes to it."""
        from twisted.internet.ssl import CertificateOptions

        factory = tls.TLSMemoryBIOFactory(
            CertificateOptions(), True, Factory.forProtocol(Protocol)
        )
        proto = _twisted.HalfCloseTLSProtocol(factory, Protocol())
        self.assertIsNone(_twisted.tlsWriterFor(proto))
