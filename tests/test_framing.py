"""LineBuffer: a byte stream in, complete lines out."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tcpproto.framing import LineBuffer, lineTooLongMessage, terminator


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

    def test_overflowPending(self) -> None:
        buf = LineBuffer(4)
        self.assertEqual(buf.feed(b"123"), [])
        self.assertEqual(buf.feed(b"45"), [])
        self.assertTrue(buf.overflowed)
        self.assertEqual(buf.pending(), b"")
        self.assertEqual(buf.feed(b"\nok\n"), [])

    def test_overflowCompleteLine(self) -> None:
        """Lines before the over-long one are still returned."""
        buf = LineBuffer(3)
        self.assertEqual(buf.feed(b"ab\nabcd\nxy\n"), [b"ab\n"])
        self.assertTrue(buf.overflowed)

    def test_overflowAcrossChunks(self) -> None:
        buf = LineBuffer(3)
        self.assertEqual(buf.feed(b"ab"), [])
        self.assertEqual(buf.feed(b"cd\n"), [])
        self.assertTrue(buf.overflowed)

    def test_overflowTail(self) -> None:
        buf = LineBuffer(3)
        self.assertEqual(buf.feed(b"ok\nlonger"), [b"ok\n"])
        self.assertTrue(buf.overflowed)

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
