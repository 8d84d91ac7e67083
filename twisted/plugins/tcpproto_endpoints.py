"""
Endpoint string prefixes from tcpproto, for any Twisted program or twistd plugin:

- ``reuseport:`` (``reuseport:tcp:7788``): listen with ``SO_REUSEPORT``;
- ``proxy:`` (``proxy:tcp:7788``): read a PROXY header (v1 or v2) first, with
  tcpproto's half-close-aware wrapper (Twisted's own is ``haproxy:``).
"""

from tcpproto._proxy import ProxyServerParser
from tcpproto._reuseport import ReusePortServerParser

reuseport = ReusePortServerParser()
proxy = ProxyServerParser()
