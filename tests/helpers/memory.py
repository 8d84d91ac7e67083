"""
In-memory streams; the in-memory connections themselves are public: tcpproto.testing.
"""

from __future__ import annotations

from collections.abc import Iterable


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
