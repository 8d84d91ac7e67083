"""
Per-listener counters, kept as plain integers.

The data path only adds to integers on each connection
(:attr:`~tcpproto.connection.ServerConnection.bytesIn` and ``bytesOut``);
totals are folded in here when a connection closes, and whoever publishes them
(the Prometheus endpoint, a test) reads them when
asked, adding the counters of the connections still open.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

__all__ = [
    "DURATION_BUCKETS",
    "ListenerStats",
]

#: Upper bounds, in seconds, of the connection-duration histogram's buckets.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.01,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
    3600.0,
)


class ListenerStats:
    """Counters for one listener (a TCP factory, or a UDP port)."""

    def __init__(self) -> None:
        #: Connections accepted, ever.  (How many are open now is the
        #: connection registry's to say: see ``ServerFactory.active``.)
        self.connectionsTotal = 0
        #: Bytes received and sent by connections that have closed, and in
        #: datagrams: everything not held by an open connection's counters.
        self.closedBytesIn = 0
        self.closedBytesOut = 0
        #: Datagrams received (and admitted) and sent, on a UDP listener.
        self.datagramsIn = 0
        self.datagramsOut = 0
        #: Datagrams admitted but not answered (the send failed).
        self.datagramsDropped = 0
        #: Refused connections (or datagrams), by reason.
        self.refused: Counter[str] = Counter()
        #: Closed connections per duration bucket (the last one is +Inf),
        #: not cumulative; and the sum of their durations.
        self.durationCounts = [0] * (len(DURATION_BUCKETS) + 1)
        self.durationSum = 0.0

    def opened(self) -> None:
        """Count a new connection."""
        self.connectionsTotal += 1

    def closed(self, bytesIn: int, bytesOut: int, duration: float) -> None:
        """Fold a closed connection's totals in."""
        self.closedBytesIn += bytesIn
        self.closedBytesOut += bytesOut
        self.durationCounts[bisect_left(DURATION_BUCKETS, duration)] += 1
        self.durationSum += duration

    def closedDurations(self) -> list[tuple[float, int]]:
        """
        The duration histogram as Prometheus publishes it: cumulative counts
        per upper bound, the last bound being ``inf``.
        """
        out = []
        total = 0
        for bound, count in zip(
            (*DURATION_BUCKETS, float("inf")), self.durationCounts, strict=True
        ):
            total += count
            out.append((bound, total))
        return out
