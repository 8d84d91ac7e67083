"""
The package is installed in the environment running the tests, not only
importable from the checkout: the modules, the ``twistd`` dropin and the
console script work from an unrelated working directory.
"""

from __future__ import annotations

import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import (
    executable,
    processEnv,
    runProcessSync,
    shortTempDir,
)


def outsideEnv() -> dict[str, str]:
    """Our environment without PYTHONPATH: only what is installed is importable."""
    env = processEnv()
    env.pop("PYTHONPATH", None)
    return env


class InstalledTests(SynchronousTestCase):
    def runOutside(self, argv: list[str]) -> tuple[int, str]:
        """Run ``argv`` from a fresh temporary directory; (status, stdout + stderr)."""
        result = runProcessSync(argv, cwd=shortTempDir(self), env=outsideEnv(), timeout=60)
        return result.status, (result.out + result.err).decode("utf-8", "replace")

    def test_importable(self) -> None:
        status, output = self.runOutside(
            [
                sys.executable,
                "-c",
                "import tcpproto, tcpproto.client, tcpproto.tap, twisted.plugins.tcpecho as p;"
                "print(tcpproto.__version__, p.tcpecho.tapname, p.tcpecho.module)",
            ]
        )
        self.assertEqual(status, 0, output)
        version, tapname, module = output.split()
        self.assertTrue(version[0].isdigit(), version)
        self.assertEqual((tapname, module), ("tcpecho", "tcpproto.tap"))

    def test_twistdListsPlugin(self) -> None:
        status, output = self.runOutside([executable("twistd"), "--help"])
        self.assertEqual(status, 0, output)
        self.assertIn("tcpecho", output)

    def test_pluginHelp(self) -> None:
        status, output = self.runOutside([executable("twistd"), "tcpecho", "--help"])
        self.assertEqual(status, 0, output)
        for option in ("--listen", "--mode", "--framing", "--once", "--reply"):
            self.assertIn(option, output)

    def test_clientScript(self) -> None:
        status, output = self.runOutside([executable("tcpecho-client"), "--help"])
        self.assertEqual(status, 0, output)
        self.assertIn("tcpecho-client", output)

    def test_pluginFoundInProcess(self) -> None:
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        self.assertIn("tcpecho", makers)
        from tcpproto import tap

        self.assertIs(makers["tcpecho"].options, tap.TwistdOptions)
        self.assertIs(makers["tcpecho"].makeService, tap.makeTwistdService)
