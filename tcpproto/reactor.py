"""
The ``tcpproto`` reactor: Twisted's epoll reactor, with less work per event
and per turn of the loop.

Two costs of :class:`~twisted.internet.epollreactor.EPollReactor` are paid on
every message an echo server answers, and neither buys a Twisted program
anything it uses:

- **Per event**: for every ready descriptor it calls
  ``twisted.python.log.callWithLogger``, which asks the selectable for its
  log prefix and pushes and pops a *legacy* logging context (two dictionary
  copies and half a dozen calls) around ``doRead``.  The context only names
  the ``system`` of lines logged through the old ``twisted.python.log`` API
  while the event is handled; tcpproto logs through :mod:`twisted.logger`,
  whose events carry their own namespace and source, and an echo server's
  answer never reads it.  That work, with the general-purpose dispatch
  around it, was half the CPU time per message (benchmarks/RESULTS.md:
  20.1 us on Twisted's epoll reactor, 9.5 us here).
- **Per turn**: ``ReactorBase.mainLoop`` calls ``runUntilCurrent`` (calls
  from threads, due timed calls, the shutdown after ``stop()``) and
  ``timeout`` (how long to wait) on every turn, inside an error handler
  entered anew each time, whether or not anything is due.  With one or two
  connections every turn handles one message, and that bookkeeping was 28%
  of the user-space instructions per message (issue 13's profile).

:class:`LeanEPollReactor` dispatches the common event -- readable, nothing
else -- straight to ``doRead``, with the same checks and error handling as
Twisted's own read-or-write dispatch; every other event (writable, hang-up,
error) goes through Twisted's own code unchanged.  The legacy log context is
still there for whoever reads it: one frame on the reactor thread's context
stack knows which descriptor's event is being handled and builds, on the
first read, the very dictionary ``callWithLogger`` would have pushed; a
thread pool's worker sees what it would on Twisted (started in an event, it
names that event's connection; started from a timed call, it sees the
context the reactor runs in).  With an application's own context tracker
installed, every event takes Twisted's dispatch instead.  Its main loop
runs ``runUntilCurrent`` and ``timeout`` only on the turns that need them (a call
from a thread is queued, a timed call was added or is due, ``stop()`` was
called) and otherwise waits until the earliest timed call, exactly as
``timeout`` would compute it.

What differs is when two rarely used things are looked at.  A selectable's
``logPrefix()`` is called when the context is first read in an event (or as
the event ends, if a thread pool kept its frame), not before every event; so
a ``logPrefix`` that raises is reported then, and a ``KeyboardInterrupt``
raised by it is raised where the context was read.  A context tracker
installed while the reactor runs
(``twisted.python.context.installContextTracker``) is taken up after the
next timed call or call from a thread, not at the next event.  Its tests run
Twisted's own reactor and transport test suites on it (startup and shutdown
triggers, stop/crash/run again, timed calls, calls from threads,
descriptors; TCP, TLS, UNIX sockets, UDP, processes), and compare it with
Twisted's reactor scenario by scenario (waits, ``stop()`` within one turn,
wake-ups from threads and signals, errors in the loop and in the
application, the legacy log context in events, timed calls, thread-pool
work and a connecting client).  Any Twisted program runs on it.

It is ``twistd tcpecho``'s default reactor: the plugin installs it when
``twistd`` is about to choose its own, that is when the operator did not
name one (``twistd --reactor=epoll tcpecho`` keeps Twisted's own); parsing
``tcpproto.tap.Options`` alone installs nothing.  Other programs can install
it with :func:`install` or ``twistd --reactor=tcpproto``, before anything
imports ``twisted.internet.reactor``.  It needs Linux (epoll).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

# The dispatch reads the epoll reactor's private state, so it lives with
# tcpproto's other uses of Twisted internals (tcpproto._twisted, entry 5).
from tcpproto._twisted import directReadEPollReactor

__all__ = ["LeanEPollReactor", "install", "installIfNoneChosen"]


if TYPE_CHECKING:
    from twisted.internet.epollreactor import EPollReactor as _DirectRead
else:
    _DirectRead = directReadEPollReactor()


class LeanEPollReactor(_DirectRead):
    """
    An epoll reactor that calls ``doRead`` directly for plain read events,
    and whose main loop does its timed-call bookkeeping only when needed.
    """


def install() -> LeanEPollReactor:
    """Install :class:`LeanEPollReactor` as the global reactor, and return it."""
    from twisted.internet.main import installReactor

    reactor = LeanEPollReactor()  # type: ignore[no-untyped-call]
    installReactor(reactor)
    return reactor


def installIfNoneChosen() -> bool:
    """
    Install the lean reactor unless a reactor is installed already (the
    operator chose one with ``twistd --reactor``) or epoll is missing.

    :return: whether it was installed.
    """
    if "twisted.internet.reactor" in sys.modules:
        return False
    try:
        install()
    except Exception:  # no epoll here, or installed meanwhile: keep the default
        return False
    return True
