"""
Deprecated: build the server with tcpproto.tap.makeService

This module became private in tcpproto 0.2; its names still work here, each
with a DeprecationWarning, for one release.
"""

from tcpproto import _services as _source
from tcpproto._deprecate import reexportDeprecated

reexportDeprecated(
    __name__,
    _source,
    [
        "DEFAULT_SHUTDOWN_TIMEOUT",
        "ListenerService",
        "ServerService",
        "announceListening",
        "cannotListen",
        "raiseFileLimit",
    ],
    "build the server with tcpproto.tap.makeService",
)
