"""Sphinx configuration for the tcpproto documentation."""

from __future__ import annotations

import os
import re
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
# Every cross-reference must resolve (sphinx-build -W makes a dead one an error).
nitpicky = True
nitpick_ignore: list[tuple[str, str]] = [
    # prometheus_client publishes no Sphinx inventory (its docs are not made
    # with Sphinx), so its classes in tcpproto.metrics' type hints cannot link.
    ("py:class", "prometheus_client.registry.CollectorRegistry"),
    ("py:class", "CollectorRegistry"),
]

# Twisted names link to Twisted's API documentation.  Its objects.inv is made at
# each build from the installed Twisted (docs/_ext/twisted_inventory.py, with
# sphobjinv), so the build needs no network and matches the Twisted in use.
sys.path.insert(0, os.path.abspath("_ext"))
import twisted_inventory  # noqa: E402

# Python's own inventory comes from the Debian package python3-doc when it is
# installed (.ci/system-deps.sh installs it); elsewhere (Read the Docs) it is
# fetched.
_PYTHON_INV = "/usr/share/doc/python3/html/objects.inv"
intersphinx_mapping: dict[str, tuple[str, str | None]] = {
    "twisted": (
        twisted_inventory.BASE,
        twisted_inventory.ensure(os.path.abspath(os.path.join("_build", "twisted-objects.inv"))),
    ),
    "python": (
        "https://docs.python.org/3/",
        _PYTHON_INV if os.path.exists(_PYTHON_INV) else None,
    ),
}

html_theme = "furo"
html_title = "tcpproto"
exclude_patterns = ["_build", "_ext", "_templates", "examples", "locales", "man", "traces"]

# -- The Simplified Chinese edition ---------------------------------------------
# sphinx-build -D language=zh_CN uses the catalogues in locales/zh_CN/LC_MESSAGES/
# (one per page: gettext_compact = False), kept with sphinx-intl; .ci/docs.sh
# builds both editions and fails on an untranslated or fuzzy guide message.
locale_dirs = ["locales/"]
gettext_compact = False
gettext_location = False  # no source line numbers in the catalogues: less churn

# The switch between the editions (templates/sidebar/language.html).  Locally
# and in CI the editions are built side by side (_build/html/en, _build/html/zh_CN);
# on Read the Docs each is a project of its own, the Chinese one a translation of
# the English one, served at /<language>/<version>/.
templates_path = ["_templates"]
html_sidebars = {
    "**": [
        "sidebar/brand.html",
        "sidebar/language.html",
        "sidebar/search.html",
        "sidebar/scroll-start.html",
        "sidebar/navigation.html",
        "sidebar/scroll-end.html",
    ]
}
EDITIONS = [("en", "English", "en"), ("zh_CN", "简体中文", "zh-cn")]


def _languageLinks(app, pagename, templatename, context, doctree):  # type: ignore[no-untyped-def]
    here = app.config.language or "en"
    if os.environ.get("READTHEDOCS"):
        version = os.environ.get("READTHEDOCS_VERSION", "latest")
        roots = {code: f"/{slug}/{version}/" for code, _, slug in EDITIONS}
    else:
        up = "../" * (pagename.count("/") + 1)
        roots = {code: f"{up}{code}/" for code, _, _ in EDITIONS}
    context["editions"] = [
        (label, roots[code] + pagename + ".html", code == here) for code, label, _ in EDITIONS
    ]


# Type hints autodoc cannot turn into resolvable targets, resolved here:
# - a zope.interface interface is written as its repr,
#   "<InterfaceClass twisted.internet.interfaces.IProtocol>";
# - a union with one ("... | None") stays a single target;
# - a name imported only for type checking (``if TYPE_CHECKING:``) stays bare
#   ("IReactorTime"): it is looked up in the imports of the module it is in.
# Each part is then resolved by the Python domain or through the inventories.
# Anything still unresolved stays an error (nitpicky, -W).
_INTERFACE_REPR = re.compile(r"<InterfaceClass ([\w.]+)>")
_IMPORTS_CACHE: dict[str, dict[str, str]] = {}


def _moduleImports(modname: str) -> dict[str, str]:
    """Local name -> full dotted name, for every ``from X import Y`` in ``modname``."""
    if modname not in _IMPORTS_CACHE:
        import ast
        import importlib.util

        found: dict[str, str] = {}
        spec = importlib.util.find_spec(modname) if modname else None
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            with open(spec.origin, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    for alias in node.names:
                        found[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        _IMPORTS_CACHE[modname] = found
    return _IMPORTS_CACHE[modname]


def _resolveTypeHint(app, env, node, contnode):  # type: ignore[no-untyped-def]
    from docutils import nodes
    from sphinx.ext import intersphinx

    target = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    parts = [p.strip() for p in _INTERFACE_REPR.sub(r"\1", target).split("|")]
    imports = _moduleImports(node.get("py:module") or "")
    parts = [imports.get(p, p) if "." not in p else p for p in parts]
    if parts == [target]:
        return None
    result = nodes.inline()
    for i, part in enumerate(parts):
        if i:
            result += nodes.Text(" | ")
        if part == "None":
            result += nodes.literal(text="None")
            continue
        ref = node.deepcopy()
        ref["reftarget"] = part
        text = nodes.literal(text=part.rpartition(".")[2])
        resolved = env.domains["py"].resolve_xref(
            env, node.get("refdoc", ""), app.builder, node["reftype"], part, ref, text
        ) or intersphinx.missing_reference(app, env, ref, text)
        if resolved is None:
            return None
        result += resolved
    return result


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("html-page-context", _languageLinks)
    app.connect("missing-reference", _resolveTypeHint)
