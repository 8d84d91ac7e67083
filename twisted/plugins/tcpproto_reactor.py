"""``twistd --reactor=tcpproto``: epoll without the per-event legacy log context."""

from twisted.application.reactors import Reactor

tcpproto = Reactor(
    "tcpproto",
    "tcpproto.reactor",
    "epoll, calling ready descriptors without the legacy per-event log context (Linux)",
)
