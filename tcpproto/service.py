"""
Deprecated since tcpproto 0.2 (now private: ``tcpproto._services``): build the
server with tcpproto.tap.makeService.
"""

from tcpproto._deprecate import deprecatedModule

deprecatedModule(__name__)
