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
# Nothing is ignored: a target that cannot resolve is fixed where it is written.
# (If one ever must be, list it here with the reason it cannot resolve.)
nitpick_ignore: list[tuple[str, str]] = []

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
# docs/man/ holds the client's page (in the HTML docs and its man page) and
# the man builder's conf.py, which is not a page.
exclude_patterns = ["_build", "_ext", "_templates", "examples", "locales", "traces"]

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
#: (Sphinx language, label, Read the Docs URL slug, HTML hreflang) of each edition.
EDITIONS = [("en", "English", "en", "en"), ("zh_CN", "简体中文", "zh-cn", "zh-CN")]


def _languageLinks(app, pagename, templatename, context, doctree):  # type: ignore[no-untyped-def]
    here = app.config.language or "en"
    if os.environ.get("READTHEDOCS"):
        version = os.environ.get("READTHEDOCS_VERSION", "latest")
        roots = {code: f"/{slug}/{version}/" for code, _, slug, _ in EDITIONS}
    else:
        up = "../" * (pagename.count("/") + 1)
        roots = {code: f"{up}{code}/" for code, _, _, _ in EDITIONS}
    context["editions"] = [
        (label, roots[code] + pagename + ".html", code == here, hreflang)
        for code, label, _, hreflang in EDITIONS
    ]


# Type hints autodoc cannot turn into resolvable targets, resolved here:
# - a zope.interface interface is written as its repr,
#   "<InterfaceClass twisted.internet.interfaces.IProtocol>";
# - a union with one ("... | None") stays a single target;
# - a name imported only for type checking (``if TYPE_CHECKING:``) stays as
#   written ("IReactorTime", "usage.UsageError"): it is looked up in the
#   imports of the module it is documented in, then of the module that
#   defines the class it belongs to (a re-exported class);
# - a type alias ("Network = IPv4Network | IPv6Network") is shown as what it
#   stands for.
# Each part is then resolved by the Python domain or through the inventories.
# Anything still unresolved stays an error (nitpicky, -W).
_INTERFACE_REPR = re.compile(r"<InterfaceClass ([\w.]+)>")
_IMPORTS_CACHE: dict[str, dict[str, str]] = {}


def _moduleImports(modname: str) -> dict[str, str]:
    """Local name -> full dotted name, for every import in ``modname``."""
    if modname not in _IMPORTS_CACHE:
        import ast
        import importlib.util

        found: dict[str, str] = {}
        try:
            spec = importlib.util.find_spec(modname) if modname else None
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            with open(spec.origin, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    for alias in node.names:
                        found[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.asname:
                            found[alias.asname] = alias.name
        _IMPORTS_CACHE[modname] = found
    return _IMPORTS_CACHE[modname]


def _definingModule(modname: str, classname: str) -> str:
    """The module that defines ``modname.classname`` (it may be re-exported)."""
    import importlib

    try:
        obj = importlib.import_module(modname)
        for part in classname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        return ""
    return getattr(obj, "__module__", "") or ""


def _qualify(name: str, node) -> str:  # type: ignore[no-untyped-def]
    """``name`` as a full dotted name, through the imports that wrote it."""
    head, dot, rest = name.partition(".")
    modname = node.get("py:module") or ""
    scopes = [modname]
    if node.get("py:class"):
        scopes.append(_definingModule(modname, node["py:class"]))
    for scope in scopes:
        source = _moduleImports(scope).get(head)
        if source is not None:
            return source + dot + rest
    return name


def _aliasParts(name: str) -> list[str] | None:
    """The members of the union that the type alias ``name`` stands for, if it is one."""
    import importlib
    import types
    import typing

    modname, _, attr = name.rpartition(".")
    try:
        value = getattr(importlib.import_module(modname), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    if not isinstance(value, types.UnionType) and typing.get_origin(value) is not typing.Union:
        return None
    return [
        "None" if arg is type(None) else f"{arg.__module__}.{arg.__qualname__}"
        for arg in typing.get_args(value)
    ]


def _resolveTypeHint(app, env, node, contnode):  # type: ignore[no-untyped-def]
    from docutils import nodes
    from sphinx.ext import intersphinx

    target = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    parts = [_qualify(p.strip(), node) for p in _INTERFACE_REPR.sub(r"\1", target).split("|")]
    if parts == [target]:
        return None
    result = nodes.inline()

    def resolveAll(names: list[str]) -> bool:
        """Each of ``names`` resolved into ``result``, joined by `` | ``."""
        for i, name in enumerate(names):
            if i:
                result.append(nodes.Text(" | "))
            if not resolve(name):
                return False
        return True

    def resolve(part: str) -> bool:
        if part == "None":
            result.append(nodes.literal(text="None"))
            return True
        ref = node.deepcopy()
        ref["reftarget"] = part
        text = nodes.literal(text=part.rpartition(".")[2])
        resolved = env.domains["py"].resolve_xref(
            env, node.get("refdoc", ""), app.builder, node["reftype"], part, ref, text
        ) or intersphinx.missing_reference(app, env, ref, text)
        if resolved is None:
            # A type alias of a union: its members, each resolved.
            members = _aliasParts(part) or []
            return bool(members) and resolveAll(members)
        result.append(resolved)
        return True

    return result if resolveAll(parts) else None


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("html-page-context", _languageLinks)
    app.connect("missing-reference", _resolveTypeHint)
