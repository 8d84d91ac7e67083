"""
Deprecated re-exports for modules that became private (for one release).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from incremental import Version
from twisted.python.deprecate import deprecatedModuleAttribute

#: The release that made the modules private.
PRIVATE_SINCE = Version("tcpproto", 0, 2, 0)


def reexportDeprecated(moduleName: str, source: object, names: Iterable[str], hint: str) -> None:
    """
    Give module ``moduleName`` the ``names`` of ``source``, each deprecated
    with ``hint`` (what to use instead) on first access.
    """
    module = sys.modules[moduleName]
    for name in names:
        setattr(module, name, getattr(source, name))
        deprecatedModuleAttribute(PRIVATE_SINCE, hint, moduleName, name)
