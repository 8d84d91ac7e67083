"""
Rate-limited warnings: one line per second and kind, and nothing lost.

A refused peer deserves a log line, until a flood of them would make the log
itself the attack.  :class:`RateLimitedLog` logs the first event of a kind at
once; within the next second it only counts, and when the second is over it
logs the last event of the kind with ``suppressed``, the number of the others
that were not logged.  Every event is thus either logged or counted.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

__all__ = [
    "RateLimitedLog",
]


class _Window:
    """One kind's current second: when it ends, and what it held back."""

    __slots__ = ("end", "flush", "last", "suppressed")

    def __init__(self, end: float) -> None:
        self.end = end
        self.suppressed = 0
        self.last: tuple[str, dict[str, Any]] | None = None
        self.flush: IDelayedCall | None = None


class RateLimitedLog:
    """
    Warnings through ``log``, at most one per ``interval`` seconds and key.

    Call :meth:`stop` when the source goes away (a factory's
    ``stopFactory``): it logs what is held back and cancels the timer.
    """

    def __init__(self, log: Logger, clock: IReactorTime, interval: float = 1.0) -> None:
        self.log = log
        self.clock = clock
        self.interval = interval
        self._windows: dict[str, _Window] = {}

    def warn(self, key: str, format: str, **fields: Any) -> None:
        """Log ``format`` with ``fields`` (and ``suppressed=0``) now, or hold it back."""
        now = self.clock.seconds()
        window = self._windows.get(key)
        if window is None or (now >= window.end and window.last is None):
            self._windows[key] = _Window(now + self.interval)
            self.log.warn(format, suppressed=0, **fields)
            return
        window.suppressed += 1
        window.last = (format, fields)
        if window.flush is None:
            window.flush = self.clock.callLater(max(window.end - now, 0.0), self._flush, key)

    def _flush(self, key: str) -> None:
        window = self._windows[key]
        window.flush = None
        if window.last is None:
            return
        format, fields = window.last
        others = window.suppressed - 1
        window.last = None
        window.suppressed = 0
        window.end = self.clock.seconds() + self.interval
        if others:
            format += " ({suppressed} more in the last second)"
        self.log.warn(format, suppressed=others, **fields)

    def stop(self) -> None:
        """Log everything held back now, and leave no timer behind."""
        for key, window in list(self._windows.items()):
            if window.flush is not None:
                window.flush.cancel()
                self._flush(key)
        self._windows.clear()
