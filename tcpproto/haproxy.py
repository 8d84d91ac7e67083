"""
Deprecated since tcpproto 0.2 (now private: ``tcpproto._proxy``): use the
proxy: endpoint string prefix (proxy:tcp:PORT).
"""

from tcpproto._deprecate import deprecatedModule

deprecatedModule(__name__)
