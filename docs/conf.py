"""Sphinx configuration for the tcpproto documentation."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from tcpproto import __version__

project = "tcpproto"
author = "the tcpproto developers"
copyright = "2026, the tcpproto developers"
release = version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
html_theme = "furo"
html_title = "tcpproto"
exclude_patterns = ["_build", "examples", "traces"]
