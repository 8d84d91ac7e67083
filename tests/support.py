"""
Transitional (issue 9): the test helpers moved to :mod:`tests.helpers`.

Import from :mod:`tests.helpers` (certificates: ``makePKI``); this module
only keeps tests written before the move working, and goes once nothing
imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import *  # noqa: F403
from tests.helpers import LOOPBACK, makePKI


@dataclass
class TLSFiles:
    """A server key and a certificate file that is also its own CA bundle."""

    keyPath: str
    #: The server's certificate followed by its CA's: usable as ``certKey=``
    #: and as a CA file (``--cafile``).
    certPath: str
    #: A directory holding only the CA certificate, for ``trustRoots=``.
    caDir: str

    def serverDescription(self, port: int = 0) -> str:
        return f"ssl:{port}:interface={LOOPBACK}:privateKey={self.keyPath}:certKey={self.certPath}"

    def clientDescription(self, port: int) -> str:
        return f"tls:localhost:{port}:trustRoots={self.caDir}"


def makeTLSFiles(testCase: SynchronousTestCase) -> TLSFiles:
    """:class:`TLSFiles` from :func:`tests.helpers.makePKI` (the one certificate factory)."""
    pki = makePKI(testCase)
    bundle = os.path.join(pki.directory, "server-and-ca.pem")
    with open(bundle, "wb") as out:
        for path in (pki.serverCert, pki.caCert):
            with open(path, "rb") as f:
                out.write(f.read())
    return TLSFiles(pki.serverKey, bundle, pki.caDir)
