"""
An intersphinx inventory of the installed Twisted, for builds without a network.

Twisted's API documentation (https://docs.twisted.org/en/stable/api/) is made
by pydoctor, which publishes an ``objects.inv``; a CI machine without internet
cannot fetch it.  This module writes the same kind of inventory from the
Twisted that is installed, by reading its source with :mod:`ast` (nothing is
imported, so no reactor is installed and no optional dependency is needed),
and :mod:`sphobjinv` writes the file.  The addresses follow pydoctor's layout:
a page per module and per class, an anchor per function, method and
attribute.

``docs/conf.py`` calls :func:`ensure` at every build, so the inventory always
matches the Twisted the docs are built with.  Run it by hand to look at one:
``python docs/_ext/twisted_inventory.py OUT.inv`` (``sphobjinv convert plain
OUT.inv -`` prints it).
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
from collections.abc import Iterator

import sphobjinv as soi  # type: ignore[import-untyped]

#: Where the names link to: Twisted's published API documentation.
BASE = "https://docs.twisted.org/en/stable/api/"

_EXCEPTION_ROOTS = {"BaseException", "Exception", "Warning"}


def _twisted() -> tuple[str, str]:
    """The installed Twisted's package directory and version."""
    import twisted  # the version and path only; nothing else is imported

    return os.path.dirname(twisted.__file__), twisted.__version__


def _modules(root: str) -> Iterator[tuple[str, str]]:
    """(dotted name, path) of every non-test module under ``root``."""
    base = os.path.dirname(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and d != "test"
            and os.path.exists(os.path.join(dirpath, d, "__init__.py"))
        )
        for filename in sorted(filenames):
            if not filename.endswith(".py") or filename.startswith("test_"):
                continue
            path = os.path.join(dirpath, filename)
            parts = os.path.relpath(path, base)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def _public(name: str) -> bool:
    return not name.startswith("_")


def _isPublicModule(module: str) -> bool:
    return all(_public(part) for part in module.split("."))


