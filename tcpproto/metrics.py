"""
Deprecated since tcpproto 0.2 (now private: ``tcpproto._metrics``): use twistd
tcpecho --metrics (tcpproto.tap.makeService).
"""

from tcpproto._deprecate import deprecatedModule

deprecatedModule(__name__)
