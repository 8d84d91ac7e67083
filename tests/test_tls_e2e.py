"""
End to end, half-close over TLS: the installed ``twistd -n tcpecho`` on an
``ssl:`` listener and the installed ``tcpecho-client --connect tls:``, plus
Python's :mod:`ssl` module as a TLS 1.2 and TLS 1.3 peer nobody here wrote.

The end of the client's input is its ``close_notify``; the server answers
everything it received, exactly as over TCP (line framing's unterminated
tail, ``--once``, the thank-you reply), then sends its own ``close_notify``.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import LOCAL_TCP, LOOPBACK, ProcessResult, runClientSync, startServer
from tests.helpers.pki import PKI, makePKI
from tests.helpers.processes import ServerProcess

TIMEOUT = 20.0


class TLSEndToEndTests(SynchronousTestCase):
    """``twistd tcpecho`` on ``ssl:`` with ``tcpecho-client --connect tls: --cafile``."""

    def setUp(self) -> None:
        self.pki: PKI = makePKI(self)

    def server(self, *args: str) -> ServerProcess:
        return startServer(self, "--listen", self.pki.serverDescription(), *args)

    def client(
        self, server: ServerProcess, data: bytes, *args: str, port: int | None = None
    ) -> ProcessResult:
        return runClientSync(
            "--connect",
            f"tls:{LOOPBACK}:{server.port if port is None else port}",
            "--cafile",
            self.pki.caCert,
            *args,
            stdin=data,
            timeout=TIMEOUT,
        )

    def assertAnswer(self, result: ProcessResult, expected: bytes) -> None:
        self.assertEqual((result.status, result.errLines()), (0, []))
        self.assertEqual(result.out, expected)

    def test_lineFramingUnterminatedTail(self) -> None:
        """The issue's commands: ``abc\\ndef`` and ``x`` come back whole, as over TCP."""
        server = self.server("--framing", "line")
        self.assertAnswer(self.client(server, b"abc\ndef"), b"abc\ndef")
        self.assertAnswer(self.client(server, b"x"), b"x")
        self.assertAnswer(self.client(server, b""), b"")

    def test_rawLarge(self) -> None:
        """A megabyte in raw framing: every byte back, in order."""
        data = bytes(range(256)) * 4096
        server = self.server()
        self.assertAnswer(self.client(server, data), data)

    def test_thankYouOnce(self) -> None:
        """The thank-you reply with ``--once``: sent after the end of input, then closed."""
        server = self.server("--mode", "thankyou", "--once")
        self.assertAnswer(self.client(server, b"hello"), b"thank you!")
        self.assertAnswer(self.client(server, b""), b"")
        server.stop()
        self.assertIn("(replied-once)", server.stdout())

    def test_sameAsTCP(self) -> None:
        """
        Both modes, both framings: what comes back over TLS is byte for byte
        what comes back over TCP from the same server.
        """
        inputs = [b"one\ntwo", b"x", b"", b"a\n\nb\n", b"\x00\xff" * 5000]
        for mode in ("echo", "thankyou"):
            for framing in ("raw", "line"):
                server = startServer(
                    self,
                    "--listen",
                    LOCAL_TCP,
                    "--listen",
                    self.pki.serverDescription(),
                    "--mode",
                    mode,
                    "--framing",
                    framing,
                )
                ports = dict(
                    (kind, int(port))
                    for port, kind in re.findall(
                        r"listening on 127\.0\.0\.1:(\d+) \((tcp|ssl):", server.stdout()
                    )
                )
                for data in inputs:
                    with self.subTest(mode=mode, framing=framing, data=data[:10]):
                        overTCP = runClientSync(
                            LOOPBACK, str(ports["tcp"]), stdin=data, timeout=TIMEOUT
                        )
                        overTLS = self.client(server, data, port=ports["ssl"])
                        self.assertEqual((overTCP.status, overTCP.errLines()), (0, []))
                        self.assertAnswer(overTLS, overTCP.out)
                server.stop()

    def test_closesCleanly(self) -> None:
        """The server logs a clean close, not a lost connection."""
        server = self.server("--framing", "line")
        self.assertAnswer(self.client(server, b"abc\ndef"), b"abc\ndef")
        server.stop()
        log = server.stdout()
        self.assertRegex(log, r"closed \(closed\) after [0-9.]+s: 7 bytes in, 7 out")
        self.assertIn("EchoFactory (TLS) starting on", log)


class PythonSSLPeerTests(SynchronousTestCase):
    """
    Python's ssl module against ``twistd tcpecho --framing line``: send,
    ``unwrap()`` (our close_notify, and we read on), read to the server's
    close_notify.  TLS 1.2 behaves as TLS 1.3: the answer after the end of
    input arrives.

    Through an :class:`ssl.SSLObject` on memory BIOs: ``unwrap()`` calls
    OpenSSL's ``SSL_shutdown`` twice, and the second call reads; on an
    :class:`ssl.SSLSocket` it may read the echo of the first line, already on
    its way, and fail with ``APPLICATION_DATA_AFTER_CLOSE_NOTIFY``.  With
    nothing new in the incoming BIO, the second call only says it would
    block.
    """

    def setUp(self) -> None:
        self.pki = makePKI(self)
        self.server = startServer(
            self, "--listen", self.pki.serverDescription(), "--framing", "line"
        )

    def exchange(self, version: ssl.TLSVersion, data: bytes) -> tuple[str, bytes]:
        context = ssl.create_default_context(cafile=self.pki.caCert)
        context.minimum_version = version
        context.maximum_version = version
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
        with socket.create_connection((LOOPBACK, self.server.port), timeout=TIMEOUT) as sock:

            def send() -> None:
                pending = outgoing.read()
                if pending:
                    sock.sendall(pending)

            def receive() -> None:
                chunk = sock.recv(65536)
                if chunk:
                    incoming.write(chunk)
                else:
                    incoming.write_eof()

            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    send()
                    receive()
            tls.write(data)
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.unwrap()  # our close_notify; the server's comes after its answer
            send()
            chunks = []
            while True:
                try:
                    chunk = tls.read(65536)
                except ssl.SSLWantReadError:
                    receive()
                    continue
                except ssl.SSLZeroReturnError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return tls.version() or "", b"".join(chunks)

    def test_tls13(self) -> None:
        self.assertEqual(
            self.exchange(ssl.TLSVersion.TLSv1_3, b"abc\ndef"), ("TLSv1.3", b"abc\ndef")
        )

    def test_tls12(self) -> None:
        self.assertEqual(
            self.exchange(ssl.TLSVersion.TLSv1_2, b"abc\ndef"), ("TLSv1.2", b"abc\ndef")
        )
