"""
The client: a byte pipe between local input/output and a TCP connection.

The tutorial's client does ``connect``, ``send``, ``recv(1024)``, ``close``: it
reads at most one buffer of the answer and can block forever on either side.
Here both directions flow at once, each with flow control, and the end of the
input becomes a half-close, so the server can finish answering:

- :class:`ClientProtocol` is the network side: what the server sends goes to
  an output consumer (standard output, or a buffer), and the socket stops
  being read while that output is full.
- :class:`InputProtocol` is the local side: what it reads goes to the
  connection, and it stops reading while the socket's send buffer is full.
  The end of its input half-closes the connection (our FIN; over TLS our
  ``close_notify``, then FIN); we keep reading until the server closes too.
  A server may also end its side first and read on, as TCP allows: we then
  send the rest of our input before closing, and if it had in fact closed
  the whole connection, :class:`InputNotSent` says that input was lost.
- :func:`exchange` is the one-shot form for other Twisted code: send some
  bytes, half-close, and get back everything the server sent.
- :func:`main` is the ``tcpecho-client`` command.  At a terminal it says on
  standard error where it connected, how to finish (Ctrl-D) and when the
  server ends its side or closes (``--quiet`` turns that off), and starts a
  new line on the screen after output that does not end one; piped input
  and output pass byte for byte.

Run it as ``tcpecho-client HOST PORT`` or ``python -m tcpproto.client``.
"""

from __future__ import annotations

from tcpproto._clientcli import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    EXIT_CONNECT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    buildParser,
    main,
    parseTarget,
    withTimeout,
)
from tcpproto._clientprotocols import ClientProtocol, InputNotSent, InputProtocol, exchange
from tcpproto._twisted import STDIN_READ_SIZE

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "EXIT_CONNECT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "STDIN_READ_SIZE",
    "ClientProtocol",
    "InputNotSent",
    "InputProtocol",
    "buildParser",
    "exchange",
    "main",
    "parseTarget",
    "withTimeout",
]

if __name__ == "__main__":
    main()
