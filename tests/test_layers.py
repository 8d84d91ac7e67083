"""
The floor plan of ``tcpproto/``: imports point down the layers, there is no
cycle, and Twisted's private names are used in ``tcpproto/_twisted.py`` only.

The layers (see ``docs/api.rst``):

1. vocabulary and private runtime: stdlib, Twisted, and each other;
2. protocols and factories;
3. deployment layers and the server process;
4. the shell (``tap``, the client command line).

A module may import modules of its own layer or below, never above, and the
import graph (module-level and function-level imports alike) has no cycle.
The deprecated re-export modules are listed apart and exempt, as are PEP 562
module ``__getattr__`` functions (the deprecated re-exports of one name) and
``if __name__ == "__main__":`` blocks.
"""

from __future__ import annotations

import ast
import os
import re
import warnings
from collections.abc import Iterator

from twisted.trial.unittest import SynchronousTestCase

import tcpproto
import twisted
from tests.helpers import shortTempDir

PACKAGE_DIR = os.path.dirname(os.path.abspath(tcpproto.__file__))
TWISTED_DIR = os.path.dirname(os.path.abspath(twisted.__file__))

#: Every module of tcpproto and its layer.
LAYERS: dict[str, int] = {
    # 1. vocabulary and private runtime
    "tcpproto._version": 1,
    "tcpproto._vocabulary": 1,
    "tcpproto._deprecate": 1,
    "tcpproto._twisted": 1,
    "tcpproto._addresses": 1,
    "tcpproto._halfclose": 1,
    "tcpproto._timers": 1,
    "tcpproto._registry": 1,
    "tcpproto._stats": 1,
    "tcpproto._ratelimit": 1,
    "tcpproto.framing": 1,
    "tcpproto.limits": 1,
    "tcpproto.reactor": 1,
    "tcpproto.logs": 1,
    # 2. protocols and factories
    "tcpproto": 2,
    "tcpproto.connection": 2,
    "tcpproto.echo": 2,
    "tcpproto.thankyou": 2,
    "tcpproto.udp": 2,
    "tcpproto._clientprotocols": 2,
    "tcpproto.testing": 2,
    # 3. deployment layers and the server process
    "tcpproto._wrapping": 3,
    "tcpproto._proxy": 3,
    "tcpproto._tls": 3,
    "tcpproto._reuseport": 3,
    "tcpproto._services": 3,
    "tcpproto._metrics": 3,
    # 4. the shell
    "tcpproto.tap": 4,
    "tcpproto._clientcli": 4,
    "tcpproto.client": 4,
    "tcpproto.__main__": 4,
}

#: Deprecated re-exports of modules that became private: exempt, for one release.
SHIMS = frozenset(
    {
        "tcpproto.haproxy",
        "tcpproto.tls",
        "tcpproto.reuseport",
        "tcpproto.service",
        "tcpproto.metrics",
        "tcpproto.stats",
        "tcpproto.ratelimit",
        "tcpproto.wrapping",
    }
)

#: The public modules, the ones users type (docs/api.rst documents these).
PUBLIC = frozenset(
    {
        "tcpproto",
        "tcpproto.echo",
        "tcpproto.thankyou",
        "tcpproto.connection",
        "tcpproto.limits",
        "tcpproto.framing",
        "tcpproto.client",
        "tcpproto.udp",
        "tcpproto.tap",
        "tcpproto.reactor",
        "tcpproto.logs",
        "tcpproto.testing",
    }
)


