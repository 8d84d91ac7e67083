"""
TLS for the server and the client: handshakes logged, client certificates, CA files.

Server side, for ``ssl:`` listeners:

- :class:`HandshakeGateFactory` wraps the application's factory, and the
  ``ssl:`` endpoint's TLS layer wraps the gate: the application's protocol is
  connected once the TLS handshake is done, not when TCP connects, so a
  client that fails the handshake is logged (and counted) as *refused*, with
  a reason, instead of as a connection that was open for a moment; a
  handshake must finish within :data:`HANDSHAKE_TIMEOUT` seconds;
- :class:`ClientCAReactor`: with a client CA file, only clients presenting a
  certificate signed by one of its CAs get through the handshake (mutual
  TLS); others are refused in the handshake.

Client side, :func:`clientEndpoint` builds a ``tls:HOST:PORT`` endpoint whose
trust roots come from a PEM file (Twisted's ``trustRoots=`` wants a
directory).

Half-close over TLS (:class:`HalfCloseTLSFactory`, the TLS layer of both):
TLS ends a direction of the stream with a ``close_notify`` alert, and RFC
8446 (TLS 1.3) section 6.1 gives it TCP's half-close meaning: the sender
will send nothing more, and this "does not have any effect on its read
side".  So, as over TCP:

- the peer's ``close_notify`` (followed by its FIN or not) reaches an
  :class:`~twisted.internet.interfaces.IHalfCloseableProtocol` as
  ``readConnectionLost``; the protocol finishes its answer (line framing's
  unterminated tail, the thank-you reply) and closes: our ``close_notify``
  follows its last byte, then our FIN;
- ``loseWriteConnection`` sends our ``close_notify`` (then a TCP half-close)
  and we read on until the peer's; the client does this at the end of its
  input, so it gets the whole answer;
- a peer that sends ``close_notify`` and FIN and then does not read our
  answer gets a reset, and a reset or a FIN without ``close_notify`` (a
  truncation) ends the connection with ``ConnectionLost``, as over TCP;
- TLS 1.2 (RFC 5246) asked the receiver of a ``close_notify`` to answer at
  once and discard pending writes; OpenSSL does not enforce it and neither
  do we: the same half-close runs over 1.2, and a 1.2 peer that closes its
  socket after its ``close_notify`` simply does not get the answer, like a
  TCP peer that closes instead of half-closing;
- a protocol that is not half-closeable gets Twisted's behaviour (the
  peer's ``close_notify`` closes), after the answers it already wrote.

Twisted's own TLS transport treats a ``close_notify`` as a full close; the
subclass that changes this is :class:`tcpproto._twisted.HalfCloseTLSProtocol`
(it uses Twisted internals; its note there names the upstream tickets).
"""

from __future__ import annotations

import os
from typing import Any, cast

