"""
In-memory streams and connections; the in-memory transports themselves are
public: tcpproto.testing.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tcpproto.connection import ServerFactory
from tcpproto.testing import connectInMemory


def chunked(data: bytes, sizes: Iterable[int]) -> list[bytes]:
    """
    ``data`` cut into pieces of the given sizes (cycled), covering all of it.

    Sizes below 1 count as 1.
    """
    pieces: list[bytes] = []
    sizeList = [max(1, s) for s in sizes] or [len(data) or 1]
    i = 0
    k = 0
    while i < len(data):
        n = sizeList[k % len(sizeList)]
        pieces.append(data[i : i + n])
        i += n
        k += 1
    return pieces


def assertReplies(
    testCase: SynchronousTestCase,
    proto: IProtocol,
    transport: StringTransport,
    *steps: tuple[bytes, bytes],
    sent: bytes = b"",
) -> None:
    """
    Feed each step's bytes to ``proto`` (one ``dataReceived`` each); after
    each, ``transport`` holds exactly ``sent`` (what it held before the
    first step) followed by every step's answer so far.
    """
    expected = sent
    for data, answer in steps:
        proto.dataReceived(data)
        expected += answer
        testCase.assertEqual(transport.value(), expected, f"after {data!r}")


class ConnectedTestCase(SynchronousTestCase):
    """
    Each test starts with ``self.proto``, a connection from ``self.factory``
    (:meth:`makeFactory`) on ``self.transport`` (:meth:`makeTransport`).
    """

    def makeFactory(self) -> ServerFactory:
        raise NotImplementedError(f"{type(self).__name__} must say which factory it tests")

    def makeTransport(self) -> StringTransport | None:
        """The transport (``None``: a plain, not half-closeable StringTransport)."""
        return None

    def setUp(self) -> None:
        self.factory = self.makeFactory()
        self.proto, self.transport = connectInMemory(self.factory, self.makeTransport())

    def assertReplies(self, *steps: tuple[bytes, bytes], sent: bytes = b"") -> None:
        """:func:`assertReplies` on this test's connection."""
        assertReplies(self, self.proto, self.transport, *steps, sent=sent)


def assertRefusesArguments(
    testCase: SynchronousTestCase,
    factoryType: type[ServerFactory],
    badArguments: dict[str, dict[str, object]],
) -> None:
    """``factoryType`` raises ``ValueError`` for each of the named ``badArguments``."""
    for name, arguments in badArguments.items():
        with testCase.subTest(name):
            testCase.assertRaises(ValueError, factoryType, clock=Clock(), **arguments)


def assertSameBytes(testCase: SynchronousTestCase, got: bytes, expected: bytes) -> None:
    """
    ``got == expected``, for payloads too large for ``assertEqual``'s diff:
    a difference is reported as the lengths and the first offset that differs.
    """
    if got == expected:
        return
    offset = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    testCase.fail(
        f"got {len(got)} bytes, expected {len(expected)}; they differ from offset {offset}"
    )
