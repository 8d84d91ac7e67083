"""
The ``tcpproto`` reactor: Twisted's epoll reactor, minus one layer per event.

For every ready descriptor, :class:`~twisted.internet.epollreactor.EPollReactor`
calls ``twisted.python.log.callWithLogger``, which asks the selectable for its
log prefix and pushes and pops a *legacy* logging context (two dictionary
copies and half a dozen calls) around ``doRead``.  The context only names the
``system`` of lines logged through the old ``twisted.python.log`` API while the
event is handled; tcpproto logs through :mod:`twisted.logger`, whose events
carry their own namespace and source.  For an echo server that work (with the
general-purpose dispatch around it) was half the CPU time per message
(benchmarks/RESULTS.md: 20.1 us per message on Twisted's epoll reactor, 9.5 us
on this one).

:class:`LeanEPollReactor` dispatches the common event -- readable, nothing
else -- straight to ``doRead``, with the same error handling as Twisted's
``_doReadOrWrite``; every other event (writable, hang-up, error) goes through
Twisted's own code unchanged.  Nothing else differs, so any Twisted program
runs on it.

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
    """An epoll reactor that calls ``doRead`` directly for plain read events."""


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
