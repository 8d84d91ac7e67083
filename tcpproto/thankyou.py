"""
The "thank you" acknowledgement service, from the tutorial this project grew from.

The tutorial's server accepts a client, ``recv(1024)``, sends ``b"thank you!"``
and closes.  :class:`ThankYouFactory` with ``once=True`` does exactly that;
without it, the server acknowledges every message until the peer closes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.protocol import Protocol

from tcpproto._vocabulary import (
    DEFAULT_REPLY,
    LINE_TOO_LONG,
    NOT_ALLOWED,
    REPLIED_ONCE,
    THANKYOU,
)
from tcpproto.connection import ServerConnection, ServerFactory, ServerFactoryOptions
from tcpproto.framing import (
    DEFAULT_MAX_LINE_LENGTH,
    LINE,
    RAW,
    LineBuffer,
    checkFraming,
    lineTooLongMessage,
    terminator,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["BUSY_MESSAGE", "DEFAULT_REPLY", "ThankYouFactory", "ThankYouProtocol"]

BUSY_MESSAGE = b"busy: too many connections, try again later\n"


class ThankYouProtocol(ServerConnection):
    """
    Answer each message with :attr:`reply`.

    In raw framing a message is whatever one read returned, which is what a
    plain-socket peer doing ``send(data)`` then ``recv(1024)`` expects.  In
    line framing it is a complete line, and each reply is a line too (ending
    as the message did, ``\\n`` or ``\\r\\n``).

    The settings are class attributes, which :class:`ThankYouFactory` sets
    per connection; under any other factory, set them on a subclass.
    """

    #: What each message is answered with.
    reply: bytes = DEFAULT_REPLY
    #: ``"raw"`` or ``"line"``.
    framing: str = RAW
    #: Reply to the first message only, then close.
    once: bool = False
    #: In line framing, the longest line accepted.
    maxLineLength: int = DEFAULT_MAX_LINE_LENGTH

    _lines: LineBuffer | None = None

    def connectionMade(self) -> None:
        if self.framing == LINE:
            self._lines = LineBuffer(self.maxLineLength)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        if self.discarding:
            # Replied once, refused a line, or closing: drop input until the
            # peer closes (bounded: see lingeringClose).
            self.discard(data)
            return
        reply = self.reply
        lines = self._lines
        if lines is None:
            self.send(reply)
            if self.once:
                self.lingeringClose(REPLIED_ONCE)
            return
        messages = lines.feed(data)
        if messages:
            if self.once:
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

    The other keyword arguments are those of
    :class:`~tcpproto.connection.ServerFactory`
    (:class:`~tcpproto.connection.ServerFactoryOptions`).  Peers refused
    because of the connection limits are told ``busy`` before the close.
    """

    mode = THANKYOU
    protocol = ThankYouProtocol

    def __init__(
        self,
        reply: bytes = DEFAULT_REPLY,
        framing: str = RAW,
        once: bool = False,
        *,
        maxLineLength: int = DEFAULT_MAX_LINE_LENGTH,
        **options: Unpack[ServerFactoryOptions],
    ) -> None:
        checkFraming(framing, maxLineLength)
        if not reply:
            raise ValueError("the reply must not be empty")
        super().__init__(**options)
        self.reply = reply
        self.framing = framing
        self.once = once
        self.maxLineLength = maxLineLength

    def configureProtocol(self, protocol: ServerConnection) -> None:
        if isinstance(protocol, ThankYouProtocol):
            protocol.reply = self.reply
            protocol.framing = self.framing
            protocol.once = self.once
            protocol.maxLineLength = self.maxLineLength

    def refusalProtocol(self, reason: str) -> Protocol | None:
        return None if reason == NOT_ALLOWED else _BusyProtocol()
