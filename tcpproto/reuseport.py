"""
Deprecated: use the reuseport: endpoint string prefix (reuseport:tcp:PORT).

This module became private in tcpproto 0.2; its names still work here, each
with a DeprecationWarning, for one release.
"""

from tcpproto import _reuseport as _source
from tcpproto._deprecate import reexportDeprecated

reexportDeprecated(
    __name__,
    _source,
    [
        "REUSABLE_TYPES",
        "ReusePortReactor",
        "ReusePortServerParser",
        "ReusePortTCP4ServerEndpoint",
        "ReusePortTCP6ServerEndpoint",
        "listenTCPReusePort",
        "reusePortAvailable",
        "reusePortServerFromString",
        "unparseEndpoint",
    ],
    "use the reuseport: endpoint string prefix (reuseport:tcp:PORT)",
)
