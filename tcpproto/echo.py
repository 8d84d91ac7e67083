"""
The RFC 862 echo service: every byte received is sent back, in order.

Use it from any Twisted program on any endpoint::

    from twisted.internet import endpoints, reactor
    from tcpproto import EchoFactory

    endpoints.serverFromString(reactor, "tcp:7788").listen(EchoFactory())
    reactor.run()

The protocols stand alone: ``Factory.forProtocol(EchoProtocol)`` is a
correct echo too (half-close and flow control included), without the limits,
timers, statistics and logs that :class:`EchoFactory` adds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tcpproto._vocabulary import (
    ECHO,
    LINE_TOO_LONG,
)
from tcpproto.connection import ServerConnection, ServerFactory, ServerFactoryOptions
from tcpproto.framing import (
    DEFAULT_MAX_LINE_LENGTH,
    FRAMINGS,
    LINE,
    RAW,
    LineBuffer,
    checkFraming,
    lineTooLongMessage,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["FRAMINGS", "LINE", "RAW", "EchoFactory", "EchoProtocol", "LineEchoProtocol"]


class EchoProtocol(ServerConnection):
    """
    Echo the byte stream back as it arrives (raw framing).

    Binary-safe: no decoding, no assumption that one write is one read.  When
    the peer half-closes, what is still buffered is sent before our FIN
    (:class:`~tcpproto.connection.ServerConnection` does that part).
    """

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        if self.discarding:
            self.discard(data)
            return
        self.send(data)


class LineEchoProtocol(ServerConnection):
    """
    Echo line by line, optionally prefixing each line (line framing).

    With a prefix, each line comes back as ``PREFIX line``: behind a load
    balancer the client sees which instance answered.  A partial last line
    is echoed when the peer half-closes; nothing is dropped.

    The settings are class attributes, which :class:`EchoFactory` sets per
    connection; under any other factory, set them on a subclass.
    """

    #: The longest line accepted; a longer one gets an error line and the
    #: connection is closed.
    maxLineLength: int = DEFAULT_MAX_LINE_LENGTH
    #: Text put before each echoed line, followed by a space (none if empty).
    prefix: bytes = b""

    _lines: LineBuffer

    def connectionMade(self) -> None:
        self._lines = LineBuffer(self.maxLineLength)
        super().connectionMade()

    def _linePrefix(self) -> bytes:
        prefix = self.prefix
        return prefix + b" " if prefix else b""

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        if self.discarding:
            self.discard(data)
            return
        lines = self._lines.feed(data)
        if lines:
            prefix = self.prefix
            if prefix:
                # "P a\nP b\n" is "P " + "P ".join(["a\n", "b\n"]): two copies
                # of the answer, however many lines the read held.
                prefix += b" "
                self.send(prefix + prefix.join(lines))
            else:
                self.send(b"".join(lines))
        if self._lines.overflowed:
            self.send(lineTooLongMessage(self.maxLineLength))
            self.lingeringClose(LINE_TOO_LONG)

    def readConnectionLost(self) -> None:
        tail = self._lines.pending()
        if tail and not self.discarding:
            self.send(self._linePrefix() + tail)
        super().readConnectionLost()


class EchoFactory(ServerFactory):
    """
    Builds echo connections.

    :param framing: ``"raw"`` (the default, RFC 862: the byte stream as is)
        or ``"line"`` (whole newline-terminated lines, with ``prefix``).
    :param prefix: in line framing, text put before each echoed line,
        followed by a space.
    :param maxLineLength: in line framing, the longest line accepted; a
        longer one gets an error line and the connection is closed.

    The other keyword arguments are those of
    :class:`~tcpproto.connection.ServerFactory` (limits, idle timeout,
    listener name, clock: :class:`~tcpproto.connection.ServerFactoryOptions`).
    """

    mode = ECHO

    def __init__(
        self,
        framing: str = RAW,
        *,
        prefix: bytes = b"",
        maxLineLength: int = DEFAULT_MAX_LINE_LENGTH,
        **options: Unpack[ServerFactoryOptions],
    ) -> None:
        checkFraming(framing, maxLineLength)
        if prefix and framing != LINE:
            raise ValueError("a prefix needs line framing")
        super().__init__(**options)
        self.framing = framing
        self.prefix = prefix
        self.maxLineLength = maxLineLength
        self.protocol = LineEchoProtocol if framing == LINE else EchoProtocol

    def configureProtocol(self, protocol: ServerConnection) -> None:
        if isinstance(protocol, LineEchoProtocol):
            protocol.maxLineLength = self.maxLineLength
            protocol.prefix = self.prefix
