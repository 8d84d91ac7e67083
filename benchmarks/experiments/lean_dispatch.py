"""
An experiment, not a supported way to run tcpecho: what Twisted's per-event
log context costs the echo server.

Runs ``twistd -n tcpecho --listen tcp:PORT:interface=127.0.0.1`` (all defaults)
on an epoll reactor whose ``doPoll`` calls each ready descriptor directly
instead of through ``twisted.python.log.callWithLogger``, which pushes and pops
a log context (two dict copies and a handful of calls) around every read
event.  Everything else, tcpproto included, is unchanged.  Compare::

    python benchmarks/run.py --only speed --servers uvloop,tcpecho \\
        lean='{python} benchmarks/experiments/lean_dispatch.py {port}'

(``{python}`` is not substituted in extra servers: write the interpreter's path.)
Usage: lean_dispatch.py PORT
"""

import errno
import sys

from twisted.internet import epollreactor


def doPoll(self, timeout):  # type: ignore[no-untyped-def]
    if timeout is None:
        timeout = -1
    try:
        events = self._poller.poll(timeout, len(self._selectables))
    except OSError as err:
        if err.errno == errno.EINTR:
            return
        raise
    selectables = self._selectables
    handle = self._doReadOrWrite
    for fd, event in events:
        selectable = selectables.get(fd)
        if selectable is not None:
            handle(selectable, fd, event)


epollreactor.EPollReactor.doPoll = doPoll  # type: ignore[method-assign]
epollreactor.EPollReactor.doIteration = doPoll  # type: ignore[method-assign]
epollreactor.install()

from twisted.scripts.twistd import run  # noqa: E402

sys.argv = [
    "twistd",
    "-n",
    "--pidfile=",
    "tcpecho",
    "--listen",
    f"tcp:{sys.argv[1]}:interface=127.0.0.1",
]
run()
