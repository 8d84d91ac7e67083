"""
Helpers for the deployment tests: certificates, PROXY headers, socket
activation, sockets that half-close, HAProxy.

Everything binds to and connects to loopback only.  The addresses written
into PROXY headers are loopback addresses too (distinct from the real peer's,
so that a test can tell which one the server logged).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.trial.unittest import SynchronousTestCase

from tests.support import LOOPBACK, ServerProcess, processEnv, shortTempDir

#: Seconds a blocking test socket waits for anything.
SOCKET_TIMEOUT = 10.0

# -- certificates -----------------------------------------------------------


@dataclass
class PKI:
    """A CA with a server and a client certificate, and a rogue client, on disk."""

    directory: str
    caCert: str
    serverKey: str
    serverCert: str
    clientKey: str
    clientCert: str
    #: A client certificate signed by another CA (and that CA's certificate).
    rogueKey: str
    rogueCert: str
    rogueCA: str

    def serverDescription(self, port: int = 0, interface: str = LOOPBACK) -> str:
        """An ``ssl:`` server endpoint string with the server certificate."""
        iface = interface.replace(":", "\\:")
        return (
            f"ssl:{port}:interface={iface}:privateKey={self.serverKey}:certKey={self.serverCert}"
        )

    def clientDescription(self, port: int, withCertificate: str | None = "client") -> str:
        """A ``tls:`` client endpoint string, with the good or rogue client certificate."""
        text = f"tls:{LOOPBACK}:{port}"
        if withCertificate == "client":
            text += f":certificate={self.clientCert}:privateKey={self.clientKey}"
        elif withCertificate == "rogue":
            text += f":certificate={self.rogueCert}:privateKey={self.rogueKey}"
        return text


def makePKI(testCase: SynchronousTestCase) -> PKI:
    """Generate a :class:`PKI` in a temporary directory removed at cleanup."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    directory = shortTempDir(testCase)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(filename: str, data: bytes) -> str:
        path = os.path.join(directory, filename)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def keyPEM(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        issuerKey: ec.EllipticCurvePrivateKey,
        ca: bool = False,
        server: bool = False,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        elif not ca:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        return builder.sign(issuerKey, hashes.SHA256())

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    caKey = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("tcpproto test CA", caKey, "tcpproto test CA", caKey, ca=True)
    serverKey = ec.generate_private_key(ec.SECP256R1())
    server = certificate("localhost", serverKey, "tcpproto test CA", caKey, server=True)
    clientKey = ec.generate_private_key(ec.SECP256R1())
    client = certificate("good client", clientKey, "tcpproto test CA", caKey)
    rogueCAKey = ec.generate_private_key(ec.SECP256R1())
    rogueCA = certificate("rogue CA", rogueCAKey, "rogue CA", rogueCAKey, ca=True)
    rogueKey = ec.generate_private_key(ec.SECP256R1())
    rogue = certificate("rogue client", rogueKey, "rogue CA", rogueCAKey)
    return PKI(
        directory=directory,
        caCert=write("ca.pem", pem(ca)),
        serverKey=write("server.key", keyPEM(serverKey)),
        serverCert=write("server.pem", pem(server)),
        clientKey=write("client.key", keyPEM(clientKey)),
        clientCert=write("client.pem", pem(client)),
        rogueKey=write("rogue.key", keyPEM(rogueKey)),
        rogueCert=write("rogue.pem", pem(rogue)),
        rogueCA=write("rogue-ca.pem", pem(rogueCA)),
    )


# -- PROXY protocol headers, written independently of any parser -------------


def proxyV1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A PROXY protocol v1 header (text) for a TCP connection."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return (
        f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
    ).encode("ascii")


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxyV2(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A PROXY protocol v2 header (binary, PROXY command, TCP) for a connection."""
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0])
    familyProtocol = 0x21 if src.version == 6 else 0x11
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return V2_SIGNATURE + bytes([0x21, familyProtocol]) + struct.pack("!H", len(body)) + body


def proxyV2Local() -> bytes:
    """A PROXY protocol v2 LOCAL header (a balancer's own connection)."""
    return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


# -- sockets ----------------------------------------------------------------


def connect(address: str | tuple[str, int], family: int = socket.AF_INET) -> socket.socket:
    """A blocking socket connected to ``address`` (a UNIX path or host and port)."""
    if isinstance(address, str):
        family = socket.AF_UNIX
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(SOCKET_TIMEOUT)
    s.connect(address)
    return s


def halfCloseExchange(s: socket.socket, data: bytes, deadline: float = 30.0) -> bytes:
    """
    Send ``data`` on the connected ``s``, then ``shutdown(SHUT_WR)``; read
    until the server closes; close ``s``.  What the server sent.

    Sending and reading interleave (a selector), as a client must when the
    server answers while it is still sending.
    """
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    received: list[bytes] = []
    view = memoryview(data)
    sent = 0
    end = time.monotonic() + deadline
    try:
        if not data:
            s.shutdown(socket.SHUT_WR)
            sel.register(s, selectors.EVENT_READ)
        else:
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no EOF within {deadline}s: sent {sent}/{len(data)}, "
                    f"received {sum(map(len, received))}"
                )
            for key, events in sel.select(min(remaining, 1.0)):
                if events & selectors.EVENT_WRITE:
                    sent += s.send(view[sent : sent + 65536])
                    if sent == len(data):
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(key.fileobj, selectors.EVENT_READ)
                if events & selectors.EVENT_READ:
                    chunk = s.recv(65536)
                    if not chunk:
                        return b"".join(received)
                    received.append(chunk)
    finally:
        sel.close()
        s.close()


def readUntil(s: socket.socket, expected: int, deadline: float = SOCKET_TIMEOUT) -> bytes:
    """Read from the blocking ``s`` until ``expected`` bytes or EOF or ``deadline``."""
    chunks: list[bytes] = []
    got = 0
    end = time.monotonic() + deadline
    while got < expected and time.monotonic() < end:
        s.settimeout(max(end - time.monotonic(), 0.01))
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    s.settimeout(SOCKET_TIMEOUT)
    return b"".join(chunks)


def freePort(host: str = LOOPBACK) -> int:
    """A loopback port nothing listens on now (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def waitFor(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition()`` every 20 ms until true; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# -- socket activation ------------------------------------------------------

#: Puts the descriptor named by argv[1] at 3 (where systemd puts the first
#: one), sets LISTEN_PID to its own pid (which exec keeps) and runs the rest.
#: (In Python: sh cannot redirect descriptors above 9.)
_ACTIVATE = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3)\n"
    "    os.close(fd)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class SocketActivatedServer(ServerProcess):
    """
    A server command run as systemd runs a socket-activated service: the
    listening socket ``sock`` is its descriptor 3, with ``LISTEN_FDS=1``,
    ``LISTEN_PID`` its own pid and ``LISTEN_FDNAMES`` ``name``.

    :param command: the whole command line (``twistd ...``).
    """

    def __init__(
        self,
        command: Sequence[str],
        sock: socket.socket,
        name: str = "tcpecho",
        environment: dict[str, str] | None = None,
    ) -> None:
        super().__init__(list(command))
        self.command = list(command)
        self.sock = sock
        self.name = name
        self.environment = environment or {}

    def spawn(self) -> None:
        fd = self.sock.fileno()
        env = processEnv({"LISTEN_FDS": "1", "LISTEN_FDNAMES": self.name, **self.environment})
        env.pop("LISTEN_PID", None)
        with open(self.outPath, "wb") as out, open(self.errPath, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ACTIVATE, str(fd), *self.command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workDir,
                env=env,
                pass_fds=(fd,),
            )


class CommandServer(ServerProcess):
    """A :class:`ServerProcess` running a whole command line of its own."""

    def __init__(self, command: Sequence[str], environment: dict[str, str] | None = None) -> None:
        super().__init__(list(command))
        self.command = list(command)
        self.environment = environment or {}

    def spawn(self) -> None:
        with open(self.outPath, "wb") as out, open(self.errPath, "wb") as err:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workDir,
                env=processEnv(self.environment),
            )


# -- HAProxy ----------------------------------------------------------------

#: The repository's contrib directory.
CONTRIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "contrib")


def haproxyExecutable() -> str | None:
    """The ``haproxy`` command, if installed."""
    return shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None
    )
