"""
tcpproto as a distribution: what ``pip install`` gives users and packagers.

- The name, version and license agree everywhere a user can look: the
  installed metadata (``pip show``), ``tcpproto.__version__``, the
  ``--version`` of both commands, and the ``LICENSE`` file.
- The metadata says what the project is (classifiers, URLs, the Twisted
  floor CI tests).
- A read-only install (a distribution package, a root-owned venv run by a
  service user) starts without Twisted's "Unable to write to plugin cache"
  line once the packager has run the one command that writes the cache.
- The changelog fragments and the man page sources follow their rules.

These tests read the *installed* distribution, so they hold for the regular
install that ``.ci/run`` makes and for each of its matrix legs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
from importlib import metadata

from twisted.trial.unittest import SynchronousTestCase

import tcpproto

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Where the running Python's console scripts (twistd, tcpecho-client) live.
SCRIPTS = sysconfig.get_path("scripts")
#: The command Twisted's plugin documentation gives packagers: it rewrites
#: every ``dropin.cache`` on the path (as a user who may write them).
REGENERATE_PLUGIN_CACHE = (
    "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
)
#: What Twisted logs when it cannot write a stale plugin cache.
CACHE_WARNING = "Unable to write to plugin cache"
TIMEOUT = 60.0


def _command(name: str) -> str:
    path = os.path.join(SCRIPTS, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name} is not installed next to {sys.executable}")
    return path


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=env)


def _help(argv: list[str]) -> str:
    result = _run([*argv, "--help"])
    return result.stdout + result.stderr


def _offersVersion(argv: list[str], saying: str = "") -> bool:
    """
    Whether the command's ``--help`` lists a ``--version`` option whose
    description (up to the next option) contains ``saying``.
    """
    found = re.search(r"(?ms)^\s*(?:-\w, )?--version\b(.*?)(?=^\s*-|\Z)", _help(argv))
    return found is not None and saying.lower() in found.group(1).lower()


def _metadata() -> metadata.PackageMetadata:
    return metadata.metadata("tcpproto")


def _field(name: str) -> str | None:
    """One metadata field of the installed tcpproto, or None."""
    values = _metadata().get_all(name)
    return values[0] if values else None


_CLIENT = [os.path.join(SCRIPTS, "tcpecho-client")]
_SERVER = [os.path.join(SCRIPTS, "twistd"), "tcpecho"]


class VersionTests(SynchronousTestCase):
    """Every place a user can read tcpproto's version says the same."""

    def test_moduleAndMetadata(self) -> None:
        """``tcpproto.__version__`` is the installed distribution's version."""
        self.assertEqual(metadata.version("tcpproto"), tcpproto.__version__)
        self.assertRegex(tcpproto.__version__, r"^\d+\.\d+\.\d+([ab]|rc|\.post|\.dev|$)")

    def test_pipShow(self) -> None:
        """``pip show tcpproto`` gives the name, version and license."""
        result = _run([sys.executable, "-m", "pip", "show", "tcpproto"])
        if result.returncode != 0 and "No module named pip" in result.stderr:
            raise self.skipTest(f"no pip in {sys.executable}")
        self.assertEqual(result.returncode, 0, result.stderr)
        fields = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
        self.assertEqual(fields.get("Name"), "tcpproto")
        self.assertEqual(fields.get("Version"), tcpproto.__version__)
        # pip shows License-Expression where the metadata has one.
        self.assertIn("MIT", fields.get("License", "") + fields.get("License-Expression", ""))

    def _assertPrintsVersion(self, argv: list[str]) -> None:
        result = _run([*argv, "--version"])
        self.assertEqual((result.returncode, result.stderr), (0, ""), result.stdout)
        # For example "tcpecho-client (tcpproto) 0.1.0" or "tcpproto 0.1.0".
        first = result.stdout.splitlines()[0] if result.stdout else ""
        self.assertIn("tcpproto", first)
        self.assertIn(tcpproto.__version__, re.findall(r"\d+\.\d+\.\d+\S*", first))

    def test_clientVersion(self) -> None:
        """``tcpecho-client --version`` prints tcpproto's version and exits 0."""
        self.assertTrue(_offersVersion(_CLIENT))
        self._assertPrintsVersion(_CLIENT)

    def test_serverVersion(self) -> None:
        """``twistd tcpecho --version`` prints tcpproto's version and exits 0."""
        # Every twistd subcommand inherits usage.Options' --version, which
        # prints Twisted's version; tcpecho's own says it is tcpproto's.
        self.assertTrue(_offersVersion(_SERVER, saying="tcpproto"))
        self._assertPrintsVersion(_SERVER)