def _targets(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _baseName(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


class _Module:
    """What one module defines, exports and imports, read from its source."""

    def __init__(self, name: str, tree: ast.Module, isPackage: bool) -> None:
        self.name = name
        package = name if isPackage else name.rpartition(".")[0]
        self.defs: dict[str, tuple[str, list[tuple[str, str]], set[str]]] = {}
        self.all: set[str] = set()
        self.imported: dict[str, str] = {}  # local name -> source module
        for node in self._topLevel(tree.body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.defs[node.name] = ("function", [], set())
            elif isinstance(node, ast.ClassDef):
                members: list[tuple[str, str]] = []
                for member in node.body:
                    if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                        _public(member.name) or member.name == "__init__"
                    ):
                        members.append((member.name, "method"))
                    members.extend((t, "attribute") for t in _targets(member) if _public(t))
                bases = {_baseName(b) for b in node.bases}
                self.defs[node.name] = ("class", members, bases)
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    source = f"{parent}.{source}" if source else parent
                for alias in node.names:
                    self.imported[alias.asname or alias.name] = source
            else:
                for target in _targets(node):
                    self.defs.setdefault(target, ("data", [], set()))
                    if target == "__all__" and isinstance(node, (ast.Assign, ast.AnnAssign)):
                        value = node.value
                        if isinstance(value, (ast.List, ast.Tuple)):
                            self.all.update(
                                e.value
                                for e in value.elts
                                if isinstance(e, ast.Constant) and isinstance(e.value, str)
                            )

    @staticmethod
    def _topLevel(body: list[ast.stmt]) -> Iterator[ast.stmt]:
        """The module's statements, with those of top-level ``if`` and ``try`` blocks
        (``if platform.isWindows(): from ._win32stdio import StandardIO else: ...``)."""
        for node in body:
            if isinstance(node, (ast.If, ast.Try)):
                yield from _Module._topLevel(node.body + node.orelse)
            else:
                yield node


def _read() -> tuple[str, dict[str, _Module]]:
    root, version = _twisted()
    modules: dict[str, _Module] = {}
    for module, path in _modules(root):
        try:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            modules[module] = _Module(module, tree, path.endswith("__init__.py"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
    return version, modules


def publicNames() -> dict[str, str]:
    """
    Private location -> public name, for the names a public module re-exports.

    ``twisted.internet.ssl`` re-exports ``Certificate`` from the private
    ``twisted.internet._sslverify`` (it is in its ``__all__``), and pydoctor
    documents it as ``twisted.internet.ssl.Certificate``; type hints name the
    private location.
    """
    return {private: public for public, (private, _) in _reexports(_read()[1]).items()}


def _reexports(modules: dict[str, _Module]) -> dict[str, tuple[str, _Module]]:
    """Public name -> (private location, defining module) of the re-exported names."""
    found: dict[str, tuple[str, _Module]] = {}
    for module in modules.values():
        if not _isPublicModule(module.name):
            continue
        for name in sorted(module.all):
            source = modules.get(module.imported.get(name, ""))
            if source is None or _isPublicModule(source.name) or name not in source.defs:
                continue
            found[f"{module.name}.{name}"] = (f"{source.name}.{name}", source)
    return found


def entries() -> tuple[str, list[tuple[str, str, str]]]:
    """Twisted's version and its (name, role, uri) entries."""
    version, modules = _read()
    found: list[tuple[str, str, str]] = []
    classBases: dict[str, set[str]] = {}
    classes: list[tuple[str, str]] = []  # (qualified name, simple name)

    def add(qualified: str, page: str, kind: str, members: list[tuple[str, str]]) -> None:
        if kind == "class":
            classes.append((qualified, qualified.rsplit(".", 1)[1]))
            classPage = qualified + ".html"
            found.append((qualified, "class", classPage))
            found.extend(
                (f"{qualified}.{member}", role, f"{classPage}#{member}")
                for member, role in members
            )
        else:
            name = qualified.rsplit(".", 1)[1]
            found.append((qualified, kind, f"{page}#{name}"))

    for module in modules.values():
        for name, (kind, _, bases) in module.defs.items():
            if kind == "class":
                classBases.setdefault(name, set()).update(bases)
        # pydoctor documents private modules too (Twisted's type hints often
        # name them), so they are in the inventory; private names are not.
        page = module.name + ".html"
        found.append((module.name, "module", page))
        for name, (kind, members, _) in module.defs.items():
            if _public(name):
                add(f"{module.name}.{name}", page, kind, members)
    for public, (private, source) in _reexports(modules).items():
        kind, members, _ = source.defs[private.rsplit(".", 1)[1]]
        add(public, public.rsplit(".", 1)[0] + ".html", kind, members)

    def isException(name: str, seen: frozenset[str] = frozenset()) -> bool:
        bases = classBases.get(name, set())
        if bases & _EXCEPTION_ROOTS or name.endswith(("Error", "Exception")):
            return True
        return any(isException(b, seen | {name}) for b in bases - seen if b != name)

    for qualified, simple in classes:
        if isException(simple):
            found.append((qualified, "exception", qualified + ".html"))
    return version, found


def write(path: str) -> None:
    """Write the inventory of the installed Twisted to ``path``."""
    version, found = entries()
    inv = soi.Inventory()
    inv.project = "Twisted"
    inv.version = version
    for name, role, uri in found:
        inv.objects.append(
            soi.DataObjStr(name=name, domain="py", role=role, priority="1", uri=uri, dispname="-")
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    soi.writebytes(path, soi.compress(inv.data_file(contract=True)))


def ensure(path: str) -> str:
    """Write the inventory to ``path`` unless it is there, made by this code for
    this Twisted; ``path``."""
    root, version = _twisted()
    with open(__file__, "rb") as f:
        generator = hashlib.sha256(f.read()).hexdigest()[:16]
    key = f"{version} {root} {generator}"
    stamp = path + ".version"
    try:
        with open(stamp, encoding="utf-8") as f:
            current = f.read() == key and os.path.exists(path)
    except OSError:
        current = False
    if not current:
        write(path)
        with open(stamp, "w", encoding="utf-8") as f:
            f.write(key)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: twisted_inventory.py OUT.inv\n")
        raise SystemExit(2)
    write(sys.argv[1])
