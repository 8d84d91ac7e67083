"""
Deprecated: use ssl: endpoints with twistd tcpecho --client-ca, or tcpecho-client --cafile

This module became private in tcpproto 0.2; its names still work here, each
with a DeprecationWarning, for one release.
"""

from tcpproto import _tls as _source
from tcpproto._deprecate import reexportDeprecated

reexportDeprecated(
    __name__,
    _source,
    [
        "HANDSHAKE_TIMEOUT",
        "HandshakeGate",
        "HandshakeGateFactory",
        "RequireClientCertificate",
        "TLSListeningReactor",
        "clientEndpoint",
        "failureReason",
        "loadCertificates",
        "splitDescription",
        "trustRootFromFile",
    ],
    "use ssl: endpoints with twistd tcpecho --client-ca, or tcpecho-client --cafile",
)
