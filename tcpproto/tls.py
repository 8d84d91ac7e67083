"""
Deprecated since tcpproto 0.2 (now private: ``tcpproto._tls``): use ssl:
endpoints with twistd tcpecho --client-ca, or tcpecho-client --cafile.
"""

from tcpproto._deprecate import deprecatedModule

deprecatedModule(__name__)
