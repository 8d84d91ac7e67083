"""
The ``tcpecho-client`` command line: arguments, standard input and output.

:mod:`tcpproto.client` is its public face (``main``); the protocols are in
:mod:`tcpproto._clientprotocols`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import IO, Any, NoReturn, cast

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, clientFromString, connectProtocol
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProducer,
    IPushProducer,
    IReactorCore,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from tcpproto._clientprotocols import ClientProtocol, InputNotSent, InputProtocol
from tcpproto._twisted import bigReadStandardIO
from tcpproto._version import __version__
from tcpproto._wrapping import cancelCall

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7788
DEFAULT_TIMEOUT = 10.0

#: Exit statuses of ``tcpecho-client``.
EXIT_OK = 0
EXIT_CONNECT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {port}")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):  # (NaN compares false either way)
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


def buildParser() -> argparse.ArgumentParser:
    """The ``tcpecho-client`` argument parser."""
    p = _Parser(
        prog="tcpecho-client",
        description=(
            "Connect to a TCP server, send standard input to it as raw bytes, and write "
            "what it sends back to standard output. At the end of input the connection "
            "is half-closed, and the client exits once the server has closed too. At a "
            "terminal it says where it connected and when the server closes (see --quiet), "
            "and output that does not end a line is followed by one on the screen only; "
            "piped input and output are passed byte for byte."
        ),
    )
    p.add_argument("host", nargs="?", help=f"server host name or address (default {DEFAULT_HOST})")
    p.add_argument("port", nargs="?", type=_port, help=f"server port (default {DEFAULT_PORT})")
    p.add_argument(
        "--connect",
        metavar="DESC",
        help="a Twisted client endpoint string instead of HOST PORT, e.g. tcp:127.0.0.1:7788, "
        "unix:/run/tcpecho.sock, tls:example.net:7788",
    )
    p.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up connecting after this long (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"tcpecho-client (tcpproto) {__version__}",
        help="print tcpproto's version and exit",
    )
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="at a terminal, say nothing on standard error about the connection "
        "(where it connected, how to finish, when the server closes); errors are "
        "still reported",
    )
    p.add_argument(
        "--cafile",
        metavar="FILE",
        help="with --connect tls:HOST:PORT: trust only the CA certificates in this PEM file "
        "(a client certificate for mutual TLS goes in the endpoint string: "
        "tls:HOST:PORT:certificate=cert.pem:privateKey=key.pem)",
    )
    return p


def _ask(prompt: str, default: str, stdin: IO[str], stderr: IO[str]) -> str:
    stderr.write(f"{prompt} [{default}]: ")
    stderr.flush()
    answer = stdin.readline()
    if not answer:
        raise EOFError
    return answer.strip() or default


def _describeFailure(reason: Failure) -> str:
    if reason.check(error.ConnectionRefusedError):
        return "connection refused"
    if reason.check(error.DNSLookupError, error.UnknownHostError):
        return "unknown host"
    if reason.check(error.TimeoutError, error.TCPTimedOutError):
        return "timed out"
    if reason.check(error.ConnectionLost):
        return "connection lost"
    if reason.check("OpenSSL.SSL.Error"):
        from tcpproto._tls import failureReason

        return f"TLS: {failureReason(reason)}"
    message = reason.getErrorMessage().strip().splitlines()
    return message[0] if message else reason.type.__name__  # type: ignore[union-attr]


#: Client endpoint types whose strings take a ``timeout=`` (seconds to connect).
_TIMEOUT_TYPES = ("tcp", "ssl", "tls", "unix")


def withTimeout(description: str, timeout: float) -> str:
    """
    ``description`` with ``timeout=`` added when its type takes one and it
    has none, so that ``--timeout`` also bounds ``--connect``.
    """
    kind = description.split(":", 1)[0]
    if kind in _TIMEOUT_TYPES and "timeout=" not in description:
        return f"{description}:timeout={timeout:g}"
    return description


@dataclass
class _Target:
    """Where to connect, and how to name it in messages."""

    description: str | None
    host: str
    port: int
    timeout: float
    caFile: str | None = None
    quiet: bool = False

    def name(self) -> str:
        return self.description or f"{self.host} port {self.port}"

    def endpoint(self, reactor: IReactorCore) -> IStreamClientEndpoint:
        if self.description is not None and (
            self.caFile is not None or self.description.startswith("tls:")
        ):
            # Our TLS endpoint: the end of input is a close_notify, and the
            # answer is read until the server's (Twisted's tls: closes).
            from tcpproto._tls import clientEndpoint

            return clientEndpoint(reactor, self.description, self.caFile, self.timeout)
        if self.description is not None:
            return cast(
                IStreamClientEndpoint,
                clientFromString(reactor, withTimeout(self.description, self.timeout)),
            )
        return HostnameEndpoint(reactor, self.host, self.port, timeout=self.timeout)


def parseTarget(argv: Sequence[str], stdin: IO[str], stderr: IO[str]) -> _Target:
    """
    Read the command line (and, interactively, ask for host and port).

    :raises SystemExit: on a usage error, with a one-line message.
    """
    parser = buildParser()
    args = parser.parse_args(list(argv))
    if args.cafile is not None:
        if args.connect is None or not args.connect.startswith("tls:"):
            parser.error("--cafile goes with --connect tls:HOST:PORT")
        from tcpproto._tls import loadCertificates

        try:
            loadCertificates(args.cafile)
        except ValueError as e:
            parser.error(f"--cafile: {e}")
    if args.connect is not None:
        if args.host is not None:
            parser.error("give either HOST [PORT] or --connect, not both")
        return _Target(args.connect, "", 0, args.timeout, args.cafile, args.quiet)
    host, port = args.host, args.port
    if host is None and stdin.isatty():
        # Like the tutorial's client: ask for the server's address.
        try:
            host = _ask("server host", DEFAULT_HOST, stdin, stderr)
            portText = _ask("server port", str(DEFAULT_PORT), stdin, stderr)
        except (EOFError, KeyboardInterrupt):
            stderr.write("\n")
            raise SystemExit(EXIT_USAGE) from None
        try:
            port = _port(portText)
        except argparse.ArgumentTypeError as e:
            parser.error(str(e))
    return _Target(
        None, host or DEFAULT_HOST, port or DEFAULT_PORT, args.timeout, quiet=args.quiet
    )


@implementer(IHalfCloseableProtocol)
class _InputGate(Protocol):
    """
    Standard input, held paused until the connection is up, then handed to
    an :class:`InputProtocol` (nothing typed early is lost or sent early).
    """

    def __init__(self) -> None:
        self.inner: InputProtocol | None = None
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        cast(IPushProducer, self.transport).pauseProducing()

    def attach(self, inner: InputProtocol) -> None:
        assert self.transport is not None
        self.inner = inner
        inner.makeConnection(self.transport)  # type: ignore[no-untyped-call]
        cast(IPushProducer, self.transport).resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)

    def readConnectionLost(self) -> None:
        if self.inner is not None:
            self.inner.readConnectionLost()

    def writeConnectionLost(self) -> None:
        if self.inner is not None:
            self.inner.writeConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)
        self.closed.callback(None)


def _StandardIO(proto: Protocol, reactor: IReactorCore, stdin: int = 0, stdout: int = 1) -> Any:
    """Standard input and output as a transport for ``proto``, reading 64 KiB at a time."""
    return bigReadStandardIO(proto, reactor, stdin, stdout)


#: Seconds without output after output that does not end a line, before the
#: terminal's cursor is moved to a new line (display only).
TIDY_DELAY = 0.25


def _isTerminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _sameTerminal(a: int, b: int) -> bool:
    """Whether file descriptors ``a`` and ``b`` are the same terminal."""
    try:
        return os.isatty(a) and os.isatty(b) and os.path.samestat(os.fstat(a), os.fstat(b))
    except OSError:
        return False


@implementer(IConsumer)
@dataclass(eq=False)
class Display:
    """
    Standard output, and the lines for the person at the terminal.

    The server's bytes go to ``stdout`` unchanged (this is the
    :class:`ClientProtocol`'s output).  With ``tidy`` (standard output is a
    terminal), output that does not end a line (the thank-you reply has no
    newline) is followed on the screen by a newline once nothing more has
    come for :data:`TIDY_DELAY` seconds, before a message, and at the end,
    so that what is typed next, and the shell's prompt, start on a line of
    their own.

    Messages (:meth:`say`, with ``chatty``) and errors (:meth:`error`, always)
    go to ``stderr``.  When standard error is the same terminal as standard
    output (``sameTerminal``), they are written through ``stdout``'s stream
    instead, so that they show after the output that came before them (the
    two streams are flushed independently; on one screen only the order is
    seen).

    :param stdout: the standard output transport (an
        :class:`~twisted.internet.interfaces.IConsumer`).
    :param clock: schedules the newline.
    """

    stdout: IConsumer
    clock: IReactorTime
    stderr: IO[str]
    _: KW_ONLY
    tidy: bool = False
    chatty: bool = False
    sameTerminal: bool = False
    _atLineStart: bool = field(default=True, init=False)
    _timer: IDelayedCall | None = field(default=None, init=False)

    # IConsumer: where the server's bytes go.

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.stdout.write(data)
        if self.tidy:
            self._cancelTimer()
            self._atLineStart = data.endswith(b"\n")
            if not self._atLineStart:
                self._timer = self.clock.callLater(TIDY_DELAY, self.endLine)

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.stdout.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.stdout.unregisterProducer()

    # The screen.

    def _cancelTimer(self) -> None:
        cancelCall(self._timer)
        self._timer = None

    def endLine(self) -> None:
        """Start a new line on the screen if the output left the cursor mid-line."""
        self._cancelTimer()
        if self.tidy and not self._atLineStart:
            self._atLineStart = True
            self.stdout.write(b"\n")

    def say(self, text: str) -> None:
        """A message about the connection, unless ``chatty`` is off (``--quiet``, no terminal)."""
        if self.chatty:
            self.error(text)

    def error(self, text: str) -> None:
        """A one-line message, always shown."""
        line = f"tcpecho-client: {text}\n"
        if self.sameTerminal:
            self.endLine()
            self.stdout.write(line.encode("utf-8", "replace"))
        else:
            self.stderr.write(line)
            self.stderr.flush()


def describeConnection(transport: ITransport) -> str:
    """Where ``transport`` is connected: ``127.0.0.1 port 7788 (local port 50514)``."""
    peer: IAddress = transport.getPeer()
    host: IAddress = transport.getHost()
    if isinstance(peer, (IPv4Address, IPv6Address)):
        text = f"{peer.host} port {peer.port}"
        if isinstance(host, (IPv4Address, IPv6Address)):
            text += f" (local port {host.port})"
        return text
    if isinstance(peer, UNIXAddress):
        raw = peer.name or (host.name if isinstance(host, UNIXAddress) else None) or b""
        name = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)
        return f"unix:{name}"
    return str(peer)


async def _run(reactor: IReactorCore, target: _Target, interactive: bool) -> int:
    err = sys.stderr
    try:
        endpoint = target.endpoint(reactor)
    except (ValueError, KeyError, TypeError) as e:
        err.write(f"tcpecho-client: bad endpoint {target.name()!r}: {e}\n")
        return EXIT_USAGE
    gate = _InputGate()
    stdio = _StandardIO(gate, reactor)
    display = Display(
        stdio,
        cast(IReactorTime, reactor),
        err,
        tidy=_isTerminal(1),
        chatty=interactive and not target.quiet,
        sameTerminal=_sameTerminal(1, 2),
    )
    proto = ClientProtocol(display)
    try:
        await connectProtocol(endpoint, proto)
    except Exception:
        why = _describeFailure(Failure())
        display.error(f"cannot connect to {target.name()}: {why}")
        stdio.loseConnection()
        await gate.closed
        return EXIT_CONNECT_FAILED
    assert proto.transport is not None
    display.say(
        f"connected to {describeConnection(proto.transport)}; type lines, Ctrl-D to finish"
    )

    #: How much input had been sent when the server ended its side.
    sentAtServerEnd: list[int] = []

    def serverFinished() -> None:
        sentAtServerEnd.append(proto.bytesOut)
        display.say(
            f"{target.name()} has finished sending (it may still read): "
            "type more, or Ctrl-D to finish"
        )

    proto.onServerFinished = serverFinished
    inputSide = InputProtocol(proto)
    gate.attach(inputSide)
    status = EXIT_OK
    try:
        await proto.done
    except Exception:
        failure = Failure()
        if (
            failure.check(InputNotSent)
            and interactive
            and sentAtServerEnd
            and proto.bytesOut == sentAtServerEnd[0]
        ):
            # At a terminal, nothing typed since the server ended its side,
            # which then reset the connection (its idle timeout lingered for
            # our end, which did not come): nothing of ours was refused.
            display.say(f"{target.name()} closed the connection")
        else:
            if failure.check(InputNotSent):
                # Input was lost: always worth a line, and a failure.
                display.error(
                    f"{target.name()} closed the connection before reading all our input "
                    f"({cast(InputNotSent, failure.value).bytesSent:,} bytes sent)"
                )
            elif not inputSide.outputClosed:  # else our reader left (| head): be quiet
                display.error(f"{target.name()}: {_describeFailure(failure)}")
            status = EXIT_CONNECT_FAILED
    else:
        if proto.serverClosedFirst:
            display.say(f"{target.name()} closed the connection")
    display.endLine()
    stdio.loseConnection()
    if not inputSide.outputClosed:
        # Wait for our output to be written.  (Without an output, StandardIO
        # would wait for the end of its input, which may never come.)
        await gate.closed
    return status


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``tcpecho-client`` command."""
    from twisted.internet import task

    from tcpproto.reactor import installIfNoneChosen

    installIfNoneChosen()  # the same epoll reactor, half the CPU per event
    target = parseTarget(sys.argv[1:] if argv is None else argv, sys.stdin, sys.stderr)
    interactive = sys.stdin.isatty()

    def run(reactor: IReactorCore) -> Deferred[None]:
        d = defer.Deferred.fromCoroutine(_run(reactor, target, interactive))

        def finish(status: int) -> None:
            raise SystemExit(status)

        return d.addCallback(finish)

    task.react(run)
