"""
Deprecated: use twistd tcpecho --metrics (tcpproto.tap.makeService)

This module became private in tcpproto 0.2; its names still work here, each
with a DeprecationWarning, for one release.
"""

from tcpproto import _metrics as _source
from tcpproto._deprecate import reexportDeprecated

reexportDeprecated(
    __name__,
    _source,
    [
        "DATAGRAM_REASONS",
        "STREAM_REASONS",
        "MetricsResource",
        "MetricsService",
        "ServerCollector",
        "listenersOf",
        "makeRegistry",
        "makeSite",
        "metricsService",
    ],
    "use twistd tcpecho --metrics (tcpproto.tap.makeService)",
)