class ModuleEntryPointTests(SynchronousTestCase):
    """The documented ``python -m`` forms run without a warning."""

    def _assertQuiet(self, module: str) -> None:
        result = _run([sys.executable, "-W", "error::RuntimeWarning", "-m", module, "--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("usage: ", result.stdout)
        self.assertNotIn("Warning", result.stderr)

    def test_client(self) -> None:
        """``python -m tcpproto.client`` (no "found in sys.modules" RuntimeWarning)."""
        self._assertQuiet("tcpproto.client")

    def test_package(self) -> None:
        """``python -m tcpproto`` runs the client too."""
        self._assertQuiet("tcpproto")


class LicenseTests(SynchronousTestCase):
    """The LICENSE file and the metadata both say MIT, and agree."""

    def _installedLicense(self) -> str:
        files = metadata.distribution("tcpproto").files or []
        found = [f for f in files if f.name == "LICENSE"]
        self.assertEqual(len(found), 1, f"LICENSE in the installed files: {found}")
        return found[0].read_text(encoding="utf-8")

    def test_licenseFile(self) -> None:
        """The installed distribution carries the project's MIT LICENSE."""
        text = self._installedLicense()
        self.assertTrue(text.startswith("MIT License\n"), text[:40])
        self.assertIn("Copyright (c) 2026 the tcpproto developers", text)
        self.assertIn('THE SOFTWARE IS PROVIDED "AS IS"', text)
        tree = os.path.join(ROOT, "LICENSE")
        if os.path.exists(tree):
            with open(tree, encoding="utf-8") as f:
                self.assertEqual(f.read(), text)

    def test_metadataSaysMIT(self) -> None:
        """License (or License-Expression) and the classifier both say MIT."""
        meta = _metadata()
        self.assertEqual(_field("License-Expression") or _field("License"), "MIT")
        self.assertIn("License :: OSI Approved :: MIT License", meta.get_all("Classifier") or [])
        self.assertIn("LICENSE", meta.get_all("License-File") or [])


class MetadataTests(SynchronousTestCase):
    """The metadata describes the project as users and indexes need."""

    def test_classifiers(self) -> None:
        classifiers = set(_metadata().get_all("Classifier") or [])
        for expected in [
            "Framework :: Twisted",
            "Operating System :: POSIX :: Linux",
            "Topic :: System :: Networking",
            "Typing :: Typed",
            *(f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)),
        ]:
            self.assertIn(expected, classifiers)
        self.assertEqual(len([c for c in classifiers if c.startswith("Development Status ::")]), 1)

    def test_pythonFloorMatchesClassifiers(self) -> None:
        """Requires-Python is the oldest Python version a classifier names."""
        meta = _metadata()
        minors = [
            int(m.group(1))
            for c in meta.get_all("Classifier") or []
            if (m := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c))
        ]
        self.assertEqual(_field("Requires-Python"), f">=3.{min(minors)}")

    def test_authorAndURLs(self) -> None:
        meta = _metadata()
        self.assertEqual(_field("Author"), "the tcpproto developers")
        urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
        self.assertEqual(set(urls), {"Documentation", "Source", "Issues", "Changelog"})
        for url in urls.values():
            self.assertTrue(url.startswith("https://"), url)

    def test_twistedFloor(self) -> None:
        """
        The declared Twisted floor is one Twisted requirement with a lower
        bound no older than 24.11 (24.3-24.10 fail parts of the suite), and
        the installed Twisted meets it.  .ci/run reads the same line of
        setup.cfg for the leg that installs exactly the floor.
        """
        requires = [
            r for r in metadata.requires("tcpproto") or [] if r.lower().startswith("twisted")
        ]
        self.assertEqual(len(requires), 1, requires)
        found = re.fullmatch(r"Twisted\[tls\]>=(\d+)\.(\d+)(?:\.\d+)?", requires[0])
        self.assertIsNotNone(found, requires[0])
        assert found is not None
        floor = (int(found.group(1)), int(found.group(2)))
        self.assertGreaterEqual(floor, (24, 11))
        import twisted

        installed = tuple(int(p) for p in twisted.__version__.split(".")[:2])
        self.assertGreaterEqual(installed, floor)


