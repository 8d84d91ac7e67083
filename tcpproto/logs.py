"""
JSON logs for ``twistd``: one JSON object per line, every event field kept.

``twistd --logger=tcpproto.logs.jsonLogger -n tcpecho ...`` writes the log
as JSON Lines on standard output (for systemd's journal, containers, log
shippers).  ``twistd``'s ``--logger`` option takes a factory called with no
argument and takes precedence over ``--logfile``, so the file, when wanted,
is named by the environment variable :data:`JSON_LOG_ENV`; it is then
rotated as ``twistd --logfile`` rotates its own (every megabyte).

Each line is :func:`twisted.logger.eventAsJSON`'s serialization of one
event: tcpproto's fields (``event``, ``peer``, ``listener``, ``mode``,
``bytes_in``, ``bytes_out``, ``duration``, ``reason``) are top-level keys,
next to Twisted's ``log_namespace``, ``log_level``, ``log_time`` and
``log_format``; :func:`twisted.logger.eventsFromJSONLogFile` reads them back.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from twisted.logger import FileLogObserver, jsonFileLogObserver
from twisted.python.logfile import LogFile

#: The environment variable naming the file :func:`jsonLogger` writes to
#: (standard output when unset, empty or ``-``).
JSON_LOG_ENV = "TCPPROTO_JSON_LOG"


def jsonLogger() -> FileLogObserver:
    """
    A log observer writing JSON Lines, for ``twistd --logger``.

    The records are not prefixed with the RFC 7464 record separator
    (Twisted's default), so that line-oriented tools (``jq``, log shippers)
    read them as they are.
    """
    path = os.environ.get(JSON_LOG_ENV, "")
    out: IO[Any] = sys.stdout if path in ("", "-") else LogFile.fromFullPath(os.path.abspath(path))
    return jsonFileLogObserver(out, recordSeparator="")
