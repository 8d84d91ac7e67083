"""
The one wait helper: poll a condition until it holds, within a time limit.

:func:`waitUntil` is for tests that run on the reactor (``async def``
tests): it polls between reactor turns.  :func:`waitUntilBlocking` is the
same loop for tests whose servers are other processes and that use blocking
sockets (a reactor is not running there).  Both fail with ``what`` after
``timeout`` seconds; neither decides anything by sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

#: How often a condition is polled, in seconds.
INTERVAL = 0.01


class _Deadline:
    def __init__(self, timeout: float, what: str | Callable[[], str]) -> None:
        self.end = time.monotonic() + timeout
        self.timeout = timeout
        self.what = what

    def check(self) -> None:
        if time.monotonic() > self.end:
            what = self.what() if callable(self.what) else self.what
            raise AssertionError(f"timed out after {self.timeout}s waiting for {what}")


async def waitUntil(
    condition: Callable[[], object],
    timeout: float = 10.0,
    what: str | Callable[[], str] = "the condition",
    clock: Any = None,
) -> None:
    """
    Poll ``condition()`` on the reactor (or ``clock``) until true; fail
    after ``timeout`` seconds.
    """
    deadline = _Deadline(timeout, what)
    while not condition():
        deadline.check()
        await deferLater(reactor if clock is None else clock, INTERVAL, lambda: None)


def waitUntilBlocking(
    condition: Callable[[], object],
    timeout: float = 10.0,
    what: str | Callable[[], str] = "the condition",
) -> bool:
    """Poll ``condition()`` (no reactor running) until true; fail after ``timeout`` seconds."""
    deadline = _Deadline(timeout, what)
    while not condition():
        deadline.check()
        time.sleep(INTERVAL)
    return True
