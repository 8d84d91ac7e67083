"""LineBuffer: a byte stream in, complete lines out."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tcpproto.framing import LineBuffer, lineTooLongMessage, terminator

#: Streams that overflow a LineBuffer: its maxLength, and each chunk fed with
#: the lines that feed returns.
OVERFLOWS: dict[str, tuple[int, list[tuple[bytes, list[bytes]]]]] = {
    "while pending": (4, [(b"123", []), (b"45", [])]),
    "after complete lines": (3, [(b"ab\nabcd\nxy\n", [b"ab\n"])]),
    "across chunks": (3, [(b"ab", []), (b"cd\n", [])]),
    "in the tail": (3, [(b"ok\nlonger", [b"ok\n"])]),
}


class LineBufferTests(SynchronousTestCase):
    def test_completeLines(self) -> None:
        buf = LineBuffer()
        self.assertEqual(buf.feed(b"a\nbb\n"), [b"a\n", b"bb\n"])
        self.assertEqual(buf.pending(), b"")

    def test_partialLine(self) -> None:
        buf = LineBuffer()
        self.assertEqual(buf.feed(b"par"), [])
        self.assertEqual(buf.feed(b"ti"), [])
        self.assertEqual(buf.pending(), b"parti")
        self.assertEqual(buf.feed(b"al\nnext"), [b"partial\n"])
        self.assertEqual(buf.pending(), b"next")

    def test_keepsCarriageReturn(self) -> None:
        buf = LineBuffer()
        self.assertEqual(buf.feed(b"a\r\nb\r"), [b"a\r\n"])
        self.assertEqual(buf.feed(b"\n"), [b"b\r\n"])

    def test_emptyLines(self) -> None:
        self.assertEqual(LineBuffer().feed(b"\n\n\n"), [b"\n"] * 3)

    def test_emptyFeed(self) -> None:
        buf = LineBuffer()
        self.assertEqual(buf.feed(b""), [])
        self.assertEqual(buf.pending(), b"")

    def test_binary(self) -> None:
        buf = LineBuffer()
        self.assertEqual(buf.feed(b"\x00\xff\n\x80"), [b"\x00\xff\n"])
        self.assertEqual(buf.pending(), b"\x80")

    def test_maxLengthExact(self) -> None:
        """A line of exactly maxLength bytes (not counting the newline) is fine."""
        buf = LineBuffer(4)
        self.assertEqual(buf.feed(b"1234"), [])
        self.assertFalse(buf.overflowed)
        self.assertEqual(buf.feed(b"\n"), [b"1234\n"])
        self.assertEqual(buf.feed(b"abcd\n"), [b"abcd\n"])
        self.assertFalse(buf.overflowed)

    def test_overflow(self) -> None:
        """
        A line longer than maxLength overflows the buffer, however it arrives:
        the lines before it are returned, then it holds and returns nothing more.
        """
        for name, (maxLength, steps) in OVERFLOWS.items():
            with self.subTest(name):
                buf = LineBuffer(maxLength)
                for chunk, lines in steps:
                    self.assertEqual(buf.feed(chunk), lines)
                self.assertTrue(buf.overflowed)
                self.assertEqual(buf.pending(), b"")
                self.assertEqual(buf.feed(b"\nok\n"), [])

    def test_manyChunksOneLine(self) -> None:
        buf = LineBuffer()
        for _ in range(1000):
            self.assertEqual(buf.feed(b"x"), [])
        self.assertEqual(buf.feed(b"\n"), [b"x" * 1000 + b"\n"])

    def test_badMaxLength(self) -> None:
        self.assertRaises(ValueError, LineBuffer, 0)


class HelperTests(SynchronousTestCase):
    def test_terminator(self) -> None:
        self.assertEqual(terminator(b"a\r\n"), b"\r\n")
        self.assertEqual(terminator(b"a\n"), b"\n")
        self.assertEqual(terminator(b"\n"), b"\n")

    def test_lineTooLongMessage(self) -> None:
        self.assertEqual(lineTooLongMessage(10), b"error: line longer than 10 bytes\n")
