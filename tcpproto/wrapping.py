"""
Deprecated: no replacement: an internal helper

This module became private in tcpproto 0.2; its names still work here, each
with a DeprecationWarning, for one release.
"""

from tcpproto import _wrapping as _source
from tcpproto._deprecate import reexportDeprecated

reexportDeprecated(
    __name__,
    _source,
    ["FactoryWrapper", "LayerProtocol"],
    "no replacement: an internal helper",
)
