"""
Capturing twisted.logger events during a test.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer


@implementer(ILogObserver)
class LogCapture:
    """
    Collects the ``twisted.logger`` events published while it is installed.

    ``LogCapture.install(testCase)`` adds it to the global publisher and
    removes it at cleanup.
    """

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        self.events.append(event)

    @classmethod
    def install(cls, testCase: SynchronousTestCase) -> LogCapture:
        capture = cls()
        globalLogPublisher.addObserver(capture)
        testCase.addCleanup(globalLogPublisher.removeObserver, capture)
        return capture

    def withEvent(self, name: str) -> list[LogEvent]:
        """The events carrying ``event=name`` (``open``, ``close``, ``refused`` ...)."""
        return [e for e in self.events if e.get("event") == name]

    def matching(self, predicate: Callable[[LogEvent], bool]) -> list[LogEvent]:
        return [e for e in self.events if predicate(e)]