class PluginCacheTests(SynchronousTestCase):
    """
    A read-only install starts silently once its plugin cache is written.

    Twisted finds ``twistd`` plugins by importing every module in each
    ``twisted/plugins`` directory on ``sys.path`` and caches what it found in
    that directory's ``dropin.cache``.  pip cannot run code at install time
    (a wheel has no post-install hook), so the cache is written by the first
    program that looks for plugins, and only if that program may write
    there; otherwise every start logs "Unable to write to plugin cache" and
    imports every plugin again.  Packagers run one command after installing
    (README, "Packaging"); this checks it does the job.

    The user who may not write is ``nobody`` with ``CAP_DAC_READ_SEARCH`` (it
    may read anything, so it can run this very interpreter wherever it is,
    and write nothing it does not own), made by ``setpriv``.
    """

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise self.skipTest("needs root, to run a command as a user who may not write")
        self.setpriv = shutil.which("setpriv")
        if self.setpriv is None:
            raise self.skipTest("needs setpriv (util-linux)")
        self.home = tempfile.mkdtemp(prefix="tcpp-ro-")
        self.addCleanup(shutil.rmtree, self.home, True)
        os.chmod(self.home, 0o755)
        os.chown(self.home, 65534, 65534)
        probe = self._asReader([sys.executable, "-c", "import twisted"])
        if probe.returncode != 0:
            raise self.skipTest(f"cannot run Python as a reader: {probe.stderr.strip()}")

    def _env(self, extra: str | None) -> dict[str, str]:
        env = dict(os.environ, HOME=self.home, PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        if extra is not None:
            env["PYTHONPATH"] = extra
        return env

    def _reader(self) -> list[str]:
        assert self.setpriv is not None
        return [
            self.setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
        ]

    def _asReader(
        self, argv: list[str], pythonPath: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._reader(), *argv],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=self.home,
            env=self._env(pythonPath),
        )

    def _regenerate(self, pythonPath: str | None = None) -> None:
        """The packager's command, run as root (who owns the install)."""
        result = subprocess.run(
            [sys.executable, "-c", REGENERATE_PLUGIN_CACHE],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=self._env(pythonPath),
        )
        self.assertEqual((result.returncode, result.stderr), (0, ""))

    def _readOnlyPluginDirectory(self) -> str:
        """A read-only ``twisted/plugins`` directory with a plugin and no cache."""
        top = tempfile.mkdtemp(prefix="tcpp-plugins-")
        self.addCleanup(shutil.rmtree, top, True)
        plugins = os.path.join(top, "twisted", "plugins")
        os.makedirs(plugins)
        with open(os.path.join(plugins, "tcpproto_probe.py"), "w") as f:
            f.write('"""An empty dropin: something for Twisted to cache."""\n')
        for path in (plugins, os.path.dirname(plugins), top):
            os.chmod(path, 0o555)
        self.addCleanup(os.chmod, plugins, 0o755)
        return top

    def test_detectsAnUnwritableCache(self) -> None:
        """
        The check below can fail: a read-only plugin directory whose cache is
        missing makes Twisted log the line, and the packager's command, run
        by the owner, makes it go away.
        """
        extra = self._readOnlyPluginDirectory()
        logging = (
            "import sys; from twisted.python import log; log.startLogging(sys.stdout); "
            + REGENERATE_PLUGIN_CACHE
        )
        before = self._asReader([sys.executable, "-c", logging], extra)
        self.assertIn(CACHE_WARNING, before.stdout + before.stderr)
        self._regenerate(extra)
        after = self._asReader([sys.executable, "-c", logging], extra)
        self.assertEqual(after.returncode, 0, after.stderr)
        self.assertNotIn(CACHE_WARNING, after.stdout + after.stderr)

    def test_readOnlyInstallStartsSilently(self) -> None:
        """
        After the packager's command, ``twistd -n tcpecho`` run by a user who
        may not write the install starts, serves, and logs no cache warning.
        """
        self._regenerate()
        argv = [
            *self._reader(),
            _command("twistd"),
            "-n",
            "--pidfile=",
            "tcpecho",
            "--listen",
            "tcp:0:interface=127.0.0.1",
        ]
        server = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.home,
            env=self._env(None),
        )
        # A bound on the whole start: the server is killed if it never says
        # it is listening, which ends the read loop below.
        watchdog = threading.Timer(TIMEOUT, server.kill)
        watchdog.start()
        self.addCleanup(watchdog.cancel)
        lines = []
        assert server.stdout is not None
        for line in server.stdout:
            lines.append(line)
            if "listening on" in line:
                break
        server.send_signal(signal.SIGTERM)
        rest, _ = server.communicate(timeout=TIMEOUT)
        output = "".join(lines) + rest
        self.assertIn("listening on 127.0.0.1:", output)
        self.assertEqual(server.returncode, 0, output)
        self.assertNotIn(CACHE_WARNING, output)