from OpenSSL import SSL
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IListeningPort,
    ILoggingContext,
    IOpenSSLClientConnectionCreator,
    IOpenSSLContextFactory,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import (
    Certificate,
    KeyPair,
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import alsoProvides, directlyProvides, implementer, providedBy

from tcpproto._addresses import escapeForLog, formatAddress
from tcpproto._twisted import HalfCloseTLSProtocol, IOpenSSLTrustRoot
from tcpproto._vocabulary import (
    HANDSHAKE_TIMEOUT,
    TLS_BAD_CERTIFICATE,
    TLS_HANDSHAKE_FAILED,
    TLS_HANDSHAKE_TIMEOUT,
    TLS_NO_CERTIFICATE,
)
from tcpproto._wrapping import FactoryWrapper, LayerProtocol
from tcpproto.connection import abandonEarly, refuseEarly

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"

log = Logger(namespace="tcpproto")


def loadCertificates(path: str) -> list[Certificate]:
    """
    The certificates in a PEM file (a CA bundle holds several).

    :raises ValueError: with a one-line message naming ``path`` when the
        file cannot be read or holds no certificate.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    certificates = []
    for block in data.split(_PEM_CERTIFICATE)[1:]:
        try:
            certificates.append(Certificate.loadPEM(_PEM_CERTIFICATE + block))
        except Exception:
            raise ValueError(f"{path}: not a valid PEM certificate file") from None
    if not certificates:
        raise ValueError(f"{path}: no PEM certificate found")
    return certificates


def trustRootFromFile(path: str) -> IOpenSSLTrustRoot:
    """Trust the CA certificates in the PEM file ``path`` (and only those)."""
    return cast(IOpenSSLTrustRoot, trustRootFromCertificates(loadCertificates(path)))


def failureReason(reason: Failure) -> str:
    """Why a TLS handshake failed, as one short line (OpenSSL's own words)."""
    value = reason.value
    if isinstance(value, SSL.Error) and value.args and isinstance(value.args[0], list):
        parts = [str(e[-1]) for e in value.args[0] if isinstance(e, tuple) and e]
        if parts:
            return "; ".join(parts)
    lines = reason.getErrorMessage().strip().splitlines()
    return lines[0] if lines else type(value).__name__


def _refusalReason(reason: Failure) -> str | None:
    """The refusal reason for a handshake that ended with ``reason``, or ``None``
    when the peer just went away before finishing it."""
    if not reason.check(SSL.Error):
        return None
    text = failureReason(reason).lower()
    if "alert" in text:
        # The peer gave up (it did not trust us, or it had no protocol
        # version or cipher in common with us).
        return TLS_HANDSHAKE_FAILED
    if "did not return a certificate" in text or "certificate required" in text:
        return TLS_NO_CERTIFICATE
    if "certificate" in text:
        return TLS_BAD_CERTIFICATE
    return TLS_HANDSHAKE_FAILED


@implementer(IOpenSSLContextFactory)
class RequireClientCertificate:
    """
    A server context factory that also demands a client certificate signed
    by a CA from ``caFile``: the handshake fails for any other client.

    :param contextFactory: the listener's own context factory (key,
        certificate, protocol versions), whose context is extended.
    """

    def __init__(self, contextFactory: Any, caFile: str) -> None:
        loadCertificates(caFile)  # a clear error now, not at the first handshake
        self._inner = contextFactory
        self._caFile = caFile
        self._context: SSL.Context | None = None

    def getContext(self) -> SSL.Context:
        if self._context is None:
            ctx: SSL.Context = self._inner.getContext()
            ctx.load_verify_locations(self._caFile)
            # The CAs named to the client in the handshake, so that it can
            # pick a matching certificate.
            ctx.load_client_ca(os.fsencode(self._caFile))
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
            self._context = ctx
        return self._context


@implementer(IHandshakeListener)
class HandshakeGate(LayerProtocol):
    """
    Holds the application's protocol back until the TLS handshake is done.

    Sits between Twisted's TLS protocol and the application's protocol; once
    connected, bytes go straight through (see :meth:`handshakeCompleted`).
    """

    factory: HandshakeGateFactory

    def __init__(self, factory: HandshakeGateFactory, wrapped: IProtocol | None) -> None:
        super().__init__(factory, wrapped)
        self.established = False
        self._timedOut = False
        if IHalfCloseableProtocol.providedBy(wrapped):
            # The TLS layer below delivers the peer's close_notify as a
            # half-close only to a half-closeable protocol: be one exactly
            # when the application's is.
            alsoProvides(self, IHalfCloseableProtocol)

    def readConnectionLost(self) -> None:
        """The peer's close_notify: the application's end of input."""
        if self.established:
            cast(IHalfCloseableProtocol, self.wrapped).readConnectionLost()

    def writeConnectionLost(self) -> None:
        """Our close_notify went out."""
        if self.established:
            cast(IHalfCloseableProtocol, self.wrapped).writeConnectionLost()

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        if self.wrapped is None:
            # Refused by the application's factory (which logged why): no
            # point in a handshake.
            cast(Any, transport).abortConnection()
            return
        self.startTimer(self.factory.handshakeTimeout)

    def handshakeCompleted(self) -> None:
        if self.established or self.wrapped is None:
            return
        self.cancelTimer()
        self.established = True
        wrapped = self.wrapped
        assert self.transport is not None
        self.connectWrapped(wrapped, self.transport)
        if IHandshakeListener.providedBy(wrapped):
            cast(IHandshakeListener, wrapped).handshakeCompleted()

    def dataReceived(self, data: bytes) -> None:
        """Application data before the handshake is done cannot happen with TLS."""

    def timedOut(self) -> None:
        # Logged as refused by connectionLost, after the place is given back.
        self._timedOut = True
        assert self.transport is not None
        cast(Any, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.cancelTimer()
        if self.established:
            assert self.wrapped is not None
            self.wrapped.connectionLost(reason)
            return
        if self.wrapped is None:
            return
        abandonEarly(self.factory.wrappedFactory, self.wrapped)
        why = TLS_HANDSHAKE_TIMEOUT if self._timedOut else _refusalReason(reason)
        if why is None:
            return  # closed before finishing the handshake (a port probe): not worth a line
        transport = self.transport
        assert transport is not None
        peer = transport.getPeer()
        refuseEarly(self.factory.wrappedFactory, peer, why)
        self.factory.logDetail(peer, reason)


class HandshakeGateFactory(FactoryWrapper):
    """Builds a :class:`HandshakeGate` around each of ``wrappedFactory``'s protocols."""

    #: Logs as ``EchoFactory (TLS)``, as the PROXY layer logs as ``EchoFactory (PROXY)``.
    layerName = "TLS"

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        handshakeTimeout: float = HANDSHAKE_TIMEOUT,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__(wrappedFactory, clock)
        self.handshakeTimeout = handshakeTimeout
        self._lastDetail = float("-inf")

    def logDetail(self, peer: IAddress, reason: Failure) -> None:
        """Log OpenSSL's words for a failed handshake, at most once a second."""
        now = self.clock.seconds()
        if now - self._lastDetail < 1.0:
            return
        self._lastDetail = now
        log.debug(
            "TLS handshake with {peer} failed: {detail}",
            peer=formatAddress(peer),
            detail=escapeForLog(failureReason(reason)),
        )

    def buildProtocol(self, addr: IAddress) -> HandshakeGate:  # type: ignore[override]
        # Admission (access list, limits) before the costly handshake.
        return HandshakeGate(self, self.wrappedFactory.buildProtocol(addr))


class HalfCloseTLSFactory(TLSMemoryBIOFactory):
    """
    :class:`~twisted.protocols.tls.TLSMemoryBIOFactory` with half-close (the
    module docstring says what changes), server or client side.
    """

    protocol = HalfCloseTLSProtocol

    def logPrefix(self) -> str:
        # The handshake gate already says "(TLS)".
        inner = self.wrappedFactory
        if isinstance(inner, HandshakeGateFactory):
            return inner.logPrefix()
        prefix = inner.logPrefix() if ILoggingContext.providedBy(inner) else type(inner).__name__
        return f"{prefix} (TLS)"


class HalfCloseTLSReactor:
    """
    The given reactor, except that ``listenSSL`` (which ``ssl:`` endpoints
    call) listens with a :class:`HalfCloseTLSFactory`: TLS in memory over
    :meth:`listenTCP` (the wrapped reactor's), as the reactor's own
    ``listenSSL`` does, with half-close.  Every other method and interface
    is the wrapped reactor's.

    Why a reactor adapter: the ``ssl:`` endpoint builds its TLS layer inside
    ``reactor.listenSSL``, and Twisted offers no way to choose that layer's
    protocol class; the ``listenSSL`` call is the one place left.

    The other adapters on the listening side extend this one, so that they
    compose in any order: :class:`ClientCAReactor` extends the context
    factory (:meth:`wrapContextFactory`),
    :class:`~tcpproto._reuseport.ReusePortReactor` the TCP port
    (``listenTCP``); ``listenSSL`` applies every ``wrapContextFactory`` of
    the stack, then listens through the stack's ``listenTCP``.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        directlyProvides(self, providedBy(reactor))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def wrapContextFactory(self, contextFactory: Any) -> Any:
        """``contextFactory`` as the reactors below this one extend it (or unchanged)."""
        inner = getattr(self._reactor, "wrapContextFactory", None)
        return contextFactory if inner is None else inner(contextFactory)

    def listenSSL(
        self,
        port: int,
        factory: IProtocolFactory,
        contextFactory: Any,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        tlsFactory = HalfCloseTLSFactory(self.wrapContextFactory(contextFactory), False, factory)
        listening: IListeningPort = self.listenTCP(port, tlsFactory, backlog, interface)
        return listening


@implementer(IStreamClientEndpoint)
class TLSClientEndpoint:
    """
    TLS with half-close over ``wrappedEndpoint``: what
    :func:`twisted.internet.endpoints.wrapClientTLS` builds, with
    :class:`HalfCloseTLSFactory` (``wrapClientTLS`` cannot choose the TLS
    layer).  The protocol connected is the application's.

    :param connectionCreator: the TLS options, e.g. from
        :func:`twisted.internet.ssl.optionsForClientTLS`.
    """

    def __init__(
        self,
        connectionCreator: IOpenSSLClientConnectionCreator,
        wrappedEndpoint: IStreamClientEndpoint,
        clock: IReactorTime | None = None,
    ) -> None:
        self._creator = connectionCreator
        self._wrapped = wrappedEndpoint
        self._clock = clock

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        factory = HalfCloseTLSFactory(self._creator, True, protocolFactory, self._clock)

        def unwrap(proto: IProtocol) -> IProtocol:
            return cast(TLSMemoryBIOProtocol, proto).wrappedProtocol

        return self._wrapped.connect(factory).addCallback(unwrap)


class ClientCAReactor(HalfCloseTLSReactor):
    """
    The given reactor, except that ``listenSSL`` (which ``ssl:`` endpoints
    call) requires client certificates signed by a CA in ``clientCA``, over
    tcpproto's TLS layer (:class:`HalfCloseTLSReactor`).

    Why a reactor adapter: Twisted's ``ssl:`` endpoint string has no option
    to demand client certificates, and its endpoint keeps the context
    factory it builds to itself; the one public place to extend that
    context factory is the ``listenSSL`` call the endpoint makes.  Nothing
    else is changed (the handshake gate is a factory wrapper:
    :class:`HandshakeGateFactory`).  It composes with
    :class:`~tcpproto._reuseport.ReusePortReactor` in either order.
    """

    def __init__(self, reactor: Any, clientCA: str) -> None:
        loadCertificates(clientCA)  # a clear error now, not at the first handshake
        super().__init__(reactor)
        self._clientCA = clientCA

    def wrapContextFactory(self, contextFactory: Any) -> Any:
        """``contextFactory``, demanding a client certificate from ``clientCA``'s CAs."""
        return RequireClientCertificate(super().wrapContextFactory(contextFactory), self._clientCA)


# -- the client ------------------------------------------------------------


def splitDescription(description: str) -> tuple[list[str], dict[str, str]]:
    """
    Split an endpoint string into positional and keyword arguments, with
    Twisted's rules (``:`` separates, ``\\`` escapes, the first ``=`` of an
    argument makes it a keyword).
    """
    args: list[str] = []
    kwargs: dict[str, str] = {}
    key: str | None = None
    current: list[str] = []
    operators = ":="
    chars = iter(description)
    for c in chars:
        if c == "\\":
            current.append(next(chars, ""))
        elif c in operators:
            text = "".join(current)
            current = []
            if c == "=":
                key = text
                operators = ":"
            else:
                if key is None:
                    args.append(text)
                else:
                    kwargs[key] = text
                key = None
                operators = ":="
        else:
            current.append(c)
    text = "".join(current)
    if key is None:
        args.append(text)
    else:
        kwargs[key] = text
    return args, kwargs


def clientEndpoint(
    reactor: Any, description: str, caFile: str | None = None, timeout: float = 30.0
) -> IStreamClientEndpoint:
    """
    A ``tls:HOST:PORT[:options]`` client endpoint with half-close
    (:class:`TLSClientEndpoint`) that trusts the CAs in ``caFile`` (the
    platform's trust store without one).

    The options are those of Twisted's ``tls:`` endpoint (``timeout``,
    ``bindAddress``, ``certificate`` and ``privateKey`` for a client
    certificate, ``endpoint``), except ``trustRoots``, which ``caFile``
    replaces.

    :raises ValueError: with a one-line message for a description that is
        not ``tls:``, or a file that cannot be used.
    """
    args, kwargs = splitDescription(description)
    if not args or args[0] != "tls":
        raise ValueError("a CA file goes with a tls:HOST:PORT endpoint")
    if len(args) != 3:
        raise ValueError("expected tls:HOST:PORT[:option=value...]")
    host, portText = args[1], args[2]
    try:
        port = int(portText)
    except ValueError:
        raise ValueError(f"not a port number: {portText!r}") from None
    trustRoots = kwargs.pop("trustRoots", None)
    if trustRoots is not None and caFile is not None:
        raise ValueError("give a CA file or trustRoots=, not both")
    timeoutText = kwargs.pop("timeout", None)
    bindAddress = kwargs.pop("bindAddress", None)
    certificate = kwargs.pop("certificate", None)
    privateKey = kwargs.pop("privateKey", None)
    inner = kwargs.pop("endpoint", None)
    if kwargs:
        raise ValueError(f"unknown tls: option(s): {', '.join(sorted(kwargs))}")
    if timeoutText is not None:
        try:
            timeout = float(timeoutText)
        except ValueError:
            raise ValueError(f"timeout= takes seconds, not {timeoutText!r}") from None
    clientCertificate = _clientCertificate(certificate, privateKey)
    trustRoot: IOpenSSLTrustRoot | None = None
    if caFile is not None:
        trustRoot = trustRootFromFile(caFile)
    elif trustRoots is not None:
        trustRoot = _trustRootFromDirectory(trustRoots)
    options = optionsForClientTLS(host, trustRoot=trustRoot, clientCertificate=clientCertificate)
    wrapped: IStreamClientEndpoint
    if inner is not None:
        wrapped = cast(IStreamClientEndpoint, endpoints.clientFromString(reactor, inner))
    else:
        wrapped = endpoints.HostnameEndpoint(
            reactor,
            host,
            port,
            timeout,
            None if bindAddress is None else (bindAddress, 0),
        )
    return TLSClientEndpoint(options, wrapped)


def _trustRootFromDirectory(path: str) -> IOpenSSLTrustRoot:
    """The CA certificates of the PEM files in directory ``path`` (Twisted's ``trustRoots=``)."""
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    certificates: list[Certificate] = []
    for name in names:
        try:
            certificates.extend(loadCertificates(os.path.join(path, name)))
        except ValueError:
            continue  # not a PEM certificate file: skipped, as Twisted does
    if not certificates:
        raise ValueError(f"{path}: no PEM certificate found")
    return cast(IOpenSSLTrustRoot, trustRootFromCertificates(certificates))


def _clientCertificate(certificate: str | None, privateKey: str | None) -> Any:
    if certificate is None:
        if privateKey is not None:
            raise ValueError("privateKey= needs certificate=")
        return None
    try:
        with open(certificate, "rb") as f:
            certBytes = f.read()
        if privateKey is None:
            return PrivateCertificate.loadPEM(certBytes)
        with open(privateKey, "rb") as f:
            keyBytes = f.read()
        return PrivateCertificate.fromCertificateAndKeyPair(
            Certificate.loadPEM(certBytes), KeyPair.load(keyBytes, 1)
        )
    except OSError as e:
        raise ValueError(f"cannot read {e.filename}: {e.strerror}") from None
    except Exception:
        raise ValueError(
            f"cannot load a client certificate and key from {certificate}"
            + (f" and {privateKey}" if privateKey else "")
        ) from None


__all__ = [
    "HANDSHAKE_TIMEOUT",
    "TLS_BAD_CERTIFICATE",
    "TLS_HANDSHAKE_FAILED",
    "TLS_HANDSHAKE_TIMEOUT",
    "TLS_NO_CERTIFICATE",
    "ClientCAReactor",
    "HalfCloseTLSFactory",
    "HalfCloseTLSReactor",
    "HandshakeGate",
    "HandshakeGateFactory",
    "RequireClientCertificate",
    "TLSClientEndpoint",
    "clientEndpoint",
    "failureReason",
    "loadCertificates",
    "splitDescription",
    "trustRootFromFile",
]
