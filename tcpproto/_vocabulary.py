"""
tcpproto's words: modes, close and refusal reasons, and defaults.

Every name a log event field, a metric label or a command-line option uses is
defined here once, so that the modules that log, count or parse them agree.
This module imports nothing from tcpproto.
"""

from __future__ import annotations

# -- what a server answers (--mode) -----------------------------------------

ECHO = "echo"
THANKYOU = "thankyou"
#: What a server answers (``--mode``), for TCP and UDP listeners alike.
MODES = (ECHO, THANKYOU)

#: The thank-you server's default reply.
DEFAULT_REPLY = b"thank you!"

# -- close reasons: why we, not the peer, ended a connection ------------------

IDLE_TIMEOUT = "idle-timeout"
MAX_LIFETIME = "max-lifetime"
LINE_TOO_LONG = "line-too-long"
SHUTDOWN = "shutdown"
REPLIED_ONCE = "replied-once"

# -- refusal reasons (log field ``reason``, metric label ``reason``) ----------

NOT_ALLOWED = "not-allowed"
MAX_CONNECTIONS = "max-connections"
MAX_PER_PEER = "max-per-peer"
BAD_PROXY_HEADER = "bad-proxy-header"
PROXY_HEADER_TIMEOUT = "proxy-header-timeout"
TLS_NO_CERTIFICATE = "tls-no-certificate"
TLS_BAD_CERTIFICATE = "tls-bad-certificate"
TLS_HANDSHAKE_FAILED = "tls-handshake-failed"
TLS_HANDSHAKE_TIMEOUT = "tls-handshake-timeout"
#: A datagram came from a port a reflection loop uses.
LOOP_PORT = "loop-port"

# -- defaults ------------------------------------------------------------------

#: Default idle timeout, in seconds.
DEFAULT_IDLE_TIMEOUT = 300.0
#: Default longest life of a connection, in seconds.  In raw framing every
#: byte is answered, so a peer dripping one byte a second is never idle; this
#: bounds how long it can hold a connection (a day: no real test runs that
#: long on one connection, and operators can say 0 for never).
DEFAULT_MAX_LIFETIME = 86400.0
#: Seconds a connection past its lifetime has to send what is left before
#: it is cut (its peer may not be reading).
LIFETIME_GRACE = 10.0
#: Default most open connections over all listeners of a server.
DEFAULT_MAX_CONNECTIONS = 10000
#: Default seconds open connections get to finish at shutdown.
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
#: Seconds a connection may take to send its whole PROXY header.
HEADER_TIMEOUT = 10.0
#: Seconds a client may take to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0
