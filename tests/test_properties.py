"""
Properties, for any bytes and any chunking (hypothesis, in memory).

- echo: what comes back is exactly what was sent, before and after a half-close
  (with a prefix: each line behind it);
- thank-you, line framing: one reply per complete line, ending as the line did;
- LineBuffer: any chunking of a stream gives back exactly its lines.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tcpproto import ClientProtocol, EchoFactory, ServerConnection, ThankYouFactory
from tcpproto.framing import LineBuffer
from tcpproto.testing import MemoryPipe, connectInMemory
from tests.helpers import chunked
from tests.test_client import Output

# Small alphabets make newlines (and \r\n) frequent enough to matter.
lineish = st.binary(max_size=2000) | st.lists(
    st.sampled_from([b"a", b"\n", b"\r", b"\r\n", b"\x00", b"xyz", b"\xff"]), max_size=300
).map(b"".join)
cuts = st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=30)

SETTINGS = settings(max_examples=200, deadline=None)


def served(
    factory: EchoFactory | ThankYouFactory, data: bytes, sizes: list[int]
) -> tuple[ServerConnection, StringTransport]:
    """A connection from ``factory``, in memory, that has read ``data`` in pieces of ``sizes``."""
    proto, transport = connectInMemory(factory)
    for piece in chunked(data, sizes):
        proto.dataReceived(piece)
    return proto, transport


def fed(buf: LineBuffer, data: bytes, sizes: list[int]) -> list[bytes]:
    """The lines ``buf`` returns for ``data`` fed in pieces of ``sizes``."""
    lines: list[bytes] = []
    for piece in chunked(data, sizes):
        lines.extend(buf.feed(piece))
    return lines


class EchoProperties(SynchronousTestCase):
    @SETTINGS
    @given(data=st.binary(max_size=5000), sizes=cuts)
    def test_echoIsIdentity(self, data: bytes, sizes: list[int]) -> None:
        proto, transport = served(EchoFactory(clock=Clock()), data, sizes)
        IHalfCloseableProtocol(proto).readConnectionLost()
        self.assertEqual(transport.value(), data)
        self.assertTrue(transport.disconnecting)

    @SETTINGS
    @given(data=lineish, sizes=cuts)
    def test_lineEchoIsIdentity(self, data: bytes, sizes: list[int]) -> None:
        """Line echo without a prefix gives back the stream, tail included."""
        proto, transport = served(EchoFactory(framing="line", clock=Clock()), data, sizes)
        IHalfCloseableProtocol(proto).readConnectionLost()
        self.assertEqual(transport.value(), data)

    @SETTINGS
    @given(data=lineish, sizes=cuts, prefix=st.binary(min_size=1, max_size=8))
    def test_prefixedLineEcho(self, data: bytes, sizes: list[int], prefix: bytes) -> None:
        """With a prefix, each line (the tail too) comes back as ``PREFIX line``, in order."""
        factory = EchoFactory(framing="line", prefix=prefix, clock=Clock())
        proto, transport = served(factory, data, sizes)
        IHalfCloseableProtocol(proto).readConnectionLost()
        lines = data.split(b"\n")
        whole = [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
        self.assertEqual(transport.value(), b"".join(prefix + b" " + line for line in whole))

    @settings(max_examples=50, deadline=None)
    @given(
        data=st.binary(max_size=50_000),
        chunkSize=st.integers(min_value=1, max_value=9000),
        bufferLimit=st.integers(min_value=1, max_value=9000),
    )
    def test_clientRoundTrip(self, data: bytes, chunkSize: int, bufferLimit: int) -> None:
        """Client to echo server and back, with flow control: exact and complete."""
        output = Output()
        client = ClientProtocol(output)
        pipe = MemoryPipe.fromFactory(
            EchoFactory(clock=Clock()), client, chunkSize=chunkSize, bufferLimit=bufferLimit
        )
        client.write(data)
        client.halfClose()
        pipe.flush()
        self.assertEqual(output.value(), data)
        self.assertTrue(pipe.closed)
        self.assertIsNone(self.successResultOf(client.done))


class ThankYouProperties(SynchronousTestCase):
    @SETTINGS
    @given(data=lineish, sizes=cuts)
    def test_oneReplyPerCompleteLine(self, data: bytes, sizes: list[int]) -> None:
        _, transport = served(ThankYouFactory(framing="line", clock=Clock()), data, sizes)
        lines = data.split(b"\n")[:-1]
        expected = b"".join(
            b"thank you!\r\n" if line.endswith(b"\r") else b"thank you!\n" for line in lines
        )
        self.assertEqual(transport.value(), expected)
        self.assertEqual(transport.value().count(b"thank you!"), data.count(b"\n"))

    @SETTINGS
    @given(data=st.binary(min_size=1, max_size=3000), sizes=cuts)
    def test_rawOneReplyPerRead(self, data: bytes, sizes: list[int]) -> None:
        _, transport = served(ThankYouFactory(clock=Clock()), data, sizes)
        self.assertEqual(transport.value(), b"thank you!" * len(chunked(data, sizes)))


class LineBufferProperties(SynchronousTestCase):
    @SETTINGS
    @given(data=lineish, sizes=cuts)
    def test_reassembles(self, data: bytes, sizes: list[int]) -> None:
        buf = LineBuffer(maxLength=len(data) + 1)
        lines = fed(buf, data, sizes)
        whole, _, tail = data.rpartition(b"\n")
        expected = [line + b"\n" for line in whole.split(b"\n")] if b"\n" in data else []
        self.assertEqual(lines, expected)
        self.assertEqual(buf.pending(), tail if b"\n" in data else data)
        self.assertEqual(b"".join(lines) + buf.pending(), data)
        self.assertFalse(buf.overflowed)

    @SETTINGS
    @given(data=lineish, sizes=cuts, limit=st.integers(min_value=1, max_value=40))
    def test_overflowExactlyWhenALineIsTooLong(
        self, data: bytes, sizes: list[int], limit: int
    ) -> None:
        buf = LineBuffer(maxLength=limit)
        lines = fed(buf, data, sizes)
        parts = data.split(b"\n")
        tooLong = any(len(p) > limit for p in parts)
        self.assertEqual(buf.overflowed, tooLong)
        # Whatever was returned is a prefix of the stream's lines, each within the limit.
        expected = [p + b"\n" for p in parts[:-1]]
        self.assertEqual(lines, expected[: len(lines)])
        self.assertTrue(all(len(line) - 1 <= limit for line in lines))
        if not tooLong:
            self.assertEqual(lines, expected)
