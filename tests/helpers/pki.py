"""
The one certificate factory: a CA, server and client certificates, and a rogue client, on disk.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers.processes import shortTempDir
from tests.helpers.sockets import LOOPBACK

#: The flags of x509.KeyUsage, each of which its constructor requires.
_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


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
    #: A directory holding only the CA certificate, for Twisted's ``trustRoots=``.
    caDir: str

    def serverDescription(self, port: int = 0, interface: str = LOOPBACK) -> str:
        """An ``ssl:`` server endpoint string with the server certificate."""
        iface = interface.replace(":", "\\:")
        return (
            f"ssl:{port}:interface={iface}:privateKey={self.serverKey}:certKey={self.serverCert}"
        )

    def trustingDescription(self, port: int) -> str:
        """A ``tls:`` client endpoint string trusting the CA (Twisted's ``trustRoots=``)."""
        return f"tls:localhost:{port}:trustRoots={self.caDir}"

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
            # Python 3.13's ssl verifies strictly (VERIFY_X509_STRICT): it
            # wants the key identifiers, and key usage on a CA.
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuerKey.public_key()),
                critical=False,
            )
        )
        if ca:
            # A CA signs (certificates, revocation lists) and does nothing else.
            usages = dict.fromkeys(_KEY_USAGES, False)
            usages.update(digital_signature=True, key_cert_sign=True, crl_sign=True)
            builder = builder.add_extension(x509.KeyUsage(**usages), critical=True)
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
    caDir = os.path.join(directory, "ca")
    os.mkdir(caDir)
    with open(os.path.join(caDir, "ca.pem"), "wb") as f:
        f.write(pem(ca))
    return PKI(
        directory=directory,
        caDir=caDir,
        caCert=write("ca.pem", pem(ca)),
        serverKey=write("server.key", keyPEM(serverKey)),
        serverCert=write("server.pem", pem(server)),
        clientKey=write("client.key", keyPEM(clientKey)),
        clientCert=write("client.pem", pem(client)),
        rogueKey=write("rogue.key", keyPEM(rogueKey)),
        rogueCert=write("rogue.pem", pem(rogue)),
        rogueCA=write("rogue-ca.pem", pem(rogueCA)),
    )
