"""
The systemd units in ``contrib/systemd``: they parse, agree with each other,
and the command lines they hold run (with the test's port, on loopback).

systemd itself is not needed: the test expands ``ExecStart=`` as systemd
does (``%i``, ``${VAR}`` as one word, ``$VAR`` split into words) and, for
the socket-activated service, passes the listening socket the way systemd
does (descriptor 3, ``LISTEN_FDS``, ``LISTEN_PID``, ``LISTEN_FDNAMES``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tcpproto._services import DEFAULT_SHUTDOWN_TIMEOUT
from tests.helpers import (
    CONTRIB,
    LOOPBACK,
    CommandServer,
    SocketActivatedServer,
    connect,
    executable,
    freePort,
    halfCloseExchange,
    runProcessSync,
    shortTempDir,
)

UNITS = os.path.join(CONTRIB, "systemd")

Unit = dict[str, list[tuple[str, str]]]


def parseUnit(path: str) -> Unit:
    """
    A unit file's sections, each a list of (key, value) in order.

    systemd's syntax: ``[Section]`` headers, ``Key=value`` lines (a key may
    repeat), ``#`` and ``;`` comments, a trailing backslash continues a line.
    """
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        if current is None or "=" not in line:
            raise ValueError(f"{path}: not a unit file line: {line!r}")
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    if len(found) != 1:
        raise AssertionError(f"expected one {key}= in [{section}], found {found}")
    return found[0]


def environment(unit: Unit, instance: str = "") -> dict[str, str]:
    """The ``Environment=`` assignments of ``[Service]``."""
    env: dict[str, str] = {}
    for assignment in values(unit, "Service", "Environment"):
        for word in shlex.split(assignment):
            name, _, text = word.partition("=")
            env[name] = specifiers(text, instance)
    return env


def specifiers(text: str, instance: str) -> str:
    return re.sub(r"%[%i]", lambda m: "%" if m.group() == "%%" else instance, text)


def expandCommand(line: str, env: dict[str, str], instance: str = "") -> list[str]:
    """An ``ExecStart=`` line as the argument list systemd would run."""
    line = specifiers(line.lstrip("-@+!:"), instance)
    argv: list[str] = []
    for word in shlex.split(line):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            argv.extend(env.get(whole.group(1), "").split())
            continue
        argv.append(
            re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word)
        )
    return argv


def localCommand(argv: list[str]) -> list[str]:
    """The unit's command with this test's twistd in place of the installed one."""
    if os.path.basename(argv[0]) != "twistd":
        raise AssertionError(f"ExecStart does not run twistd: {argv}")
    return [executable("twistd"), *argv[1:]]


class UnitFileTests(SynchronousTestCase):
    """The units parse and agree with each other and with tcpecho."""

    def test_allParse(self) -> None:
        names = sorted(os.listdir(UNITS))
        self.assertEqual(
            names,
            [
                "tcpecho-standalone.service",
                "tcpecho.service",
                "tcpecho.socket",
                "tcpecho@.service",
            ],
        )
        for name in names:
            unit = parseUnit(os.path.join(UNITS, name))
            self.assertTrue(value(unit, "Unit", "Description"))
            if name.endswith(".service"):
                self.assertEqual(value(unit, "Service", "KillSignal"), "SIGTERM")
                # systemd must wait longer than tcpecho's graceful shutdown.
                stop = float(value(unit, "Service", "TimeoutStopSec"))
                self.assertGreater(stop, DEFAULT_SHUTDOWN_TIMEOUT)
                argv = expandCommand(value(unit, "Service", "ExecStart"), environment(unit))
                self.assertEqual(argv[1:4], ["--nodaemon", "--pidfile=", "tcpecho"])
                self.assertIn("--listen", argv)

    def test_socketAndServiceAgree(self) -> None:
        socketUnit = parseUnit(os.path.join(UNITS, "tcpecho.socket"))
        service = parseUnit(os.path.join(UNITS, "tcpecho.service"))
        self.assertEqual(value(service, "Unit", "Requires"), "tcpecho.socket")
        name = value(socketUnit, "Socket", "FileDescriptorName")
        self.assertEqual(value(socketUnit, "Socket", "BindIPv6Only"), "both")
        argv = expandCommand(value(service, "Service", "ExecStart"), environment(service))
        self.assertIn(f"systemd:domain=INET6:name={name}", argv)

    def test_systemdAnalyzeVerify(self) -> None:
        """systemd's own checker finds nothing to say (unknown keys, bad values)."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed")
        directory = shortTempDir(self)
        for name in os.listdir(UNITS):
            with open(os.path.join(UNITS, name), encoding="utf-8") as f:
                text = f.read().replace("/opt/tcpproto/bin/twistd", executable("twistd"))
            with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
                f.write(text)
        units = ["tcpecho.socket", "tcpecho.service", "tcpecho-standalone.service"]
        result = runProcessSync(
            [analyze, "verify", "--man=no", *(f"./{u}" for u in [*units, "tcpecho@1.service"])],
            cwd=directory,
            timeout=60,
        )
        self.assertEqual((result.status, result.err.decode(), result.out.decode()), (0, "", ""))

    def test_expansion(self) -> None:
        env = {"A": "tcp:1", "B": "--x y  --z"}
        self.assertEqual(
            expandCommand("-/bin/t --l ${A} $B %i %%", env, "7"),
            ["/bin/t", "--l", "tcp:1", "--x", "y", "--z", "7", "%"],
        )
        self.assertEqual(expandCommand("/bin/t $EMPTY end", {}), ["/bin/t", "end"])


