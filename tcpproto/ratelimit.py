"""
Deprecated since tcpproto 0.2 (now private: ``tcpproto._ratelimit``): no
replacement: an internal helper.
"""

from tcpproto._deprecate import deprecatedModule

deprecatedModule(__name__)
