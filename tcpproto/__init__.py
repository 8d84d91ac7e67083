"""
tcpproto: TCP echo and "thank you" servers and a client, done the Twisted way.

The public names, importable from here:

- :class:`EchoFactory`, :class:`EchoProtocol`, :class:`LineEchoProtocol`: RFC 862 echo.
- :class:`ThankYouFactory`, :class:`ThankYouProtocol`: the tutorial's acknowledgement server.
- :class:`ConnectionLimits`: admission control shared by listeners.
- :class:`~tcpproto.client.ClientProtocol`, :class:`~tcpproto.client.InputProtocol`,
  :func:`~tcpproto.client.exchange`: the client side.
"""

# The client protocols come from their private module, not tcpproto.client,
# so that ``python -m tcpproto.client`` runs a module not imported yet.
from tcpproto._clientprotocols import ClientProtocol, InputProtocol, exchange
from tcpproto._version import __version__
from tcpproto.connection import ServerConnection, ServerFactory
from tcpproto.echo import EchoFactory, EchoProtocol, LineEchoProtocol
from tcpproto.limits import ConnectionLimits
from tcpproto.thankyou import ThankYouFactory, ThankYouProtocol

__all__ = [
    "ClientProtocol",
    "ConnectionLimits",
    "EchoFactory",
    "EchoProtocol",
    "InputProtocol",
    "LineEchoProtocol",
    "ServerConnection",
    "ServerFactory",
    "ThankYouFactory",
    "ThankYouProtocol",
    "__version__",
    "exchange",
]