class ChangelogTests(SynchronousTestCase):
    """Newsfragments are named as towncrier (pyproject.toml) expects."""

    TYPES = {"feature", "bugfix", "doc", "removal", "misc"}

    def setUp(self) -> None:
        self.directory = os.path.join(ROOT, "changelog.d")
        if not os.path.isdir(self.directory):
            raise self.skipTest("no changelog.d next to the tests")

    def test_fragmentNames(self) -> None:
        """Each file is ``<issue>.<type>.md`` (or the template) and not empty."""
        for name in os.listdir(self.directory):
            if name == "_template.md.jinja":
                continue
            self.assertRegex(name, rf"^\d+\.({'|'.join(sorted(self.TYPES))})\.md$")
            with open(os.path.join(self.directory, name), encoding="utf-8") as f:
                self.assertTrue(f.read().strip(), f"{name} is empty")

    def test_towncrierTypes(self) -> None:
        """towncrier knows exactly the five types, and reads changelog.d."""
        with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
            config = f.read().split("[tool.towncrier]", 1)[1]
        config = re.split(r"(?m)^\[(?!\[tool\.towncrier\.)", config, maxsplit=1)[0]
        self.assertIn('directory = "changelog.d"', config)
        self.assertIn('filename = "CHANGES.md"', config)
        types = set(re.findall(r'(?m)^directory = "(\w+)"$', config)) - {"changelog"}
        self.assertEqual(types, self.TYPES)


class ManPageTests(SynchronousTestCase):
    """The man pages' sources say what the commands do."""

    def setUp(self) -> None:
        self.source = os.path.join(ROOT, "docs", "man", "tcpecho-client.rst")
        if not os.path.exists(self.source):
            raise self.skipTest("no docs/man next to the tests")

    def test_clientOptionsDocumented(self) -> None:
        """docs/man/tcpecho-client.rst documents exactly the client's options."""
        with open(self.source, encoding="utf-8") as f:
            documented = set(re.findall(r"(?m)^\.\. option:: .*?(--[\w-]+)", f.read()))
        offered = set(re.findall(r"(?m)^\s+(?:-\w, )?(--[\w-]+)", _help(_CLIENT)))
        self.assertEqual(documented, offered)

    def test_manPagesNamed(self) -> None:
        """docs/man/conf.py makes the two pages from pages that exist."""
        with open(os.path.join(ROOT, "docs", "man", "conf.py"), encoding="utf-8") as f:
            conf = f.read()
        pages = re.findall(r'\(\s*"([\w/-]+)",\s*"([\w-]+)",', conf)
        self.assertEqual({name for _, name in pages}, {"twistd-tcpecho", "tcpecho-client"})
        for source, _ in pages:
            self.assertTrue(os.path.exists(os.path.join(ROOT, "docs", source + ".rst")), source)
