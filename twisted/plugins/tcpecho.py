"""
The ``twistd tcpecho`` dropin: it names the options and the service maker.

They are :mod:`tcpproto.tap`'s twistd glue (``TwistdOptions``,
``makeTwistdService``): what only ``twistd`` should do (a one-line usage
error with exit status 2; the lean reactor as the default) stays out of
``tcpproto.tap.Options`` and ``makeService``, which application files and
tests call.
"""

from typing import Any

from twisted.application.service import ServiceMaker
from twisted.python.reflect import namedAny


class _TwistdServiceMaker(ServiceMaker):
    """A ServiceMaker naming the module's twistd glue instead of Options/makeService."""

    @property
    def options(self) -> Any:
        return namedAny(self.module).TwistdOptions

    @property
    def makeService(self) -> Any:
        return namedAny(self.module).makeTwistdService


tcpecho = _TwistdServiceMaker(
    "tcpproto echo server",
    "tcpproto.tap",
    "RFC 862 echo and 'thank you' TCP servers (default: echo on tcp:7788).",
    "tcpecho",
)
