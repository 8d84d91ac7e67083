"""
Experiment (issue 13): the steps from issue 9's reactor to the lean main loop.

Each level is a reactor class; run any Twisted server on one:

    python benchmarks/experiments/lean_loop.py LEVEL -- twistd ARGS...

- ``dispatch``: issue 9's reactor: Twisted's loop, plain reads straight to
  ``doRead`` (no legacy log context per event);
- ``loop``: + ``runUntilCurrent``/``timeout`` only on the turns that need them;
- ``inline``: + the poll dispatch inlined into the loop: what
  ``tcpproto.reactor.LeanEPollReactor`` is now;
- ``read``: + a plain TCP connection's ``doRead``/``_dataReceived`` inlined
  (not adopted: 1.5% fewer instructions per message, for a dependence on
  two more private methods);
- ``readinto``: ``read``, receiving into one reused buffer and copying what
  came into a ``bytes`` (dataReceived may keep it) (not adopted either).

benchmarks/RESULTS.md has what each level measured (callgrind instructions
per message, and server CPU per message).
"""

from __future__ import annotations

import errno
import sys
from select import EPOLLIN
from typing import Any

from twisted.internet import base, tcp
from twisted.internet.epollreactor import EPollReactor
from twisted.python import log

from tcpproto._twisted import directReadEPollReactor
from tcpproto.reactor import LeanEPollReactor

TOP_HANDLER = base._topHandler
_LONGEST = 2147483  # as ReactorBase.timeout: epoll_wait's int milliseconds


class DispatchReactor(directReadEPollReactor()):  # type: ignore[misc]
    """
    Level ``dispatch``: issue 9's reactor: Twisted's own main loop, plain
    reads straight to ``doRead`` (tcpproto's dispatch, ``doPoll``).
    """

    mainLoop = EPollReactor.mainLoop


TCP_DO_READ = tcp.Connection.doRead
TCP_DATA_RECEIVED = tcp.Connection._dataReceived


class LoopReactor(DispatchReactor):
    """
    Level ``loop``: runUntilCurrent/timeout only when something is due, each
    turn then calling ``doIteration`` (``doPoll``).

    Its subclasses inline the poll and read the socket of a plain TCP
    connection themselves (``reads``): ``"recv"``, or ``"into"`` one reused
    buffer copied to a ``bytes`` (``dataReceived`` may keep what it gets).
    """

    reads: str | None = None

    def mainLoop(self) -> None:
        while self._started:
            # Twisted enters _topHandler once per iteration; entering it once
            # per run of the inner loop logs and survives the same errors.
            with TOP_HANDLER:
                self._iterate()
        base._log.info("Main loop terminated.")

    def _iterate(self) -> None:
        seconds = self.seconds
        reads = self.reads
        poll = self._poller.poll
        selectables = self._selectables
        general = self._doReadOrWrite
        plain: dict[type, bool] = {}
        buffer = bytearray(1 << 16)
        view = memoryview(buffer)
        from twisted.internet import main

        LOST, DONE = main.CONNECTION_LOST, main.CONNECTION_DONE
        while self._started:
            if (
                self.threadCallQueue
                or self._newTimedCalls
                or self._justStopped
                or self._cancellations > 50
            ):
                self.runUntilCurrent()
                t = self.running and self.timeout()
            else:
                pending = self._pendingTimedCalls
                if pending:
                    delay = pending[0].time - seconds()
                    if delay <= 0:
                        self.runUntilCurrent()
                        t = self.running and self.timeout()
                    else:
                        t = self.running and (delay if delay < _LONGEST else _LONGEST)
                else:
                    t = self.running and None
            if reads is None:
                self.doIteration(t)
                continue
            try:
                events = poll(-1 if t is None else t, len(selectables))
            except OSError as err:
                if err.errno == errno.EINTR:
                    continue
                raise
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is None:
                    continue
                if event == EPOLLIN and selectable.fileno() != -1:
                    kind = type(selectable)
                    fast = plain.get(kind)
                    if fast is None:
                        fast = plain[kind] = (
                            kind.doRead is TCP_DO_READ and kind._dataReceived is TCP_DATA_RECEIVED
                        )
                    try:
                        if fast:
                            try:
                                if reads == "into":
                                    n = selectable.socket.recv_into(buffer)
                                    data = view[:n].tobytes()
                                else:
                                    data = selectable.socket.recv(selectable.bufferSize)
                            except OSError as se:
                                why = None if se.args[0] == errno.EAGAIN else LOST
                            else:
                                if data:
                                    selectable.protocol.dataReceived(data)
                                    continue
                                why = DONE
                        else:
                            why = selectable.doRead()
                    except BaseException:
                        why = sys.exc_info()[1]
                        log.err()
                    if why:
                        self._disconnectSelectable(selectable, why, True)
                else:
                    general(selectable, fd, event)


class ReadReactor(LoopReactor):
    """Level ``read``: + plain TCP connections read without doRead/_dataReceived."""

    reads = "recv"


class ReadIntoReactor(LoopReactor):
    """Level ``readinto``: ``read``, receiving into one reused buffer (then copied to bytes)."""

    reads = "into"


LEVELS: dict[str, Any] = {
    "dispatch": DispatchReactor,
    "loop": LoopReactor,
    "inline": LeanEPollReactor,
    "read": ReadReactor,
    "readinto": ReadIntoReactor,
}


def inlineSend() -> None:
    """
    ``--inline-send``: ``ServerConnection.send`` with the write-through inline
    again (as before issue 9 moved it into ``tcpproto._twisted.writeThrough``),
    to measure what that call costs per message.  Experiment only.
    """
    from tcpproto.connection import ServerConnection

    original = ServerConnection.send

    def send(self: Any, data: bytes) -> None:
        sock = self._sock
        if sock is not None:
            t = self.transport
            if (
                t.connected
                and not t._tempDataLen
                and not t.dataBuffer
                and not t._writeDisconnected
            ):
                n = len(data)
                self.bytesOut += n
                try:
                    sent = sock.send(data)
                except OSError:
                    sent = 0
                if sent == n:
                    return
                self.bytesOut -= n
                data = data[sent:]
        original(self, data)

    ServerConnection.send = send  # type: ignore[method-assign]


if __name__ == "__main__":
    from twisted.internet.main import installReactor

    if "--inline-send" in sys.argv:
        sys.argv.remove("--inline-send")
        inlineSend()

    level = sys.argv[1]
    argv = sys.argv[sys.argv.index("--") + 1 :]
    installReactor(LEVELS[level]())
    from twisted.scripts.twistd import run

    sys.argv = argv
    run()
