"""
In-memory streams; the in-memory connections themselves are public: tcpproto.testing.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase


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
