"""
Experiment (issue 13): what each part of ``tcpproto.EchoProtocol``'s
per-message path costs, by removing it (count with
``benchmarks/instructions.py``).

    python benchmarks/experiments/protocol_parts.py VARIANT PORT

``EchoFactory`` (or a plain ``Factory`` with ``plain``) on the lean reactor,
with ``ServerConnection.send`` / ``EchoProtocol.dataReceived`` replaced:

- ``current``: as shipped;
- ``inline``: the write-through checks moved into ``send`` (one Python call
  less per message; it would put private Twisted attributes in
  ``tcpproto.connection``, which the architecture keeps in
  ``tcpproto._twisted``).  For the measure only, it also leaves out what the
  ping-pong never reaches: the pause on a partial send, the TLS branch;
- ``nocount``: ``inline`` without the two byte counters;
- ``minimal``: ``send`` is ``sock.send(data)`` and nothing else (no
  counters, no checks: not a correct echo, a measure);
- ``plain``, ``plain-minimal``: the same under ``Factory.forProtocol``
  (no idle timer or lifetime timer pending: Twisted's wait is unbounded).

benchmarks/RESULTS.md has what each measured.
"""

from __future__ import annotations

import sys
from typing import Any

from tcpproto.reactor import install

reactor = install()

from twisted.internet.protocol import Factory  # noqa: E402

from tcpproto import EchoFactory, EchoProtocol  # noqa: E402
from tcpproto.connection import ServerConnection  # noqa: E402


def sendInline(self: Any, data: bytes) -> None:
    self.bytesOut += len(data)
    _sendInline(self, data)


def _sendInline(self: Any, data: bytes) -> None:
    sock = self._sock
    if sock is not None:
        t = self._writeBase
        if t.connected and not (t._tempDataLen or t.dataBuffer or t._writeDisconnected):
            try:
                sent = sock.send(data)
            except OSError:
                sent = 0
            if sent == len(data):
                return
            t.write(data[sent:])
            return
    self.transport.write(data)


def dataReceivedUncounted(self: Any, data: bytes) -> None:
    if self.discarding:
        self.discard(data)
        return
    self.send(data)


def sendMinimal(self: Any, data: bytes) -> None:
    self._sock.send(data)


VARIANTS: dict[str, tuple[Any, Any]] = {
    "current": (None, None),
    "inline": (sendInline, None),
    "nocount": (_sendInline, dataReceivedUncounted),
    "minimal": (sendMinimal, dataReceivedUncounted),
}


def main(variant: str, port: int) -> None:
    plain = variant.startswith("plain")
    name = variant.removeprefix("plain-") if plain and variant != "plain" else "current"
    if not plain:
        name = variant
    if name not in VARIANTS:
        sys.exit(f"protocol_parts.py: unknown variant {variant!r}")
    send, dataReceived = VARIANTS[name]
    if send is not None:
        ServerConnection.send = send  # type: ignore[method-assign]
    if dataReceived is not None:
        EchoProtocol.dataReceived = dataReceived  # type: ignore[method-assign]
    factory = Factory.forProtocol(EchoProtocol) if plain else EchoFactory()
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
