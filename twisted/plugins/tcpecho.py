"""The ``twistd tcpecho`` dropin: it only names the options and the service maker."""

from twisted.application.service import ServiceMaker

tcpecho = ServiceMaker(
    "tcpproto echo server",
    "tcpproto.tap",
    "RFC 862 echo and 'thank you' TCP servers (default: echo on tcp:7788).",
    "tcpecho",
)
