"""
Deprecated: use the proxy: endpoint string prefix (proxy:tcp:PORT).

This module became private in tcpproto 0.2; its names still work here, each
with a DeprecationWarning, for one release.
"""

from tcpproto import _proxy as _source
from tcpproto._deprecate import reexportDeprecated

reexportDeprecated(
    __name__,
    _source,
    [
        "BAD_PROXY_HEADER",
        "HEADER_TIMEOUT",
        "PREFIX",
        "PROXY_HEADER_TIMEOUT",
        "ProxyProtocolWrapper",
        "ProxyServerEndpoint",
        "ProxyWrappingFactory",
        "serverFromString",
    ],
    "use the proxy: endpoint string prefix (proxy:tcp:PORT)",
)