class CommandLineTests(SynchronousTestCase):
    """The ``ExecStart=`` command lines run."""

    def test_socketActivatedService(self) -> None:
        """tcpecho.service adopts the socket tcpecho.socket describes (here on
        ::1, with the test's port)."""
        socketUnit = parseUnit(os.path.join(UNITS, "tcpecho.socket"))
        service = parseUnit(os.path.join(UNITS, "tcpecho.service"))
        self.assertEqual(value(socketUnit, "Socket", "ListenStream"), "7788")
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.bind(("::1", 0))
        sock.listen(int(value(socketUnit, "Socket", "Backlog")))
        port = sock.getsockname()[1]
        argv = expandCommand(value(service, "Service", "ExecStart"), environment(service))
        server = SocketActivatedServer(
            localCommand(argv), sock, name=value(socketUnit, "Socket", "FileDescriptorName")
        )
        self.addCleanup(server.cleanup)
        server.start()
        sock.close()
        self.assertEqual((server.host, server.port), ("::1", port))
        s = connect(("::1", port))
        self.assertEqual(halfCloseExchange(s, b"activated\n"), b"activated\n")
        # KillSignal=SIGTERM: a graceful stop, exit status 0 (systemd: success).
        self.assertEqual(server.stop(signal.SIGTERM), 0)

    def test_standaloneService(self) -> None:
        unit = parseUnit(os.path.join(UNITS, "tcpecho-standalone.service"))
        env = environment(unit)
        self.assertEqual(env["TCPECHO_LISTEN"], "tcp:7788")
        env["TCPECHO_LISTEN"] = f"tcp:0:interface={LOOPBACK}"
        argv = expandCommand(value(unit, "Service", "ExecStart"), env)
        server = CommandServer(localCommand(argv))
        self.addCleanup(server.cleanup)
        server.start()
        s = connect((LOOPBACK, server.port))
        self.assertEqual(halfCloseExchange(s, b"standalone\n"), b"standalone\n")
        self.assertEqual(server.stop(signal.SIGTERM), 0)

    def test_templateInstancesShareThePort(self) -> None:
        """tcpecho@1 and tcpecho@2, with the options the unit's comment suggests,
        share one port and both answer."""
        unit = parseUnit(os.path.join(UNITS, "tcpecho@.service"))
        port = freePort()
        servers = []
        for instance in ("1", "2"):
            env = environment(unit, instance)
            env["TCPECHO_LISTEN"] = f"tcp:{port}:interface={LOOPBACK}"
            env["TCPECHO_OPTIONS"] = specifiers("--framing line --prefix %i", instance)
            argv = expandCommand(value(unit, "Service", "ExecStart"), env, instance)
            self.assertIn("--reuseport", argv)
            server = CommandServer(localCommand(argv))
            self.addCleanup(server.cleanup)
            server.start()
            servers.append(server)
        answeredBy = set()
        for i in range(30):
            s = connect((LOOPBACK, port))
            answer = halfCloseExchange(s, b"line %d\n" % i)
            self.assertEqual(answer[2:], b"line %d\n" % i)
            answeredBy.add(answer[:2])
        self.assertEqual(answeredBy, {b"1 ", b"2 "})
        for server in servers:
            self.assertEqual(server.stop(signal.SIGTERM), 0)