def moduleName(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[: -len(".py")]
    name = rel.replace(os.sep, ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def modules() -> dict[str, str]:
    """Module name -> path, for every module of the package."""
    found = {}
    for entry in sorted(os.listdir(PACKAGE_DIR)):
        if entry.endswith(".py"):
            path = os.path.join(PACKAGE_DIR, entry)
            found[moduleName(path)] = path
    return found


def _isMainBlock(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node``, except main blocks and module ``__getattr__`` bodies."""
    for child in ast.iter_child_nodes(node):
        if _isMainBlock(child):
            continue
        if (
            isinstance(child, ast.FunctionDef)
            and child.name == "__getattr__"
            and isinstance(node, ast.Module)
        ):
            continue
        yield child
        yield from _walk(child)


def importsOf(name: str, path: str) -> Iterator[tuple[str, int]]:
    """The tcpproto (and other) modules ``name`` imports, with line numbers."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            yield base, node.lineno
            for alias in node.names:
                # ``from tcpproto import _proxy`` imports a module.
                yield f"{base}.{alias.name}", node.lineno


def ourImports(name: str, path: str, known: dict[str, str]) -> set[str]:
    return {target for target, _ in importsOf(name, path) if target in known and target != name}


class LayerTests(SynchronousTestCase):
    """Imports point down the layers, with no cycle."""

    def setUp(self) -> None:
        self.modules = modules()

    def test_everyModuleHasALayer(self) -> None:
        unplaced = set(self.modules) - set(LAYERS) - SHIMS
        self.assertEqual(unplaced, set(), "give each new module a layer in LAYERS")
        self.assertEqual(set(LAYERS) - set(self.modules), set(), "stale entries in LAYERS")

    def test_importsPointDown(self) -> None:
        upward = []
        for name, path in self.modules.items():
            if name in SHIMS:
                continue
            for target, line in importsOf(name, path):
                if target in SHIMS:
                    upward.append(f"{name}:{line} imports the deprecated {target}")
                elif target in LAYERS and LAYERS[target] > LAYERS[name]:
                    upward.append(
                        f"{name} (layer {LAYERS[name]}):{line} imports {target} "
                        f"(layer {LAYERS[target]})"
                    )
        self.assertEqual(upward, [])

    def test_noCycle(self) -> None:
        graph = {
            name: ourImports(name, path, self.modules)
            for name, path in self.modules.items()
            if name not in SHIMS
        }
        # The package itself is imported before any of its modules; edges
        # into it are not cycles of ours.
        for targets in graph.values():
            targets.discard("tcpproto")
        cycle = _findCycle(graph)
        self.assertIsNone(cycle, f"import cycle: {' -> '.join(cycle or [])}")

    def test_cycleFinder(self) -> None:
        """The cycle finder finds one (so the test above can fail)."""
        self.assertEqual(_findCycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])
        self.assertIsNone(_findCycle({"a": {"b"}, "b": set()}))

    def test_upwardImportDetected(self) -> None:
        """importsOf sees function-level imports, and skips main blocks."""
        source = (
            "import os\n"
            "def f():\n"
            "    from tcpproto import tap\n"
            "if __name__ == '__main__':\n"
            "    import tcpproto.client\n"
        )
        # Not self.mktemp(): under pytest it would write into the checkout.
        path = os.path.join(shortTempDir(self), "module.py")
        with open(path, "w") as f:
            f.write(source)
        found = {t for t, _ in importsOf("tcpproto.echo", path)}
        self.assertIn("tcpproto.tap", found)
        self.assertNotIn("tcpproto.client", found)

    def test_shimsAreShims(self) -> None:
        """Each deprecated module only re-exports: it defines no class or function."""
        for name in SHIMS:
            with open(self.modules[name], encoding="utf-8") as f:
                tree = ast.parse(f.read())
            defined = [
                n.name
                for n in tree.body
                if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            ]
            self.assertEqual(defined, [], name)

    def test_shimsWarnAndReexport(self) -> None:
        """Each deprecated module gives the private module's names, with a DeprecationWarning."""
        import importlib

        from tcpproto._deprecate import MOVED

        self.assertEqual(set(MOVED), set(SHIMS))
        for name, (sourceName, hint) in MOVED.items():
            source = importlib.import_module(sourceName)
            self.assertTrue(source.__all__, sourceName)
            for attribute in source.__all__:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    value = getattr(importlib.import_module(name), attribute)
                self.assertIs(value, getattr(source, attribute))
                self.assertEqual(
                    [w.category for w in caught], [DeprecationWarning], f"{name}.{attribute}"
                )
                self.assertIn(hint, str(caught[0].message))

    def test_clientRunsAsMainWithoutWarning(self) -> None:
        """``python -m tcpproto.client`` works and prints no RuntimeWarning (the
        package does not import tcpproto.client itself)."""
        import subprocess
        import sys

        result = subprocess.run(
            [sys.executable, "-W", "error", "-m", "tcpproto.client", "--help"],
            capture_output=True,
            timeout=60,
        )
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertIn(b"tcpecho-client", result.stdout)

    def test_publicModulesArePublic(self) -> None:
        """Every module is public (listed), private (``_name``) or a shim."""
        for name in self.modules:
            last = name.rpartition(".")[2]
            if name in PUBLIC or name in SHIMS or last.startswith("_"):
                continue
            self.fail(f"{name}: make it private (_{last}) or list it in PUBLIC")


def _findCycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


# -- Twisted's private names -------------------------------------------------

QUARANTINE = "tcpproto._twisted"

#: Modules not yet moved behind the quarantine, each with why; keep it empty.
NOT_YET_QUARANTINED: set[str] = set()

_PRIVATE_TWISTED_MODULE = re.compile(r"\btwisted(\.[a-z0-9_]+)*\._[a-z0-9_]+")


def _attributes(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            yield node.attr, node.lineno


def _definedNames(tree: ast.AST) -> set[str]:
    """Underscore names a module defines: functions, classes, assigned attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def twistedPrivateNames() -> set[str]:
    """
    The private attribute names of the Twisted modules tcpproto builds on,
    as read from the installed Twisted's source.
    """
    names: set[str] = set()
    for rel in (
        "internet/tcp.py",
        "internet/abstract.py",
        "internet/epollreactor.py",
        "internet/posixbase.py",
        "internet/base.py",
        "internet/_posixstdio.py",
        "internet/process.py",
        "internet/endpoints.py",
        "protocols/tls.py",
        "protocols/policies.py",
        "application/internet.py",
    ):
        with open(os.path.join(TWISTED_DIR, rel), encoding="utf-8") as f:
            names |= _definedNames(ast.parse(f.read()))
    return names


class PrivateTwistedNamesTests(SynchronousTestCase):
    """``git grep`` for Twisted internals outside ``tcpproto/_twisted.py`` finds nothing."""

    def setUp(self) -> None:
        self.modules = modules()

    def test_noPrivateTwistedModuleImported(self) -> None:
        found = []
        for name, path in self.modules.items():
            if name == QUARANTINE or name in NOT_YET_QUARANTINED:
                continue
            for target, line in importsOf(name, path):
                if _PRIVATE_TWISTED_MODULE.search(target):
                    found.append(f"{name}:{line}: {target}")
            with open(path, encoding="utf-8") as f:
                for number, text in enumerate(f, 1):
                    if _PRIVATE_TWISTED_MODULE.search(text) and "tcpproto._" not in text:
                        found.append(f"{name}:{number}: {text.strip()}")
        self.assertEqual(found, [])

    def test_noTwistedUnderscoreAttribute(self) -> None:
        """
        Outside the quarantine, an underscore attribute is one tcpproto
        defines itself; and none of those the quarantine uses on Twisted's
        objects appears anywhere else.
        """
        trees = {}
        for name, path in self.modules.items():
            with open(path, encoding="utf-8") as f:
                trees[name] = ast.parse(f.read())
        ours: set[str] = set()
        for name, tree in trees.items():
            if name != QUARANTINE:
                ours |= _definedNames(tree)
        twistedNames = twistedPrivateNames()
        quarantined = {a for a, _ in _attributes(trees[QUARANTINE])} & twistedNames
        quarantined |= _definedNames(trees[QUARANTINE]) & twistedNames
        self.assertTrue(quarantined, "the scan no longer sees the quarantined names")
        found = []
        for name, tree in trees.items():
            if name == QUARANTINE or name in NOT_YET_QUARANTINED:
                continue
            for attr, line in _attributes(tree):
                if attr.startswith("__"):
                    continue
                if attr in quarantined or attr not in ours:
                    found.append(f"{name}:{line}: .{attr}")
            for attr in _definedNames(tree) & quarantined:
                found.append(f"{name}: defines Twisted's {attr}")
        self.assertEqual(found, [])

    def test_scanSeesAPrivateAttribute(self) -> None:
        """The scan reads the quarantine's own uses (so the test above can fail)."""
        with open(self.modules[QUARANTINE], encoding="utf-8") as f:
            tree = ast.parse(f.read())
        attributes = {a for a, _ in _attributes(tree)}
        self.assertTrue({"_tempDataLen", "_poller", "_waitingForPort"} <= attributes)
