"""asyncio Protocol echo; with --uvloop on uvloop; with --tls CERT KEY over TLS (the ssl module).

Usage: asyncio_proto.py PORT [--uvloop] [--tls CERT KEY]
"""

import asyncio
import ssl
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def tlsContext():
    if "--tls" not in sys.argv:
        return None
    i = sys.argv.index("--tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[i + 1], sys.argv[i + 2])
    return ctx


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", int(sys.argv[1]), ssl=tlsContext())
    await server.serve_forever()


if "--uvloop" in sys.argv:
    import uvloop

    uvloop.run(main())
else:
    asyncio.run(main())
