"""
Test helpers, by what they fake or drive:

- :mod:`tests.helpers.processes`: ``twistd tcpecho`` and ``tcpecho-client``
  as subprocesses (servers with resource limits, socket-activated ones);
- :mod:`tests.helpers.sockets`: loopback listeners and blocking clients;
- :mod:`tests.helpers.pki`: the one certificate factory;
- :mod:`tests.helpers.proxy`: PROXY protocol headers;
- :mod:`tests.helpers.logs`: log capture;
- :mod:`tests.helpers.memory`: in-memory streams (the in-memory
  connections are public: import them from :mod:`tcpproto.testing`);
- :mod:`tests.helpers.waiting`: the one wait helper.

Everything binds to and connects to loopback only.  The names are
re-exported here, so tests import them from ``tests.helpers``.
"""

from tests.helpers.logs import (
    LogCapture,
)
from tests.helpers.memory import (
    ConnectedTestCase,
    assertRefusesArguments,
    assertReplies,
    assertSameBytes,
    chunked,
)
from tests.helpers.pki import (
    PKI,
    makePKI,
)
from tests.helpers.processes import (
    BIN_DIR,
    CONTRIB,
    PROCESS_TIMEOUT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Address,
    CommandServer,
    LimitedServer,
    ProcessResult,
    ServerProcess,
    SocketActivatedServer,
    clientCommand,
    executable,
    haproxyExecutable,
    parseListening,
    processEnv,
    raiseOwnFileLimit,
    runClient,
    runClientSync,
    runProcess,
    runProcessSync,
    serverCommand,
    shortTempDir,
    startLimitedServer,
    startServer,
    startServerAsync,
)
from tests.helpers.proxy import (
    V2_SIGNATURE,
    proxyV1,
    proxyV2,
    proxyV2Local,
)
from tests.helpers.sockets import (
    LOCAL_TCP,
    LOOPBACK,
    OTHER_LOOPBACK,
    SOCKET_TIMEOUT,
    Probe,
    Silent,
    allClosed,
    busyPort,
    clientDescription,
    closedAtOnce,
    connect,
    exchangeLocal,
    freePort,
    halfCloseExchange,
    listenLocal,
    pattern,
    portNumber,
    readUntil,
    recvExactly,
    recvUntilClosed,
    refusedNow,
    resetClose,
)
from tests.helpers.waiting import (
    INTERVAL,
    waitUntil,
    waitUntilBlocking,
)

__all__ = [
    "BIN_DIR",
    "CONTRIB",
    "INTERVAL",
    "LOCAL_TCP",
    "LOOPBACK",
    "OTHER_LOOPBACK",
    "PKI",
    "PROCESS_TIMEOUT",
    "SOCKET_TIMEOUT",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "V2_SIGNATURE",
    "Address",
    "CommandServer",
    "ConnectedTestCase",
    "LimitedServer",
    "LogCapture",
    "Probe",
    "ProcessResult",
    "ServerProcess",
    "Silent",
    "SocketActivatedServer",
    "allClosed",
    "assertRefusesArguments",
    "assertReplies",
    "assertSameBytes",
    "busyPort",
    "chunked",
    "clientCommand",
    "clientDescription",
    "closedAtOnce",
    "connect",
    "exchangeLocal",
    "executable",
    "freePort",
    "halfCloseExchange",
    "haproxyExecutable",
    "listenLocal",
    "makePKI",
    "parseListening",
    "pattern",
    "portNumber",
    "processEnv",
    "proxyV1",
    "proxyV2",
    "proxyV2Local",
    "raiseOwnFileLimit",
    "readUntil",
    "recvExactly",
    "recvUntilClosed",
    "refusedNow",
    "resetClose",
    "runClient",
    "runClientSync",
    "runProcess",
    "runProcessSync",
    "serverCommand",
    "shortTempDir",
    "startLimitedServer",
    "startServer",
    "startServerAsync",
    "waitUntil",
    "waitUntilBlocking",
]
