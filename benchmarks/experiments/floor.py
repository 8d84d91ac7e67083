"""
Experiment (issue 13): the fewest instructions per message an echo can run in
CPython, measured with ``benchmarks/instructions.py``.

    python benchmarks/experiments/floor.py MODE PORT

- ``python``: no framework at all: one ``epoll.poll``, a dictionary lookup,
  ``recv`` and ``send`` per message, and nothing else (no half-close, no flow
  control, a reset the only error handled: not a server, a floor);
- ``twisted``: Twisted's read path on ``tcpproto``'s lean reactor, with a
  protocol whose ``dataReceived`` *is* the socket's ``send`` (a bound C
  method set on the instance): the loop, ``tcp.Connection.doRead`` and
  ``_dataReceived``, and nothing of the protocol's own (no counters, no
  flow control, no write-through bookkeeping; unsafe as an echo);
- ``tcpproto``: ``tcpproto.EchoProtocol`` under a plain
  ``Factory.forProtocol``: the protocol alone, without the hooks our factory
  adds (limits, idle timer, statistics, logs); ``factory``: under
  ``tcpproto.EchoFactory`` (everything but ``twistd``'s logging);
- ``uvloop``: what a compiled loop and transport would leave: uvloop's
  loop and transport, under a protocol doing ``tcpproto.EchoProtocol``'s
  per-message bookkeeping in Python (both byte counters, the
  lingering-close check, ``send``'s checks) before ``transport.write``.

Compare with ``twistd tcpecho`` (everything on) and uvloop:

    python benchmarks/instructions.py tcpecho uvloop \\
        floor_python='{python} benchmarks/experiments/floor.py python {port}' \\
        floor_twisted='{python} benchmarks/experiments/floor.py twisted {port}' \\
        floor_tcpproto='{python} benchmarks/experiments/floor.py tcpproto {port}' \\
        floor_uvloop='{python} benchmarks/experiments/floor.py uvloop {port}'

benchmarks/RESULTS.md has what each measured.
"""

from __future__ import annotations

import select
import socket
import sys


def pythonFloor(port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN)
    socks: dict[int, socket.socket] = {}
    lfd = listener.fileno()
    poll = ep.poll
    while True:
        for fd, _event in poll():
            if fd == lfd:
                conn, _ = listener.accept()
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socks[conn.fileno()] = conn
                ep.register(conn.fileno(), select.EPOLLIN)
                continue
            s = socks[fd]
            try:
                data = s.recv(65536)
                if data:
                    s.send(data)
                    continue
            except OSError:  # a reset: the only error handling there is
                pass
            ep.unregister(fd)
            del socks[fd]
            s.close()


def twistedFloor(port: int, mode: str) -> None:
    from tcpproto.reactor import install

    reactor = install()
    from twisted.internet.protocol import Factory, Protocol

    from tcpproto import EchoProtocol

    class Floor(Protocol):
        def connectionMade(self) -> None:
            sock = self.transport.socket  # type: ignore[union-attr]
            self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
            self.dataReceived = sock.send  # type: ignore[assignment]

    from tcpproto import EchoFactory

    factory = {
        "twisted": lambda: Factory.forProtocol(Floor),
        "tcpproto": lambda: Factory.forProtocol(EchoProtocol),
        "factory": EchoFactory,
    }[mode]()
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    reactor.run()


def uvloopBookkeeping(port: int) -> None:
    import asyncio

    import uvloop

    class Counted(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.bytesIn = self.bytesOut = 0
            self.discarding = self.paused = False

        def data_received(self, data: bytes) -> None:
            self.bytesIn += len(data)
            if self.discarding:
                return
            self.send(data)

        def send(self, data: bytes) -> None:
            self.bytesOut += len(data)
            transport = self.transport
            if transport is not None and not self.paused:
                transport.write(data)  # type: ignore[attr-defined]

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Counted, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "python":
        pythonFloor(port)
    elif mode == "uvloop":
        uvloopBookkeeping(port)
    elif mode in ("twisted", "tcpproto", "factory"):
        twistedFloor(port, mode)
    else:
        sys.exit(f"floor.py: unknown mode {mode!r} (python, twisted, tcpproto, factory, uvloop)")
