"""
Deprecated since tcpproto 0.2 (now private: ``tcpproto._reuseport``): use the
reuseport: endpoint string prefix (reuseport:tcp:PORT).
"""

from tcpproto._deprecate import deprecatedModule

deprecatedModule(__name__)
