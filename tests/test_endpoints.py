"""
Every kind of listener, end to end through ``twistd -n tcpecho``.

One server listens on ``tcp:`` (127.0.0.1), ``tcp6:`` (::1), ``unix:``,
``ssl:`` (a certificate made by the test) and ``haproxy:`` at once; each test
talks to one of them, with ``tcpecho-client`` or a socket, and reads the
server's log.  Socket activation (``systemd:``) gets a listening socket the
way systemd passes one: descriptor 3, ``LISTEN_FDS``, ``LISTEN_PID``.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import (
    LOCAL_TCP,
    LOOPBACK,
    SocketActivatedServer,
    connect,
    halfCloseExchange,
    makePKI,
    proxyV1,
    proxyV2,
    runClientSync,
    runProcessSync,
    serverCommand,
    shortTempDir,
    startServer,
    waitUntilBlocking,
)

TCP6 = "tcp6:0:interface=\\:\\:1"
HAPROXY = f"haproxy:tcp:0:interface={LOOPBACK}"


class SeveralListenersTests(SynchronousTestCase):
    """One ``twistd tcpecho`` with five listeners of five kinds."""

    def setUp(self) -> None:
        self.tls = makePKI(self)
        self.socketPath = os.path.join(shortTempDir(self), "echo.sock")
        self.unix = f"unix:{self.socketPath}"
        self.ssl = self.tls.serverDescription()
        self.server = startServer(
            self,
            *("--listen", LOCAL_TCP),
            *("--listen", TCP6),
            *("--listen", self.unix),
            *("--listen", self.ssl),
            *("--listen", HAPROXY),
        )
        (self.tcp, self.tcp6, _, self.tlsAddress, self.proxy) = self.server.addresses

    def waitForLog(self, pattern: str) -> str:
        """The first log line matching ``pattern`` (a regular expression)."""
        found: list[str] = []

        def search() -> bool:
            found[:] = re.findall(f"^.*{pattern}.*$", self.server.stdout(), re.MULTILINE)
            return bool(found)

        waitUntilBlocking(search, 5, f"{pattern!r} in the log:\n{self.server.stdout()}")
        return found[0]

    def test_listeningOnAll(self) -> None:
        log = self.server.stdout()
        for address, description in (
            (f"{LOOPBACK}:{self.tcp.port}", LOCAL_TCP),
            (f"[::1]:{self.tcp6.port}", TCP6),
            (self.unix, self.unix),
            (f"{LOOPBACK}:{self.tlsAddress.port}", self.ssl),
            (f"{LOOPBACK}:{self.proxy.port}", HAPROXY),
        ):
            self.assertIn(f"listening on {address} ({description})", log)

    def test_tcp(self) -> None:
        data = os.urandom(300_000)
        result = runClientSync(LOOPBACK, str(self.tcp.port), stdin=data)
        self.assertEqual((result.status, result.err), (0, b""))
        self.assertTrue(result.out == data, "the echo differs")
        line = self.waitForLog(r"closed \(closed\)")
        self.assertRegex(line, rf"127\.0\.0\.1:\d+ closed \(closed\) .*: {len(data)} bytes in")

    def test_tcp6(self) -> None:
        result = runClientSync("::1", str(self.tcp6.port), stdin=b"over IPv6\n")
        self.assertEqual((result.status, result.out, result.err), (0, b"over IPv6\n", b""))
        self.assertIn("connected to tcp6:", self.waitForLog(r"\[::1\]:\d+ connected"))

    def test_unix(self) -> None:
        result = runClientSync("--connect", self.unix, stdin=b"over a UNIX socket\n")
        self.assertEqual(
            (result.status, result.out, result.err), (0, b"over a UNIX socket\n", b"")
        )
        self.waitForLog(f"connected to {re.escape(self.unix)} ")

    def test_ssl(self) -> None:
        """TLS with a certificate made here; the client trusts it from a file."""
        data = os.urandom(300_000)
        result = runClientSync(
            "--connect",
            f"tls:{LOOPBACK}:{self.tlsAddress.port}",
            "--cafile",
            self.tls.caCert,
            stdin=data,
        )
        self.assertEqual((result.status, result.err), (0, b""))
        self.assertTrue(result.out == data, "the echo differs")
        line = self.waitForLog(r"closed \(closed\)")
        self.assertRegex(line, rf"127\.0\.0\.1:\d+ closed \(closed\) .*: {len(data)} bytes in")

    def test_haproxyV1(self) -> None:
        """The log names the client from the header, not the connection's peer;
        the client half-closes and gets every byte back."""
        data = os.urandom(500_000)
        s = connect((LOOPBACK, self.proxy.port))
        answer = halfCloseExchange(s, proxyV1(("127.0.0.5", 40001), (LOOPBACK, 7788)) + data)
        self.assertTrue(answer == data, "the echo differs")
        self.assertIn("127.0.0.5:40001 connected to haproxy:", self.waitForLog("connected"))
        self.assertIn(
            f"{len(data)} bytes in, {len(data)} out",
            self.waitForLog(r"127\.0\.0\.5:40001 closed \(closed\)"),
        )

    def test_haproxyV2(self) -> None:
        data = b"one line\n" * 1000
        s = connect((LOOPBACK, self.proxy.port))
        answer = halfCloseExchange(s, proxyV2(("::1", 40002), ("::1", 7788)) + data)
        self.assertEqual(answer, data)
        self.assertIn("[::1]:40002 connected to haproxy:", self.waitForLog("connected"))
        self.waitForLog(r"\[::1\]:40002 closed \(closed\)")

    def test_haproxyRefusesANonProxyClient(self) -> None:
        s = connect((LOOPBACK, self.proxy.port))
        # Dropped (RST): it does not speak the protocol.
        with contextlib.suppress(ConnectionResetError):
            self.assertEqual(halfCloseExchange(s, b"hello\n"), b"")
        line = self.waitForLog("bad-proxy-header")
        self.assertRegex(line, r"refused 127\.0\.0\.1:\d+ on haproxy:.*: bad-proxy-header")


class SocketActivationTests(SynchronousTestCase):
    """``systemd:`` listeners adopt the socket they are passed."""

    def activate(self, sock: socket.socket, *args: str) -> SocketActivatedServer:
        sock.listen(50)
        server = SocketActivatedServer(serverCommand(*args), sock, name="echo")
        self.addCleanup(server.cleanup)
        server.start()
        # Only the server has the socket now, as with systemd.
        sock.close()
        return server

    def test_byIndex(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
        server = self.activate(sock, "--listen", "systemd:domain=INET:index=0")
        self.assertEqual((server.host, server.port), (LOOPBACK, port))
        s = connect((LOOPBACK, port))
        self.assertEqual(halfCloseExchange(s, b"activated\n"), b"activated\n")

    def test_byNameIPv6BehindAProxy(self) -> None:
        """The name systemd gives the descriptor (FileDescriptorName=), and
        haproxy: around it."""
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.bind(("::1", 0))
        port = sock.getsockname()[1]
        server = self.activate(sock, "--listen", "haproxy:systemd:domain=INET6:name=echo")
        self.assertEqual((server.host, server.port), ("::1", port))
        s = connect(("::1", port))
        header = proxyV1(("127.0.0.5", 40001), (LOOPBACK, 7788))
        self.assertEqual(halfCloseExchange(s, header + b"proxied\n"), b"proxied\n")
        waitUntilBlocking(
            lambda: "127.0.0.5:40001 connected to haproxy:systemd:" in server.stdout(),
            5,
            "the client's address in the log",
        )

    def test_nothingPassed(self) -> None:
        """Without a passed socket: one line and a failure status, no traceback."""
        result = runProcessSync(serverCommand("--listen", "systemd:domain=INET:index=0"))
        self.assertNotEqual(result.status, 0)
        self.assertNotIn("Traceback", result.out.decode() + result.err.decode())
        self.assertIn("bad --listen 'systemd:domain=INET:index=0'", result.err.decode())
