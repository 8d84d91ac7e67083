"""
Line framing: TCP carries a byte stream, not messages.

A ``recv`` of 1024 bytes (or a ``dataReceived``) may hold half a message, or
three.  Protocols that want messages must say where one ends; the simplest
convention, and the one used here, is a newline.

We do not use :class:`twisted.protocols.basic.LineOnlyReceiver` because it is
a Protocol, and here framing is a component that both the echo and the
thank-you protocols use on top of the connection behaviour they share; it also
drops the delimiter, and an echo must give each line back with the exact
terminator (``\\n`` or ``\\r\\n``) it came with.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_LINE_LENGTH",
    "FRAMINGS",
    "LINE",
    "RAW",
    "LineBuffer",
    "checkFraming",
    "lineTooLongMessage",
    "terminator",
]

#: Default longest line, in bytes, not counting its newline.
DEFAULT_MAX_LINE_LENGTH = 65536

#: Framings: ``raw``, each read is a message (an echo sends the stream back
#: as is); ``line``, each newline-terminated line is.
RAW = "raw"
LINE = "line"
FRAMINGS = (RAW, LINE)


class LineBuffer:
    """
    Collects a byte stream and hands back its complete lines.

    :param maxLength: the longest line accepted, not counting the ``\\n``;
        once a line is longer, :attr:`overflowed` is set and nothing more is
        returned.
    """

    def __init__(self, maxLength: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        if maxLength < 1:
            raise ValueError("maxLength must be positive")
        self.maxLength = maxLength
        #: Set once a line longer than ``maxLength`` was seen.
        self.overflowed = False
        # The pending partial line, as chunks, so that a long line arriving
        # in many reads is joined once (not copied on every read).
        self._chunks: list[bytes] = []
        self._pendingLength = 0

    def feed(self, data: bytes) -> list[bytes]:
        """
        Add ``data``; return the lines it completes, each with its ``\\n``.

        Lines before an over-long one are still returned; after it,
        :attr:`overflowed` is set and the rest is discarded.
        """
        if self.overflowed:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            self._pendingLength += len(data)
            if self._pendingLength > self.maxLength:
                self._overflow()
            else:
                self._chunks.append(data)
            return []
        if self._chunks:
            self._chunks.append(data[: end + 1])
            complete = b"".join(self._chunks)
            self._chunks = []
        else:
            complete = data[: end + 1] if end + 1 < len(data) else data
        rest = data[end + 1 :]
        lines = complete.split(b"\n")
        lines.pop()  # the empty string after the last "\n"
        limit = self.maxLength
        out: list[bytes] = []
        for line in lines:
            if len(line) > limit:
                self._overflow()
                return out
            out.append(line + b"\n")
        self._pendingLength = len(rest)
        if self._pendingLength > limit:
            self._overflow()
        elif rest:
            self._chunks.append(rest)
        return out

    def pending(self) -> bytes:
        """The partial line received so far (no ``\\n`` yet)."""
        return b"".join(self._chunks)

    def _overflow(self) -> None:
        self.overflowed = True
        self._chunks = []
        self._pendingLength = 0


def terminator(line: bytes) -> bytes:
    """The end-of-line a line came with: ``b"\\r\\n"`` or ``b"\\n"``."""
    return b"\r\n" if line.endswith(b"\r\n") else b"\n"


def lineTooLongMessage(maxLength: int) -> bytes:
    """The error line sent before closing a connection whose line is too long."""
    return b"error: line longer than %d bytes\n" % maxLength


def checkFraming(framing: str, maxLineLength: int) -> None:
    """
    Check a factory's framing settings.

    :raises ValueError: with a one-line message, for an unknown framing or a
        maximum line length below 1.
    """
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
    if maxLineLength < 1:
        raise ValueError("maxLineLength must be positive")
