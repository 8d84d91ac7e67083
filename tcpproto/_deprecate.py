"""
Deprecated re-exports for modules that became private (for one release).

Each deprecated module (``tcpproto.haproxy``...) is one call to
:func:`deprecatedModule`; :data:`MOVED` says what it re-exports, from where,
and what to use instead.
"""

from __future__ import annotations

import importlib
import sys

from incremental import Version
from twisted.python.deprecate import deprecatedModuleAttribute

#: The release that made the modules private.
PRIVATE_SINCE = Version("tcpproto", 0, 2, 0)

#: Deprecated module -> (the private module whose ``__all__`` it re-exports, what to use instead).
MOVED: dict[str, tuple[str, str]] = {
    "tcpproto.haproxy": (
        "tcpproto._proxy",
        "use the proxy: endpoint string prefix (proxy:tcp:PORT)",
    ),
    "tcpproto.reuseport": (
        "tcpproto._reuseport",
        "use the reuseport: endpoint string prefix (reuseport:tcp:PORT)",
    ),
    "tcpproto.service": (
        "tcpproto._services",
        "build the server with tcpproto.tap.makeService",
    ),
    "tcpproto.metrics": (
        "tcpproto._metrics",
        "use twistd tcpecho --metrics (tcpproto.tap.makeService)",
    ),
    "tcpproto.stats": (
        "tcpproto._stats",
        "read ServerFactory.stats",
    ),
    "tcpproto.ratelimit": (
        "tcpproto._ratelimit",
        "no replacement: an internal helper",
    ),
    "tcpproto.wrapping": (
        "tcpproto._wrapping",
        "no replacement: an internal helper",
    ),
    "tcpproto.tls": (
        "tcpproto._tls",
        "use ssl: endpoints with twistd tcpecho --client-ca, or tcpecho-client --cafile",
    ),
}


def deprecatedModule(moduleName: str) -> None:
    """Give the deprecated module ``moduleName`` its names, each deprecated on access."""
    sourceName, hint = MOVED[moduleName]
    source = importlib.import_module(sourceName)
    module = sys.modules[moduleName]
    for name in source.__all__:
        setattr(module, name, getattr(source, name))
        deprecatedModuleAttribute(PRIVATE_SINCE, hint, moduleName, name)
