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
#: A datagram whose thank-you reply would be larger than it (an amplifier
#: for forged sources), without ``--udp-large-replies``.
REPLY_TOO_LARGE = "reply-too-large"
#: A datagram over its source's rate (``--udp-rate``).
RATE_LIMITED = "rate-limited"

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
#: The lingering close (after our last answer: --once, a line too long, the
#: idle timeout, --max-lifetime): how long the peer has after our FIN to
#: close its side, and how many bytes it may send meanwhile (read and
#: discarded), before the connection is cut with RST.  Apache lingers two
#: seconds too; the byte bound stops a peer that keeps sending from making
#: the server read (and discard) at full speed.  It is far above what a peer
#: that stops on our FIN still has in flight.
LINGER_TIMEOUT = 2.0
LINGER_MAX_BYTES = 16 * 1024 * 1024
#: While the peer is still taking our output (a slow reader), the lingering
#: phase goes on past LINGER_TIMEOUT, up to this many seconds in all
#: (Apache's MAX_SECS_TO_LINGER): cutting it would throw that output away.
LINGER_MAX_TIME = 30.0
#: Default answers per second to one UDP source address in thank-you mode
#: (and its burst): a forged source can make the server send a victim this
#: many datagrams a second, no more.
DEFAULT_UDP_RATE = 100.0
#: Default most open connections over all listeners of a server.
DEFAULT_MAX_CONNECTIONS = 10000
#: Default seconds open connections get to finish at shutdown.
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
#: Seconds a connection may take to send its whole PROXY header.
HEADER_TIMEOUT = 10.0
#: Seconds a client may take to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0
