"""
Deprecated since tcpproto 0.2 (now private: ``tcpproto._stats``): read
ServerFactory.stats.
"""

from tcpproto._deprecate import deprecatedModule

deprecatedModule(__name__)
