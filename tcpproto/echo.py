"""
The RFC 862 echo service: every byte received is sent back, in order.

Use it from any Twisted program on any endpoint::

    from twisted.internet import endpoints, reactor
    from tcpproto import EchoFactory

    endpoints.serverFromString(reactor, "tcp:7788").listen(EchoFactory())
    reactor.run()
"""

from __future__ import annotations

from typing import Any

from tcpproto.connection import LINE_TOO_LONG, ServerConnection, ServerFactory
from tcpproto.framing import DEFAULT_MAX_LINE_LENGTH, LineBuffer, lineTooLongMessage

RAW = "raw"
LINE = "line"
FRAMINGS = (RAW, LINE)


class EchoProtocol(ServerConnection):
    """
    Echo the byte stream back as it arrives (raw framing).

    Binary-safe: no decoding, no assumption that one write is one read.  When
    the peer half-closes, what is still buffered is sent before our FIN
    (:class:`~tcpproto.connection.ServerConnection` does that part).
    """

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        self.send(data)


class LineEchoProtocol(ServerConnection):
    """
    Echo line by line, optionally prefixing each line (line framing).

    With a prefix, each line comes back as ``PREFIX line``: behind a load
    balancer the client sees which instance answered.  A partial last line
    is echoed when the peer half-closes; nothing is dropped.
    """

    factory: EchoFactory
    _lines: LineBuffer

    def connectionMade(self) -> None:
        self._lines = LineBuffer(self.factory.maxLineLength)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        if self.discarding:
            return
        lines = self._lines.feed(data)
        prefix = self.factory._linePrefix
        if lines:
            self.send(b"".join(prefix + line for line in lines) if prefix else b"".join(lines))
        if self._lines.overflowed:
            self.send(lineTooLongMessage(self.factory.maxLineLength))
            self.lingeringClose(LINE_TOO_LONG)

    def readConnectionLost(self) -> None:
        tail = self._lines.pending()
        if tail:
            self.send(self.factory._linePrefix + tail)
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

    Other keyword arguments are those of
    :class:`~tcpproto.connection.ServerFactory` (limits, idle timeout,
    listener name, clock).
    """

    mode = "echo"

    def __init__(
        self,
        framing: str = RAW,
        *,
        prefix: bytes = b"",
        maxLineLength: int = DEFAULT_MAX_LINE_LENGTH,
        **kwargs: Any,
    ) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
        if prefix and framing != LINE:
            raise ValueError("a prefix needs line framing")
        if maxLineLength < 1:
            raise ValueError("maxLineLength must be positive")
        super().__init__(**kwargs)
        self.framing = framing
        self.prefix = prefix
        self.maxLineLength = maxLineLength
        self._linePrefix = prefix + b" " if prefix else b""
        self.protocol = LineEchoProtocol if framing == LINE else EchoProtocol
