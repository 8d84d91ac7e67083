"""
The "thank you" acknowledgement service, from the tutorial this project grew from.

The tutorial's server accepts a client, ``recv(1024)``, sends ``b"thank you!"``
and closes.  :class:`ThankYouFactory` with ``once=True`` does exactly that;
without it, the server acknowledges every message until the peer closes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Protocol

from tcpproto.connection import (
    LINE_TOO_LONG,
    REPLIED_ONCE,
    ServerConnection,
    ServerFactory,
)
from tcpproto.echo import FRAMINGS, LINE, RAW
from tcpproto.framing import DEFAULT_MAX_LINE_LENGTH, LineBuffer, lineTooLongMessage, terminator
from tcpproto.limits import NOT_ALLOWED

DEFAULT_REPLY = b"thank you!"
BUSY_MESSAGE = b"busy: too many connections, try again later\n"


class ThankYouProtocol(ServerConnection):
    """
    Answer each message with the factory's reply.

    In raw framing a message is whatever one read returned, which is what a
    plain-socket peer doing ``send(data)`` then ``recv(1024)`` expects.  In
    line framing it is a complete line, and each reply is a line too (ending
    as the message did, ``\\n`` or ``\\r\\n``).
    """

    factory: ThankYouFactory
    _lines: LineBuffer | None = None

    def connectionMade(self) -> None:
        if self.factory.framing == LINE:
            self._lines = LineBuffer(self.factory.maxLineLength)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        if self.discarding:
            return  # replied once, or refused a line: drop input until the peer closes
        reply = self.factory.reply
        lines = self._lines
        if lines is None:
            self.send(reply)
            if self.factory.once:
                self.lingeringClose(REPLIED_ONCE)
            return
        messages = lines.feed(data)
        if messages:
            if self.factory.once:
                self.send(reply + terminator(messages[0]))
                self.lingeringClose(REPLIED_ONCE)
                return
            self.send(b"".join(reply + terminator(m) for m in messages))
        if lines.overflowed:
            self.send(lineTooLongMessage(lines.maxLength))
            self.lingeringClose(LINE_TOO_LONG)


class _BusyProtocol(Protocol):
    """Tells a peer refused for load that the server is busy, then closes."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(BUSY_MESSAGE)
        self.transport.loseConnection()


class ThankYouFactory(ServerFactory):
    """
    Builds thank-you connections.

    :param reply: what each message is answered with.
    :param framing: ``"raw"`` (each read is a message) or ``"line"`` (each
        newline-terminated line is).
    :param once: reply to the first message only, then close, like the
        tutorial's server.
    :param maxLineLength: in line framing, the longest line accepted; a
        longer one gets an error line and the connection is closed.

    Other keyword arguments are those of
    :class:`~tcpproto.connection.ServerFactory`.  Peers refused because of
    the connection limits are told ``busy`` before the close.
    """

    mode = "thankyou"
    protocol = ThankYouProtocol

    def __init__(
        self,
        reply: bytes = DEFAULT_REPLY,
        framing: str = RAW,
        once: bool = False,
        *,
        maxLineLength: int = DEFAULT_MAX_LINE_LENGTH,
        **kwargs: Any,
    ) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
        if not reply:
            raise ValueError("the reply must not be empty")
        if maxLineLength < 1:
            raise ValueError("maxLineLength must be positive")
        super().__init__(**kwargs)
        self.reply = reply
        self.framing = framing
        self.once = once
        self.maxLineLength = maxLineLength

    def refusalProtocol(self, reason: str) -> Protocol | None:
        return None if reason == NOT_ALLOWED else _BusyProtocol()
